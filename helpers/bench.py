"""Benchmark commands: ``python -m helpers.bench memory`` (the index's memory with DataLoader workers,
lists versus NumPy arrays) and ``python -m helpers.bench speed`` (pipeline images/s against the
JPEG-decode limit). Each prints a small table; the functions behind them return the numbers.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .memory import measure_index_memory
from .project import DATA_SAMPLE, relative

MiB = 2**20
#: The array-based index passes when main + workers together use at most this much more than the
#: single process did before the workers started.
ARRAY_TOLERANCE = 0.10


# --- memory --------------------------------------------------------------------------------------


def run_memory(entries: int = 1_000_000, workers: int = 2, batch_size: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Measure the ``list`` and the ``array`` index (each in a fresh process) and compare them.

    Returns ``{'list': ..., 'array': ..., 'growth_ratio': ..., 'array_ratio': ..., 'passed': ...}``
    where each kind's dict is :func:`helpers.memory.measure_index_memory`'s result plus ``ratio``
    (total / single) and ``growth_bytes`` (total - single); ``growth_ratio`` is list growth over array
    growth (``anon_growth_ratio``: the same for anonymous pages only, None off Linux) and ``passed``
    says whether the array total lies within :data:`ARRAY_TOLERANCE` of its single-process figure.
    """
    results: dict[str, Any] = {}
    for kind in ("list", "array"):
        r = measure_index_memory(kind, entries, num_workers=workers, batch_size=batch_size, seed=seed)
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


# --- speed -----------------------------------------------------------------------------------------


def usable_cpus() -> int:
    """CPU cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def decode_rate(files: Sequence[str], repeats: int = 3) -> float:
    """Images per second that Pillow decodes to RGB in this one process (open + convert): the limit."""
    from PIL import Image

    start = time.perf_counter()
    for _ in range(repeats):
        for f in files:
            with Image.open(f) as im:
                im.convert("RGB")
    return repeats * len(files) / (time.perf_counter() - start)


def pipeline_rate(
    files: Sequence[str], labels: Sequence, size: tuple[int, int], num_workers: int,
    repeats: int = 3, batch_size: int = 16,
) -> float:
    """Images per second through FaceDataset + Rescale + ConvertGroundTruth + ToTensor + DataLoader.

    The clock starts when the first batch has arrived, so worker start-up is not counted.
    """
    from torch.utils.data import DataLoader

    from .dataset import FaceDataset
    from .transforms import default_pipeline

    dataset = FaceDataset(files, labels, transform=default_pipeline(size))
    order = list(range(len(dataset))) * repeats
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=order, num_workers=num_workers,
        multiprocessing_context="fork" if num_workers > 0 and sys.platform.startswith("linux") else None,
    )
    batches = iter(loader)
    next(batches)
    start = time.perf_counter()
    count = sum(len(batch["name"]) for batch in batches)
    seconds = time.perf_counter() - start
    del batches
    return count / seconds


def run_speed(
    data_dir: str | Path = DATA_SAMPLE, size: tuple[int, int] = (192, 256),
    workers: Sequence[int] = (0, 2), repeats: int = 3, batch_size: int = 16, torch_threads: int | None = None,
) -> dict[str, Any]:
    """Decode-only images/s (one process) and pipeline images/s for each worker count, on ``data_dir``.

    Each pipeline figure is compared with its decode limit: the one-process decode rate times the
    processes that decode in parallel, ``min(max(workers, 1), usable CPUs)``. ``torch_threads`` sets
    torch's intra-op threads in this process for the run (restored after): with 0 workers the batch is
    collated (``torch.stack``) here, and on busy cores an OpenMP thread that is not scheduled stalls
    every stack. DataLoader workers always use 1 thread.
    """
    import torch

    from .datafiles import read_file_lists

    lists = read_file_lists(data_dir, test_fraction=0.0)
    files, labels = lists.files_train, lists.labels_train
    previous = torch.get_num_threads()
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    try:
        decode = decode_rate(files, repeats)
        cpus = usable_cpus()
        rows = []
        for w in workers:
            rate = pipeline_rate(files, labels, size, w, repeats, batch_size)
            limit = decode * min(max(w, 1), cpus)
            rows.append({"workers": w, "images_per_s": rate, "decode_limit": limit, "ratio": rate / limit})
        threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
    return {
        "data_dir": relative(data_dir), "n_images": len(files), "size": tuple(size), "repeats": repeats,
        "batch_size": batch_size, "cpus": cpus, "torch_threads": threads, "decode_per_s": decode,
        "pipeline": rows,
    }


def format_speed(results: dict[str, Any]) -> str:
    """The table :func:`run_speed`'s results print as."""
    h, w = results["size"]
    lines = [
        f"{results['n_images']} images from {results['data_dir']}, {results['repeats']} passes each; "
        f"rescaled to {h}x{w}; batch size {results['batch_size']}; {results['cpus']} usable CPUs; "
        f"torch threads in the main process: {results['torch_threads']}",
        f"{'':<34} {'images/s':>9} {'decode limit':>13} {'/ limit':>8}",
        f"{'decode only (PIL open+RGB, 1 proc)':<34} {results['decode_per_s']:>9.1f} "
        f"{results['decode_per_s']:>13.1f} {1.0:>8.2f}",
    ]
    for row in results["pipeline"]:
        label = f"pipeline, {row['workers']} worker{'s' if row['workers'] != 1 else ''}"
        lines.append(
            f"{label:<34} {row['images_per_s']:>9.1f} {row['decode_limit']:>13.1f} {row['ratio']:>8.2f}"
        )
    lines.append("decode limit = one-process decode rate x min(max(workers, 1), usable CPUs)")
    return "\n".join(lines)


# --- command line --------------------------------------------------------------------------------


def _memory_command(args: argparse.Namespace) -> int:
    results = run_memory(args.entries, args.workers, args.batch_size, args.seed)
    print(format_memory(results))
    return 0 if results["passed"] else 1


def _speed_command(args: argparse.Namespace) -> int:
    results = run_speed(args.data, tuple(args.size), args.workers, args.repeats, args.batch_size, args.torch_threads)
    print(format_speed(results))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m helpers.bench`` parser: one subcommand per benchmark."""
    parser = argparse.ArgumentParser(prog="python -m helpers.bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    mem = sub.add_parser("memory", help="index memory with DataLoader workers: Python lists vs NumPy arrays")
    mem.add_argument("--entries", type=int, default=1_000_000, help="images in the synthetic index (default 1,000,000)")
    mem.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    mem.add_argument("--batch-size", type=int, default=1000, help="DataLoader batch size (default 1000)")
    mem.add_argument("--seed", type=int, default=0)
    mem.set_defaults(func=_memory_command)

    speed = sub.add_parser("speed", help="pipeline images/s against the JPEG-decode limit")
    speed.add_argument("--data", type=Path, default=DATA_SAMPLE,
                       help="data folder with bbox.json (default data_sample)")
    speed.add_argument("--size", type=int, nargs=2, default=(192, 256), metavar=("H", "W"),
                       help="Rescale output size (default 192 256)")
    speed.add_argument("--workers", type=int, nargs="+", default=(0, 2), help="worker counts to time (default 0 2)")
    speed.add_argument("--repeats", type=int, default=3, help="passes over the images per figure (default 3)")
    speed.add_argument("--batch-size", type=int, default=16)
    speed.add_argument("--torch-threads", type=int, default=None,
                       help="torch intra-op threads in the main process (default: torch's own choice)")
    speed.set_defaults(func=_speed_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the subcommand named on the command line; the exit code is 1 when a target is missed."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
