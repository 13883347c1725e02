"""Notebook 04's teaching version, the article's ``DataLoader(train_set, batch_size=8, shuffle=True,
num_workers=2)`` over ``FaceDataset`` and the composed transforms, beside the helpers on data_sample/:
its batch is ``default_collate`` of its samples, and for the same order its batches are the batches of
``helpers.loader.make_loader`` over the helpers' pipeline, tensor for tensor.

The teaching cell needs four names from the notebook's cells before it: ``folder``, ``files_train``,
``labels_train`` (notebook 01's lists) and ``SIZE`` (height, width).
"""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, RandomSampler, default_collate

from helpers.datafiles import read_file_lists
from helpers.dataset import FaceDataset
from helpers.lab.batches import assert_same_batch
from helpers.loader import make_loader
from helpers.runconfig import SAMPLE_FOLDER
from helpers.storage import BoxArray, PathArray
from helpers.transforms import default_pipeline
from teaching import run_teaching_cells

NOTEBOOK = "04_dataloader_and_collate"
SIZE = (96, 128)


@pytest.fixture(scope="module")
def taught():
    lists = read_file_lists(SAMPLE_FOLDER)
    ns = run_teaching_cells(NOTEBOOK, {"folder": SAMPLE_FOLDER, "files_train": lists.files_train,
                                       "labels_train": lists.labels_train, "SIZE": SIZE})
    helper_set = FaceDataset(PathArray(lists.files_train), BoxArray(lists.labels_train),
                             transform=default_pipeline(SIZE), root=SAMPLE_FOLDER)
    return ns, helper_set


def test_the_article_loader_is_built_as_the_article_says(taught):
    ns, _ = taught
    loader = ns["train_loader"]
    assert isinstance(loader, DataLoader) and isinstance(loader.sampler, RandomSampler)
    assert loader.batch_size == 8 and loader.num_workers == 2
    assert loader.collate_fn is default_collate
    for key in ("image", "name", "mask"):  # it looked at the batch: keys, dtypes, shapes
        assert key in ns["_printed"]
    assert "(8, 3, 96, 128)" in ns["_printed"] and "torch.uint8" in ns["_printed"]


def test_its_batch_is_default_collate_of_its_samples_and_looks_like_the_helpers(taught):
    ns, helper_set = taught
    batch, train_set = ns["batch"], ns["train_set"]
    position = {train_set.name(i): i for i in range(len(train_set))}
    samples = [train_set[position[name]] for name in batch["name"]]
    assert_same_batch(default_collate(samples), batch)  # keys in order, dtypes, shapes, every value
    helper_batch = next(iter(make_loader(helper_set, 8, shuffle=True, seed=0, num_workers=0)))
    assert list(batch) == list(helper_batch) == ["image", "name", "mask"]
    for key in ("image", "mask"):
        assert batch[key].dtype == helper_batch[key].dtype and batch[key].shape == helper_batch[key].shape
    assert type(batch["name"]) is type(helper_batch["name"]) is list


def test_same_order_same_batches_as_make_loader(taught):
    ns, helper_set = taught
    train_set = ns["train_set"]
    assert len(train_set) == len(helper_set)
    # In order: the article's loader with shuffle=False and make_loader's, every batch identical.
    article = list(DataLoader(train_set, batch_size=8, shuffle=False, num_workers=0))
    helper = list(make_loader(helper_set, 8, shuffle=False, seed=0, num_workers=0))
    assert_same_batch(article, helper, "epoch")
    # Shuffled: the same seeded generator gives RandomSampler's order, i.e. make_loader's first epoch.
    seeded = DataLoader(train_set, batch_size=8, sampler=RandomSampler(train_set, generator=torch.Generator().manual_seed(0)))
    assert_same_batch(list(seeded), list(make_loader(helper_set, 8, shuffle=True, seed=0, num_workers=0)), "epoch")


def test_the_shuffle_follows_the_global_seed(taught):
    """The teaching cell seeds torch's global RNG: its order is repeatable, and make_loader's is not
    drawn from it (a draw in between changes the plain loader's order only)."""
    ns, helper_set = taught
    train_set = ns["train_set"]

    def orders():
        plain = list(DataLoader(train_set, batch_size=8, shuffle=True).sampler)
        helper = list(make_loader(helper_set, 8, shuffle=True, seed=0, num_workers=0).sampler)
        return plain, helper

    torch.manual_seed(0)
    first = orders()
    torch.manual_seed(0)
    torch.rand(1)
    shifted = orders()
    assert first[0] != shifted[0] and first[1] == shifted[1]
