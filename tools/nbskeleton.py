#!/usr/bin/env python3
"""Write the parts every notebook shares, so that nobody edits them by hand.

For each ``notebooks/NN_*.ipynb`` (reading order = file-name order) this script (re)writes:

1. the header cell (markdown, cell metadata ``nbskeleton: header``): title, one line on what the
   notebook teaches, an "Open in Colab" badge for the notebook's own path, prev/next links.
   Title and goal come from the notebook's metadata ``nbskeleton: {title, goal}``;
2. the Setup cell (code, cell metadata ``nbskeleton: setup``, output ignored by nbval): makes the
   repository importable in JupyterLab, on Colab (clones it, installs only what Colab lacks, never
   torch/torchvision) and in CI, then checks minimum versions and names the device;
3. the notebook table in README.md, between ``<!-- notebooks:start -->`` and ``<!-- notebooks:end -->``.

It finds its cells by their metadata and rewrites them in place, so running it twice changes nothing.
``--check`` changes nothing and exits 1 if something is out of date (tests/test_notebook_conventions.py
runs it). After a change to the Setup cell, re-execute the notebooks: ``make refresh``.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers.project import GITHUB_BRANCH, GITHUB_REPO, REPO_URL  # noqa: E402 (the one place)
from helpers.setup_env import MIN_VERSIONS, PIP_NAMES  # noqa: E402

NOTEBOOKS = ROOT / "notebooks"
README = ROOT / "README.md"
NAME_RE = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")
#: What the Setup cell may install on Colab when missing: the notebooks' needs minus what Colab
#: must keep as it ships it.
NEVER_INSTALL = {"torch", "torchvision"}


def notebooks() -> list[Path]:
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    bad = [p.name for p in paths if not NAME_RE.match(p.name)]
    if bad:
        raise SystemExit(f"notebook names must look like 00_some_topic.ipynb: {bad}")
    return paths


def colab_url(name: str) -> str:
    return f"https://colab.research.google.com/github/{GITHUB_REPO}/blob/{GITHUB_BRANCH}/notebooks/{name}"


def colab_badge(name: str) -> str:
    return f'<a href="{colab_url(name)}" target="_parent"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>'


def header_source(nb: dict, paths: list[Path], i: int) -> str:
    meta = nb["metadata"].get("nbskeleton", {})
    title, goal = meta.get("title"), meta.get("goal")
    if not title or not goal:
        raise SystemExit(f"{paths[i].name}: metadata.nbskeleton needs 'title' and 'goal'")
    prev_link = f"[← {paths[i - 1].stem}]({paths[i - 1].name})" if i > 0 else "[← README](../README.md)"
    next_link = f"[{paths[i + 1].stem} →]({paths[i + 1].name})" if i + 1 < len(paths) else "[README →](../README.md)"
    return "\n".join([
        "<!-- nbskeleton:header — written by tools/nbskeleton.py; edit title/goal in the notebook metadata -->",
        f"# {title}",
        "",
        f"**Goal:** {goal}",
        "",
        colab_badge(paths[i].name),
        "",
        f"{prev_link} · [all notebooks](../README.md#the-notebooks) · {next_link}",
    ])


def setup_source() -> str:
    installable = [(m, PIP_NAMES.get(m, m)) for m in MIN_VERSIONS if m not in NEVER_INSTALL]
    clone_dir = "/content/" + GITHUB_REPO.split("/")[1]
    return f'''# Setup: the same cell in every notebook (written by tools/nbskeleton.py; edit it there).
# It works in JupyterLab in this repository, on Colab, and in CI.
import importlib.util, os, subprocess, sys
from pathlib import Path

if "google.colab" in sys.modules:
    # Colab: fetch this repository once (helpers/ and data_sample/ come with it) and install only
    # what the runtime lacks. torch and torchvision are Colab's own and are never reinstalled.
    ROOT = Path("{clone_dir}")
    if not (ROOT / "helpers").is_dir():
        subprocess.run(["git", "clone", "--depth", "1", "--branch", "{GITHUB_BRANCH}",
                        "{REPO_URL}", str(ROOT)], check=True)
    missing = [pip for mod, pip in {installable!r}
               if importlib.util.find_spec(mod) is None]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
else:
    # JupyterLab or CI: the repository is the first folder above this notebook that holds helpers/.
    ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "helpers").is_dir())
os.chdir(ROOT)  # paths such as data_sample/ and outputs/ are relative to the repository root
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from helpers.setup_env import environment_report  # checks minimum versions (raises if too old)
print(environment_report())'''


def as_lines(source: str) -> list[str]:
    lines = source.splitlines(keepends=True)
    return lines


def find_cell(cells: list[dict], role: str) -> int | None:
    for i, cell in enumerate(cells):
        if cell.get("metadata", {}).get("nbskeleton") == role:
            return i
    return None


def apply(nb: dict, paths: list[Path], i: int) -> dict:
    """Return the notebook with its header (cell 0) and Setup cell (cell 1) up to date."""
    cells = nb["cells"]
    header = {"cell_type": "markdown", "id": "nbskeleton-header", "metadata": {"nbskeleton": "header"},
              "source": as_lines(header_source(nb, paths, i))}
    j = find_cell(cells, "header")
    if j is None:
        cells.insert(0, header)
    else:
        cells[j]["source"] = header["source"]
        cells.insert(0, cells.pop(j))

    j = find_cell(cells, "setup")
    setup_lines = as_lines(setup_source())
    if j is None:
        cells.insert(1, {"cell_type": "code", "id": "nbskeleton-setup", "execution_count": None,
                         "metadata": {"nbskeleton": "setup", "tags": ["nbval-ignore-output"]},
                         "outputs": [], "source": setup_lines})
    else:
        cell = cells.pop(j)
        if cell["source"] != setup_lines and "".join(cell["source"]) != "".join(setup_lines):
            cell["source"] = setup_lines
        tags = cell["metadata"].setdefault("tags", [])
        if "nbval-ignore-output" not in tags:
            tags.append("nbval-ignore-output")
        cells.insert(1, cell)
    return nb


def readme_table(paths: list[Path]) -> str:
    rows = ["| # | notebook | what it teaches | |", "|---|---|---|---|"]
    for p in paths:
        meta = json.loads(p.read_text(encoding="utf-8"))["metadata"].get("nbskeleton", {})
        rows.append(f"| {p.name[:2]} | [{meta.get('title', p.stem)}](notebooks/{p.name}) | "
                    f"{meta.get('goal', '')} | {colab_badge(p.name)} |")
    return "\n".join(rows)


def dump(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if anything is out of date")
    args = parser.parse_args(argv)
    paths = notebooks()
    stale = []
    for i, path in enumerate(paths):
        text = path.read_text(encoding="utf-8")
        new = dump(apply(json.loads(text), paths, i))
        if new != text:
            stale.append(path.relative_to(ROOT).as_posix())
            if not args.check:
                path.write_text(new, encoding="utf-8")
    if README.exists():
        text = README.read_text(encoding="utf-8")
        pattern = re.compile(r"(<!-- notebooks:start -->\n).*?(<!-- notebooks:end -->)", re.S)
        if not pattern.search(text):
            raise SystemExit("README.md lacks the <!-- notebooks:start --> ... <!-- notebooks:end --> markers")
        new = pattern.sub(lambda m: m.group(1) + readme_table(paths) + "\n" + m.group(2), text)
        if new != text:
            stale.append("README.md")
            if not args.check:
                README.write_text(new, encoding="utf-8")
    if args.check and stale:
        print("out of date (run `make skeleton`, then `make refresh` if a Setup cell changed):", *stale, sep="\n  ")
        return 1
    for s in stale:
        print("updated", s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
