"""The memory part of the benchmark (``python -m helpers.lab.bench memory`` and ``growth``): what main
+ 2 DataLoader workers hold, under each start method (``fork``, ``forkserver``, ``spawn``).

Two measurements, each run in a fresh Python process: the **index alone** (a synthetic index of
1,000 to 1,000,000 entries as Python lists, NumPy arrays, or arrays in shared memory, read by an
index-only Dataset: :func:`run_index_memory`, and :func:`run_memory`, appendix 01a's lists-versus-arrays
table), and the **training loader as the data set grows** (1,000 and 100,000 entries, decoding real
JPEGs: :func:`run_memory_growth`). Memory is PSS summed over the process tree (the main process, its
workers, and under forkserver/spawn the forkserver and the resource tracker).

Notebooks: 01 (its appendix 01a) and 06 use it.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .memory import KINDS, START_METHODS, default_start_method, measure_index_memory

MiB = 2**20
#: The array-based index passes when main + workers together use at most this much more than the
#: single process did before the workers started (fork: the pages are shared).
ARRAY_TOLERANCE = 0.10
#: The memory target: total PSS of main + workers with 100x the entries, the training path's storage.
GROWTH_TARGET = 1.10
#: The index is "held once" when (PSS at the largest index - PSS at the smallest) / index bytes is at
#: most this: 1.0 is one copy for main and all workers together; lists and plain arrays under
#: forkserver or spawn reach about 1 + the number of workers.
HELD_ONCE_TARGET = 1.25
#: Under forkserver, main + 2 workers at the smallest index at most this many times the same under fork.
FORKSERVER_BASE_TARGET = 2.0
#: The storage build_loaders uses (arrays in shared memory).
TRAINING_STORAGE = "shared"
#: Sizes of the index-alone measurement across start methods (the benchmark's ``all``).
INDEX_ENTRIES = (1_000, 100_000, 1_000_000)


# --- the index alone -----------------------------------------------------------------------------

def run_memory(entries: int = 1_000_000, workers: int = 2, batch_size: int = 1000, seed: int = 0,
               start_method: str | None = None) -> dict[str, Any]:
    """Measure the ``list`` and the ``array`` index (each in a fresh process, workers started by
    ``start_method``, default fork on Linux) and compare them.

    Returns ``{'list': ..., 'array': ..., 'growth_ratio': ..., 'array_ratio': ..., 'passed': ...}``
    where each kind's dict is :func:`helpers.lab.memory.measure_index_memory`'s result plus ``ratio``
    (total / single) and ``growth_bytes`` (total - single); ``growth_ratio`` is list growth over array
    growth (``anon_growth_ratio``: the same for anonymous pages only, None off Linux) and ``passed``
    says whether the array total lies within :data:`ARRAY_TOLERANCE` of its single-process figure.
    """
    results: dict[str, Any] = {}
    for kind in ("list", "array"):
        r = measure_index_memory(kind, entries, num_workers=workers, batch_size=batch_size, seed=seed,
                                 start_method=start_method)
        r["ratio"] = r["total_bytes"] / r["single_bytes"]
        r["growth_bytes"] = r["total_bytes"] - r["single_bytes"]
        results[kind] = r
    if results["list"]["checksum"] != results["array"]["checksum"]:
        raise RuntimeError("the list and the array index returned different items: they do not hold the same index")
    array_growth = results["array"]["growth_bytes"]
    # Array growth can be ~0 or even negative (noise); compare against at least 1 MiB.
    results["growth_ratio"] = results["list"]["growth_bytes"] / max(array_growth, MiB)
    results["anon_growth_ratio"] = None
    if all(results[k]["single_anon_bytes"] is not None for k in ("list", "array")):
        growth = {k: results[k]["total_anon_bytes"] - results[k]["single_anon_bytes"] for k in ("list", "array")}
        results["anon_growth_ratio"] = growth["list"] / max(growth["array"], MiB)
    results["array_ratio"] = results["array"]["ratio"]
    results["passed"] = results["array_ratio"] <= 1 + ARRAY_TOLERANCE
    return results


def format_memory(results: dict[str, Any]) -> str:
    """The table :func:`run_memory`'s results print as (MiB, metric named in the header)."""
    a = results["array"]
    metric = a["metric"].upper()
    lines = [
        f"Index of {a['n_entries']:,} entries; {a['num_workers']} workers started by "
        f"{a['start_method']!r}; batch size {a['batch_size']}; memory = {metric} in MiB",
        f"{'kind':<6} {'index':>8} {'single':>8} {'main+workers':>13} {'total/single':>13} "
        f"{'growth':>9}  private per worker",
    ]
    for kind in ("list", "array"):
        r = results[kind]
        private = ", ".join(f"{b / MiB:.1f}" for b in r["worker_private_bytes"]) or "-"
        lines.append(
            f"{kind:<6} {r['index_bytes'] / MiB:>8.1f} {r['single_bytes'] / MiB:>8.1f} "
            f"{r['total_bytes'] / MiB:>13.1f} {r['ratio']:>13.3f} {r['growth_bytes'] / MiB:>+9.1f}  {private}"
        )
    ratio_line = f"list growth / array growth: {results['growth_ratio']:.1f}x"
    if results.get("anon_growth_ratio") is not None:
        ratio_line += f" (heap only: {results['anon_growth_ratio']:.1f}x)"
    if all(results[k]["single_anon_bytes"] is not None for k in ("list", "array")):
        lines.append(
            "heap only (anonymous pages; leaves out the shared libraries, whose PSS share shifts "
            "with other processes):"
        )
        lines.append(f"{'kind':<6} {'single':>8} {'main+workers':>13} {'growth':>9}")
        for kind in ("list", "array"):
            r = results[kind]
            single, total = r["single_anon_bytes"], r["total_anon_bytes"]
            lines.append(
                f"{kind:<6} {single / MiB:>8.1f} {total / MiB:>13.1f} {(total - single) / MiB:>+9.1f}"
            )
    lines.append(ratio_line)
    verdict = "PASS" if results["passed"] else "FAIL"
    lines.append(
        f"target: array main+workers within {ARRAY_TOLERANCE:.0%} of single: "
        f"{results['array_ratio']:.3f} <= {1 + ARRAY_TOLERANCE:.2f}  {verdict}"
    )
    if a["metric"] != "pss":
        lines.append("note: PSS is not available on this OS; USS (private pages only) was summed instead")
    return "\n".join(lines)



