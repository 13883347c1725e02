#!/usr/bin/env python3
"""Rehearse what a reader gets on a fresh Colab runtime, on this machine, without the network.

    python tools/colab_rehearsal.py --setup-only        # every notebook's Setup cell (tests run this)
    python tools/colab_rehearsal.py                     # every notebook, top to bottom (`make colab-check`)
    python tools/colab_rehearsal.py 03_transforms       # only notebooks whose names contain this

For each notebook, as Colab would run it:

- the kernel is the Python running this script (``make colab-check`` runs it in ``.venv-colab``, which holds
  the older torch/torchvision pair Colab ships), started in an EMPTY folder (Colab's ``/content``);
- ``google.colab`` is importable in the kernel (a stub module loaded at kernel start), so the Setup cell
  takes its Colab branch and clones the repository;
- the clone goes to a snapshot of this working tree instead of GitHub: git's ``url.<snapshot>.insteadOf
  <repository URL>`` in a temporary HOME, so the Setup cell's URL and command stay exactly as committed.

It then checks that the Setup cell (or the whole notebook) ran without error, that ``helpers`` was imported
from the clone and ``data_sample/`` found there, that torch and torchvision are still the ones installed
before (``pip freeze``), and that the notebook's Colab badge points at its own path in the repository.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from helpers.project import GITHUB_BRANCH, GITHUB_REPO, REPO_URL  # noqa: E402
from run_notebooks import (  # noqa: E402 (tools/, next to this file)
    DEFAULT_TIMEOUT, run_in_fresh_kernel, select_notebooks)

KEEP = ("torch", "torchvision")
#: Loaded by IPython at kernel start (IPYTHONDIR/profile_default/startup): Colab's module, as a stub.
COLAB_STUB = '''import sys, types
try:
    import google
except ImportError:
    google = types.ModuleType("google")
    google.__path__ = []
    sys.modules["google"] = google
colab = types.ModuleType("google.colab")
colab.__file__ = "<rehearsal stub>"
google.colab = colab
sys.modules["google.colab"] = colab
'''
#: Appended to each notebook: what the rehearsal checks from inside the kernel.
CHECK_CELL = '''import json as _json, os as _os, sys as _sys
import helpers as _helpers
print("REHEARSAL " + _json.dumps({"cwd": _os.getcwd(), "helpers": _helpers.__file__,
      "data_sample": _os.path.isfile("data_sample/bbox.json"), "colab": "google.colab" in _sys.modules}))
'''


def snapshot(dest: Path) -> Path:
    """A one-commit git repository holding this working tree's files (tracked and untracked, not ignored)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    git = ["git", "-c", "user.name=rehearsal", "-c", "user.email=rehearsal@localhost"]
    subprocess.run(["git", "init", "-q", "-b", GITHUB_BRANCH], cwd=dest, check=True)
    subprocess.run(git + ["add", "-A"], cwd=dest, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "snapshot"], cwd=dest, check=True)
    return dest


def frozen(packages=KEEP) -> dict[str, str]:
    """Version and location of each package as installed now (what ``pip freeze`` reads: the dist-info)."""
    found = {}
    for name in packages:
        dist = importlib.metadata.distribution(name)
        found[name] = f"{dist.version} in {dist.locate_file('')}"
    return found


def badge_problem(nb, name: str) -> str | None:
    header = "".join(nb.cells[0].source)
    url = f"https://colab.research.google.com/github/{GITHUB_REPO}/blob/{GITHUB_BRANCH}/notebooks/{name}"
    if url not in header:
        return f"the Colab badge does not point at {url}"
    return None


def kernel_env(tmp: Path) -> dict[str, str]:
    home, ipython = tmp / "home", tmp / "ipython"
    (ipython / "profile_default" / "startup").mkdir(parents=True, exist_ok=True)
    (ipython / "profile_default" / "startup" / "00-google-colab-stub.py").write_text(COLAB_STUB)
    home.mkdir(exist_ok=True)
    (home / ".gitconfig").write_text(f'[url "file://{tmp / "snapshot"}"]\n\tinsteadOf = {REPO_URL}\n')
    kernels = tmp / "jupyter" / "kernels" / "python3"
    kernels.mkdir(parents=True, exist_ok=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python"}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON", "PYTHONPATH"))}
    env.update(HOME=str(home), IPYTHONDIR=str(ipython), FACES_PROGRESS="0", GIT_CONFIG_NOSYSTEM="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1", PYDEVD_DISABLE_FILE_VALIDATION="1")
    return env


