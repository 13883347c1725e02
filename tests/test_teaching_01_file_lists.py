"""Notebook 01's teaching version, the article's ten lines (``json.load`` of ``bbox.json``, each image
sent to test by a hash of its name, the four lists ``files_train``/``labels_train`` and
``files_test``/``labels_test``), beside ``helpers.datafiles.read_file_lists`` on data_sample/: the same
four lists in the same order (paths as strings; the same boxes, which the helper gives as floats), so
the same (path, boxes) pairs and the same test set; and the same split rule as
``split_train_test``, also on names and fractions the sample does not have.

The teaching cell needs no name from the notebook's cells before it: it finds its folder itself
(``helpers.runconfig.teaching_folder``: data_sample/ unless ``FACES_DATA`` is set, which this test unsets).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers.datafiles import read_file_lists, split_train_test
from helpers.runconfig import DATA_ENV_VAR, SAMPLE_FOLDER
from teaching import ROOT, run_teaching_cells

NOTEBOOK = "01_file_lists_and_memory"
LISTS = ("files_train", "files_test", "labels_train", "labels_test")  # read_file_lists' order


@pytest.fixture(scope="module")
def taught():
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(DATA_ENV_VAR, raising=False)
        ns = run_teaching_cells(NOTEBOOK)
    return ns, read_file_lists(SAMPLE_FOLDER)


def test_the_teaching_cell_reads_the_sample_into_four_lists_of_paths_and_boxes(taught):
    ns, _ = taught
    assert Path(ns["folder"]) == SAMPLE_FOLDER
    assert all(type(ns[name]) is list for name in LISTS)
    assert len(ns["files_train"]) == len(ns["labels_train"]) and len(ns["files_test"]) == len(ns["labels_test"])
    for path in ns["files_train"] + ns["files_test"]:  # paths, not pixels: strings naming files
        assert isinstance(path, str) and (ROOT / path).is_file(), path
    printed = ns["_printed"]
    for line in ("bbox.json lists 64 images: 50 for training, 14 for testing",
                 "data_sample/image_000002.jpg -> [[209, 294, 311, 413], [418, 96, 544, 250], [59, 203, 199, 361]]",
                 "data_sample/image_000003.jpg -> []"):
        assert line in printed, printed


def test_it_gives_the_lists_read_file_lists_gives(taught):
    ns, lists = taught
    assert ns["files_train"] == lists.files_train and ns["files_test"] == lists.files_test  # same order too
    for name in ("labels_train", "labels_test"):
        ours, helpers = ns[name], getattr(lists, name)
        assert len(ours) == len(helpers)
        for i, (a, b) in enumerate(zip(ours, helpers)):
            assert [[float(v) for v in box] for box in a] == b, (name, i)
            assert all(type(v) is float for box in b for v in box)  # the helper's coordinates are floats
    assert tuple(ns[name] for name in LISTS) == lists[:4]  # what the notebook prints as "the same four lists"
    pairs = {(f, str(b)) for f, b in zip(lists.files_train + lists.files_test, lists.labels_train + lists.labels_test)}
    assert {(f, str([[float(v) for v in box] for box in b]))
            for f, b in zip(ns["files_train"] + ns["files_test"], ns["labels_train"] + ns["labels_test"])} == pairs
    assert not lists.files_val  # the validation split is the helper's addition (val_fraction=0 here)


def test_its_split_is_the_helpers_rule_on_any_names_fraction_and_seed(taught):
    ns, _ = taught
    is_test = ns["is_test"]
    names = [f"image_{i:06d}.jpg" for i in range(2000)] + ["sub/folder/a b.png", "ünïcode.jpg"]
    for fraction, seed in ((0.2, 0), (0.35, 7)):
        train, test = split_train_test(names, test_fraction=fraction, seed=seed)
        assert sorted(n for n in names if is_test(n, fraction, seed)) == test
        assert sorted(n for n in names if not is_test(n, fraction, seed)) == train
        assert abs(len(test) / len(names) - fraction) < 0.05
