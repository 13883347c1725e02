"""The faster training path against the reference one: reduced-size JPEG decoding
(``FaceDataset(decode_size=...)``), ``SplitBatches``, and ``build_loaders`` built from both and from the
array storage. Boxes and masks must be identical to the full decode + ``Rescale``; pixels close."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile
from PIL.JpegImagePlugin import JpegImageFile

from helpers import synth
from helpers.lab.batches import assert_same_batch
from helpers.collate import collate_keep_boxes
from helpers.dataset import FaceDataset, read_resized
from helpers.errors import DataError, ImageReadError
from helpers.loader import SplitBatches, make_loader
from helpers.runconfig import CONFIGS
from helpers.storage import BoxArray, PathArray
from helpers.data_path import build_loaders, check_loaders
from helpers.inference import predict
from helpers.model import build_model
from helpers.train import _reseed_loader
from helpers.transforms import ConvertGroundTruth, Rescale, default_pipeline, scale_boxes

MAX_MEAN_DIFF = 2.0  # grey levels, mean |draft - reference| over all pixels of the images compared


def _scenes(folder, n: int, seed: int = 1, size=(480, 640)):
    """``n`` generated scenes (JPEG, as the training data) in ``folder``: (files, labels)."""
    synth.generate(folder, n, seed=seed, size=size, workers=1, progress=False)
    labels = json.loads((folder / "bbox.json").read_text())
    names = sorted(labels)
    return [folder / name for name in names], [labels[name] for name in names]


def _compare(files, labels, size, **kwargs):
    """(reference samples, draft samples) after Rescale(size) + ConvertGroundTruth(keep_boxes=True)."""
    pipe = lambda s: ConvertGroundTruth(keep_boxes=True)(Rescale(size)(s))  # noqa: E731
    ref = FaceDataset(files, labels, transform=pipe, **kwargs)
    fast = FaceDataset(files, labels, transform=pipe, decode_size=size, **kwargs)
    return [ref[i] for i in range(len(ref))], [fast[i] for i in range(len(fast))]


def _assert_same_truth(refs, fasts, size, max_mean=MAX_MEAN_DIFF):
    diffs = []
    for r, f in zip(refs, fasts):
        assert r["image"].shape == f["image"].shape == (*size, 3) and f["image"].dtype == np.uint8
        assert f["boxes"].dtype == np.float32
        np.testing.assert_array_equal(f["boxes"], r["boxes"])  # bit for bit
        np.testing.assert_array_equal(f["mask"], r["mask"])
        assert r["name"] == f["name"]
        diffs.append(np.abs(r["image"].astype(np.int16) - f["image"]).astype(np.float64))
    mean = float(np.mean([d.mean() for d in diffs]))
    assert mean <= max_mean, f"mean |draft - reference| = {mean:.2f} grey levels"
    return mean


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return _scenes(tmp_path_factory.mktemp("scenes"), 6)


@pytest.mark.parametrize("size", [(120, 160), (240, 320), (100, 150), (130, 170), (480, 640), (600, 700)])
def test_draft_equals_reference_boxes_and_masks(scenes, size):
    files, labels = scenes
    refs, fasts = _compare(files, labels, size)
    mean = _assert_same_truth(refs, fasts, size)
    if size[0] >= 480:  # no reduction possible: the same full decode and the same Pillow resize
        assert mean == 0.0


def _record_drafts(monkeypatch):
    """Patch JpegImageFile.draft to record (requested size, drafted size, box)."""
    seen = []
    original = JpegImageFile.draft

    def spy(self, mode, size):
        result = original(self, mode, size)
        seen.append((size, self.size, None if result is None else result[1]))
        return result

    monkeypatch.setattr(JpegImageFile, "draft", spy)
    return seen


@pytest.mark.parametrize("size, scale", [
    ((120, 160), 4),  # exactly 1/4 of 480x640: no resize after the decode
    ((240, 320), 2),
    ((100, 150), 4),  # between: 640 // 150 = 4 = 480 // 100 -> 1/4 (160x120), then Pillow to 150x100
    ((130, 170), 2),  # between: min(640 // 170, 480 // 130) = 3 -> 1/2 (320x240), then Pillow
    ((60, 80), 8),
    ((40, 50), 8),  # the smallest DCT scale is 1/8 (80x60): Pillow does the rest
])
def test_draft_picks_the_smallest_scale_at_least_as_large(scenes, monkeypatch, size, scale):
    files, labels = scenes
    seen = _record_drafts(monkeypatch)
    sample = FaceDataset(files[:1], labels[:1], decode_size=size)[0]
    assert sample["image"].shape == (*size, 3)
    (requested, drafted, box), = seen
    assert requested == (size[1], size[0])  # (width, height) in the stored grid
    assert drafted == (640 // scale, 480 // scale) and box == (0, 0, 640 / scale, 480 / scale)


def test_size_not_divisible_by_the_scale(tmp_path, monkeypatch):
    """481x643 (HxW) at 1/4 decodes to 161x121 pixels covering 160.75x120.25 of them: the resize uses
    draft's box, so the picture is not shifted; boxes from the stored size, not the drafted one."""
    files, labels = _scenes(tmp_path, 3, seed=2, size=(481, 643))
    seen = _record_drafts(monkeypatch)
    refs, fasts = _compare(files, labels, (120, 160))
    assert seen[0][1:] == ((161, 121), (0, 0, 643 / 4, 481 / 4))
    _assert_same_truth(refs, fasts, (120, 160))


