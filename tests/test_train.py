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
from helpers.checkpoints import config_from_dict, load_checkpoint, load_model, save_checkpoint
from helpers.data_path import Loaders, build_loaders
from helpers.evaluation import evaluate, final_test, split_distractors
from helpers.inference import predict
from helpers.loss import FaceLoss, face_pixel_fraction, positive_weight
from helpers.model import build_model
from helpers.on_device import MEAN, STD, prepare_batch
from helpers.train import train

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
    # face level: the oracle finds both faces with no false face; predicting nothing finds none
    oracle_masks = iter([torch.stack([truth[n] for n in b["name"]]) for b in test_loader])
    perfect = evaluate(lambda images: next(oracle_masks).bool(), test_loader)
    assert (perfect.faces.tp, perfect.faces.fp, perfect.faces.precision) == (2, 0, 1.0)
    assert perfect.faces.fp_distractor is None  # no distractor record given: unknown, not zero
    assert nothing.faces.recall == 0.0 and nothing.faces.fp == 0
    # face everywhere: box recall says every face is found; face-level counts do not
    everything = evaluate(lambda images: torch.ones(images.shape[0], 1, *images.shape[2:], dtype=torch.bool),
                          test_loader, distractors={})
    assert everything.boxes.recall == 1.0
    assert everything.faces.precision == 0.0 and everything.faces.recall == 0.0
    assert everything.faces.fp == 2 and everything.faces.fp_distractor is None  # names missing from the record
    assert everything.summary()["face_precision"] == 0.0 and everything.summary()["box_recall"] == 1.0


class _Untouchable:
    """A loader that fails the test if anything iterates it or asks its length."""

    def __iter__(self):
        raise AssertionError("the test split was touched")

    def __len__(self):
        raise AssertionError("the test split was touched")


def test_train_evaluates_on_validation_and_never_touches_the_test_split(tiny_data):
    config = tiny_config(epochs=1)
    train_loader, val_loader = tiny_loaders(tiny_data, config, keep_test_boxes=True)
    result = train(config, loaders=Loaders(train_loader, val_loader, _Untouchable()), device="cpu",
                   model_kwargs=TINY, progress=False, log=None)
    names = {n for b in val_loader for n in b["name"]}
    assert {n for n, _ in result.evaluation.per_image} == names and len(result.history["val_iou"]) == 1
    assert result.evaluation.faces is not None  # validation batches with boxes give face counts


@pytest.fixture(scope="module")
def synth_folder(tmp_path_factory):
    from helpers import synth

    folder = tmp_path_factory.mktemp("synth")
    synth.generate(folder, 40, seed=0, size=(120, 160), workers=1, progress=False)
    return folder


def test_build_loaders_gives_three_disjoint_splits_and_the_old_test_split(synth_folder):
    from helpers.datafiles import read_file_lists

    config = tiny_config(test_fraction=0.2, val_fraction=0.2, data_folder=str(synth_folder))
    loaders = build_loaders(config, "cpu", keep_test_boxes=True)
    assert isinstance(loaders, Loaders)
    names = {k: [getattr(loaders, k).dataset.name(i) for i in range(len(getattr(loaders, k).dataset))]
             for k in ("train", "val", "test")}
    assert all(names.values()) and sum(map(len, names.values())) == 40
    assert len(set().union(*map(set, names.values()))) == 40  # disjoint
    old_test = read_file_lists(synth_folder, 0.2).files_test  # the split before validation existed
    assert [str(synth_folder / n) for n in names["test"]] == old_test
    assert "boxes" in next(iter(loaders.val)) and "boxes" in next(iter(loaders.test))


def test_split_distractors_are_scaled_like_the_boxes_and_none_without_the_file(synth_folder, tmp_path):
    import json
    import shutil

    config = tiny_config(test_fraction=0.2, val_fraction=0.2, data_folder=str(synth_folder))
    test_set = build_loaders(config, "cpu", keep_test_boxes=True).test.dataset
    fakes = split_distractors(test_set, (60, 40))  # half the height, a quarter of the width
    record = json.loads((synth_folder / "distractors.json").read_text())
    for i in range(len(test_set)):
        name = test_set.name(i)
        expected = np.asarray(record[name], np.float32).reshape(-1, 4) * np.float32([0.25, 0.5, 0.25, 0.5])
        np.testing.assert_allclose(fakes[name], expected)
    own = tmp_path / "own"
    shutil.copytree(synth_folder, own)
    (own / "distractors.json").unlink()
    config = tiny_config(test_fraction=0.2, val_fraction=0.2, data_folder=str(own))
    assert split_distractors(build_loaders(config, "cpu").test.dataset, (60, 40)) is None


def test_final_test_scores_every_contestant_once_with_face_counts(synth_folder):
    config = tiny_config(test_fraction=0.2, val_fraction=0.2, data_folder=str(synth_folder), image_size=(60, 80))
    loaders = build_loaders(config, "cpu", keep_test_boxes=True)
    fakes = split_distractors(loaders.test.dataset, (60, 80))
    torch.manual_seed(0)
    results = final_test({"net": build_model(**TINY).eval(),
                          "everything": lambda images: torch.ones(images.shape[0], 1, *images.shape[2:]) > 0},
                         loaders.test, "cpu", distractors=fakes)
    assert set(results) == {"net", "everything"}
    everything = results["everything"]
    assert everything.faces.fp == len(loaders.test.dataset) and everything.faces.fp_distractor is not None
    assert everything.counts.recall == 1.0 and everything.faces.precision == 0.0


