"""The transport part of the benchmark (``python -m helpers.lab.bench transport``): the CPU that
handing batches from DataLoader workers to the main process costs, with the decoding taken out.

:func:`transport_costs`: the workers collate ready-made training samples (:class:`_ReadySamples`) with
``collate_channels_last``, the main process receives and maps each batch; CPU microseconds per image
of the main process and of the workers, per loader batch size, medians of alternated passes;
:func:`format_transport` prints them.

Notebooks: none imports it; docs/benchmarks.md quotes its output (what is left of the gap between the
0-worker and the 2-worker pipeline rows).
"""
from __future__ import annotations

import sys
import time
from typing import Any, Sequence

from .bench_decode import _face_dataset
from .bench_machine import _median


# --- the hand-over from workers to the main process ----------------------------------------------


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
