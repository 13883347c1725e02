"""FaceDataset + the transforms work in DataLoader workers started with ``spawn`` (the macOS and Windows
default) and ``forkserver`` (Linux's default from Python 3.14, rehearsed here on today's Python):
everything a worker needs pickles and is importable from ``helpers``, and the batches equal those
built in the main process, with the index in shared memory as ``build_loaders`` keeps it."""
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
@pytest.mark.parametrize("start_method", ["spawn"])  # forkserver: the build_loaders test below
def test_spawn_workers_give_the_same_batches(start_method):
    from torchvision.transforms import v2

    lists = read_file_lists(DATA_SAMPLE)
    n = 4
    dataset = FaceDataset(
        PathArray(lists.files_train[:n], shared=True),
        BoxArray(lists.labels_train[:n], shared=True),
        transform=v2.Compose([Rescale((48, 64)), ConvertGroundTruth(), ToTensor()]),
    )
    in_main = list(DataLoader(dataset, batch_size=2, num_workers=0))
    spawned = list(DataLoader(dataset, batch_size=2, num_workers=2, multiprocessing_context=start_method))
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


@pytest.mark.slow
def test_build_loaders_under_python_3_14s_default_start_method(tmp_path):
    """Python 3.14 makes forkserver the default on Linux: set it as the default in a fresh process and
    build_loaders' workers start that way (they are the forkserver's children), with the shared index
    and the preloaded server, and give
    the batches of 0 workers."""
    import subprocess
    import sys

    from helpers.project import ROOT

    code = f"""
import multiprocessing
from dataclasses import replace
import torch
from helpers.data_path import build_loaders
from helpers.runconfig import CONFIGS

if __name__ == "__main__":
    multiprocessing.set_start_method("forkserver")  # what Python 3.14 does on Linux
    config = replace(CONFIGS["quick"], data_folder={str(DATA_SAMPLE)!r}, image_size=(24, 32))
    runs = []
    for workers in (0, 2):
        train = build_loaders(config, num_workers=workers).train
        if workers:
            assert train.loader.multiprocessing_context is None  # the platform's default: forkserver here
            assert train.dataset.files.shared and train.dataset.labels.shared
        runs.append(list(train))
        if workers:
            import psutil
            names = [" ".join(p.cmdline()) for p in psutil.Process().children()]
            assert any("forkserver" in n for n in names), names
    assert len(runs[0]) == len(runs[1]) > 1
    for a, b in zip(*runs):
        assert a["name"] == b["name"] and torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    print("ok", len(runs[0]))
"""
    script = tmp_path / "py314_default.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr[-3000:]
