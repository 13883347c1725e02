"""The speed and memory benchmark: ``python -m helpers.lab.bench all --json outputs/bench/bench.json``.

Subcommands: ``all`` (everything below but ``memory``'s own options), ``speed`` (the input pipeline
against the decode limit), ``decode`` (decode paths side by side), ``growth`` (total PSS of main +
workers as the data set grows, under each start method in the full size), ``memory`` (the index
alone, lists versus NumPy arrays, 1,000,000 entries, as appendix 01a runs it), ``start-methods`` (the
index alone under fork, forkserver and spawn: lists, arrays and shared arrays, 1k to 1M entries) and ``report``
(a JSON result as the markdown tables of docs/benchmarks.md). ``--tiny`` runs everything on a few
images in seconds (the tests); ``--size notebook`` is what notebook 06 runs.

The rules every figure follows: a ratio compares variants alternated within one run (>= 3 rounds,
the median of the per-round ratios); the decode limit is warm, single-threaded and does the same
work as the pipeline's decode (decode + resize to the training size, per decode path); the 0-worker
pipeline runs with 1 torch thread; and a short CPU-bound probe run in 1 and in N processes says
whether this process really got the cores it counts (``contended`` in the JSON, a warning line in
the tables).

This module is the command line (:func:`build_parser`, :func:`main`, :func:`run_all` and the
subcommands); each measurement lives in its own module, and every name of theirs that was importable
from here still is: :mod:`helpers.lab.bench_machine` (the machine, the contention probe),
:mod:`helpers.lab.bench_decode` (decode paths, per-stage time), :mod:`helpers.lab.bench_speed` (the
pipeline against the limit and the parallel limit), :mod:`helpers.lab.bench_memory` (memory: the
index alone, the data set growing), :mod:`helpers.lab.bench_transport` (the hand-over from workers),
:mod:`helpers.lab.bench_training` (train()'s epoch loop) and :mod:`helpers.lab.bench_report` (the
markdown tables).

Notebooks: 06 teaches it; 01 (its appendix 01a) uses it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .memory import START_METHODS, default_start_method, measure_index_memory
# Each measurement lives in its own module; its names stay importable from here (notebooks, tests, tools).
from .bench_machine import CONTENTION_SLOWDOWN, _median, _spin, contention_probe, cpu_model, machine_info, usable_cpus
from .bench_decode import (
    DECODE_PATHS, TRAINING_SIZES, _collate_for, _decoder, _face_dataset, _pillow, _resize_array_pil, _resize_pil,
    _time_decode, decoder_availability, draft_supported, masks_identical, run_decode, stage_times,
)
from .bench_speed import (
    PIPELINE_PATHS, TRAIN_BATCH, _decode_in_child, _split, _time_decode_parallel, _tree_cpu_seconds, pipeline_once,
    run_speed,
)
from .bench_memory import (
    _MEMORY_MARK, ARRAY_TOLERANCE, FORKSERVER_BASE_TARGET, GROWTH_TARGET, HELD_ONCE_TARGET, INDEX_ENTRIES, MiB,
    TRAINING_STORAGE, _memory_here, format_index_memory, format_memory, index_memory_targets, measure_memory,
    prepare_memory_folder, run_index_memory, run_memory, run_memory_growth, summarize_index_memory,
)
from .bench_transport import _clone_cost, _process_cpu, _ReadySamples, format_transport, transport_costs
from .bench_training import format_training_time, run_training_time
from .bench_report import REQUIRED_FIELDS, _cpu_ratio_lines, _fmt, _md_table, missing_fields, render_report
from ..project import DATA_SAMPLE, relative, write_json


# --- configurations ------------------------------------------------------------------------------


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


# --- everything, and the JSON --------------------------------------------------------------------


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