def test_predict_returns_a_score_map_at_the_original_size(tmp_path):
    torch.manual_seed(0)
    model = build_model(**TINY).eval()
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (37, 50, 3), dtype=np.uint8))
    prob = predict(model, img, image_size=SIZE, device="cpu")
    assert prob.shape == (37, 50) and prob.dtype == np.float32
    assert 0.0 <= prob.min() and prob.max() <= 1.0
    img.save(tmp_path / "x.png")
    np.testing.assert_allclose(predict(model, tmp_path / "x.png", SIZE, "cpu"), prob, atol=1e-6)


def test_tune_sweep_scores_candidates_on_validation(synth_folder, monkeypatch):
    from helpers.lab import tune
    from helpers.data_path import Loaders

    real = build_loaders

    def guarded(*args, **kwargs):  # the sweep may build the test loader but must never read it
        loaders = real(*args, **kwargs)
        return Loaders(loaders.train, loaders.val, _Untouchable())

    monkeypatch.setattr("helpers.train.build_loaders", guarded)
    config = tiny_config(epochs=1, test_fraction=0.2, val_fraction=0.2, data_folder=str(synth_folder),
                         image_size=(60, 80))
    candidates = {"defaults": {"model_kwargs": TINY}, "no Dice": {"dice_weight": 0.0, "model_kwargs": TINY},
                  "sqrt": {"pos_weight": "sqrt", "model_kwargs": TINY}}
    rows = tune.sweep(config, candidates, log=None)
    assert [r["candidate"] for r in rows] == list(candidates)
    assert rows[0]["pos_weight"] == 1.0 and rows[2]["pos_weight"] > 1.0  # the default: no weight
    assert all(0.0 <= r["iou"] <= 1.0 and "face_precision" in r for r in rows)
    with pytest.raises(ValueError, match="pos_weight rule"):
        tune.pos_weight_rule("half", 0.1)


def test_tune_command_refuses_an_unknown_candidate(capsys):
    from helpers.lab import tune

    with pytest.raises(SystemExit):
        tune.main(["--config", "quick", "--only", "no such candidate"])
    assert "no candidate starts with that" in capsys.readouterr().err


def test_augment_flips_training_images_only_and_train_sets_the_epoch(synth_folder):
    import torch

    config = tiny_config(test_fraction=0.2, val_fraction=0.2, data_folder=str(synth_folder))
    plain = build_loaders(config, "cpu", loader_batch_size=None)
    flipped = build_loaders(config, "cpu", loader_batch_size=None, augment=True)
    ds, ref = flipped.train.dataset, plain.train.dataset
    n = len(ref)

    def flips(epoch):
        ds.set_epoch(epoch)
        out = []
        for i in range(n):
            a, b = ds[i], ref[i]
            same = torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
            mirrored = torch.equal(a["image"], b["image"].flip(-1)) and torch.equal(a["mask"], b["mask"].flip(-1))
            assert same or mirrored  # image and mask move together
            out.append(not same)
        return out

    first, second = flips(0), flips(1)
    assert 0 < sum(first) < n and first != second and flips(0) == first  # random, per epoch, repeatable
    assert flipped.val.dataset.__class__ is plain.val.dataset.__class__  # held-out splits untouched
    seen = []
    ds.set_epoch = lambda e, _orig=ds.set_epoch: (seen.append(e), _orig(e))[1]
    train(config, loaders=(flipped.train, flipped.val), progress=False, log=None)  # 2 epochs
    assert seen == [0, 1]


def test_evaluation_table_lines_up_every_figure_and_reports_tiny_regions():
    from helpers.metrics import BoxRecall, FaceCounts, PixelCounts
    from helpers.evaluation import Evaluation, evaluation_table

    cnn = Evaluation(PixelCounts(tp=8, fp=2, fn=2, tn=88), boxes=BoxRecall(found=3, total=4),
                     faces=FaceCounts(tp=3, fn=1, fp=1, tiny=2, fp_distractor=1))
    own = Evaluation(PixelCounts(tp=5, fp=5, fn=5, tn=85), faces=FaceCounts(tp=1, fn=1, fp=0, fp_distractor=None))
    text = evaluation_table({"CNN": cnn, "own data": own})
    head, rule, first, second, tiny = text.splitlines()
    assert len(rule) == len(head) and first.startswith("CNN") and second.startswith("own data")
    assert "0.667" in first and "0.750" in first and "3/4" in first and first.endswith("1")
    assert second.rstrip().endswith("?") and "-" in second  # distractors unknown; no box recall
    assert tiny == "regions under 4 px, not counted as faces: CNN 2, own data 0"


def test_threads_sets_torch_threads_for_the_epoch_loop_and_restores_them(tiny_data, tmp_path):
    config = tiny_config()
    lines, seen = [], []
    before = torch.get_num_threads()
    loader, val = tiny_loaders(tiny_data, config)

    class Watch:  # records the thread count while train iterates the loader
        def __init__(self, inner):
            self.inner, self.dataset, self.num_workers = inner, inner.dataset, 0

        def __len__(self):
            return len(self.inner)

        def __iter__(self):
            seen.append(torch.get_num_threads())
            return iter(self.inner)

    train(config, loaders=(Watch(loader), val), device="cpu", model_kwargs=TINY, threads=2, progress=False,
          log=lines.append)
    assert set(seen[1:]) == {2}, seen  # seen[0]: face_pixel_fraction's pass, before the loop
    assert "2 torch thread(s) beside 0 loader worker(s)" in lines[0]
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads=0"):
        train(config, loaders=(loader, val), device="cpu", threads=0, progress=False, log=None)