def run_index_memory(entries: Sequence[int] = INDEX_ENTRIES, start_methods: Sequence[str] = START_METHODS,
                     kinds: Sequence[str] = KINDS, workers: int = 2, batch_size: int = 1000,
                     seed: int = 0, progress=None) -> dict[str, Any]:
    """The index alone, every kind of storage under every start method at every size, main + ``workers``
    workers, each measurement in a fresh process (:func:`helpers.lab.memory.measure_index_memory`).

    Returns ``{'rows': [...], 'summary': [...]}``: one row per measurement (``kind``, ``start_method``,
    ``n_entries``, ``index_mb``, ``single_mb``, ``total_mb``, ``anon_total_mb``, ``worker_mb``), and per
    (start method, kind) ``base_mb`` (main + workers at the smallest index: Python, torch and the
    start method's own processes, the base cost), ``held`` ((total at the largest - total at the
    smallest) / index bytes of the largest - the smallest: how many copies of the index the tree holds),
    ``ratio_100x`` (total at 100 x the smallest / at the smallest, where measured) and ``base_vs_fork``.
    """
    rows = []
    for method in start_methods:
        for kind in kinds:
            for n in entries:
                if progress:
                    progress(f"  index alone: {method}, {kind}, {n:,} entries")
                r = measure_index_memory(kind, n, num_workers=workers, batch_size=batch_size, seed=seed,
                                         start_method=method)
                rows.append({
                    "kind": kind, "start_method": method, "n_entries": n, "num_workers": workers,
                    "metric": r["metric"], "index_bytes": r["index_bytes"],
                    "index_mb": round(r["index_bytes"] / MiB, 1), "single_mb": round(r["single_bytes"] / MiB, 1),
                    "total_mb": round(r["total_bytes"] / MiB, 1),
                    "anon_total_mb": None if r["total_anon_bytes"] is None else round(r["total_anon_bytes"] / MiB, 1),
                    "heap_total_mb": None if r.get("total_heap_bytes") is None else round(r["total_heap_bytes"] / MiB, 1),
                    "main_mb": round(r["main_bytes"] / MiB, 1),
                    "worker_mb": [round(b / MiB, 1) for b in r["worker_bytes"]],
                    "checksum": r["checksum"], "pass_seconds": r["pass_seconds"],
                })
    return {"rows": rows, "summary": summarize_index_memory(rows)}


