"""Faults a long run meets: a DataLoader worker killed or stuck, shared memory running out, data too
small to train on, and an interrupt while training or while writing a checkpoint. Each test takes
seconds; none waits on a fixed sleep for something to happen, and each is guarded by an alarm so
that a regression shows as a failure, never as a hung test run."""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from helpers.dataset import FaceDataset
from helpers.errors import DataError
from helpers.loader import DEFAULT_TIMEOUT_S, make_loader
from helpers.runconfig import RunConfig
from helpers.checkpoints import load_checkpoint
from helpers.data_path import build_loaders, check_loaders
from helpers.train import train
from helpers.transforms import default_pipeline

ROOT = Path(__file__).resolve().parents[1]
TINY = {"base_channels": 4, "levels": 2, "max_channels": 8}


@contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging) if the block runs longer than ``seconds``."""
    def on_alarm(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: the main process is hanging")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


class Pids(Dataset):
    """Item i is ``[i, pid of the process that loaded it]``; items from ``stall_from`` on never arrive.
    ``stuck`` (shared memory, seen by the workers) turns 1 when a worker starts on such an item."""

    def __init__(self, n: int = 400, stall_from: int | None = None) -> None:
        self.n, self.stall_from = n, stall_from
        self.stuck = torch.zeros(1, dtype=torch.int32).share_memory_()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        if self.stall_from is not None and i >= self.stall_from:
            self.stuck[0] = 1
            time.sleep(3600)  # a stuck read (e.g. a hung network file system)
        time.sleep(0.01)
        return torch.tensor([i, os.getpid()])


# --- a worker that dies, a worker that hangs ------------------------------------------------------


def test_a_killed_worker_raises_in_the_main_process_within_seconds():
    loader = make_loader(Pids(), batch_size=2, shuffle=False, seed=0, num_workers=2)
    with deadline(60):
        it = iter(loader)
        victim = int(next(it)[0, 1])
        assert victim != os.getpid()
        os.kill(victim, signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(RuntimeError, match=rf"DataLoader worker \(pid\(?s?\)? {victim}\)? "
                                               r"(is killed by signal: Killed|exited unexpectedly)"):
            for _ in it:
                pass
        assert time.monotonic() - t0 < 30  # PyTorch's SIGCHLD handler: usually well under a second
        del it


def test_a_stuck_worker_hits_the_loader_timeout():
    assert make_loader(Pids(4), 2, shuffle=False, seed=0, num_workers=1).timeout == DEFAULT_TIMEOUT_S
    assert make_loader(Pids(4), 2, shuffle=False, seed=0, num_workers=0).timeout == 0
    with pytest.raises(ValueError, match="timeout must be >= 0, and 0 without workers"):
        make_loader(Pids(4), 2, shuffle=False, seed=0, num_workers=0, timeout=5)
    # prefetch_factor=4: the one worker is handed batches 0-3 at once, so it loads batches 0 and 1 and
    # then sticks on item 4 without waiting for the main process to take anything.
    data = Pids(40, stall_from=4)
    loader = make_loader(data, batch_size=2, shuffle=False, seed=0, num_workers=1, timeout=2,
                         persistent_workers=False, prefetch_factor=4)
    with deadline(60):
        it = iter(loader)  # starts the worker
        while not data.stuck[0]:  # its start-up, however slow a busy machine makes it, is not timed
            time.sleep(0.01)
        seen = []
        t0 = time.monotonic()
        with pytest.raises(RuntimeError, match="DataLoader timed out after 2 seconds"):
            for batch in it:
                seen += batch[:, 0].tolist()
        assert seen == [0, 1, 2, 3]  # the batches before the stuck item arrive; then the timeout, not a hang
        assert time.monotonic() - t0 >= 2
        del it


# --- shared memory -------------------------------------------------------------------------------

SHM_SCRIPT = textwrap.dedent("""
    import sys, torch
    from torch.utils.data import DataLoader, Dataset
    strategy, workers, batch_size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.multiprocessing.set_sharing_strategy(strategy)

    class MiB(Dataset):  # item i: 1 MiB of uint8, all equal to i
        def __len__(self): return 8
        def __getitem__(self, i): return torch.full((1024 * 1024,), i, dtype=torch.uint8)

    seen = []
    for batch in DataLoader(MiB(), batch_size=batch_size, num_workers=workers):
        seen += batch[:, 0].tolist()
    assert seen == list(range(8)), seen
    print("strategy", torch.multiprocessing.get_sharing_strategy(), "ok")
