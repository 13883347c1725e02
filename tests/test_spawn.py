"""FaceDataset + the transforms work in DataLoader workers started with ``spawn`` (the macOS and Windows
default): everything a worker needs pickles and is importable from ``helpers``, and the batches equal
those built in the main process."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from helpers.datafiles import read_file_lists
from helpers.dataset import FaceDataset
from helpers.project import DATA_SAMPLE
from helpers.storage import BoxArray, PathArray
from helpers.transforms import ConvertGroundTruth, Rescale, ToTensor


@pytest.mark.slow
def test_spawn_workers_give_the_same_batches():
    from torchvision.transforms import v2

    lists = read_file_lists(DATA_SAMPLE)
    n = 4
    dataset = FaceDataset(
        PathArray(lists.files_train[:n]),
        BoxArray(lists.labels_train[:n]),
        transform=v2.Compose([Rescale((48, 64)), ConvertGroundTruth(), ToTensor()]),
    )
    in_main = list(DataLoader(dataset, batch_size=2, num_workers=0))
    spawned = list(DataLoader(dataset, batch_size=2, num_workers=2, multiprocessing_context="spawn"))
    assert len(in_main) == len(spawned) == 2
    for a, b in zip(in_main, spawned):
        assert a.keys() == b.keys() == {"image", "mask", "name"}
        assert a["name"] == b["name"]
        for key in ("image", "mask"):
            assert a[key].dtype == b[key].dtype == torch.uint8
            assert a[key].shape == b[key].shape
            assert torch.equal(a[key], b[key])
    assert in_main[0]["image"].shape == (2, 3, 48, 64) and in_main[0]["mask"].shape == (2, 1, 48, 64)
    assert sum(int(batch["mask"].sum()) for batch in in_main) > 0  # the sample has faces
