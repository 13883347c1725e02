"""helpers.sample: the contract holds at every stage of the real pipeline, and a broken sample is named."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from helpers import sample as contract
from helpers.datafiles import read_file_lists
from helpers.dataset import FaceDataset
from helpers.loader import make_loader
from helpers.project import DATA_SAMPLE
from helpers.transforms import ConvertGroundTruth, Rescale, ToTensor, default_pipeline

SIZE = (48, 64)


@pytest.fixture(scope="module")
def lists():
    return read_file_lists(DATA_SAMPLE)


def test_every_stage_of_the_pipeline_keeps_the_contract(lists):
    raw = FaceDataset(lists.files_train[:4], lists.labels_train[:4])
    for i in range(len(raw)):
        contract.check(raw[i], "raw")
        contract.check(Rescale(SIZE)(raw[i]), "rescaled", SIZE)
    drafted = FaceDataset(lists.files_train[:4], lists.labels_train[:4], decode_size=SIZE)
    contract.check(drafted[0], "rescaled", SIZE)
    for keep in (False, True):
        ds = FaceDataset(lists.files_train[:8], lists.labels_train[:8], transform=default_pipeline(SIZE, keep_boxes=keep))
        contract.check(ds[0], "training", SIZE)
    batch = next(iter(make_loader(FaceDataset(lists.files_train[:8], lists.labels_train[:8],
                                              transform=default_pipeline(SIZE)), 4, shuffle=False, seed=0,
                                  num_workers=0)))
    contract.check(batch, "batch", SIZE)


def test_a_broken_sample_is_named_by_its_key(lists):
    good = FaceDataset(lists.files_train[:1], lists.labels_train[:1])[0]
    with pytest.raises(ValueError, match="'boxes' must be a \\(k, 4\\) float32 array"):
        contract.check({**good, "boxes": good["boxes"].astype(np.float64)}, "raw")
    with pytest.raises(ValueError, match="keys"):
        contract.check({k: v for k, v in good.items() if k != "name"}, "raw")
    out = v2.Compose([Rescale(SIZE), ConvertGroundTruth(), ToTensor()])(good)
    with pytest.raises(ValueError, match="'mask' must be"):
        contract.check({**out, "mask": out["mask"].float()}, "training")
    with pytest.raises(ValueError, match=r"expected \(24, 32\)"):
        contract.check(out, "training", (24, 32))
    with pytest.raises(ValueError, match="unknown stage"):
        contract.check(out, "later")
    assert torch.equal(out["mask"], ToTensor()(ConvertGroundTruth()(Rescale(SIZE)(good)))["mask"])
