"""FaceDataset and read_image: samples, EXIF orientation with boxes, colour modes, formats, and every
bad input named by index and file (also through DataLoader workers), plus the validation pass."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from helpers.datafiles import read_file_lists
from helpers.dataset import (
    EXIF_TRANSPOSE,
    FaceDataset,
    Problem,
    ValidationReport,
    orient_boxes,
    read_image,
)
from helpers.errors import DataError, ImageReadError
from helpers.project import DATA_SAMPLE
from helpers.storage import BoxArray, PathArray

MARK = (255, 0, 0)


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 200, (h, w, 3), dtype=np.uint8)


def _save(path, array: np.ndarray, **kwargs) -> str:
    Image.fromarray(array).save(path, **kwargs)
    return str(path)


@pytest.fixture()
def folder(tmp_path):
    """Three good JPEGs (20x30, 16x16, 24x10) and their boxes."""
    files = [
        _save(tmp_path / "a.jpg", _rgb(20, 30, 1), quality=95),
        _save(tmp_path / "b.jpg", _rgb(16, 16, 2), quality=95),
        _save(tmp_path / "c.png", _rgb(24, 10, 3)),
    ]
    labels = [[[1, 2, 10, 12], [0, 0, 30, 20]], [], np.array([[2.5, 3.0, 9.5, 24.0]], dtype=np.float32)]
    return files, labels


# ----------------------------------------------------------------------------- samples


def test_sample_keys_types_and_name(folder):
    files, labels = folder
    ds = FaceDataset(files, labels)
    assert len(ds) == 3
    s = ds[0]
    assert set(s) == {"image", "boxes", "name"}
    assert s["image"].shape == (20, 30, 3) and s["image"].dtype == np.uint8
    assert s["boxes"].dtype == np.float32 and s["boxes"].tolist() == [[1, 2, 10, 12], [0, 0, 30, 20]]
    assert s["name"] == "a.jpg"
    assert ds[1]["boxes"].shape == (0, 4)  # no face: (0, 4), not (0,)
    png = ds[2]
    assert png["image"].shape == (24, 10, 3)
    np.testing.assert_array_equal(png["image"], _rgb(24, 10, 3))  # lossless: exact pixels
    assert ds[-1]["name"] == "c.png"
    with pytest.raises(IndexError, match="index 3 out of range"):
        ds[3]


def test_init_opens_nothing_and_checks_lengths(tmp_path):
    ds = FaceDataset([tmp_path / "not_there.jpg"] * 5, [[]] * 5)  # lazy: no file touched yet
    assert len(ds) == 5
    with pytest.raises(DataError, match="3 files but 2 label entries"):
        FaceDataset(["a", "b", "c"], [[], []])


def test_array_storage_and_transform(folder):
    files, labels = folder
    seen = []

    def transform(sample):
        seen.append(sample["name"])
        return {**sample, "extra": sample["image"].shape}

    ds = FaceDataset(PathArray(files), BoxArray(labels), transform=transform)
    s = ds[2]
    assert s["extra"] == (24, 10, 3) and seen == ["c.png"]
    np.testing.assert_array_equal(s["boxes"], [[2.5, 3.0, 9.5, 24.0]])
    np.testing.assert_array_equal(ds.load(0)["boxes"], np.asarray(labels[0], np.float32))


# ----------------------------------------------------------------------------- EXIF orientation


def _marked(h: int = 6, w: int = 9) -> tuple[np.ndarray, list[float]]:
    """A gray image with one red rectangle at an asymmetric place, and that rectangle as a box."""
    image = np.full((h, w, 3), 128, dtype=np.uint8)
    box = [1, 1, 4, 3]  # x0, y0, x1, y1: columns 1..3, rows 1..2
    image[box[1]:box[3], box[0]:box[2]] = MARK
    return image, [float(v) for v in box]


def _box_of_mark(image: np.ndarray) -> list[float]:
    rows, cols = np.nonzero((image == MARK).all(axis=2))
    return [float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_moves_image_and_boxes_together(tmp_path, orientation):
    stored, box = _marked()
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"
    Image.fromarray(stored).save(path, exif=exif.tobytes())

    sample = FaceDataset([path], [[box]])[0]
    with Image.open(path) as im:
        upright = np.array(ImageOps.exif_transpose(im).convert("RGB"))
    np.testing.assert_array_equal(sample["image"], upright)  # same pixels as Pillow's exif_transpose
    assert sample["boxes"].tolist() == [_box_of_mark(upright)]  # and the box still frames the mark
    np.testing.assert_array_equal(np.array(read_image(path)), upright)
    np.testing.assert_array_equal(np.array(read_image(path, apply_exif=False)), stored)
    expected_hw = stored.shape[:2] if orientation < 5 else stored.shape[1::-1]
    assert sample["image"].shape[:2] == expected_hw


def test_exif_orientation_in_a_jpeg(tmp_path):
    stored = np.full((40, 60, 3), 128, dtype=np.uint8)
    stored[5:15, 10:30] = MARK
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    path = tmp_path / "camera.jpg"
    Image.fromarray(stored).save(path, quality=95, subsampling=0, exif=exif.tobytes())
    sample = FaceDataset([path], [[[10, 5, 30, 15]]])[0]
    assert sample["image"].shape == (60, 40, 3)
    assert sample["boxes"].tolist() == [[25.0, 10.0, 35.0, 30.0]]  # (x, y) -> (H - y, x)
    red = (sample["image"][..., 0].astype(int) - sample["image"][..., 1]) > 100
    assert red[11:29, 26:34].all()  # the red mark is where the box says (JPEG blurs its edge) ...
    red[9:31, 24:36] = False
    assert not red.any()  # ... and nowhere else


def test_orient_boxes_is_a_bijection_of_the_image_rectangle():
    boxes = np.array([[0, 0, 9, 6], [1, 2, 3, 5]], dtype=np.float32)
    for o in EXIF_TRANSPOSE:
        moved = orient_boxes(boxes, o, width=9, height=6)
        w, h = (9, 6) if o < 5 else (6, 9)
        assert moved[0].tolist() == [0, 0, w, h]  # the whole image maps to the whole image
        assert ((moved[:, 2] - moved[:, 0]) * (moved[:, 3] - moved[:, 1])).tolist() == [54, 6]


# ----------------------------------------------------------------------------- colour modes


def test_modes_are_converted_to_rgb(tmp_path):
    gray = np.arange(12 * 8, dtype=np.uint8).reshape(12, 8)
    cases = {}
    cases["L.png"] = (Image.fromarray(gray), np.stack([gray] * 3, axis=2))
    rgba = np.zeros((12, 8, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:6, :, 3] = 255  # top half opaque red, bottom half fully transparent
    over_white = np.where(np.arange(12)[:, None, None] < 6, [200, 0, 0], [255, 255, 255]).astype(np.uint8)
    over_white = np.broadcast_to(over_white, (12, 8, 3))
    cases["RGBA.png"] = (Image.fromarray(rgba, "RGBA"), over_white)
    la = Image.fromarray(rgba[..., [0, 3]], "LA")
    cases["LA.png"] = (la, np.broadcast_to(np.where(over_white[..., :1] == 255, 255, 200), (12, 8, 3)))
    pal = Image.fromarray(gray % 4).convert("P")
    pal.putpalette([10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120] + [0] * 756)
    expected_pal = np.array([[10, 20, 30], [40, 50, 60], [70, 80, 90], [100, 110, 120]], np.uint8)[gray % 4]
    cases["P.png"] = (pal, expected_pal)
    pal_t = pal.copy()
    pal_t.info["transparency"] = 2  # palette entry 2 is transparent: composited over white
    expected_t = expected_pal.copy()
    expected_t[gray % 4 == 2] = 255
    cases["Ptrans.png"] = (pal_t, expected_t)
    deep = (gray.astype(np.uint16) * 257)  # 16-bit gray: v * 257 -> v after >> 8
    cases["I16.png"] = (Image.fromarray(deep), np.stack([gray] * 3, axis=2))

    names = []
    for name, (img, _) in cases.items():
        if name == "Ptrans.png":
            img.save(tmp_path / name, transparency=2)
        else:
            img.save(tmp_path / name)
        names.append(str(tmp_path / name))
    with Image.open(tmp_path / "I16.png") as im:
        assert im.mode.startswith("I")  # Pillow opens it as 16-bit, not as 8-bit
    ds = FaceDataset(names, [[]] * len(names))
    for i, (name, (_, expected)) in enumerate(cases.items()):
        image = ds[i]["image"]
        assert image.dtype == np.uint8 and image.shape == (12, 8, 3), name
        np.testing.assert_array_equal(image, expected, err_msg=name)


def test_cmyk_jpeg_is_converted(tmp_path):
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    rgb[:, :8] = (230, 40, 40)
    rgb[:, 8:] = (40, 40, 230)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    with Image.open(tmp_path / "cmyk.jpg") as im:
        assert im.mode == "CMYK"
    image = FaceDataset([tmp_path / "cmyk.jpg"], [[]])[0]["image"]
    assert image.shape == (16, 16, 3)
    assert np.abs(image.astype(int) - rgb).max() < 30  # the colours survive (no inversion)


# ----------------------------------------------------------------------------- bad input


@pytest.fixture()
def bad_folder(tmp_path):
    good = _save(tmp_path / "good.jpg", _rgb(30, 40), quality=90)
    data = open(good, "rb").read()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    png = _save(tmp_path / "full.png", _rgb(30, 40))
    (tmp_path / "truncated.png").write_bytes(open(png, "rb").read()[:300])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("version https://git-lfs.github.com/spec/v1\n")
    Image.fromarray(_rgb(30, 40)).save(tmp_path / "anim.gif")
    Image.fromarray(_rgb(30, 40)).save(tmp_path / "really_png.jpg", format="PNG")
    names = ["good.jpg", "missing.jpg", "truncated.jpg", "truncated.png", "empty.jpg", "notes.jpg",
             "anim.gif", "really_png.jpg", "good.jpg", "good.jpg"]
    labels = [[[0, 0, 40, 30]], [], [], [], [], [], [], [[1, 1, 2, 2]],
              [[30, 10, 41, 20]],  # x_max 41 > width 40
              [[5, 5, 5, 9]]]  # empty box
    return [str(tmp_path / n) for n in names], labels


EXPECTED_PROBLEMS = {
    1: (ImageReadError, r"index 1, missing\.jpg: file not found"),
    2: (ImageReadError, r"index 2, truncated\.jpg: truncated JPEG \(image file is truncated"),
    3: (ImageReadError, r"index 3, truncated\.png: truncated PNG"),
    4: (ImageReadError, r"index 4, empty\.jpg: empty file \(0 bytes\)"),
    5: (ImageReadError, r"index 5, notes\.jpg: not a JPEG or PNG image \(it starts with b'version https"),
    6: (ImageReadError, r"index 6, anim\.gif: a GIF image; only JPEG and PNG files are read"),
    8: (DataError, r"index 8, good\.jpg: labels, box 0: \[30, 10, 41, 20\] lies outside the image"),
    9: (DataError, r"index 9, good\.jpg: labels, box 0: \[5\.0, 5\.0, 5\.0, 9\.0\] is empty"),
}


@pytest.mark.parametrize("index", sorted(EXPECTED_PROBLEMS))
def test_bad_input_names_index_and_file(bad_folder, index):
    files, labels = bad_folder
    error, message = EXPECTED_PROBLEMS[index]
    ds = FaceDataset(files, labels)
    with pytest.raises(error, match=message) as info:
        ds[index]
    if error is DataError:  # a box problem is not an image-reading problem
        assert not isinstance(info.value, ImageReadError)


def test_good_entries_among_bad_ones(bad_folder):
    files, labels = bad_folder
    ds = FaceDataset(files, labels)
    assert ds[0]["image"].shape == (30, 40, 3)
    assert ds[7]["name"] == "really_png.jpg"  # content decides the format, not the name


def test_read_image_errors_name_the_file(bad_folder):
    files, _ = bad_folder
    with pytest.raises(ImageReadError, match=r"^truncated\.jpg: truncated JPEG"):
        read_image(files[2])
    assert read_image(files[0]).mode == "RGB"


def test_error_surfaces_through_dataloader_workers(bad_folder):
    files, labels = bad_folder
    ds = FaceDataset(files[:3], labels[:3])
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    with pytest.raises(ImageReadError, match=r"index 1, missing\.jpg: file not found"):
        list(loader)


def test_truncated_images_are_never_half_decoded(bad_folder, monkeypatch):
    from PIL import ImageFile

    files, labels = bad_folder
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES is True"):
        FaceDataset(files, labels)[0]


def test_decompression_bomb_limit_is_kept(tmp_path, monkeypatch):
    path = _save(tmp_path / "big.png", _rgb(20, 20))  # 400 pixels
    ds = FaceDataset([path], [[]])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # 400 > 300: Pillow warns; we refuse
    with pytest.raises(ImageReadError, match=r"index 0, big\.png: image too large.*400 pixels"):
        ds[0]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 150)  # 400 > 2 * 150: Pillow's own error
    with pytest.raises(ImageReadError, match=r"index 0, big\.png: image too large"):
        ds[0]


def test_module_never_loosens_pillow_limits():
    import ast
    import inspect

    import helpers.dataset as module

    tree = ast.parse(inspect.getsource(module))
    assigned = {
        target.attr
        for node in ast.walk(tree)
        if isinstance(node, (ast.Assign, ast.AugAssign))
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Attribute)
    }
    assert not assigned & {"MAX_IMAGE_PIXELS", "LOAD_TRUNCATED_IMAGES"}


def test_bad_labels_shape(folder):
    files, _ = folder
    with pytest.raises(DataError, match=r"index 0, a\.jpg: boxes must have shape \(k, 4\), got \(3,\)"):
        FaceDataset(files[:1], [[1, 2, 3]])[0]


# ----------------------------------------------------------------------------- validation pass


def test_validate_reports_every_problem(bad_folder):
    files, labels = bad_folder
    report = FaceDataset(files, labels).validate(progress=False)
    assert isinstance(report, ValidationReport) and not report.ok
    assert report.n_checked == 10
    assert report.bad_indices == sorted(EXPECTED_PROBLEMS)
    assert report.good_indices == [0, 7]
    text = str(report)
    assert text.startswith("checked 10 images: 8 with a problem")
    for index, (_, message) in EXPECTED_PROBLEMS.items():
        line = next(line for line in text.splitlines() if line.strip().startswith(f"index {index},"))
        assert re.search(message, line.strip()), (index, line)
    parallel = FaceDataset(files, labels).validate(progress=False, num_workers=2)
    assert parallel.problems == report.problems


def test_validate_ok_and_summary_limit(folder):
    files, labels = folder
    report = FaceDataset(files, labels).validate(progress=False)
    assert report.ok and str(report) == "checked 3 images: all readable, all boxes inside their image"
    many = ValidationReport(100, [Problem(i, "x", "r") for i in range(60)])
    assert many.summary(limit=5).splitlines()[-1] == "  ... and 55 more (see report.problems)"


def test_data_sample_is_valid():
    assert (DATA_SAMPLE / "bbox.json").is_file()
    lists = read_file_lists(DATA_SAMPLE)
    files = list(lists.files_train) + list(lists.files_test)
    labels = list(lists.labels_train) + list(lists.labels_test)
    ds = FaceDataset(PathArray(files), BoxArray(labels))
    assert len(ds) == 64
    report = ds.validate(progress=False)
    assert report.ok, str(report)
    sample = ds[0]
    assert sample["image"].shape == (480, 640, 3) and sample["name"].startswith("image_")