""")


def _run_shm(args: list[str], small_shm: bool) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", SHM_SCRIPT, *args]
    if small_shm:
        # A private mount namespace (as an unprivileged user namespace) with a 1 MiB /dev/shm: the
        # container situation (Docker's default is 64 MiB), scaled down. Nothing outside changes.
        inner = shlex.join(cmd)
        cmd = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
               f"mount -t tmpfs -o size=1m tmpfs /dev/shm && exec {inner}"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_file_system_sharing_strategy_works():
    """The fallback strategy (tensors shared as files; needs no file descriptor per tensor) works."""
    result = _run_shm(["file_system", "2", "4"], small_shm=False)
    assert result.returncode == 0, result.stderr
    assert "strategy file_system ok" in result.stdout


def _small_shm_available() -> bool:
    if shutil.which("unshare") is None or not sys.platform.startswith("linux"):
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "mount -t tmpfs -o size=1m tmpfs /dev/shm"], capture_output=True, timeout=30)
    return probe.returncode == 0


def test_a_full_dev_shm_gives_the_error_users_see_and_the_fixes_work():
    if not _small_shm_available():
        pytest.skip("cannot mount a small /dev/shm here (needs unprivileged user namespaces); "
                    "test_file_system_sharing_strategy_works still runs")
    # 4 MiB batches from 2 workers into a 1 MiB /dev/shm: the workers cannot allocate the batch.
    full = _run_shm(["file_descriptor", "2", "4"], small_shm=True)
    assert full.returncode != 0
    # Either form docs/troubleshooting.md quotes, depending on where the allocation fails: torch 2.14
    # reserves the segment up front (ENOSPC, first form); torch 2.9 (Colab's kind) maps it and the worker
    # dies of SIGBUS while writing the batch (second form).
    no_space = all(m in full.stderr for m in ("Caught RuntimeError in DataLoader worker process",
                                              "unable to allocate shared memory(shm) for file",
                                              "No space left on device (28)"))
    bus_error = ("Unexpected bus error encountered in worker. This might be caused by insufficient shared "
                 "memory (shm)") in full.stderr
    assert no_space or bus_error, full.stderr[-2000:]
    # file_system shares through /dev/shm too: it is not a fix for a SMALL /dev/shm
    assert _run_shm(["file_system", "2", "4"], small_shm=True).returncode != 0
    # the fixes: no workers (nothing to share), or batches that fit
    assert _run_shm(["file_descriptor", "0", "4"], small_shm=True).returncode == 0
    fits = _run_shm(["file_descriptor", "1", "1"], small_shm=False)
    assert fits.returncode == 0, fits.stderr


# --- data too small to train on ------------------------------------------------------------------


def _images(folder: Path, n: int) -> tuple[list[str], list]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    files, labels = [], []
    for i in range(n):
        img = rng.integers(0, 120, size=(24, 32, 3), dtype=np.uint8)
        img[4:14, 6:16] = (230, 180, 150)
        path = folder / f"image_{i:06d}.png"
        Image.fromarray(img).save(path)
        files.append(str(path))
        labels.append([[6, 4, 16, 14]])
    return files, labels


def _config(**kw) -> RunConfig:
    return RunConfig(**{"name": "faults", "n_images": 10, "test_fraction": 0.2, "data_seed": 0,
                        "image_size": (24, 32), "epochs": 2, "batch_size": 4, "lr": 1e-2, "num_workers": 0, **kw})


def _loader(files, labels, batch_size=4, drop_last=False, shuffle=True):
    ds = FaceDataset(files, labels, transform=default_pipeline((24, 32)))
    return make_loader(ds, batch_size, shuffle=shuffle, seed=0, num_workers=0, drop_last=drop_last)


def test_too_little_data_is_refused_before_training(tmp_path):
    files, labels = _images(tmp_path / "imgs", 6)
    ok_test = _loader(files[4:], labels[4:], shuffle=False)
    # an empty split: make_loader says so (instead of RandomSampler's "num_samples should be a positive
    # integer value, but got num_samples=0"), and so does train() for loaders made some other way
    with pytest.raises(DataError, match=r"make_loader: the data set is empty \(0 items\), nothing to load: "
                                        r"FaceDataset\(0 images"):
        _loader([], [])
    empty = torch.utils.data.DataLoader(FaceDataset([], []), batch_size=4)
    with pytest.raises(DataError, match=r"the training split is empty \(0 images\)"):
        train(_config(), loaders=(empty, ok_test), device="cpu", log=None, progress=False)
    with pytest.raises(DataError, match=r"the validation split is empty \(0 images\)"):
        check_loaders(_loader(files, labels), empty)
    with pytest.raises(DataError, match=r"the training loader has batch_size=8 and drop_last=True but the "
                                        r"training split holds only 4 image\(s\): no full batch, so an epoch "
                                        r"would have 0 steps; lower batch_size or set drop_last=False"):
        train(_config(), loaders=(_loader(files[:4], labels[:4], 8, drop_last=True), ok_test), device="cpu",
              log=None, progress=False)
    with pytest.warns(UserWarning, match=r"batch_size=8 exceeds the 4 image\(s\) of the training split: "
                                         r"every epoch is one batch of 4"):
        check_loaders(_loader(files[:4], labels[:4], 8), ok_test)
    # from a folder: an empty bbox.json, and a split too small to give both sides an image
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "bbox.json").write_text("{}\n")
    with pytest.raises(DataError, match=r"bbox.json: lists no images: the data set is empty"):
        build_loaders(_config(), data_dir=tmp_path / "empty")
    (tmp_path / "imgs" / "bbox.json").write_text(
        "{" + ", ".join(f'"{Path(f).name}": {lab}' for f, lab in zip(files[:1], labels[:1])) + "}")
    for f in files[1:]:
        os.remove(f)
    with pytest.raises(DataError, match=r"splitting 1 image\(s\) with test_fraction=0.2, val_fraction=0.15 left 1 "
                                        r"for training, 0 for validation and 0 for testing; use more images or "
                                        r"other fractions"):
        build_loaders(_config(), data_dir=tmp_path / "imgs")


# --- interrupting training ---------------------------------------------------------------------


class InterruptAfter(Dataset):
    """``dataset[i]``, until ``after`` items have been loaded: then Ctrl-C (KeyboardInterrupt)."""

    def __init__(self, dataset: Dataset, after: int) -> None:
        self.dataset, self.after, self.count = dataset, after, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        self.count += 1
        if self.count > self.after:
            raise KeyboardInterrupt
        return self.dataset[i]


def test_an_interrupt_leaves_the_last_complete_checkpoint_loadable(tmp_path, monkeypatch):
    files, labels = _images(tmp_path / "imgs", 10)
    config = _config()
    ck = tmp_path / "ck" / "faces.pt"

    def loaders(after=None):
        train_set = FaceDataset(files[:8], labels[:8], transform=default_pipeline((24, 32)))
        if after is not None:
            train_set = InterruptAfter(train_set, after)
        return (make_loader(train_set, 4, shuffle=True, seed=0, num_workers=0),
                _loader(files[8:], labels[8:], shuffle=False))

    kw = dict(device="cpu", model_kwargs=TINY, face_fraction=0.15, log=None, progress=False, checkpoint_path=ck)
    # Ctrl-C in the middle of epoch 2 (8 images per epoch: the 11th load is epoch 2's second batch)
    with pytest.raises(KeyboardInterrupt):
        train(config, loaders=loaders(after=10), **kw)
    state = load_checkpoint(ck)
    assert state["epoch"] == 1 and len(state["history"]["epoch"]) == 1
    assert list(ck.parent.iterdir()) == [ck]  # no partial file left behind
    # Ctrl-C while the next checkpoint is being written: the partial file is removed, the old one stays
    real_save = torch.save

    def interrupted_save(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        train(config, loaders=loaders(), resume_from=ck, **kw)
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(ck)["epoch"] == 1
    assert list(ck.parent.iterdir()) == [ck]
    # and training resumes from it
    result = train(config, loaders=loaders(), resume_from=ck, **kw)
    assert result.history["epoch"] == [1.0, 2.0]
    assert load_checkpoint(ck)["epoch"] == 2
