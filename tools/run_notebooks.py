#!/usr/bin/env python3
"""Execute the notebooks in reading order, headless, each in a fresh kernel, and print a summary.

    python tools/run_notebooks.py                 # `make run`: executed copies go to outputs/notebooks/
    python tools/run_notebooks.py --inplace       # `make refresh`: rewrite the committed notebooks' outputs
    python tools/run_notebooks.py 03_transforms   # only the notebooks whose names contain this

The summary lists, per notebook, the time it took and the headline results it reported (lines that
``helpers.notebook.headline`` printed). The kernel starts in notebooks/, as in JupyterLab and nbval.
Whatever happens to one notebook (a failing cell, a timeout, a kernel that dies), its executed copy is
written with the error in it, the next notebook runs, and the summary names the failure (exit status 1).
Progress bars are off (``FACES_PROGRESS=0``: one line per epoch instead), so outputs stay clean.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from traitlets.config import Config

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
sys.path.insert(0, str(ROOT))
from helpers.notebook import HEADLINE_PREFIX, PROGRESS_ENV  # noqa: E402

#: Seconds a cell may run: generous, since a shared CI machine can be many times slower than an idle
#: one (CI's own limit is 90 minutes for everything). 0 means no limit.
DEFAULT_TIMEOUT = 5400

#: An absolute path of this machine in an output (the committed notebooks must show none).
MACHINE_PATH = re.compile(r"(?<![\w.:/~-])(/(?:home|root|tmp|work|Users|private|var|opt|mnt|content)/[\w.-]+)")


def headlines(nb) -> list[str]:
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stdout":
                found += [line[len(HEADLINE_PREFIX):].strip() for line in out["text"].splitlines()
                          if line.startswith(HEADLINE_PREFIX)]
    return found


def machine_paths(nb) -> list[str]:
    hits = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts = [out.get("text", "")] + [v for k, v in out.get("data", {}).items() if k.startswith("text/")]
            for text in texts:
                text = "".join(text) if isinstance(text, list) else text
                hits += MACHINE_PATH.findall(text)
    return hits


def select_notebooks(only: list[str] | None = None) -> list[Path]:
    """The notebooks in reading order, or only those whose file name contains one of ``only``."""
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    return [p for p in paths if any(s in p.name for s in only)] if only else paths


def first_line(exc: BaseException) -> str:
    """A one-line reason: the exception's last non-empty line (a cell's error is at the end)."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1]}" if lines else repr(exc)


def run_in_fresh_kernel(nb, cwd: Path, timeout: int, env: dict[str, str] | None = None) -> str | None:
    """Execute ``nb`` in place in a new ``python3`` kernel started in ``cwd``; the error in one line, or None.

    Whatever goes wrong (a failing cell, a timeout, a kernel that dies) is returned, not raised, and the
    outputs up to it stay in ``nb``. The kernel talks over IPC sockets in a private folder, not TCP on
    localhost (no "TCP without encryption" warning); no timing metadata is recorded.
    """
    with tempfile.TemporaryDirectory(prefix="kernel-") as tmp:
        ipc = Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(tmp, "kernel")}})
        client = NotebookClient(nb, kernel_name="python3", timeout=timeout or None, record_timing=False,
                                config=ipc, resources={"metadata": {"path": str(cwd)}})
        try:
            client.execute(**({"env": env} if env is not None else {}))
        except Exception as exc:  # CellExecutionError, CellTimeoutError, DeadKernelError, ...
            return first_line(exc)
    return None


def execute(path: Path, out_path: Path, timeout: int) -> tuple[float, list[str], str | None]:
    nb = nbformat.read(path, as_version=4)
    os.environ[PROGRESS_ENV] = "0"  # the kernel inherits it: one line per epoch, no bar frames
    start = time.perf_counter()
    error = run_in_fresh_kernel(nb, NOTEBOOKS, timeout)
    seconds = time.perf_counter() - start
    out_path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_path)
    paths = machine_paths(nb)
    if error is None and paths:
        error = f"an output shows a path of this machine: {paths[0]}"
    return seconds, headlines(nb), error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("only", nargs="*", help="run only notebooks whose file name contains one of these")
    parser.add_argument("--inplace", action="store_true", help="write outputs into the committed notebooks")
    parser.add_argument("--out", default="outputs/notebooks", help="folder for executed copies (default: %(default)s)")
    parser.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT,
                        help="seconds per cell, 0 for no limit (default: %(default)s)")
    args = parser.parse_args(argv)

    paths = select_notebooks(args.only)
    if not paths:
        print("no notebook matched", args.only)
        return 1
    rows, failed = [], False
    for path in paths:
        target = path if args.inplace else ROOT / args.out / path.name
        print(f"running {path.relative_to(ROOT)} ...", flush=True)
        seconds, heads, error = execute(path, target, args.timeout)
        rows.append((path.name, seconds, heads, error))
        failed |= error is not None
        print(f"  {'FAILED' if error else 'ok'} in {seconds:.0f} s -> {target.relative_to(ROOT)}", flush=True)
        if error:
            print(f"  {error}")

    print("\nSummary")
    print(f"{'notebook':<32} {'time':>7}  headline results")
    for name, seconds, heads, error in rows:
        status = f"FAILED: {error}" if error else ("; ".join(heads) or "-")
        print(f"{name:<32} {seconds:>6.0f}s  {status}")
    print(f"{'total':<32} {sum(r[1] for r in rows):>6.0f}s")
    if not args.inplace:
        summary = ROOT / args.out / "summary.json"
        summary.write_text(json.dumps([{"notebook": n, "seconds": round(s, 1), "headlines": h, "error": e}
                                       for n, s, h, e in rows], indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
