"""The machine part of the benchmark: what every result records about where it ran, and whether the
cores it counts were really free.

:func:`machine_info` (usable cores, CPU model, memory, the library versions that decide the figures),
:func:`usable_cpus` (the affinity mask), and :func:`contention_probe`: a short CPU-bound loop timed in 1
and in N processes; slower in N means another load shares the cores (``contended`` in the JSON, a
warning line in the tables of docs/benchmarks.md). :func:`_median` is the one average every figure uses.

Notebooks: 06 uses it (through :mod:`helpers.lab.bench`); so do ``helpers.lab.tune`` and tools/threads_under_load.py.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Sequence


#: A probe this much slower in N processes than in 1 means the N cores are not all ours.
CONTENTION_SLOWDOWN = 1.3



def _median(values: Sequence[float]) -> float:
    import statistics

    return float(statistics.median(values))


# --- the machine ---------------------------------------------------------------------------------


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
    """Cores usable by this process, CPU model, memory, and the versions that decide the figures; the
    instruction set torch's CPU kernels are chosen for (``cpu_capability``: AVX2, AVX512, ...) too: it
    decides which kernels, and so which rounding, a training run gets."""
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
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
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