def test_png_is_resized_without_draft_and_identical(tmp_path):
    files, labels = _scenes(tmp_path, 2, seed=3)
    pngs = []
    for f in files:
        pngs.append(f.with_suffix(".png"))
        Image.open(f).save(pngs[-1])
    refs, fasts = _compare(pngs, labels, (120, 160))
    mean = _assert_same_truth(refs, fasts, (120, 160))
    assert mean == 0.0  # the same Pillow resize of the same pixels, without the array round trip


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_rotated_jpeg(tmp_path, orientation, monkeypatch):
    picture, boxes = synth.render_scene(5, 1)  # 640x480 stored
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    picture.save(path, quality=90, exif=exif.tobytes())
    turned = orientation in (5, 6, 7, 8)
    size = (160, 120) if turned else (120, 160)  # upright (height, width): 1/4 of the shown image
    seen = _record_drafts(monkeypatch)
    refs, fasts = _compare([path], [boxes], size)
    assert seen[0][1] == (160, 120)  # drafted in the stored grid, exactly 1/4: the sides were swapped
    _assert_same_truth(refs, fasts, size)
    image, full = read_resized(path, size)
    np.testing.assert_array_equal(image, fasts[0]["image"])
    assert full == ((640, 480) if turned else (480, 640))


@pytest.mark.parametrize("mode, options", [("L", {}), ("CMYK", {}), ("RGB", {"progressive": True}),
                                           ("RGB", {"subsampling": 0})])
def test_grayscale_cmyk_progressive_and_444_jpegs(tmp_path, mode, options):
    picture, boxes = synth.render_scene(7, 2)
    path = tmp_path / f"{mode}.jpg"
    picture.convert(mode).save(path, quality=90, **options)
    with Image.open(path) as im:
        assert im.mode == mode
    refs, fasts = _compare([path], [boxes], (120, 160))
    _assert_same_truth(refs, fasts, (120, 160))


def test_no_transform_gives_numpy_samples_at_decode_size(scenes):
    files, labels = scenes
    sample = FaceDataset(files, labels, decode_size=(120, 160))[0]
    assert set(sample) == {"image", "boxes", "name"}
    assert isinstance(sample["image"], np.ndarray) and sample["image"].shape == (120, 160, 3)
    assert "decode_size=(120, 160)" in repr(FaceDataset(files, labels, decode_size=(120, 160)))
    assert repr(FaceDataset(files, labels)) == "FaceDataset(6 images, transform=None)"
    for bad in [(0, 10), (10,), "ab", (1.5, 2), 12]:
        with pytest.raises(ValueError, match="decode_size"):
            FaceDataset(files, labels, decode_size=bad)


# ----------------------------------------------------------------------------- errors, also when drafting


