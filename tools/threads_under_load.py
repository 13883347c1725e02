#!/usr/bin/env python3
"""How many torch threads the training process should use beside its DataLoader workers.

    python tools/threads_under_load.py            # quick configuration, 2 workers, 3 rounds
    python tools/threads_under_load.py --rounds 5 --steps 40 --json outputs/threads.json

Runs training steps of notebook 05's quick configuration (same model, loss, optimizer, loader) with
1 intra-op thread and with as many as there are cores, on an idle machine and while ``--busy`` other
CPU-bound processes run (a shared CI machine). The variants alternate inside each round and the table
shows medians of steps/s, so a drift of the machine's speed hits every variant alike. What it measures
is why ``helpers.train.train`` uses ``threads_beside_workers`` (cores - workers, at least 1).

The first line printed names the machine, the versions and ``OMP_WAIT_POLICY`` (how torch's idle
OpenMP threads wait: it is read once, when torch loads, so set it in the environment of the command:
``OMP_WAIT_POLICY=PASSIVE python tools/threads_under_load.py``).
"""
from __future__ import annotations

import argparse
import datetime
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers.data_path import build_loaders  # noqa: E402
from helpers.lab.bench import machine_info  # noqa: E402
from helpers.loss import FaceLoss  # noqa: E402
from helpers.model import build_model  # noqa: E402
from helpers.on_device import prepare_batch  # noqa: E402
from helpers.project import write_json  # noqa: E402
from helpers.runconfig import pick_config  # noqa: E402
from helpers.synth import ensure_dataset  # noqa: E402
from helpers.train import torch_threads, usable_cores  # noqa: E402


def busy_loop(stop) -> None:
    """A CPU-bound process: pure-Python arithmetic until told to stop."""
    x = 0
    while not stop.is_set():
        for i in range(100_000):
            x = (x * 31 + i) % 1_000_003


def steps_per_second(loader, model, loss_fn, optimizer, steps: int) -> float:
    """Training steps per second over ``steps`` steps, after two warm-up steps (workers started)."""
    it = iter(loader)
    done, t0 = 0, None
    while done < steps + 2:
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        x, y = prepare_batch(batch, "cpu", channels_last=True)
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done += 1
        if done == 2:
            t0 = time.perf_counter()
    return steps / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per variant")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: the config's)")
    parser.add_argument("--busy", type=int, default=2, help="competing CPU-bound processes in the loaded case")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    machine = machine_info()
    wait_policy = os.environ.get("OMP_WAIT_POLICY", "unset (libgomp: spin a while, then sleep)")
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{date}; {machine['cores']} cores ({machine['cpu_model']}); torch {machine['torch']}, "
          f"Pillow {machine['pillow']}; OMP_WAIT_POLICY={wait_policy}", flush=True)

    config = pick_config("quick")
    workers = config.num_workers if args.workers is None else args.workers
    ensure_dataset(config.data_dir, config.n_images, seed=config.data_seed, progress=False)
    train_loader = build_loaders(config, "cpu", num_workers=workers).train
    cores = usable_cores()
    thread_counts = sorted({1, cores})
    torch.manual_seed(0)
    model = build_model().to(memory_format=torch.channels_last)
    loss_fn = FaceLoss(pos_weight=5.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    results: dict[tuple[str, int], list[float]] = {}
    for round_ in range(args.rounds):
        for load in ("idle", f"{args.busy} busy processes"):
            stop, procs = mp.Event(), []
            if load != "idle":
                procs = [mp.Process(target=busy_loop, args=(stop,), daemon=True) for _ in range(args.busy)]
                for p in procs:
                    p.start()
            try:
                for threads in thread_counts:
                    with torch_threads(threads):
                        rate = steps_per_second(train_loader, model, loss_fn, optimizer, args.steps)
                    results.setdefault((load, threads), []).append(rate)
                    print(f"round {round_ + 1}: {load:<18} {threads} thread(s): {rate:5.2f} steps/s", flush=True)
            finally:
                stop.set()
                for p in procs:
                    p.join()

    print(f"\n{cores} usable cores, {workers} DataLoader workers, batch {config.batch_size}, "
          f"{config.image_size[0]}x{config.image_size[1]}, medians of {args.rounds} alternated rounds")
    print(f"{'machine':<20} {'threads':>7} {'steps/s':>8} {'vs 1 thread':>12}")
    rows = []
    for (load, threads), rates in results.items():
        median = statistics.median(rates)
        base = statistics.median(results[(load, 1)])
        rows.append({"load": load, "threads": threads, "steps_per_s": round(median, 3),
                     "ratio_to_1_thread": round(median / base, 3), "rounds": [round(r, 3) for r in rates]})
        print(f"{load:<20} {threads:>7} {median:>8.2f} {median / base:>11.2f}x")
    if args.json:
        write_json(args.json, {"date_utc": date, "machine": machine, "omp_wait_policy": wait_policy,
                               "cores": cores, "workers": workers, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
