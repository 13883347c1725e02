"""The speed and memory benchmark: ``python -m helpers.lab.bench all --json outputs/bench/bench.json``.

Subcommands: ``all`` (everything below but ``memory``'s own options), ``speed`` (the input pipeline
against the decode limit), ``decode`` (decode paths side by side), ``growth`` (total PSS of main +
workers as the data set grows, under each start method in the full size), ``memory`` (the index
alone, lists versus NumPy arrays, 1,000,000 entries, as notebook 01 runs it), ``start-methods`` (the
index alone under fork, forkserver and spawn: lists, arrays and shared arrays, 1k to 1M entries) and ``report``
(a JSON result as the markdown tables of docs/benchmarks.md). ``--tiny`` runs everything on a few
images in seconds (the tests); ``--size notebook`` is what notebook 06 runs.

The rules every figure follows: a ratio compares variants alternated within one run (>= 3 rounds,
the median of the per-round ratios); the decode limit is warm, single-threaded and does the same
work as the pipeline's decode (decode + resize to the training size, per decode path); the 0-worker
pipeline runs with 1 torch thread; and a short CPU-bound probe run in 1 and in N processes says
whether this process really got the cores it counts (``contended`` in the JSON, a warning line in
the tables).

The memory part lives in :mod:`helpers.lab.bench_memory` (its names are importable from here too).

Notebooks: 06 teaches it; 01 uses it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .memory import START_METHODS, default_start_method, measure_index_memory
from .bench_memory import (  # the memory part lives in bench_memory; its names stay importable from here
    _MEMORY_MARK, ARRAY_TOLERANCE, FORKSERVER_BASE_TARGET, GROWTH_TARGET, HELD_ONCE_TARGET, INDEX_ENTRIES, MiB,
    TRAINING_STORAGE, _memory_here, format_index_memory, format_memory, index_memory_targets, measure_memory,
    prepare_memory_folder, run_index_memory, run_memory, run_memory_growth, summarize_index_memory,
)
from ..project import DATA_SAMPLE, relative, write_json


# --- configurations ------------------------------------------------------------------------------

#: Training sizes (height, width) of the two run configurations (helpers.runconfig: quick, full).
TRAINING_SIZES = ((120, 160), (240, 320))
#: Decode paths compared; ``pillow`` (full decode + Pillow bilinear resize) is the reference.
DECODE_PATHS = ("pillow", "pillow-draft", "simplejpeg", "pyturbojpeg", "torchvision", "torchcodec")
#: Decode paths the pipeline (FaceDataset) can use: full decode, or draft decoding (``decode_size``).
PIPELINE_PATHS = ("pillow", "pillow-draft")
#: A probe this much slower in N processes than in 1 means the N cores are not all ours.
CONTENTION_SLOWDOWN = 1.3

SIZES: dict[str, dict[str, Any]] = {
    # `make bench`: the figures of docs/benchmarks.md (about 10-15 minutes on 2 idle cores).
    "full": dict(n_images=64, sizes=TRAINING_SIZES, workers=(0, 1, 2), loader_batches=(8, 64), rounds=3,
                 timed_images=768, decode_images=64, memory_entries=(1_000, 100_000), memory_sources=256,
                 memory_batches=None, memory_loader_batch=64, index_entries=INDEX_ENTRIES,
                 memory_storages=("list", "array", "shared"), memory_start_methods=START_METHODS,
                 index_start_methods=START_METHODS),
    # notebook 06: both sizes, a partial memory pass spread over the whole index (about a minute).
    "notebook": dict(n_images=12, sizes=TRAINING_SIZES, workers=(0, 1, 2), loader_batches=(8, 32), rounds=3,
                     variants=((0, 8), (1, 8), (2, 8), (2, 32)),
                     timed_images=96, decode_images=12, memory_entries=(1_000, 100_000), memory_sources=64,
                     memory_batches=6, memory_loader_batch=64, index_entries=(1_000, 100_000),
                     memory_storages=("list", "array"), memory_start_methods=None, index_start_methods=None),
    # the tests: seconds. (64 timed images: the workers' CPU time is read in clock ticks of 10 ms, and
    # a shorter interval can read as 0.)
    "tiny": dict(n_images=6, sizes=TRAINING_SIZES, workers=(0, 2), loader_batches=(4,), rounds=3,
                 timed_images=64, decode_images=6, memory_entries=(1_000, 3_000), memory_sources=6,
                 memory_batches=3, memory_loader_batch=8, index_entries=(1_000, 3_000),
                 memory_storages=("list", "array", "shared"), memory_start_methods=None, index_start_methods=None),
}


def _median(values: Sequence[float]) -> float:
    import statistics

    return float(statistics.median(values))


# --- the machine -----------------------------------------------------------------------------------


def usable_cpus() -> int:
    """CPU cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info() -> dict[str, Any]:
    """Cores usable by this process, CPU model, memory, and the versions that decide the figures."""
    import platform

    import numpy
    import PIL
    import psutil
    import torch
    import torchvision
    from PIL import features

    return {
        "cores": usable_cpus(),
        "logical_cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pillow": PIL.__version__,
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "numpy": numpy.__version__,
        "cuda": torch.cuda.is_available(),
    }


def _spin(n: int) -> float:
    """CPU-bound pure-Python work; returns its own wall time."""
    start = time.perf_counter()
    x = 0
    for i in range(n):
        x += i * i
    return time.perf_counter() - start


def contention_probe(cores: int | None = None, work: int = 1_500_000) -> dict[str, Any]:
    """Time a short CPU-bound loop in 1 process, then in ``cores`` processes at once.

    On cores that are ours alone, N copies take as long as one (``slowdown`` ~1.0); another load on
    the machine (or fewer real cores than the affinity mask says) makes them slower. ``contended`` is
    True when the slowdown exceeds :data:`CONTENTION_SLOWDOWN`. The load average is recorded too.
    """
    import multiprocessing

    import psutil

    cores = cores or usable_cpus()
    single = min(_spin(work) for _ in range(3))
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else None)
    with ctx.Pool(cores) as pool:
        pool.map(_spin, [1000] * cores)  # start-up
        parallel = _median(pool.map(_spin, [work] * cores))
    slowdown = parallel / single
    try:
        load = [round(v, 2) for v in psutil.getloadavg()]
    except (AttributeError, OSError):
        load = None
    return {"processes": cores, "single_s": round(single, 4), "parallel_s": round(parallel, 4),
            "slowdown": round(slowdown, 3), "loadavg": load, "contended": slowdown > CONTENTION_SLOWDOWN}


# --- decode paths --------------------------------------------------------------------------------


def _resize_pil(img, size: tuple[int, int]):
    """A PIL image resized to (h, w) with Pillow's bilinear (antialiased) filter, as an HxWx3 array."""
    import numpy as np
    from PIL import Image

    h, w = size
    if img.size != (w, h):
        img = img.resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(img)