@pytest.fixture()
def bad_folder(tmp_path):
    picture, _ = synth.render_scene(1, 1, size=(48, 64))
    picture.save(tmp_path / "good.jpg", quality=90)
    data = (tmp_path / "good.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    picture.save(tmp_path / "full.png")
    (tmp_path / "truncated.png").write_bytes((tmp_path / "full.png").read_bytes()[:300])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("version https://git-lfs.github.com/spec/v1\n")
    picture.save(tmp_path / "anim.gif")
    (tmp_path / "corrupt.jpg").write_bytes(data[:200] + bytes(200) + data[400:])
    names = ["good.jpg", "missing.jpg", "truncated.jpg", "truncated.png", "empty.jpg", "notes.jpg",
             "anim.gif", "good.jpg", "good.jpg"]
    labels = [[[0, 0, 64, 48]], [], [], [], [], [], [], [[30, 10, 65, 20]], [[5, 5, 5, 9]]]
    return [str(tmp_path / n) for n in names], labels


DRAFT_PROBLEMS = {
    1: (ImageReadError, r"index 1, missing\.jpg: file not found"),
    2: (ImageReadError, r"index 2, truncated\.jpg: truncated JPEG \(image file is truncated"),
    3: (ImageReadError, r"index 3, truncated\.png: truncated PNG"),
    4: (ImageReadError, r"index 4, empty\.jpg: empty file \(0 bytes\)"),
    5: (ImageReadError, r"index 5, notes\.jpg: not a JPEG or PNG image"),
    6: (ImageReadError, r"index 6, anim\.gif: a GIF image; only JPEG and PNG files are read"),
    7: (DataError, r"index 7, good\.jpg: labels, box 0: \[30, 10, 65, 20\] lies outside the image"),
    8: (DataError, r"index 8, good\.jpg: labels, box 0: \[5\.0, 5\.0, 5\.0, 9\.0\] is empty"),
}


@pytest.mark.parametrize("index", sorted(DRAFT_PROBLEMS))
@pytest.mark.parametrize("size", [(12, 16), (24, 30)])  # 1/4 exactly; 1/2 then Pillow
def test_every_error_path_also_with_decode_size(bad_folder, index, size):
    files, labels = bad_folder
    error, message = DRAFT_PROBLEMS[index]
    with pytest.raises(error, match=message):
        FaceDataset(files, labels, decode_size=size)[index]
    assert FaceDataset(files, labels, decode_size=size)[0]["image"].shape == (*size, 3)


def test_truncated_guard_and_bomb_limit_with_decode_size(bad_folder, monkeypatch):
    files, labels = bad_folder
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # 64 x 48 = 3072 > 2000: refused
    with pytest.raises(ImageReadError, match=r"index 0, good\.jpg: image too large"):
        FaceDataset(files, labels, decode_size=(12, 16))[0]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10**8)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES is True"):
        FaceDataset(files, labels, decode_size=(12, 16))[0]


def test_corrupt_jpeg_fails_or_decodes_the_same_way_with_decode_size(bad_folder):
    """Whatever the full decode does with damaged data (error or garbled pixels), the reduced decode
    does the same kind of thing: an ImageReadError naming the file, or a sample."""
    path = bad_folder[0][0].replace("good.jpg", "corrupt.jpg")
    outcomes = []
    for size in (None, (12, 16)):
        try:
            FaceDataset([path], [[]], decode_size=size)[0]
            outcomes.append("ok")
        except ImageReadError as e:
            assert "corrupt.jpg" in str(e)
            outcomes.append("error")
    assert outcomes[0] == outcomes[1]


# ----------------------------------------------------------------------------- SplitBatches


@pytest.fixture(scope="module")
def small_scenes(tmp_path_factory):
    return _scenes(tmp_path_factory.mktemp("small"), 45, seed=4, size=(48, 64))


def _batches(loader):
    return [b for b in loader]


@pytest.mark.parametrize("num_workers, drop_last, keep_boxes", [
    (0, False, False), (0, True, False), (0, False, True), (2, False, False)])
def test_split_batches_equal_a_plain_loader(small_scenes, num_workers, drop_last, keep_boxes):
    files, labels = small_scenes  # 45 images: 5 batches of 8 and a final partial batch of 5
    ds = FaceDataset(PathArray(files), BoxArray(labels), transform=default_pipeline((24, 32), keep_boxes=keep_boxes),
                     decode_size=(24, 32))
    collate = collate_keep_boxes if keep_boxes else None
    plain = make_loader(ds, 8, shuffle=True, seed=3, num_workers=num_workers, pin_memory=False,
                        drop_last=drop_last, collate_fn=collate)
    split = SplitBatches(make_loader(ds, 32, shuffle=True, seed=3, num_workers=num_workers, pin_memory=False,
                                     collate_fn=collate), 8, drop_last=drop_last)
    assert len(split) == len(plain) == (5 if drop_last else 6)
    assert split.batch_size == 8 and split.drop_last == drop_last and split.dataset is ds
    assert split.num_workers == num_workers and split.sampler is split.loader.sampler
    orders = []
    for epoch in range(3):  # reseeded per epoch as train() does: same order for both, new per epoch
        _reseed_loader(plain, 10 + epoch)
        _reseed_loader(split, 10 + epoch)
        a, b = _batches(plain), _batches(split)
        assert len(a) == len(b) == len(plain)
        for x, y in zip(a, b):
            assert_same_batch(y, x)
        assert [len(x["name"]) for x in b] == [8] * 5 + ([] if drop_last else [5])
        orders.append([n for x in b for n in x["name"]])
    assert orders[0] != orders[1]
    if not drop_last:
        assert sorted(orders[0]) == sorted(orders[1]) == sorted(ds.name(i) for i in range(len(ds)))
    check_loaders(split, split)


