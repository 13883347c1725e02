"""How much memory a process and its DataLoader workers really use together (PSS), and the
list-versus-array index measurement of appendix 01a, each run in a fresh Python process.

PSS (proportional set size) counts a page shared by n processes as 1/n in each, so the sum over a
process tree is the true total; RSS would count shared pages once per process. PSS exists on Linux
only; elsewhere USS (pages private to the process) is summed instead, which leaves shared pages out.

Notebooks: 01 teaches it; 02 uses it.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import multiprocessing
import os
import subprocess
import sys
import time
from typing import Any

import psutil

from pathlib import Path
from typing import Sequence

import numpy as np
from torch.utils.data import Dataset

from ..errors import ImageReadError
from ..project import ROOT, relative
from ..storage import BoxArray, PathArray

#: Kinds of index :func:`measure_index_memory` can build: Python lists, NumPy arrays (PathArray and
#: BoxArray) and the same arrays in shared memory (``shared=True``, what ``build_loaders`` uses).
KINDS = ("list", "array", "shared")
#: The three start methods of DataLoader workers: Linux's default up to Python 3.13, Linux's default
#: from 3.14, and macOS's and Windows' default.
START_METHODS = ("fork", "forkserver", "spawn")
_RESULT_MARK = "MEMORY-RESULT "


def memory_metric() -> str:
    """``'pss'`` where psutil reports it (Linux), else ``'uss'``: the metric :func:`pss_of_tree` sums."""
    info = psutil.Process().memory_full_info()
    return "pss" if getattr(info, "pss", None) is not None else "uss"


def process_memory(proc: psutil.Process) -> int:
    """PSS of one process in bytes (USS where PSS does not exist, see :func:`memory_metric`)."""
    info = proc.memory_full_info()
    pss = getattr(info, "pss", None)
    return int(pss if pss is not None else info.uss)


def tree_memory(pid: int | None = None) -> dict[int, int]:
    """PSS in bytes of process ``pid`` (default: this one) and of each of its descendants, by pid.

    A child that exits while being measured is left out (it holds no memory any more).
    """
    root = psutil.Process(pid)
    result = {root.pid: process_memory(root)}
    for child in root.children(recursive=True):
        try:
            result[child.pid] = process_memory(child)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return result


def anon_pss_of_tree(pid: int | None = None, fields: tuple[str, ...] = ("Pss_Anon",)) -> int | None:
    """PSS in bytes of the *anonymous* pages (heap, stacks: where a Python index lives) of process
    ``pid`` and its children, from ``/proc/<pid>/smaps_rollup`` (``Pss_Anon``, Linux 5.x and later).

    Unlike the total, it leaves out shared libraries, whose PSS share moves whenever an unrelated
    process maps or unmaps the same library (another Python with torch, say). None where unavailable.
    """
    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            with open(f"/proc/{proc.pid}/smaps_rollup") as f:
                found = [ln for ln in f if ln.split(":")[0] in fields]
            line = found[0] if len(found) == len(fields) else None
        except FileNotFoundError:
            if proc is root:
                return None
            continue  # a child that has exited
        except OSError:
            return None
        if line is None:
            return None
        total += sum(int(ln.split()[1]) for ln in found) * 1024
    return total


def heap_pss_of_tree(pid: int | None = None) -> int | None:
    """:func:`anon_pss_of_tree` plus shared memory (``Pss_Shmem``: where a ``shared=True`` index lives):
    every page but the file-backed ones (the shared libraries, whose PSS share moves with every other
    process that maps them, torch's ~100 MiB among them). None where unavailable."""
    return anon_pss_of_tree(pid, ("Pss_Anon", "Pss_Shmem"))


def pss_of_tree(pid: int | None = None) -> int:
    """Total PSS in bytes of process ``pid`` (default: this one) and all its children.

    Shared pages are counted once in the sum, split between the processes sharing them. Off Linux
    this is the sum of USS instead (see :func:`memory_metric`).
    """
    return sum(tree_memory(pid).values())


def release_freed_heap() -> bool:
    """Ask the C allocator to hand freed heap memory back to the OS (glibc ``malloc_trim``).

    Building an index leaves freed temporaries in the heap that still count as resident; trimming
    before a baseline is sampled makes the baseline count only live data. Returns False where this is
    not available (not Linux, or a libc without ``malloc_trim``).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def default_start_method() -> str:
    """``'fork'`` on Linux (where the copy-on-access trap bites, and what DataLoader used by default
    until Python 3.14 made ``forkserver`` the default), else the platform default (``spawn``)."""
    if sys.platform.startswith("linux"):
        return "fork"
    return multiprocessing.get_start_method()


# --- The measurement, run inside a fresh process -------------------------------------------------


def _measure_here(
    kind: str, n_entries: int, num_workers: int, batch_size: int, seed: int, start_method: str,
    shuffle: bool = False,
) -> dict[str, Any]:
    """Build the index, sample PSS alone, run one full DataLoader pass, sample PSS of main + workers."""
    import torch
    from torch.utils.data import DataLoader

    from ..loader import worker_context
    from ..storage import BoxArray, PathArray

    files, labels = synthetic_index(n_entries, seed)
    if kind == "list":
        index_bytes = path_list_bytes(files) + label_list_bytes(labels)
        dataset = IndexOnlyDataset(files, labels)
    elif kind in ("array", "shared"):
        paths, boxes = PathArray(files, shared=kind == "shared"), BoxArray(labels, shared=kind == "shared")
        index_bytes = paths.nbytes + boxes.nbytes
        dataset = IndexOnlyDataset(paths, boxes)
    else:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    del files, labels
    gc.collect()
    release_freed_heap()
    single = pss_of_tree()
    single_anon = anon_pss_of_tree()
    single_heap = heap_pss_of_tree()

    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        # Keeps the workers alive after the pass so their memory can be sampled.
        persistent_workers=num_workers > 0,
        # the context make_loader gives (a forkserver preloads torch and the data path)
        multiprocessing_context=worker_context(start_method) if num_workers > 0 else None,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
    )
    start = time.perf_counter()
    checksum = 0
    for batch in loader:
        checksum += int(batch.sum())
    seconds = time.perf_counter() - start
    per_process = tree_memory()
    total_anon = anon_pss_of_tree()
    total_heap = heap_pss_of_tree()
    main_pid = os.getpid()
    workers = [p for p in psutil.Process().children(recursive=True) if p.pid in per_process]
    result = {
        "kind": kind,
        "n_entries": n_entries,
        "num_workers": num_workers,
        "batch_size": batch_size,
        "start_method": start_method if num_workers > 0 else None,
        "shuffle": shuffle,
        "metric": memory_metric(),
        "index_bytes": int(index_bytes),
        "single_bytes": int(single),
        "total_bytes": int(sum(per_process.values())),
        "single_anon_bytes": single_anon,
        "total_anon_bytes": total_anon,
        "single_heap_bytes": single_heap,
        "total_heap_bytes": total_heap,
        "main_bytes": int(per_process[main_pid]),
        "worker_bytes": [int(v) for p, v in per_process.items() if p != main_pid],
        # Pages that only that worker holds (USS): what it has copied or allocated itself.
        "worker_private_bytes": [int(w.memory_full_info().uss) for w in workers],
        "pass_seconds": round(seconds, 3),
        "checksum": checksum,
    }
    del loader  # shuts the persistent workers down
    return result


def measure_index_memory(
    kind: str,
    n_entries: int,
    num_workers: int = 2,
    batch_size: int = 1000,
    seed: int = 0,
    start_method: str | None = None,
    timeout: float | None = 600,
    shuffle: bool = False,
) -> dict[str, Any]:
    """Measure the memory of an index of ``n_entries`` kept as ``kind`` (:data:`KINDS`: ``'list'``,
    ``'array'`` or ``'shared'``, arrays in shared memory).

    Runs in a FRESH Python process (``python -m helpers.lab.memory``), so one measurement cannot leave
    memory behind for the next. That process builds :func:`helpers.storage.synthetic_index`, samples
    its own PSS (``single_bytes``: the single-process baseline), then iterates once over an index-only
    Dataset through a DataLoader with ``num_workers`` workers started by ``start_method`` (default
    :func:`default_start_method`, ``fork`` on Linux; a forkserver preloaded as
    :func:`helpers.loader.worker_context` does) and persistent, and samples the PSS of main +
    workers while they are still alive (``total_bytes``; ``main_bytes`` and ``worker_bytes`` split it;
    under forkserver and spawn the tree also holds the forkserver and multiprocessing's resource
    tracker, which ``worker_bytes`` counts too: what the start method costs).
    ``single_anon_bytes``/``total_anon_bytes`` are the same two samples counting anonymous pages only
    (:func:`anon_pss_of_tree`; None off Linux), ``single_heap_bytes``/``total_heap_bytes`` the same
    with shared memory added (:func:`heap_pss_of_tree`). Also returned: ``index_bytes`` (the ``sys.getsizeof``
    sum for lists, the buffer sizes for arrays), ``metric`` (``pss``/``uss``), ``worker_private_bytes``
    (each worker's USS: what it copied or allocated itself), ``pass_seconds`` and a ``checksum`` of
    the items (equal for both kinds). ``shuffle=True`` visits the entries in a random order (seeded
    by ``seed``), as training does: then every worker reads entries from all over the index.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    start_method = start_method or default_start_method()
    cmd = [
        sys.executable, "-m", "helpers.lab.memory",
        "--kind", kind, "--entries", str(n_entries), "--workers", str(num_workers),
        "--batch-size", str(batch_size), "--seed", str(seed), "--start-method", start_method,
    ] + (["--shuffle"] if shuffle else [])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(_RESULT_MARK)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"memory measurement ({kind}, {n_entries} entries) failed with exit code {done.returncode}:\n"
            f"{done.stderr[-3000:]}"
        )
    return json.loads(lines[-1][len(_RESULT_MARK):])


def main(argv: list[str] | None = None) -> None:
    """``python -m helpers.lab.memory --kind list --entries N ...``: one measurement, printed as JSON."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--entries", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start-method", default=None, choices=START_METHODS)
    parser.add_argument("--shuffle", action="store_true", help="visit the entries in a random order")
    args = parser.parse_args(argv)
    result = _measure_here(
        args.kind, args.entries, args.workers, args.batch_size, args.seed,
        args.start_method or default_start_method(), shuffle=args.shuffle,
    )
    print(_RESULT_MARK + json.dumps(result), flush=True)




# --- Index-only datasets for measuring the trap (no image decoding) -----------------------------


class IndexOnlyDataset(Dataset):
    """An index of paths and boxes with no images behind it: ``__getitem__`` reads what a real Dataset
    would (the path string and the image's boxes) and returns only ``len(path) + k``.

    Give it Python lists or a :class:`PathArray` and a :class:`BoxArray`: the items are the same, so a
    DataLoader pass over either measures only how the index's storage behaves in the workers.
    """

    def __init__(self, files: Sequence[str] | PathArray, labels: Sequence[Sequence[Sequence[float]]] | BoxArray) -> None:
        if len(files) != len(labels):
            raise ValueError(f"IndexOnlyDataset: {len(files)} paths but {len(labels)} box lists")
        self.files = files
        self.labels = labels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> int:
        path = self.files[i]
        boxes = np.asarray(self.labels[i], dtype=np.float32).reshape(-1, 4)  # reads every float object of a list
        return len(path) + len(boxes)


def synthetic_index(n: int, seed: int = 0) -> tuple[list[str], list[list[list[float]]]]:
    """A made-up index of ``n`` images for the memory measurement: paths and 0-6 integer-valued boxes each.

    Paths look like ``data/images/000123/image_0123456.jpg`` (1000 per folder); boxes lie in a
    480 x 640 image. Deterministic for a given ``(n, seed)``; returned as plain Python lists.
    """
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 7, size=n)
    total = int(counts.sum())
    x0 = rng.integers(0, 600, size=total)
    y0 = rng.integers(0, 440, size=total)
    w = rng.integers(8, 41, size=total)
    h = rng.integers(8, 41, size=total)
    flat = np.stack([x0, y0, np.minimum(x0 + w, 640), np.minimum(y0 + h, 480)], axis=1).astype(float).tolist()
    files = [f"data/images/{i // 1000:06d}/image_{i:07d}.jpg" for i in range(n)]
    labels = []
    start = 0
    for k in counts.tolist():
        labels.append(flat[start : start + k])
        start += k
    return files, labels



# --- What keeping paths instead of pixels saves -------------------------------------------------


def eager_load_bytes(files: Sequence[str | Path]) -> int:
    """Bytes that decoding every image into an H x W x 3 uint8 array would take (headers only are read).

    PIL reads the size from the file header without decoding the pixels, so this is fast and is exactly
    ``sum(H * W * 3)``: the floor of an "everything in memory" approach (float32 would be 4x that).
    """
    from PIL import Image, UnidentifiedImageError

    total = 0
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                w, h = im.size
        except (OSError, UnidentifiedImageError) as e:
            raise ImageReadError(f"{relative(f)} (index {i}): cannot read the image header: {e}") from None
        total += w * h * 3
    return total


def path_list_bytes(files: Sequence[str]) -> int:
    """Bytes held by a Python list of path strings: the list itself plus each ``str`` object."""
    return sys.getsizeof(files) + sum(sys.getsizeof(f) for f in files)


def label_list_bytes(labels: Sequence[Sequence[Sequence[float]]]) -> int:
    """Bytes held by the nested lists of boxes: outer list, each image's list, each box list, each float."""
    total = sys.getsizeof(labels)
    for boxes in labels:
        total += sys.getsizeof(boxes)
        for box in boxes:
            total += sys.getsizeof(box) + sum(sys.getsizeof(v) for v in box)
    return total


def extrapolate(measured_bytes: int, n_measured: int, n_target: int = 100_000) -> int:
    """Scale a figure measured on ``n_measured`` images linearly to ``n_target`` images (same mix assumed)."""
    if n_measured <= 0:
        raise ValueError(f"n_measured must be positive, got {n_measured}")
    return round(measured_bytes * n_target / n_measured)


if __name__ == "__main__":
    main()