def _resize_array_pil(array, size: tuple[int, int]):
    import numpy as np
    from PIL import Image

    if array.shape[:2] == tuple(size):
        return np.asarray(array)
    return _resize_pil(Image.fromarray(array), size)


def _pillow(path: str, size: tuple[int, int], draft: bool = False):
    from PIL import Image

    with Image.open(path) as im:
        if draft:
            im.draft("RGB", (size[1], size[0]))  # JPEG DCT scaling by 1/2, 1/4 or 1/8, never below size
        im.load()
        rgb = im if im.mode == "RGB" else im.convert("RGB")
        return _resize_pil(rgb, size)


def _decoder(name: str):
    """``(decode(path, size) -> HxWx3 uint8, note)`` for decode path ``name``; raises ImportError,
    OSError or RuntimeError (with the reason) when it cannot run here."""
    import warnings

    import numpy as np

    if name == "pillow":
        return (lambda p, s: _pillow(p, s)), "full decode + Pillow bilinear resize (the reference)"
    if name == "pillow-draft":
        try:
            from ..dataset import read_resized  # what FaceDataset(decode_size=...) runs
        except ImportError:
            return (lambda p, s: _pillow(p, s, draft=True)), "Image.draft: DCT-domain downscale, then Pillow bilinear"
        return ((lambda p, s: read_resized(p, s)[0]),
                "FaceDataset(decode_size=...): Image.draft DCT-domain downscale, then Pillow bilinear (the default)")
    if name == "simplejpeg":
        import simplejpeg

        def decode(p, s):
            with open(p, "rb") as f:
                data = f.read()
            arr = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=s[0], min_width=s[1])
            return _resize_array_pil(arr, s)
        return decode, f"simplejpeg {simplejpeg.__version__}: min_height/min_width scaled decode, then Pillow bilinear"
    if name == "pyturbojpeg":
        import turbojpeg

        tj = turbojpeg.TurboJPEG()  # raises when the system libturbojpeg cannot be loaded
        factors = sorted(tj.scaling_factors, key=lambda f: f[0] / f[1])

        def decode(p, s):
            with open(p, "rb") as f:
                data = f.read()
            width, height = tj.decode_header(data)[:2]
            factor = next(((n, d) for n, d in factors
                           if -(-width * n // d) >= s[1] and -(-height * n // d) >= s[0]), (1, 1))
            arr = tj.decode(data, pixel_format=turbojpeg.TJPF_RGB, scaling_factor=factor)
            return _resize_array_pil(arr, s)
        return decode, "PyTurboJPEG: scaled decode (largest reduction that keeps the size), then Pillow bilinear"
    if name in ("torchvision", "torchcodec"):
        import torch
        from torchvision.transforms.v2 import functional as F

        if name == "torchvision":
            from torchvision.io import ImageReadMode, decode_jpeg, read_file

            def raw(p):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return decode_jpeg(read_file(p), mode=ImageReadMode.RGB)
            note = ("torchvision.io.decode_jpeg + v2.Resize(antialias=True); torchvision 0.29 marks its "
                    "image decoders deprecated in favour of torchcodec")
        else:
            from torchcodec.decoders import decode_jpeg as tc_decode_jpeg

            def raw(p):
                return tc_decode_jpeg(p)
            note = "torchcodec.decoders.decode_jpeg (torchcodec >= 0.16 decodes images) + v2.Resize(antialias=True)"

        def decode(p, s):
            t = raw(p)
            if tuple(t.shape[-2:]) != tuple(s):
                t = F.resize(t, list(s), antialias=True)
            return np.asarray(t.permute(1, 2, 0).contiguous().numpy())
        _ = torch
        return decode, note
    raise ValueError(f"unknown decode path {name!r}; expected one of {DECODE_PATHS}")


def decoder_availability(name: str, probe_file: str | None = None) -> tuple[Any, str | None, str]:
    """``(decode or None, reason unavailable or None, note)``: a missing library is a reason, not an error."""
    try:
        decode, note = _decoder(name)
        if probe_file is not None:
            decode(probe_file, (8, 8))
        return decode, None, note
    except Exception as e:  # ImportError, OSError (no libturbojpeg), RuntimeError ...
        reason = f"{type(e).__name__}: {e}".splitlines()[0][:200]
        return None, reason, ""


def _time_decode(decode, files: Sequence[str], size: tuple[int, int], n: int) -> float:
    """Images/s of ``decode`` over ``n`` images cycling through ``files``, warm (one untimed image first)."""
    decode(files[0], size)
    start = time.perf_counter()
    for i in range(n):
        decode(files[i % len(files)], size)
    return n / (time.perf_counter() - start)


def _decode_in_child(decode, files, size, n, barrier, conn) -> None:
    """One of :func:`_time_decode_parallel`'s processes: warm up, wait for the others, time, report."""
    try:
        decode(files[0], size)
        barrier.wait()
        conn.send(_time_decode(decode, files, size, n))
    except BaseException as e:  # report, never hang the parent
        conn.send(repr(e))
    finally:
        conn.close()


def _time_decode_parallel(decode, files: Sequence[str], size: tuple[int, int], n: int,
                          processes: int) -> float:
    """Images/s of ``processes`` processes each running :func:`_time_decode`'s loop at the same time
    (started together at a barrier), summed: what the cores deliver when all of them decode at once.
    Needs ``fork`` (Linux; :func:`run_speed` calls it only there): the decode functions are closures,
    which ``spawn`` cannot send."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(processes)
    pipes = [ctx.Pipe(duplex=False) for _ in range(processes)]
    procs = [ctx.Process(target=_decode_in_child, args=(decode, files, size, n, barrier, send), daemon=True)
             for _, send in pipes]
    for proc in procs:
        proc.start()
    rates = []
    try:
        for receive, send in pipes:
            send.close()
            if not receive.poll(600):
                raise RuntimeError("a parallel decode process did not report within 600 s")
            got = receive.recv()
            if isinstance(got, str):
                raise RuntimeError(f"a parallel decode process failed: {got}")
            rates.append(got)
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    return sum(rates)


def run_decode(files: Sequence[str], sizes=TRAINING_SIZES, paths: Sequence[str] = DECODE_PATHS,
               n_images: int = 64, rounds: int = 3) -> list[dict[str, Any]]:
    """Each decode path, single-threaded, alternated within each of ``rounds`` rounds, per size:
    ``images_per_s`` (median), ``ratio_to_pillow`` (median of the per-round ratios) and the pixel
    difference from the reference (full decode + Pillow bilinear): ``mean_abs_diff`` (grey levels,
    over every pixel of every image) and ``max_abs_diff``."""
    import numpy as np
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        available = {}
        rows: list[dict[str, Any]] = []
        for name in paths:
            decode, reason, note = decoder_availability(name, files[0])
            available[name] = (decode, reason, note)
        for size in sizes:
            size = tuple(size)
            rates: dict[str, list[float]] = {n: [] for n in paths if available[n][0]}
            for r in range(rounds):
                order = list(rates)
                order = order[r % len(order):] + order[: r % len(order)]
                for name in order:
                    rates[name].append(_time_decode(available[name][0], files, size, n_images))
            reference = [available["pillow"][0](f, size).astype(np.int16) for f in files]
            for name in paths:
                decode, reason, note = available[name]
                row: dict[str, Any] = {"name": name, "size": list(size), "available": decode is not None,
                                       "reason": reason, "note": note}
                if decode is None:
                    row.update(images_per_s=None, ratio_to_pillow=None, mean_abs_diff=None, max_abs_diff=None)
                else:
                    diffs = [np.abs(decode(f, size).astype(np.int16) - ref) for f, ref in zip(files, reference)]
                    row.update(
                        images_per_s=round(_median(rates[name]), 1),
                        ratio_to_pillow=round(_median([a / b for a, b in zip(rates[name], rates["pillow"])]), 3),
                        mean_abs_diff=round(float(np.mean([d.mean() for d in diffs])), 3),
                        max_abs_diff=int(max(d.max() for d in diffs)),
                    )
                rows.append(row)
        return rows
    finally:
        torch.set_num_threads(previous)


# --- the pipeline against the limit --------------------------------------------------------------


def draft_supported() -> bool:
    """Whether this FaceDataset takes ``decode_size`` (draft JPEG decoding)."""
    import inspect

    from ..dataset import FaceDataset

    return "decode_size" in inspect.signature(FaceDataset.__init__).parameters


def _face_dataset(files, labels, size, decode_path: str, root=None):
    from ..dataset import FaceDataset
    from ..transforms import default_pipeline

    extra = {}
    if draft_supported():
        extra["decode_size"] = tuple(size) if decode_path == "pillow-draft" else None
    elif decode_path == "pillow-draft":
        raise RuntimeError("this FaceDataset has no decode_size (draft decoding)")
    return FaceDataset(files, labels, transform=default_pipeline(tuple(size)), root=root, **extra)


def _tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process and its live children (the DataLoader workers)."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            continue
    return total


#: The training batch size both run configurations split loader batches into (helpers.runconfig quick).
TRAIN_BATCH = 8


def _split(loader, loader_batch: int):
    """``loader``'s batches as the training loop sees them: split into batches of :data:`TRAIN_BATCH`
    by ``helpers.loader.SplitBatches`` (as ``build_loaders`` does) when the loader batch is a larger
    multiple of it and this checkout has SplitBatches; else the loader itself."""
    try:
        from ..loader import SplitBatches
    except ImportError:
        return loader
    if loader_batch > TRAIN_BATCH and loader_batch % TRAIN_BATCH == 0:
        return SplitBatches(loader, TRAIN_BATCH)
    return loader


def _collate_for(decode_path: str):
    """The collate function of the pipeline ``decode_path`` stands for: ``build_loaders``' default
    (``collate_channels_last``, where this checkout has it) for ``pillow-draft``; ``default_collate``
    (None) for ``pillow``, the pipeline of notebooks 02-04 taken literally."""
    if decode_path != "pillow-draft":
        return None
    try:
        from ..collate import collate_channels_last
    except ImportError:
        return None
    return collate_channels_last


def pipeline_once(files, labels, size, decode_path: str, workers: int, loader_batch: int,
                  timed_images: int) -> tuple[float, float]:
    """``(images/s, CPU ms per image)`` of FaceDataset + default_pipeline + DataLoader, steady state
    (collated as :func:`_collate_for` says).

    The clock runs between two points where the loader is in steady state: after every worker has
    delivered two batches (start-up and warm-up left out) and before the last ``workers x
    prefetch_factor`` batches (the queue is full at both marks, so prefetched batches are not
    counted as free). CPU time is that of the main process and the workers over the same interval.
    """
    from torch.utils.data import DataLoader

    dataset = _face_dataset(files, labels, size, decode_path)
    prefetch = 2
    warm = loader_batch * max(workers, 1) * 2
    tail = loader_batch * workers * prefetch
    total = warm + timed_images + tail
    order = [i % len(files) for i in range(total)]
    fork = "fork" if workers > 0 and sys.platform.startswith("linux") else None
    loader = DataLoader(dataset, batch_size=loader_batch, sampler=order, num_workers=workers,
                        persistent_workers=workers > 0, multiprocessing_context=fork,
                        prefetch_factor=prefetch if workers > 0 else None, collate_fn=_collate_for(decode_path))
    count, start, cpu_start, n_start = 0, None, 0.0, 0
    result = None
    batches = iter(_split(loader, loader_batch))
    for batch in batches:
        count += len(batch["name"])
        if start is None and count >= warm:
            start, cpu_start, n_start = time.perf_counter(), _tree_cpu_seconds(), count
        elif start is not None and count - n_start >= timed_images:
            seconds = time.perf_counter() - start
            cpu = _tree_cpu_seconds() - cpu_start
            result = ((count - n_start) / seconds, 1000 * cpu / (count - n_start))
            break
    del batches, loader
    if result is None:
        raise RuntimeError("pipeline_once: the pass ended before the timed interval did")
    return result


def run_speed(files, labels, sizes=TRAINING_SIZES, paths: Sequence[str] = PIPELINE_PATHS,
              workers: Sequence[int] = (0, 1, 2), loader_batches: Sequence[int] = (8, 64),
              rounds: int = 3, timed_images: int = 768,
              variants: Sequence[tuple[int, int]] | None = None) -> dict[str, Any]:
    """The pipeline's images/s for each (decode path, num_workers, loader batch) against its limit.

    Per size and decode path, each round times the limit (warm single-thread decode + resize to the
    training size, :func:`run_decode`'s work, in this process) and every pipeline variant, in an order
    rotated from round to round. ``ratio_to_limit`` = pipeline rate / (min(max(workers, 1), cores) x
    the limit of the same round and decode path); medians over rounds. Torch runs 1 thread here
    (the 0-worker row), as DataLoader workers do. ``variants``: (workers, loader batch) pairs to time
    instead of every combination of ``workers`` and ``loader_batches``.

    With more than one core, each round also times the **parallel limit**: one process per core, all
    doing the limit's work at once (:func:`_time_decode_parallel`). ``parallel_scaling`` = that rate /
    (cores x the limit): below 1 where cores running together are each slower than one running alone
    (shared caches and memory, a virtual machine's host). Rows whose loader uses every core get
    ``ratio_to_parallel_limit`` too: what the loader itself loses, with the machine's share taken out.
    """
    pairs = list(variants) if variants is not None else [(w, b) for w in workers for b in loader_batches]
    import torch

    cores = usable_cpus()
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    limits: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    try:
        for size in sizes:
            size = tuple(size)
            for path in paths:
                if path == "pillow-draft" and not draft_supported():
                    limits.append({"size": list(size), "decode_path": path, "images_per_s": None,
                                   "reason": "FaceDataset has no decode_size here"})
                    continue
                decode, _, _ = decoder_availability(path)
                todo = [("limit", 0, 0)] + [("pipeline", w, b) for w, b in pairs]
                if cores > 1 and sys.platform.startswith("linux"):
                    todo.append(("parallel", cores, 0))
                got: dict[tuple, list] = {v: [] for v in todo}
                for r in range(rounds):
                    order = todo[r % len(todo):] + todo[: r % len(todo)]
                    for v in order:
                        if v[0] == "limit":
                            got[v].append(_time_decode(decode, files, size, max(timed_images // 2, len(files))))
                        elif v[0] == "parallel":
                            got[v].append(_time_decode_parallel(decode, files, size,
                                                                max(timed_images // 2, len(files)), cores))
                        else:
                            got[v].append(pipeline_once(files, labels, size, path, v[1], v[2], timed_images))
                limit_rates = got[("limit", 0, 0)]
                entry = {"size": list(size), "decode_path": path,
                         "images_per_s": round(_median(limit_rates), 1), "rounds": limit_rates}
                parallel_rates = got.get(("parallel", cores, 0))
                if parallel_rates:
                    entry.update({
                        "parallel_processes": cores,
                        "parallel_images_per_s": round(_median(parallel_rates), 1),
                        "parallel_scaling": round(_median([par / (cores * lim) for par, lim
                                                           in zip(parallel_rates, limit_rates)]), 3),
                        "parallel_rounds": parallel_rates,
                    })
                limits.append(entry)
                for v in todo[1:]:
                    kind, w, b = v
                    if kind != "pipeline":
                        continue
                    parallel = min(max(w, 1), cores)
                    rates = [rate for rate, _ in got[v]]
                    row = {
                        "size": list(size), "decode_path": path, "num_workers": w, "loader_batch": b,
                        "images_per_s": round(_median(rates), 1),
                        "cpu_ms_per_image": round(_median([c for _, c in got[v]]), 3),
                        "limit_images_per_s": round(parallel * _median(limit_rates), 1),
                        "ratio_to_limit": round(_median([rate / (parallel * lim)
                                                         for rate, lim in zip(rates, limit_rates)]), 3),
                    }
                    if parallel_rates and parallel == cores:
                        row["parallel_limit_images_per_s"] = round(_median(parallel_rates), 1)
                        row["ratio_to_parallel_limit"] = round(_median([rate / par for rate, par
                                                                        in zip(rates, parallel_rates)]), 3)
                    rows.append(row)
    finally:
        torch.set_num_threads(previous)
    return {"limit": limits, "pipeline": rows, "torch_threads": 1, "cores": cores}


# --- per-stage time ------------------------------------------------------------------------------


def stage_times(files, labels, size=(120, 160), decode_path: str = "pillow", batch: int = 8,
                repeats: int = 3) -> dict[str, float]:
    """Milliseconds per image of each stage of the pipeline, in this process, 1 thread, warm:
    read the file, decode (full, or draft for ``pillow-draft``), resize, mask, ToTensor, collate (as
    :func:`_collate_for` says).
    The minimum over ``repeats`` passes (the least disturbed one)."""
    import io

    import numpy as np
    import torch
    from PIL import Image
    from torch.utils.data import default_collate

    from ..transforms import ConvertGroundTruth, Rescale, ToTensor

    collate = _collate_for(decode_path) or default_collate
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        best: dict[str, float] = {}
        rescale, mask, to_tensor = Rescale(tuple(size)), ConvertGroundTruth(), ToTensor()
        for _ in range(repeats + 1):  # the first pass warms up and is not counted
            t = dict.fromkeys(("read", "decode", "resize", "mask", "to_tensor", "collate"), 0.0)
            done = []
            for f, boxes in zip(files, labels):
                c0 = time.perf_counter()
                with open(f, "rb") as fh:
                    data = fh.read()
                c1 = time.perf_counter()
                with Image.open(io.BytesIO(data)) as im:
                    if decode_path == "pillow-draft":
                        im.draft("RGB", (size[1], size[0]))
                    im.load()
                    image = np.array(im.convert("RGB") if im.mode != "RGB" else im)  # as FaceDataset: a writable array
                c2 = time.perf_counter()
                s = rescale({"image": image, "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4)})
                c3 = time.perf_counter()
                s = mask(s)
                c4 = time.perf_counter()
                s = to_tensor(s)
                c5 = time.perf_counter()
                for k, a, b in (("read", c0, c1), ("decode", c1, c2), ("resize", c2, c3), ("mask", c3, c4),
                                ("to_tensor", c4, c5)):
                    t[k] += b - a
                done.append(s)
            for i in range(0, len(done), batch):
                c0 = time.perf_counter()
                collate(done[i:i + batch])
                t["collate"] += time.perf_counter() - c0
            per_image = {k: 1000 * v / len(files) for k, v in t.items()}
            if "_warm" not in best:
                best["_warm"] = 1.0
                continue
            for k, v in per_image.items():
                best[k] = min(best.get(k, float("inf")), v)
        best.pop("_warm")
        return {k: round(v, 4) for k, v in best.items()}
    finally:
        torch.set_num_threads(previous)


class _ReadySamples:
    """A dataset of training samples made once (``image`` 3xHxW uint8, ``mask`` 1xHxW uint8, ``name``):
    a loader over it does everything but reading and decoding, which isolates the hand-over."""

    def __init__(self, samples: Sequence[dict], n: int) -> None:
        self.samples, self.n = list(samples), int(n)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        s = self.samples[i % len(self.samples)]
        return {"image": s["image"].clone(), "mask": s["mask"].clone(), "name": s["name"]}


def _process_cpu(proc) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def transport_costs(files, labels, size=(120, 160), workers: int = 2, loader_batches: Sequence[int] = (8, 64),
                    images: int = 6400, rounds: int = 3) -> list[dict[str, Any]]:
    """CPU microseconds per image that handing batches from ``workers`` DataLoader workers to the main
    process costs, with the decoding taken out: the workers collate ready-made training samples
    (``collate_channels_last``, as the pipeline does: into a new shared-memory block per batch, the
    names pickled), the main process
    receives and maps each batch. Per loader batch size: the main process's CPU and the workers' CPU
    (minus the per-sample ``clone`` a dataset's own tensors need), medians of ``rounds`` alternated
    passes over ``images`` images. What is left of the gap between the 0-worker and the 2-worker
    pipeline rows. The first row collates in the main process (0 workers), for comparison."""
    import psutil
    import torch
    from torch.utils.data import DataLoader

    from ..collate import collate_channels_last

    dataset = _face_dataset(files, labels, size, "pillow")
    made = [dataset[i] for i in range(min(len(dataset), 16))]
    clone_us = _clone_cost(made)
    fork = "fork" if sys.platform.startswith("linux") else None
    # (workers, loader batch): the collation in the main process first (no hand-over), for comparison
    variants = [(0, max(loader_batches))] + [(workers, b) for b in loader_batches]
    got: dict[tuple[int, int], list[tuple[float, float]]] = {v: [] for v in variants}
    me = psutil.Process()
    for r in range(rounds):
        for w, b in (variants if r % 2 == 0 else list(reversed(variants))):
            loader = DataLoader(_ReadySamples(made, images + 8 * b), batch_size=b, num_workers=w,
                                persistent_workers=w > 0, multiprocessing_context=fork if w else None,
                                collate_fn=collate_channels_last)
            batches = iter(loader)
            for _ in range(2 * max(w, 1)):  # start-up and warm-up left out
                next(batches)
            kids = me.children()
            main0, kids0, count = _process_cpu(me), [_process_cpu(k) for k in kids], 0
            for batch in batches:
                count += len(batch["name"])
                if count >= images:
                    break
            main = 1e6 * (_process_cpu(me) - main0) / count
            work = 1e6 * sum(_process_cpu(k) - c for k, c in zip(kids, kids0)) / count
            got[(w, b)].append((main - clone_us, 0.0) if w == 0 else (main, work - clone_us))
            del batches, loader
    return [{"num_workers": w, "loader_batch": b, "size": list(size),
             "main_cpu_us_per_image": round(_median([m for m, _ in v]), 1),
             "worker_cpu_us_per_image": round(_median([k for _, k in v]), 1),
             "torch_threads": torch.get_num_threads()} for (w, b), v in got.items()]


def _clone_cost(samples: Sequence[dict], repeats: int = 200) -> float:
    """Microseconds per sample of the two clones ``_ReadySamples`` makes (subtracted from the workers' CPU)."""
    t0 = time.perf_counter()
    for _ in range(repeats):
        for s in samples:
            s["image"].clone(), s["mask"].clone()
    return 1e6 * (time.perf_counter() - t0) / (repeats * len(samples))


def format_transport(rows: list[dict[str, Any]], command: str) -> str:
    lines = [f"Command: `{command}`",
             "Handing batches from the workers to the main process, decoding taken out (CPU per image):",
             f"  {'workers':>7} {'loader batch':>12} {'main process':>13} {'workers':>9}"]
    for r in rows:
        lines.append(f"  {r['num_workers']:>7} {r['loader_batch']:>12} {r['main_cpu_us_per_image']:>10.1f} us "
                     f"{r['worker_cpu_us_per_image']:>6.1f} us")
    return "\n".join(lines)


def _transport_command(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)
    files, labels = sample_files(64)
    rows = transport_costs(files, labels, workers=args.workers, images=args.images, rounds=args.rounds)
    command = "python -m helpers.lab.bench " + " ".join(args.argv or ["transport"])
    print(format_transport(rows, command))
    if args.json:
        write_json(args.json, {"command": command, "machine": machine_info(), "transport": rows})
    return 0


def masks_identical(files, labels, size) -> bool | None:
    """Whether draft decoding leaves every mask and box as the full decode makes them (None: no draft)."""
    import numpy as np

    if not draft_supported():
        return None
    full = _face_dataset(files, labels, size, "pillow")
    draft = _face_dataset(files, labels, size, "pillow-draft")
    for i in range(len(full)):
        a, b = full[i], draft[i]
        if not np.array_equal(np.asarray(a["mask"]), np.asarray(b["mask"])):
            return False
        if tuple(a["image"].shape) != tuple(b["image"].shape):
            return False
    return True


# --- everything, and the JSON ----------------------------------------------------------------------


def sample_files(n: int, data_dir: str | Path = DATA_SAMPLE) -> tuple[list[str], list]:
    """The first ``n`` images of ``data_dir`` (default data_sample: 480x640 JPEGs) and their boxes."""
    from ..datafiles import read_file_lists

    lists = read_file_lists(data_dir, test_fraction=0.0)
    return lists.files_train[:n], lists.labels_train[:n]


def run_all(size: str = "full", json_path: str | Path | None = None, parts: Sequence[str] = ("speed", "decode", "memory", "index"),
            work_dir: str | Path | None = None, data_dir: str | Path = DATA_SAMPLE, command: str | None = None,
            progress: bool = True) -> dict[str, Any]:
    """Run the benchmark parts of configuration ``size`` (:data:`SIZES`) and return (and write to
    ``json_path``) one dict: ``machine``, ``contention``/``contended``, ``limit``, ``pipeline``,
    ``decode_paths``, ``masks_identical``, ``stages``, ``memory``, ``index_memory``."""
    import platform

    from ..project import OUTPUTS

    cfg = SIZES[size]
    work_dir = Path(work_dir) if work_dir is not None else OUTPUTS / "bench"
    say = (lambda *a: print(*a, flush=True)) if progress else (lambda *a: None)
    files, labels = sample_files(cfg["n_images"], data_dir)
    result: dict[str, Any] = {
        "command": command or f"python -m helpers.lab.bench all --size {size}",
        "size": size, "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "host": platform.node(),
        "machine": machine_info(), "n_images": len(files), "data_dir": relative(data_dir),
        "draft_decoding": draft_supported(),
    }
    started = time.perf_counter()
    say("machine:", result["machine"]["cores"], "cores,", result["machine"]["cpu_model"])
    probes = [contention_probe(result["machine"]["cores"])]
    if "decode" in parts:
        say("decode paths ...")
        result["decode_paths"] = run_decode(files, cfg["sizes"], DECODE_PATHS, cfg["decode_images"], cfg["rounds"])
        result["masks_identical"] = {f"{h}x{w}": masks_identical(files, labels, (h, w)) for h, w in cfg["sizes"]}
        result["stages"] = [{"size": list(s), "decode_path": p, "ms_per_image": stage_times(files, labels, s, p)}
                            for s in cfg["sizes"] for p in PIPELINE_PATHS]
    if "speed" in parts:
        say("pipeline against the limit ...")
        speed = run_speed(files, labels, cfg["sizes"], PIPELINE_PATHS, cfg["workers"], cfg["loader_batches"],
                          cfg["rounds"], cfg["timed_images"], cfg.get("variants"))
        result["limit"], result["pipeline"] = speed["limit"], speed["pipeline"]
        result["torch_threads"] = speed["torch_threads"]
        probes.append(contention_probe(result["machine"]["cores"]))
    if "memory" in parts:
        say(f"memory: {', '.join(f'{n:,}' for n in cfg['memory_entries'])} entries ...")
        result["memory"] = run_memory_growth(work_dir / "memory", cfg["memory_entries"], cfg["memory_sources"],
                                             storages=cfg["memory_storages"], size=TRAINING_SIZES[0],
                                             loader_batch=cfg["memory_loader_batch"], max_batches=cfg["memory_batches"],
                                             start_methods=cfg["memory_start_methods"], progress=say)
    if "index" in parts:
        say(f"index alone: {', '.join(f'{n:,}' for n in cfg['index_entries'])} entries ...")
        result["index_memory"] = run_index_memory(cfg["index_entries"],
                                                  cfg["index_start_methods"] or [default_start_method()],
                                                  workers=2, batch_size=1000, progress=say)
    probes.append(contention_probe(result["machine"]["cores"]))
    result["contention"] = probes
    result["contended"] = any(p["contended"] for p in probes)
    if result["contended"]:
        print(f"WARNING: another load shares the {result['machine']['cores']} cores this benchmark counts (a "
              f"CPU-bound probe ran {max(p['slowdown'] for p in probes):.2f}x slower in parallel): the result is "
              "marked contended; rerun on an idle machine for figures", file=sys.stderr, flush=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    if json_path is not None:
        write_json(json_path, result)
    return result


#: The fields a complete result has (tests/test_bench.py checks them).
REQUIRED_FIELDS = {
    "machine": ("cores", "cpu_model", "torch", "torchvision", "pillow"),
    "limit": ("size", "decode_path", "images_per_s"),
    "pipeline": ("num_workers", "loader_batch", "images_per_s", "cpu_ms_per_image", "ratio_to_limit"),
    "decode_paths": ("name", "images_per_s", "ratio_to_pillow", "mean_abs_diff"),
    "memory": ("entries", "storage", "total_pss_mb", "ratio_to_1k"),
}


def missing_fields(result: dict[str, Any]) -> list[str]:
    """Fields of :data:`REQUIRED_FIELDS` (and ``contended``) that ``result`` lacks."""
    missing = [] if "contended" in result else ["contended"]
    for key, fields in REQUIRED_FIELDS.items():
        value = result.get(key)
        if value is None or (isinstance(value, list) and not value):
            missing.append(key)
            continue
        for item in value if isinstance(value, list) else [value]:
            missing += [f"{key}.{f}" for f in fields if f not in item]
    return sorted(set(missing))


# --- the markdown report -------------------------------------------------------------------------


def _fmt(v: Any, spec: str = ".1f") -> str:
    return "–" if v is None else format(v, spec)


def _cpu_ratio_lines(pipeline: list[dict[str, Any]]) -> list[str]:
    """CPU per image of the default loader (draft decoding, 2 workers, the largest loader batch) against
    the previous one (full decode, 2 workers, batches of 8), per size: the issue's "<= 0.35x" figure."""
    lines = []
    for size in sorted({tuple(r["size"]) for r in pipeline}):
        rows = [r for r in pipeline if tuple(r["size"]) == size and r["num_workers"] == 2]
        old = [r for r in rows if r["decode_path"] == "pillow" and r["loader_batch"] == 8]
        new = [r for r in rows if r["decode_path"] == "pillow-draft"]
        if old and new and old[0]["cpu_ms_per_image"]:
            best = max(new, key=lambda r: r["loader_batch"])
            lines.append(f"CPU per image at {'x'.join(map(str, size))}, draft decoding with loader batches of "
                         f"{best['loader_batch']} vs full decode with batches of 8 (2 workers each): "
                         f"{best['cpu_ms_per_image'] / old[0]['cpu_ms_per_image']:.2f}x")
    return lines + [""] if lines else []


def _md_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A markdown table's lines: ``columns`` are header names, a trailing ``:`` right-aligns one
    (``"images/s:"``); each row is its cells, already formatted."""
    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(map(str, cells)) + " |"

    rule = "|" + "|".join("---:" if c.endswith(":") else "---" for c in columns) + "|"
    return [line([c.rstrip(":") for c in columns]), rule] + [line(row) for row in rows]


def render_report(result: dict[str, Any]) -> str:
    """The tables of docs/benchmarks.md (markdown) from one :func:`run_all` result."""
    m = result["machine"]
    out = [f"Command: `{result['command']}` ({result.get('date_utc', '?')} UTC, {result.get('seconds', '?')} s)", "",
           f"Machine: {m['cores']} usable cores ({m['cpu_model']}), {m.get('memory_gib', '?')} GiB; "
           f"Python {m.get('python')}, torch {m['torch']}, torchvision {m['torchvision']}, Pillow {m['pillow']} "
           f"(libjpeg-turbo {m.get('libjpeg_turbo')}); {result.get('n_images')} images of {result.get('data_dir')}.", ""]
    slow = ", ".join(f"{p['slowdown']:.2f}x" for p in result.get("contention", []))
    if result.get("contended"):
        out += [f"**WARNING: contended** — a CPU-bound probe ran {slow} slower in {m['cores']} processes than in 1 "
                "(another load on the machine): these figures are not those of an idle machine.", ""]
    else:
        out += [f"Cores checked free: a CPU-bound probe in {m['cores']} processes vs 1: {slow}.", ""]
    if result.get("decode_paths"):
        rows = []
        for r in result["decode_paths"]:
            size = "x".join(map(str, r["size"]))
            if not r.get("available", True):
                rows.append([size, r["name"], "–", "–", "–", "–", f"unavailable: {r['reason']}"])
            else:
                rows.append([size, r["name"], _fmt(r["images_per_s"]), f"{_fmt(r['ratio_to_pillow'], '.2f')}x",
                             _fmt(r["mean_abs_diff"], ".2f"), r["max_abs_diff"], r["note"]])
        out += ["### Decode paths (decode + resize to the training size, 1 thread, warm)", ""]
        out += _md_table(["size", "path", "images/s:", "vs pillow:", "mean abs diff:", "max abs diff:", "note"], rows)
        masks = result.get("masks_identical") or {}
        out += ["", "Masks with draft decoding identical to the full decode's: "
                + ", ".join(f"{k}: {v}" for k, v in masks.items()), ""]
    if result.get("pipeline"):
        out += ["### The pipeline against the limit", ""]
        out += _md_table(
            ["size", "decode", "workers:", "loader batch:", "images/s:", "CPU ms/image:", "limit:", "/ limit:",
             "/ parallel limit:"],
            [["x".join(map(str, r["size"])), r["decode_path"], r["num_workers"], r["loader_batch"],
              _fmt(r["images_per_s"]), _fmt(r["cpu_ms_per_image"], ".2f"), _fmt(r["limit_images_per_s"]),
              _fmt(r["ratio_to_limit"], ".2f"), _fmt(r.get("ratio_to_parallel_limit"), ".2f")]
             for r in result["pipeline"]])
        out += ["", "limit = min(max(workers, 1), cores) x the warm single-thread decode + resize rate of the same "
                "decode path, timed in the same rounds: "
                + "; ".join(f"{'x'.join(map(str, r['size']))} {r['decode_path']} {_fmt(r['images_per_s'])}/s"
                            for r in result.get("limit", [])), ""]
        parallel = [r for r in result.get("limit", []) if r.get("parallel_images_per_s")]
        if parallel:
            n = parallel[0]["parallel_processes"]
            out += [f"parallel limit = {n} processes doing the limit's work at the same time, in the same rounds "
                    f"(their rate, and its ratio to {n} x the single-thread limit): "
                    + "; ".join(f"{'x'.join(map(str, r['size']))} {r['decode_path']} {_fmt(r['parallel_images_per_s'])}/s "
                                f"({_fmt(r['parallel_scaling'], '.2f')})" for r in parallel), ""]
        out += _cpu_ratio_lines(result["pipeline"])
    if result.get("memory"):
        out += ["### Memory as the data set grows (FaceDataset + transforms + DataLoader, 2 workers)", ""]
        out += _md_table(
            ["start method", "entries:", "storage", "batches:", "full pass", "single PSS MiB:", "main+workers PSS MiB:",
             "peak MiB:", "vs smallest:", "heap only (anon PSS) MiB:", "JPEG MiB read:", "read / peak:"],
            [[r.get("start_method") or "fork", f"{r['entries']:,}", r["storage"], r["batches"],
              "yes" if r["full_pass"] else "no", r["single_pss_mb"],
              r["total_pss_mb"], r["peak_total_pss_mb"], f"{r['ratio_to_1k']:.3f}",
              f"{_fmt(r.get('single_anon_pss_mb'))} -> {_fmt(r.get('total_anon_pss_mb'))}",
              f"{r['jpeg_bytes_read'] / MiB:.1f}", f"{r['bytes_read_over_peak_pss']:.2f}"]
             for r in result["memory"]])
        storages = {r["storage"] for r in result["memory"]}
        target = TRAINING_STORAGE if TRAINING_STORAGE in storages else "array"
        largest = max(r["entries"] for r in result["memory"])
        out.append("")
        for a in (r for r in result["memory"] if r["storage"] == target and r["entries"] == largest):
            verdict = "PASS" if a["ratio_to_1k"] <= GROWTH_TARGET else "FAIL"
            out.append(f"Target: {target}, {a.get('start_method') or 'fork'}, {a['entries']:,} entries vs the smallest "
                       f"index: {a['ratio_to_1k']:.3f} <= {GROWTH_TARGET:.2f} {verdict}")
        a = next(r for r in result["memory"] if r["storage"] == target)
        out += ["", f"Decoded at {'x'.join(map(str, a['size']))}{' (draft)' if a.get('decode_size') else ' (full decode)'}; "
                f"the {target} loader built by {a.get('built_by', '?')}, the others by the same construction with "
                f"their storage; the training split ({a.get('train_entries', '?'):,} of {a['entries']:,} entries) is "
                "read.", ""]
    if result.get("index_memory"):
        out += ["### The index alone, under each start method (2 workers)", "", "```",
                format_index_memory(result["index_memory"]), "```", ""]
    return "\n".join(out)


# --- command line --------------------------------------------------------------------------------


def _run_command(args: argparse.Namespace) -> int:
    import shlex

    size = "tiny" if args.tiny else args.size
    parts = {"all": ("speed", "decode", "memory", "index"), "growth": ("memory",)}.get(args.command, (args.command,))
    command = "python -m helpers.lab.bench " + " ".join(shlex.quote(a) for a in (args.argv or []))
    result = run_all(size, args.json, parts, work_dir=args.work_dir, command=command.strip(), progress=not args.quiet)
    print(render_report(result))
    if args.json:
        print(f"\nwrote {relative(args.json)}")
    return 0


def _report_command(args: argparse.Namespace) -> int:
    import json

    result = json.loads(Path(args.json).read_text())
    print(render_report(result))
    return 0


def _index_command(args: argparse.Namespace) -> int:
    results = run_memory(args.entries, args.workers, args.batch_size, args.seed, start_method=args.start_method)
    print(format_memory(results))
    return 0 if results["passed"] else 1


def _start_methods_command(args: argparse.Namespace) -> int:
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    result = run_index_memory(args.entries, args.start_methods, args.kinds, args.workers, args.batch_size, args.seed,
                              progress=say)
    command = "python -m helpers.lab.bench " + " ".join(args.argv or [])
    result.update(command=command.strip(), date_utc=time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
                  machine=machine_info())
    m = result["machine"]
    print(f"Command: `{result['command']}` ({result['date_utc']} UTC); {m['cores']} cores ({m['cpu_model']}), "
          f"Python {m.get('python')}, torch {m['torch']}")
    print(format_index_memory(result))
    if args.json:
        write_json(args.json, result)
        print(f"\nwrote {relative(args.json)}")
    return 0 if all(met for *_, met in index_memory_targets(result["summary"])) else 1


def _memory_child_command(args: argparse.Namespace) -> int:
    import json

    result = _memory_here(args.folder, args.storage, tuple(args.size), args.workers, args.loader_batch,
                          args.max_batches, args.draft, args.start_method)
    print(_MEMORY_MARK + json.dumps(result), flush=True)
    return 0


# --- training time: the new loader against the reference one, in the training loop itself ----------


def run_training_time(config_name: str = "quick", epochs: int = 2, rounds: int = 2,
                      threads: Sequence[int | None] = (None,), log=print) -> dict[str, Any]:
    """Seconds of ``train()``'s epoch loop (training steps + waiting for batches; validation excluded)
    with the reference loader (full decode + ``Rescale``, ``default_collate``'s batches of ``batch_size``)
    and with ``build_loaders``' default (reduced decode, channels_last batches, loader batches of 64
    split by ``SplitBatches``), each
    with every torch thread count in ``threads`` (``None``: ``train``'s default,
    ``threads_beside_workers``), alternated ``rounds`` times in one process (the order rotated and
    reversed from round to round), ``epochs`` epochs each; medians per variant, and each variant's
    ratio to the reference loader at the default thread count. Same data, split, seed and model."""
    import statistics

    from ..data_path import build_loaders
    from ..loss import face_pixel_fraction
    from ..runconfig import pick_config
    from ..synth import ensure_dataset
    from ..train import threads_beside_workers, train

    config = pick_config(config_name, epochs=epochs)
    if config.data_folder is None:
        ensure_dataset(config.data_dir, config.n_images, seed=config.data_seed, progress=False)
    loader_kinds = {
        "reference (full decode, batches of 8)": {"reduced_decode": False, "channels_last": False,
                                                  "loader_batch_size": None},
        "default (reduced decode, 64 split to 8)": {},
    }
    loaders = {name: build_loaders(config, "cpu", **kw) for name, kw in loader_kinds.items()}
    rule = threads_beside_workers(config.num_workers)
    counts = list(dict.fromkeys(rule if t is None else int(t) for t in threads))
    variants = [(kind, t) for t in counts for kind in loader_kinds]
    face_fraction = face_pixel_fraction(loaders[next(iter(loader_kinds))].train)
    seconds: dict[tuple[str, int], list[float]] = {v: [] for v in variants}
    for r in range(rounds):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        for kind, t in (order if r % 2 == 0 else order[::-1]):  # no variant always first or last
            result = train(config, loaders=loaders[kind], device="cpu", face_fraction=face_fraction,
                           threads=t, progress=False, log=None)
            seconds[(kind, t)].append(sum(result.history["seconds"]))
            if log:
                log(f"  round {r + 1}: {kind}, {t} thread(s): {seconds[(kind, t)][-1]:.1f} s")
    reference = statistics.median(seconds[(next(iter(loader_kinds)), rule)])
    rows = [{"loader": kind, "threads": t, "default_threads": t == rule, "seconds": seconds[(kind, t)],
             "median_seconds": statistics.median(seconds[(kind, t)]),
             "ratio_to_reference": statistics.median(seconds[(kind, t)]) / reference} for kind, t in variants]
    new = next(row for row in rows if row["default_threads"] and row["loader"].startswith("default"))
    thread_args = " ".join("default" if t is None else str(t) for t in threads)
    return {"command": f"python -m helpers.lab.bench training --config {config_name} --epochs {epochs} "
                       f"--rounds {rounds}" + (f" --threads {thread_args}" if list(threads) != [None] else ""),
            "config": config.name, "epochs": epochs, "rounds": rounds, "machine": machine_info(),
            "num_workers": config.num_workers, "default_threads": rule, "rows": rows,
            "ratio_new_to_reference": new["ratio_to_reference"]}


def format_training_time(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"Command: `{result['command']}`; {m['cores']} cores ({m['cpu_model']}), torch {m['torch']}",
             f"train() epoch loop, {result['config']} config, {result['num_workers']} loader workers, "
             f"{result['epochs']} epochs, median of {result['rounds']} alternated rounds "
             f"(train's default: {result['default_threads']} torch thread(s)):",
             f"  {'loader':<42} {'threads':>7} {'seconds':>8} {'vs reference':>13}"]
    for row in result["rows"]:
        mark = " (default)" if row["default_threads"] else ""
        lines.append(f"  {row['loader']:<42} {row['threads']:>7} {row['median_seconds']:8.1f} "
                     f"{row['ratio_to_reference']:12.2f}x{mark}")
    lines.append(f"  new / reference, default threads: {result['ratio_new_to_reference']:.2f}")
    return "\n".join(lines)


def _training_command(args: argparse.Namespace) -> int:
    threads = [None if t == "default" else int(t) for t in args.threads]
    result = run_training_time(args.config, args.epochs, args.rounds, threads=threads)
    print(format_training_time(result))
    if args.json:
        write_json(args.json, result)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m helpers.lab.bench`` parser: one subcommand per benchmark."""
    parser = argparse.ArgumentParser(prog="python -m helpers.lab.bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    helps = {"all": "everything: decode paths, pipeline vs limit, memory growth, the index alone",
             "speed": "pipeline images/s against the warm decode + resize limit",
             "decode": "decode paths side by side: speed and pixel difference",
             "growth": "memory as the data set grows: total PSS of main + 2 workers, 1k vs 100k entries, lists vs "
                       "arrays vs shared arrays (full size: under fork, forkserver and spawn)"}
    for name, text in helps.items():
        p = sub.add_parser(name, help=text)
        p.add_argument("--size", choices=sorted(SIZES), default="full", help="configuration (default full)")
        p.add_argument("--tiny", action="store_true", help="same as --size tiny: seconds, for the tests")
        p.add_argument("--json", type=Path, default=None, help="write the result to this JSON file")
        p.add_argument("--work-dir", type=Path, default=None, help="where the memory data folders go (default outputs/bench)")
        p.add_argument("--quiet", action="store_true", help="no progress lines")
        p.set_defaults(func=_run_command)

    report = sub.add_parser("report", help="a JSON result as the markdown tables of docs/benchmarks.md")
    report.add_argument("--json", type=Path, required=True)
    report.set_defaults(func=_report_command)

    index = sub.add_parser("memory", help="the index alone with DataLoader workers: Python lists vs NumPy arrays")
    index.add_argument("--entries", type=int, default=1_000_000, help="images in the synthetic index (default 1,000,000)")
    index.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    index.add_argument("--batch-size", type=int, default=1000, help="DataLoader batch size (default 1000)")
    index.add_argument("--seed", type=int, default=0)
    index.add_argument("--start-method", choices=START_METHODS, default=None,
                       help="how the workers start (default fork on Linux, else the platform's)")
    index.set_defaults(func=_index_command)

    methods = sub.add_parser("start-methods", help="the index alone under fork, forkserver and spawn, "
                             "lists / arrays / shared arrays, 1k, 100k and 1M entries")
    methods.add_argument("--entries", type=int, nargs="+", default=list(INDEX_ENTRIES))
    methods.add_argument("--start-methods", nargs="+", choices=START_METHODS, default=list(START_METHODS))
    methods.add_argument("--kinds", nargs="+", choices=("list", "array", "shared"), default=["list", "array", "shared"])
    methods.add_argument("--workers", type=int, default=2)
    methods.add_argument("--batch-size", type=int, default=1000)
    methods.add_argument("--seed", type=int, default=0)
    methods.add_argument("--json", type=Path, default=None)
    methods.add_argument("--quiet", action="store_true")
    methods.set_defaults(func=_start_methods_command)

    training = sub.add_parser("training", help="train()'s epoch loop: the default loader against the reference one")
    training.add_argument("--config", choices=("quick", "full"), default="quick")
    training.add_argument("--epochs", type=int, default=2)
    training.add_argument("--rounds", type=int, default=2)
    training.add_argument("--threads", nargs="+", default=["default"],
                          help="torch thread counts to time, 'default' = train's rule (threads_beside_workers)")
    training.add_argument("--json", type=Path, default=None)
    training.set_defaults(func=_training_command)

    transport = sub.add_parser("transport", help="the cost of handing batches from workers to the main process")
    transport.add_argument("--workers", type=int, default=2)
    transport.add_argument("--images", type=int, default=6400)
    transport.add_argument("--rounds", type=int, default=3)
    transport.add_argument("--json", type=Path, default=None)
    transport.set_defaults(func=_transport_command)

    child = sub.add_parser("memory-child")  # internal: one memory measurement in a fresh process
    child.add_argument("--folder", required=True)
    child.add_argument("--storage", choices=("list", "array", "shared"), required=True)
    child.add_argument("--start-method", choices=START_METHODS, default=None)
    child.add_argument("--size", type=int, nargs=2, default=(120, 160))
    child.add_argument("--workers", type=int, default=2)
    child.add_argument("--loader-batch", type=int, default=64)
    child.add_argument("--max-batches", type=int, default=None)
    child.add_argument("--draft", action="store_true")
    child.set_defaults(func=_memory_child_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the subcommand named on the command line; the exit code is 1 when a target is missed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
