"""Notebook 03's teaching version, the article's three transforms in about thirty lines (``Rescale``,
``ConvertGroundTruth``, ``ToTensor``, chained by ``transforms.Compose``), beside ``helpers.transforms`` on
data_sample/: for every image, at both training sizes and at an int size (the shorter edge), the same
image sizes and pixels, the same boxes bit for bit, the same masks, the same tensors (dtypes, shapes,
strides, values) and the same keys in the same order, step by step and composed (``default_pipeline``).
The pixel rule is the same on fractional boxes and boxes across the border too. Where they differ by
design (the helpers' checks and copies), the thirty lines fail and the helpers do not.

The teaching cell needs two names from the notebook's cells before it: ``raw`` (the first training image
as ``FaceDataset`` returns it, no transform) and ``SIZE`` (height, width).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import transforms as tv_transforms

from helpers import transforms as helper
from helpers.datafiles import read_file_lists
from helpers.dataset import FaceDataset
from helpers.runconfig import CONFIGS, SAMPLE_FOLDER
from teaching import run_teaching_cells

NOTEBOOK = "03_transforms"
SIZE = (120, 160)
SIZES = [run.image_size for run in CONFIGS.values()] + [200]  # (h, w) pairs and an int: the shorter edge


@pytest.fixture(scope="module")
def taught():
    lists = read_file_lists(SAMPLE_FOLDER)
    files, labels = lists.files_train + lists.files_test, lists.labels_train + lists.labels_test
    dataset = FaceDataset(files, labels, root=SAMPLE_FOLDER)
    raw = FaceDataset(lists.files_train, lists.labels_train, root=SAMPLE_FOLDER)[0]
    ns = run_teaching_cells(NOTEBOOK, {"raw": raw, "SIZE": SIZE})
    return ns, dataset


def test_the_teaching_cell_composes_the_three_and_looks_at_the_sample(taught):
    ns, _ = taught
    transform = ns["transform"]
    assert isinstance(transform, tv_transforms.Compose)
    assert [type(t).__name__ for t in transform.transforms] == ["Rescale", "ConvertGroundTruth", "ToTensor"]
    sample = ns["sample"]
    assert list(sample) == ["image", "name", "mask"]
    assert sample["image"].shape == (3, *SIZE) and sample["image"].dtype == torch.uint8
    assert sample["mask"].shape == (1, *SIZE) and sample["mask"].dtype == torch.uint8
    printed = ns["_printed"]
    for line in ("raw: image (480, 640, 3) uint8, boxes (3, 4) float32", "image (3, 120, 160) torch.uint8",
                 "mask (1, 120, 160) torch.uint8"):
        assert line in printed, printed


def _assert_same_sample(a: dict, b: dict, where: str) -> None:
    assert list(a) == list(b), (where, list(a), list(b))
    for key in a:
        x, y = a[key], b[key]
        if isinstance(y, (np.ndarray, torch.Tensor)):
            assert type(x) is type(y) and x.dtype == y.dtype and tuple(x.shape) == tuple(y.shape), (where, key)
            if isinstance(y, torch.Tensor):
                assert x.stride() == y.stride() and torch.equal(x, y), (where, key)
            else:
                np.testing.assert_array_equal(x, y, err_msg=f"{where}, {key!r}")
        else:
            assert x == y, (where, key)


@pytest.mark.parametrize("size", SIZES, ids=str)
def test_each_transform_gives_what_the_helper_gives_on_every_image(taught, size):
    ns, dataset = taught
    for i in range(len(dataset)):
        raw = dataset[i]
        where = f"{raw['name']} at {size}"
        rescaled, by_helper = ns["Rescale"](size)(raw), helper.Rescale(size)(raw)
        _assert_same_sample(rescaled, by_helper, where + ", Rescale")  # sizes, pixels, boxes bit for bit
        with_mask, by_helper = ns["ConvertGroundTruth"]()(rescaled), helper.ConvertGroundTruth()(by_helper)
        _assert_same_sample(with_mask, by_helper, where + ", ConvertGroundTruth")  # the mask, pixel for pixel
        _assert_same_sample(ns["ToTensor"]()(with_mask), helper.ToTensor()(by_helper), where + ", ToTensor")


def test_composed_they_give_what_default_pipeline_gives(taught):
    ns, dataset = taught
    transform = tv_transforms.Compose([ns["Rescale"](SIZE), ns["ConvertGroundTruth"](), ns["ToTensor"]()])
    pipeline = helper.default_pipeline(SIZE)
    for i in range(len(dataset)):
        raw = dataset[i]
        _assert_same_sample(transform(raw), pipeline(raw), raw["name"])
    no_face = next(i for i in range(len(dataset)) if len(dataset[i]["boxes"]) == 0)  # boxes (0, 4)
    assert transform(dataset[no_face])["mask"].sum() == 0


def test_the_pixel_rule_is_the_helpers_on_fractional_boxes_too(taught):
    ns, _ = taught
    rng = np.random.default_rng(0)
    for _ in range(500):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        boxes = rng.uniform(-5, 45, (int(rng.integers(0, 5)), 4)).astype(np.float32)
        if rng.random() < 0.5:
            boxes = np.round(boxes * 2) / 2  # corners on half pixels: exactly on pixel centres
        sample = {"image": np.zeros((h, w, 3), np.uint8), "boxes": boxes}
        np.testing.assert_array_equal(ns["ConvertGroundTruth"]()(sample)["mask"], helper.boxes_to_mask(boxes, h, w))


def test_where_they_differ_by_design_the_thirty_lines_fail_and_the_helpers_do_not(taught):
    ns, dataset = taught
    with_mask = helper.ConvertGroundTruth()(helper.Rescale(SIZE)(dataset[0]))
    flipped = {**with_mask, "image": np.flip(with_mask["image"], 1)}
    with pytest.raises(ValueError, match="negative"):
        ns["ToTensor"]()(flipped)
    assert torch.equal(helper.ToTensor()(flipped)["image"].permute(1, 2, 0), torch.from_numpy(flipped["image"].copy()))
    grey = {**with_mask, "image": with_mask["image"][..., 0]}
    with pytest.raises(RuntimeError):
        ns["ToTensor"]()(grey)
    with pytest.raises(TypeError, match=with_mask["name"]):
        helper.ToTensor()(grey)
