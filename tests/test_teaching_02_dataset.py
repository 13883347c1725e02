"""Notebook 02's teaching version, the article's dozen-line ``MinimalFaceDataset`` (``__init__`` keeps
the lists, ``__len__``, ``__getitem__`` reads one image and returns a dict), beside ``FaceDataset`` on
data_sample/: the same length and, for every image, the same keys where they overlap, identical image
arrays and boxes (values, dtypes, shapes); ``FaceDataset`` adds only ``'name'``. A transform runs on
the sample in both.

The teaching cell needs two names from the notebook's cells before it: ``files_train`` and
``labels_train`` (notebook 01's lists, read with ``helpers.datafiles.read_file_lists``).
"""
from __future__ import annotations

import numpy as np
import pytest
from torch.utils.data import Dataset

from helpers.datafiles import read_file_lists
from helpers.dataset import FaceDataset
from helpers.runconfig import SAMPLE_FOLDER
from teaching import run_teaching_cells

NOTEBOOK = "02_dataset"


@pytest.fixture(scope="module")
def taught():
    lists = read_file_lists(SAMPLE_FOLDER)
    ns = run_teaching_cells(NOTEBOOK, {"files_train": lists.files_train, "labels_train": lists.labels_train})
    return ns, lists


def test_the_teaching_cell_builds_the_dataset_and_looks_at_one_sample(taught):
    ns, lists = taught
    minimal = ns["minimal"]
    assert isinstance(minimal, Dataset) and len(minimal) == len(lists.files_train)
    assert minimal.files is lists.files_train and minimal.labels is lists.labels_train  # the lists, no pixels
    printed = ns["_printed"]
    for line in ("len(minimal) = 50", "image: (480, 640, 3) uint8", "boxes: (3, 4) float32"):
        assert line in printed, printed


def test_it_gives_the_samples_face_dataset_gives_on_data_sample(taught):
    ns, lists = taught
    files = lists.files_train + lists.files_test
    labels = lists.labels_train + lists.labels_test
    minimal = ns["MinimalFaceDataset"](files, labels)
    helper = FaceDataset(files, labels, root=SAMPLE_FOLDER)
    assert len(minimal) == len(helper) == 64
    for i in range(len(helper)):
        taught_sample, helper_sample = minimal[i], helper[i]
        assert set(helper_sample) - set(taught_sample) == {"name"}, i
        for key in set(taught_sample) & set(helper_sample):
            a, b = taught_sample[key], helper_sample[key]
            assert a.dtype == b.dtype and a.shape == b.shape, (i, key, a.dtype, b.dtype, a.shape, b.shape)
            np.testing.assert_array_equal(a, b, err_msg=f"sample {i}, {key!r}")
    assert any(len(b) == 0 for b in labels)  # an image without a face is among them: boxes (0, 4) in both
    empty = next(i for i, b in enumerate(labels) if not b)
    assert minimal[empty]["boxes"].shape == helper[empty]["boxes"].shape == (0, 4)


def test_a_transform_runs_on_the_sample_in_both(taught):
    ns, lists = taught

    def count_faces(sample):
        return {**sample, "n_faces": len(sample["boxes"])}

    minimal = ns["MinimalFaceDataset"](lists.files_train, lists.labels_train, transform=count_faces)
    helper = FaceDataset(lists.files_train, lists.labels_train, transform=count_faces, root=SAMPLE_FOLDER)
    for i in range(3):
        assert minimal[i]["n_faces"] == helper[i]["n_faces"] == len(lists.labels_train[i])
