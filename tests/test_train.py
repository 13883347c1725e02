"""Training loop pieces on tiny images: batches, the loss weight, checkpoints, exact resumption, predict."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.dataset import FaceDataset
from helpers.loader import make_loader
from helpers.runconfig import RunConfig
from helpers.transforms import default_pipeline
from helpers.train import (
    MEAN, STD, FaceLoss, build_model, config_from_dict, evaluate, face_pixel_fraction, load_checkpoint,
    load_model, positive_weight, predict, prepare_batch, save_checkpoint, train,
)

TINY = {"base_channels": 4, "levels": 2, "max_channels": 8}
SIZE = (24, 32)


def write_images(folder, n: int, seed: int = 0) -> tuple[list[str], list[list[list[float]]]]:
    """``n`` 48x64 PNGs: noise background, one bright square 'face' (its box is the label) and, in
    every other image, a second square of the same colour that is NOT labelled (a distractor)."""
    rng = np.random.default_rng(seed)
    files, labels = [], []
    for i in range(n):
        img = rng.integers(0, 120, size=(48, 64, 3), dtype=np.uint8)
        x, y, s = int(rng.integers(0, 40)), int(rng.integers(0, 24)), int(rng.integers(10, 24))
        img[y:y + s, x:x + s] = (230, 180, 150)
        img[y + s // 3, x + s // 4:x + 3 * s // 4] = (20, 20, 20)  # 'eyes': structure the colour rule misses
        if i % 2:
            img[30:40, 50:60] = (230, 180, 150)
        path = folder / f"image_{i:06d}.png"
        Image.fromarray(img).save(path)
        files.append(str(path))
        labels.append([[x, y, min(x + s, 64), min(y + s, 48)]])
    return files, labels


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    return write_images(folder, 10)


def tiny_config(**kw) -> RunConfig:
    return RunConfig(**{"name": "test", "n_images": 10, "test_fraction": 0.2, "data_seed": 0, "image_size": SIZE,
                        "epochs": 2, "batch_size": 4, "lr": 1e-2, "num_workers": 0, **kw})


def tiny_loaders(data, config: RunConfig, keep_test_boxes: bool = False):
    files, labels = data
    train_set = FaceDataset(files[:8], labels[:8], transform=default_pipeline(tuple(config.image_size)))
    test_set = FaceDataset(files[8:], labels[8:], transform=default_pipeline(tuple(config.image_size), keep_test_boxes))
    from helpers.collate import collate_keep_boxes

    return (make_loader(train_set, config.batch_size, shuffle=True, seed=config.seed, num_workers=0),
            make_loader(test_set, config.batch_size, shuffle=False, seed=config.seed, num_workers=0,
                        collate_fn=collate_keep_boxes if keep_test_boxes else None))


def test_prepare_batch_normalises_on_the_device():
    image = torch.zeros(2, 3, 4, 5, dtype=torch.uint8)
    image[:, :, 0, 0] = 255
    batch = {"image": image, "mask": torch.ones(2, 1, 4, 5, dtype=torch.uint8), "name": ["a", "b"]}
    x, y = prepare_batch(batch, "cpu", channels_last=True)
    assert x.dtype == torch.float32 and y.dtype == torch.float32
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert x[0, :, 1, 1].tolist() == pytest.approx([-m / s for m, s in zip(MEAN, STD)])
    assert x[0, :, 0, 0].tolist() == pytest.approx([(1 - m) / s for m, s in zip(MEAN, STD)])
    assert y.sum().item() == 40
    with pytest.raises(TypeError, match="uint8"):
        prepare_batch({"image": image.float(), "mask": batch["mask"]}, "cpu")
    with pytest.raises(KeyError, match="mask"):
        prepare_batch({"image": image}, "cpu")


def test_face_pixel_fraction_from_a_dataset_and_from_a_loader(tiny_data):
    config = tiny_config()
    loader, _ = tiny_loaders(tiny_data, config)
    from_loader = face_pixel_fraction(loader)
    from_dataset = face_pixel_fraction(loader.dataset)
    masks = [loader.dataset[i]["mask"] for i in range(len(loader.dataset))]
    expected = sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)
    assert from_loader == pytest.approx(expected) and from_dataset == pytest.approx(expected)
    assert 0 < expected < 1
    with pytest.raises(KeyError, match="mask"):
        face_pixel_fraction([{"image": torch.zeros(1)}])


def test_positive_weight_and_loss():
    assert positive_weight(0.1) == pytest.approx(3.0)
    assert positive_weight(0.5) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        positive_weight(0.0)
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2, :2] = 1
    good, bad = (target * 2 - 1) * 8, -(target * 2 - 1) * 8
    loss = FaceLoss(pos_weight=3.0, dice_weight=1.0)
    assert loss(good, target) < 0.01 < loss(bad, target)
    # with dice_weight 0 it is exactly the weighted BCE
    bce = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor([3.0]))
    logits = torch.randn(1, 1, 4, 4)
    torch.testing.assert_close(FaceLoss(3.0, 0.0)(logits, target), bce(logits, target))


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    torch.manual_seed(0)
    model = build_model(**TINY)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 3, 16, 16)).mean().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=10)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    config = tiny_config()
    history = {"epoch": [1.0], "val_iou": [0.5]}
    path = save_checkpoint(tmp_path / "c.pt", model, opt, sched, scaler, config, 1, history, model_kwargs=TINY)
    raw = torch.load(path, weights_only=True)  # plain containers and tensors only
    assert raw["epoch"] == 1 and raw["history"] == history
    state = load_checkpoint(path)
    assert config_from_dict(state["config"]) == config
    restored = build_model(**state["model_kwargs"])
    restored.load_state_dict(state["model"])
    for a, b in zip(model.state_dict().values(), restored.state_dict().values()):
        assert torch.equal(a, b)
    opt2 = torch.optim.AdamW(restored.parameters(), lr=1e-3)
    opt2.load_state_dict(state["optimizer"])
    loaded, loaded_config = load_model(path)
    assert not loaded.training and loaded_config == config
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def _run(data, tmp_path, name, **kw):
    config = tiny_config()
    return train(config, loaders=tiny_loaders(data, config), device="cpu", model_kwargs=TINY,
                 checkpoint_path=tmp_path / f"{name}.pt", progress=False, log=None, **kw)


def test_resuming_gives_the_same_weights_and_metrics_as_an_uninterrupted_run(tiny_data, tmp_path):
    straight = _run(tiny_data, tmp_path, "straight")
    first = _run(tiny_data, tmp_path, "split", stop_after=1)
    assert len(first.history["epoch"]) == 1
    resumed = _run(tiny_data, tmp_path, "split", resume_from=tmp_path / "split.pt")
    assert resumed.history["epoch"] == [1.0, 2.0]
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    for key in ("train_loss", "val_loss", "val_iou", "val_dice", "lr"):
        assert straight.history[key] == resumed.history[key], key
    # and the order of batches really changes between epochs (the test would be weak otherwise)
    config = tiny_config()
    loader, _ = tiny_loaders(tiny_data, config)
    from helpers.train import _reseed_loader

    orders = []
    for epoch in range(2):
        _reseed_loader(loader, config.seed + epoch)
        orders.append([n for batch in loader for n in batch["name"]])
    assert orders[0] != orders[1] and sorted(orders[0]) == sorted(orders[1])


def test_resume_refuses_another_config(tiny_data, tmp_path):
    _run(tiny_data, tmp_path, "c", stop_after=1)
    config = tiny_config(lr=0.5)
    with pytest.raises(ValueError, match="same config"):
        train(config, loaders=tiny_loaders(tiny_data, config), device="cpu", resume_from=tmp_path / "c.pt",
              progress=False, log=None)


def test_evaluate_a_perfect_and_an_empty_predictor(tiny_data):
    config = tiny_config()
    _, test_loader = tiny_loaders(tiny_data, config, keep_test_boxes=True)
    truth = {}
    for batch in test_loader:
        for name, mask in zip(batch["name"], batch["mask"]):
            truth[name] = mask
    oracle_masks = iter([torch.stack([truth[n] for n in b["name"]]) for b in test_loader])
    perfect = evaluate(lambda images: next(oracle_masks).bool(), test_loader)
    assert perfect.counts.iou == 1.0 and perfect.boxes.recall == 1.0 and perfect.boxes.total == 2
    nothing = evaluate(lambda images: torch.zeros(images.shape[0], 1, *images.shape[2:]), test_loader)
    assert nothing.counts.iou == 0.0 and nothing.boxes.found == 0
    assert [iou for _, iou in nothing.worst(2)] == [0.0, 0.0]


def test_predict_returns_a_probability_map_at_the_original_size(tmp_path):
    torch.manual_seed(0)
    model = build_model(**TINY).eval()
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (37, 50, 3), dtype=np.uint8))
    prob = predict(model, img, image_size=SIZE, device="cpu")
    assert prob.shape == (37, 50) and prob.dtype == np.float32
    assert 0.0 <= prob.min() and prob.max() <= 1.0
    img.save(tmp_path / "x.png")
    np.testing.assert_allclose(predict(model, tmp_path / "x.png", SIZE, "cpu"), prob, atol=1e-6)