def test_split_batches_of_tuples_and_refusals():
    data = torch.utils.data.TensorDataset(torch.arange(20).float(), torch.arange(20) * 10)
    plain = torch.utils.data.DataLoader(data, batch_size=4)
    split = SplitBatches(torch.utils.data.DataLoader(data, batch_size=12), 4)
    for x, y in zip(plain, split, strict=True):
        assert_same_batch(y, x)
    with pytest.raises(ValueError, match="multiple of 8"):
        SplitBatches(torch.utils.data.DataLoader(data, batch_size=12), 8)
    with pytest.raises(ValueError, match="drop_last=False"):
        SplitBatches(torch.utils.data.DataLoader(data, batch_size=12, drop_last=True), 4)


# ----------------------------------------------------------------------------- build_loaders, predict


def test_build_loaders_uses_the_fast_path_with_the_same_truth(small_scenes):
    files, labels = small_scenes
    folder = files[0].parent
    config = replace(CONFIGS["quick"], data_folder=str(folder), image_size=(24, 32), num_workers=0)
    train_loader, _, test_loader = build_loaders(config, keep_test_boxes=True)
    ds = train_loader.dataset
    assert isinstance(ds.files, PathArray) and isinstance(ds.labels, BoxArray)
    assert ds.decode_size == (24, 32) and test_loader.dataset.decode_size == (24, 32)
    assert train_loader.batch_size == config.batch_size and train_loader.loader_batch_size == 64 // 8 * 8
    plain_train, _, plain_test = build_loaders(config, keep_test_boxes=True, loader_batch_size=None)
    assert len(train_loader) == len(plain_train) and len(test_loader) == len(plain_test)
    for loader, plain in ((train_loader, plain_train), (test_loader, plain_test)):
        _reseed_loader(loader, 5)
        _reseed_loader(plain, 5)
        for x, y in zip(plain, loader, strict=True):
            assert_same_batch(y, x)
    # the reference path (full decode + Rescale): the same names, masks and boxes in every batch
    reference = build_loaders(config, keep_test_boxes=True, reduced_decode=False).test
    assert reference.dataset.decode_size is None
    for r, f in zip(reference, test_loader, strict=True):
        assert r.keys() == f.keys() and r["name"] == f["name"]
        assert torch.equal(r["mask"], f["mask"]) and all(map(torch.equal, r["boxes"], f["boxes"]))
        # 64x48 scenes are tiny and noisy: the DCT half-scale (about a 2x2 average) and Pillow's
        # bilinear (a wider triangle) differ more than at the real sizes, tested above against 2.0
        assert (r["image"].int() - f["image"]).abs().float().mean() <= 4 * MAX_MEAN_DIFF


def test_predict_reads_files_as_training_does(scenes):
    torch.manual_seed(0)
    model = build_model(base_channels=4, levels=2, max_channels=8).eval()
    path = scenes[0][0]
    prob = predict(model, path, (120, 160), device="cpu")
    assert prob.shape == (480, 640) and prob.dtype == np.float32
    with Image.open(path) as im:
        from_pil = predict(model, im.convert("RGB"), (120, 160), device="cpu")  # full decode + Pillow resize
    assert from_pil.shape == (480, 640)
    assert float(np.abs(prob - from_pil).mean()) < 0.05  # the same picture, decoded two ways


def test_scale_boxes_is_rescales_arithmetic():
    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(16, 1000, 2))
        new = tuple(int(v) for v in rng.integers(1, 400, 2))
        boxes = np.sort(rng.uniform(0, 1, (5, 4)), axis=1).astype(np.float32) * np.float32(min(h, w))
        sample = {"image": np.zeros((h, w, 3), np.uint8), "boxes": boxes}
        np.testing.assert_array_equal(scale_boxes(boxes, (h, w), new), Rescale(new)(sample)["boxes"])