def rehearse(path: Path, tmp: Path, setup_only: bool, timeout: int,
             out_dir: Path | None, rehearsed: set[str] | None = None) -> tuple[float, str | None]:
    """Run the notebook (or only its Setup cell) in a rehearsed fresh Colab runtime; (seconds, problem).
    With ``setup_only``, a Setup cell whose source ``rehearsed`` already holds (added by an earlier call that
    passed) is not run again: the same code in the same runtime; its badge is checked."""
    nb = nbformat.read(path, as_version=4)
    problem = badge_problem(nb, path.name)
    setup = [c for c in nb.cells if c.get("metadata", {}).get("nbskeleton") == "setup"]
    if not setup:
        return 0.0, "no Setup cell"
    if setup_only and rehearsed is not None and setup[0].source in rehearsed:
        return 0.0, problem
    if setup_only:
        nb.cells = [nb.cells[0], setup[0]]
    nb.cells.append(nbformat.v4.new_code_cell(CHECK_CELL))
    content = Path(tempfile.mkdtemp(prefix="content-", dir=tmp))  # Colab's /content: empty
    env = kernel_env(tmp)
    os.environ["JUPYTER_PATH"] = str(tmp / "jupyter")  # our python3 kernelspec comes first
    before = frozen()
    start = time.perf_counter()
    problem = run_in_fresh_kernel(nb, content, timeout, env=env) or problem
    seconds = time.perf_counter() - start
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out_dir / path.name)
    if problem is None:
        report = None
        for out in nb.cells[-1].get("outputs", []):
            for line in out.get("text", "").splitlines():
                if line.startswith("REHEARSAL "):
                    report = json.loads(line[len("REHEARSAL "):])
        clone = (content / GITHUB_REPO.split("/")[1]).resolve()
        if report is None:
            problem = "the check cell printed nothing"
        elif not report["colab"]:
            problem = "google.colab was not importable in the kernel"
        elif Path(report["helpers"]).resolve().parent.parent != clone:
            problem = f"helpers was imported from {report['helpers']}, not from the clone"
        elif not report["data_sample"]:
            problem = "data_sample/bbox.json not found from the notebook's working folder"
        elif Path(report["cwd"]).resolve() != clone:
            problem = f"the working folder is {report['cwd']}, not the clone"
    after = frozen()
    if problem is None and after != before:
        problem = f"torch/torchvision changed: {before} -> {after}"
    shutil.rmtree(content, ignore_errors=True)
    if setup_only and problem is None and rehearsed is not None:
        rehearsed.add(setup[0].source)
    return seconds, problem


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("only", nargs="*", help="only notebooks whose file name contains one of these")
    parser.add_argument("--setup-only", action="store_true", help="run only each notebook's Setup cell")
    parser.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT, help="seconds per cell, 0 for none")
    parser.add_argument("--out", type=Path, default=None, help="write the executed notebooks here")
    args = parser.parse_args(argv)
    paths = select_notebooks(args.only)
    if not paths:
        print("no notebook matched", args.only)
        return 1
    import torch
    import torchvision

    print(f"Colab rehearsal with python {sys.version.split()[0]}, torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}" + (" (Setup cells only)" if args.setup_only else ""))
    failures = 0
    with tempfile.TemporaryDirectory(prefix="colab-rehearsal-") as tmp_name:
        tmp = Path(tmp_name)
        snapshot(tmp / "snapshot")
        rehearsed: set[str] = set()  # the sources of the Setup cells whose run passed
        for path in paths:
            first = len(rehearsed)
            seconds, problem = rehearse(path, tmp, args.setup_only, args.timeout, args.out, rehearsed)
            failures += problem is not None
            same = args.setup_only and problem is None and len(rehearsed) == first
            status = f"FAILED: {problem}" if problem else (
                "ok (the Setup cell rehearsed above, unchanged; badge checked)" if same else "ok")
            print(f"  {path.name:<48} {status} ({seconds:.0f} s)", flush=True)
    print(f"Colab rehearsal: {len(paths) - failures} of {len(paths)} notebooks without a problem")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
