"""The speed part of the benchmark (``python -m helpers.lab.bench speed``): the input pipeline's
images/s against the decode limit.

:func:`run_speed` times, in rotated rounds, the limit (warm single-thread decode + resize to the
training size, per decode path of :data:`PIPELINE_PATHS`), the **parallel limit** (one process per core
doing the same at once, :func:`_time_decode_parallel`) and every pipeline variant (FaceDataset +
default_pipeline + DataLoader, ``num_workers`` x loader batch, :func:`pipeline_once`): images/s, CPU ms
per image (main process and workers, :func:`_tree_cpu_seconds`), and the ratio to the limit.

Notebooks: 06 uses it (through :mod:`helpers.lab.bench`); docs/benchmarks.md quotes its tables.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Sequence

from .bench_decode import (TRAINING_SIZES, _collate_for, _face_dataset, _time_decode, decoder_availability,
                           draft_supported)
from .bench_machine import _median, usable_cpus


#: Decode paths the pipeline (FaceDataset) can use: full decode, or draft decoding (``decode_size``).
PIPELINE_PATHS = ("pillow", "pillow-draft")


# --- the pipeline against the limit --------------------------------------------------------------


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


# --- the parallel limit --------------------------------------------------------------------------


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


# --- the pipeline and the limits, alternated -----------------------------------------------------


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