def summarize_index_memory(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (start method, kind) of :func:`run_index_memory`'s rows: the base cost, ``held``, ``ratio_100x``
    and ``base_vs_fork`` (see there). Raises when two kinds return different items at one size."""
    by = {(r["start_method"], r["kind"], r["n_entries"]): r for r in rows}
    sums = {}
    for r in rows:
        sums.setdefault(r["n_entries"], set()).add(r["checksum"])
    bad = [n for n, c in sums.items() if len(c) > 1]
    if bad:
        raise RuntimeError(f"the kinds of index returned different items at {bad} entries")
    out = []
    for method in dict.fromkeys(r["start_method"] for r in rows):
        for kind in dict.fromkeys(r["kind"] for r in rows):
            sizes = sorted(n for (m, k, n) in by if m == method and k == kind)
            if not sizes:
                continue
            small, large = by[(method, kind, sizes[0])], by[(method, kind, sizes[-1])]
            grown = large["index_bytes"] - small["index_bytes"]
            held = ((large["total_mb"] - small["total_mb"]) * MiB / grown) if grown > 0 else None
            heap = (large.get("heap_total_mb"), small.get("heap_total_mb"))
            held_heap = (heap[0] - heap[1]) * MiB / grown if grown > 0 and None not in heap else None
            x100 = by.get((method, kind, sizes[0] * 100))
            fork = by.get(("fork", kind, sizes[0]))
            out.append({
                "start_method": method, "kind": kind, "smallest": sizes[0], "largest": sizes[-1],
                "base_mb": small["total_mb"], "held": None if held is None else round(held, 2),
                "held_heap": None if held_heap is None else round(held_heap, 2),
                "ratio_100x": None if x100 is None else round(x100["total_mb"] / small["total_mb"], 3),
                "base_vs_fork": None if fork is None else round(small["total_mb"] / fork["total_mb"], 2),
                "largest_over_single": round(large["total_mb"] / large["single_mb"], 3),
            })
    return out


def index_memory_targets(summary: Sequence[dict[str, Any]], storage: str = TRAINING_STORAGE) -> list[tuple[str, float, float, bool]]:
    """The issue's targets on :func:`summarize_index_memory`'s figures for ``storage``: (what, figure,
    bound, met), one line per start method and target (``held``, ``ratio_100x``; forkserver's base vs fork)."""
    lines = []
    for s in summary:
        if s["kind"] != storage:
            continue
        m = s["start_method"]
        if s["held"] is not None:
            lines.append((f"{storage}, {m}: index held (PSS {s['largest']:,} - {s['smallest']:,}) / index bytes",
                          s["held"], HELD_ONCE_TARGET, s["held"] <= HELD_ONCE_TARGET))
        if s["ratio_100x"] is not None:
            lines.append((f"{storage}, {m}: PSS {100 * s['smallest']:,} / {s['smallest']:,} entries", s["ratio_100x"],
                          GROWTH_TARGET, s["ratio_100x"] <= GROWTH_TARGET))
        if m == "forkserver" and s["base_vs_fork"] is not None:
            lines.append((f"{storage}, forkserver: base ({s['smallest']:,} entries) / fork's", s["base_vs_fork"],
                          FORKSERVER_BASE_TARGET, s["base_vs_fork"] <= FORKSERVER_BASE_TARGET))
    return lines


def format_index_memory(result: dict[str, Any]) -> str:
    """:func:`run_index_memory`'s result as text tables: PSS of main + workers per size, the base cost
    apart from the index's, and the targets."""
    rows, summary = result["rows"], result["summary"]
    sizes = sorted({r["n_entries"] for r in rows})
    by = {(r["start_method"], r["kind"], r["n_entries"]): r for r in rows}
    w = rows[0]["num_workers"] if rows else 0
    lines = [f"The index alone: PSS of main + {w} workers in MiB (the tree: under forkserver and spawn it holds "
             "the forkserver and the resource tracker too), after a full pass",
             f"{'start method':<12} {'storage':<7} " + " ".join(f"{n:>10,}" for n in sizes)
             + f" {'index MiB':>10} {'base':>7} {'held':>6} {'(heap)':>6} {'x100':>6} {'vs fork':>8}"]
    summ = {(s["start_method"], s["kind"]): s for s in summary}
    for (m, k), s in summ.items():
        cells = " ".join(f"{by[(m, k, n)]['total_mb']:>10.1f}" if (m, k, n) in by else f"{'-':>10}" for n in sizes)
        big = by[(m, k, s["largest"])]
        lines.append(f"{m:<12} {k:<7} {cells} {big['index_mb']:>10.1f} {s['base_mb']:>7.1f} "
                     f"{_f(s['held'], '.2f'):>6} {_f(s.get('held_heap'), '.2f'):>6} {_f(s['ratio_100x'], '.3f'):>6} "
                     f"{_f(s['base_vs_fork'], '.2f'):>8}")
    lines.append(f"base = main + workers at {sizes[0]:,} entries (Python, torch and the start method's own processes); "
                 f"held = (PSS at {sizes[-1]:,} - at {sizes[0]:,}) / index bytes: 1 = the index held once "
                 "((heap): the same on anonymous + shared-memory pages only, without the shared libraries, whose "
                 "PSS share moves with the other processes on the machine); "
                 f"x100 = PSS at {100 * sizes[0]:,} / at {sizes[0]:,}; vs fork = base / fork's base")
    for what, value, bound, met in index_memory_targets(summary):
        lines.append(f"target: {what}: {value:.3f} <= {bound:.2f}  {'PASS' if met else 'FAIL'}")
    return "\n".join(lines)


def _f(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


# --- the training loader as the data set grows ---------------------------------------------------

_MEMORY_MARK = "BENCH-MEMORY-RESULT "


def prepare_memory_folder(root: str | Path, entries: int, sources: int, source_dir: str | Path | None = None) -> Path:
    """A data folder of ``entries`` images that costs the disk only ``sources`` JPEGs: ``root/src``
    holds ``sources`` generated scenes (helpers.synth), and ``root/n<entries>`` holds ``bbox.json``
    plus ``entries`` hard links to them (``image_0000001.jpg`` -> source ``i % sources``), each with
    its source's boxes. ``source_dir`` (a folder with bbox.json) uses its images instead of generating."""
    import json
    import shutil

    from ..datafiles import load_bboxes

    root = Path(root)
    src = root / f"src{sources}"
    if source_dir is not None:
        src = Path(source_dir)
    elif not (src / "bbox.json").is_file():
        from ..synth import generate

        generate(src, sources, seed=7, progress=False)
    boxes = load_bboxes(src / "bbox.json")
    names = sorted(boxes)[:sources]
    folder = root / f"n{entries}-from-{len(names)}"
    if (folder / "bbox.json").is_file():
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    index = {}
    for i in range(entries):
        source = names[i % len(names)]
        name = f"image_{i:07d}.jpg"
        try:
            os.link(src / source, folder / name)
        except OSError:  # a file system without hard links
            os.symlink((src / source).resolve(), folder / name)
        index[name] = boxes[source]
    (folder / "bbox.json").write_text(json.dumps(index))
    return folder


#: Storages of the growth measurement: lists, plain arrays, and arrays in shared memory (build_loaders).
GROWTH_STORAGES = ("list", "array", "shared")


def _memory_here(folder: str, storage: str, size: tuple[int, int], workers: int, loader_batch: int,
                 max_batches: int | None, draft: bool, start_method: str | None = None) -> dict[str, Any]:
    """In a fresh process: the training loader of ``folder`` (the quick configuration's split): with
    ``storage='shared'`` built by ``helpers.data_path.build_loaders`` itself, with ``start_method`` as
    the process's default (PathArray/BoxArray in shared memory, draft decoding, loader batches split by SplitBatches: the large batches are iterated
    here, the same samples); with ``'array'`` (plain NumPy arrays) or ``'list'`` the same construction
    with the storage swapped. Workers started by ``start_method`` (default: fork on Linux). One pass
    (or ``max_batches`` loader batches, drawn shuffled from the whole index); PSS of main + workers
    sampled during the pass (peak) and after it (workers alive)."""
    import gc
    import json
    from dataclasses import replace

    from .bench_decode import _face_dataset
    from .bench_speed import TRAIN_BATCH
    from ..datafiles import read_file_lists
    from ..loader import make_loader
    from .memory import anon_pss_of_tree, pss_of_tree, release_freed_heap, tree_memory
    from ..runconfig import CONFIGS
    from ..storage import BoxArray, PathArray

    if storage not in GROWTH_STORAGES:
        raise ValueError(f"storage must be one of {GROWTH_STORAGES}, got {storage!r}")
    start_method = start_method or default_start_method()
    with open(os.path.join(folder, "bbox.json")) as f:
        index_entries = len(json.load(f))
    config = replace(CONFIGS["quick"], image_size=tuple(size), num_workers=workers, batch_size=TRAIN_BATCH,
                     data_folder=str(folder))
    how = "build_loaders"
    if storage == TRAINING_STORAGE:
        import multiprocessing

        from ..data_path import build_loaders

        # build_loaders takes the platform's start method: make it this one, as Python 3.14 makes it forkserver
        multiprocessing.set_start_method(start_method, force=True)
        loaders = build_loaders(config, data_dir=folder, loader_batch_size=loader_batch)
        loader = loaders[0]  # the training loader (the others are built, never iterated: no workers)
        del loaders
        loader = getattr(loader, "loader", loader)  # the DataLoader under SplitBatches: the same samples
        dataset = loader.dataset
        draft = dataset.decode_size is not None
    else:  # build_loaders' construction with the storage swapped
        how = "build_loaders-style"
        lists = read_file_lists(folder, config.test_fraction, val_fraction=config.val_fraction)  # as build_loaders
        files, labels = lists.files_train, lists.labels_train
        del lists
        if storage == "array":
            files, labels = PathArray(files, shared=False), BoxArray(labels, shared=False)
        dataset = _face_dataset(files, labels, size, "pillow-draft" if draft else "pillow", root=folder)
        del files, labels
        loader = make_loader(dataset, loader_batch, shuffle=True, seed=config.seed, num_workers=workers,
                             pin_memory=False, persistent_workers=workers > 0,
                             multiprocessing_context=start_method if workers > 0 else None)
    gc.collect()
    release_freed_heap()
    single = pss_of_tree()
    single_anon = anon_pss_of_tree()
    n_batches = len(loader) if max_batches is None else min(max_batches, len(loader))
    sample_every = max(1, n_batches // 20)
    peak = 0
    jpeg_bytes = 0
    images = 0
    start = time.perf_counter()
    for k, batch in enumerate(loader):
        for name in batch["name"]:
            jpeg_bytes += os.stat(os.path.join(folder, name)).st_size
        images += len(batch["name"])
        if k % sample_every == 0:
            peak = max(peak, pss_of_tree())
        if k + 1 >= n_batches:
            break
    seconds = time.perf_counter() - start
    per_process = tree_memory()
    total = sum(per_process.values())
    total_anon = anon_pss_of_tree()
    peak = max(peak, total)
    result = {
        "entries": index_entries, "train_entries": len(dataset), "storage": storage, "built_by": how,
        "start_method": start_method if workers > 0 else None,
        "size": list(size), "decode_size": list(size) if draft else None,
        "num_workers": workers, "loader_batch": loader_batch, "batches": n_batches, "images_read": images,
        "full_pass": n_batches == len(loader), "single_pss_mb": round(single / MiB, 1),
        "total_pss_mb": round(total / MiB, 1), "peak_total_pss_mb": round(peak / MiB, 1),
        # anonymous pages only (heap: where an index lives), without the shared libraries' PSS share
        "single_anon_pss_mb": None if single_anon is None else round(single_anon / MiB, 1),
        "total_anon_pss_mb": None if total_anon is None else round(total_anon / MiB, 1),
        "main_pss_mb": round(per_process[os.getpid()] / MiB, 1),
        "worker_pss_mb": [round(v / MiB, 1) for p, v in per_process.items() if p != os.getpid()],
        "jpeg_bytes_read": int(jpeg_bytes), "pass_seconds": round(seconds, 2),
    }
    del loader
    return result


def measure_memory(folder: str | Path, storage: str, size=(120, 160), workers: int = 2, loader_batch: int = 64,
                   max_batches: int | None = None, draft: bool | None = None, timeout: float = 3600,
                   start_method: str | None = None) -> dict[str, Any]:
    """:func:`_memory_here` in a FRESH Python process (nothing left over from an earlier measurement)."""
    import json
    import subprocess

    from .bench_decode import draft_supported
    from ..project import ROOT

    if draft is None:
        draft = draft_supported()
    cmd = [sys.executable, "-m", "helpers.lab.bench", "memory-child", "--folder", str(folder), "--storage", storage,
           "--size", str(size[0]), str(size[1]), "--workers", str(workers), "--loader-batch", str(loader_batch),
           "--start-method", start_method or default_start_method()]
    if max_batches is not None:
        cmd += ["--max-batches", str(max_batches)]
    if draft:
        cmd.append("--draft")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(_MEMORY_MARK)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"memory measurement ({storage}, {folder}) failed with exit code "
                           f"{done.returncode}:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len(_MEMORY_MARK):])


def run_memory_growth(root: str | Path, entries: Sequence[int] = (1_000, 100_000), sources: int = 256,
                      storages: Sequence[str] = ("list", "array"), size=(120, 160), workers: int = 2,
                      loader_batch: int = 64, max_batches: int | None = None,
                      source_dir: str | Path | None = None, start_methods: Sequence[str] | None = None,
                      progress=None) -> list[dict[str, Any]]:
    """Total PSS of main + workers after a pass, for each start method (default: this platform's
    :func:`helpers.lab.memory.default_start_method` only), index size and storage, each in a fresh
    process; ``ratio_to_1k`` divides by the smallest index's figure of the same storage and start
    method. The largest runs also give the "bigger than memory" figures: ``jpeg_bytes_read`` against
    ``peak_total_pss_mb``."""
    folders = {n: prepare_memory_folder(root, n, sources, source_dir) for n in entries}
    methods = list(start_methods or [default_start_method()])
    rows = []
    for method in methods:
        for n in entries:
            for storage in storages:
                if progress:
                    progress(f"  growth: {method}, {storage}, {n:,} entries")
                rows.append(measure_memory(folders[n], storage, size, workers, loader_batch, max_batches,
                                           start_method=method))
    smallest = min(entries)
    base = {(r["storage"], r["start_method"]): r["total_pss_mb"] for r in rows if r["entries"] == smallest}
    for r in rows:
        r["ratio_to_1k"] = round(r["total_pss_mb"] / base[(r["storage"], r["start_method"])], 3)
        r["bytes_read_over_peak_pss"] = round(r["jpeg_bytes_read"] / (r["peak_total_pss_mb"] * MiB), 2)
    return rows


