#!/usr/bin/env python3
"""Write the parts every notebook shares, so that nobody edits them by hand.

For each ``notebooks/NN_*.ipynb`` (reading order = file-name order) this script (re)writes:

1. the header cell (markdown, cell metadata ``nbskeleton: header``): title, one line on what the
   notebook teaches, an "Open in Colab" badge for the notebook's own path, prev/next links.
   Title and goal come from the notebook's metadata ``nbskeleton: {title, goal}``. Three parts:
   - the **core path** (``NN_*``, metadata ``part: core``): the source articles' steps, one notebook
     each; the header names both articles by title and the step this notebook covers (metadata
     ``step``), lists the notebook's appendices, and prev/next walk the core path;
   - **appendices** (``NNa_appendix_*``, ``NNb_appendix_*``, ...): depth behind notebook ``NN`` (its
     checks, hardening, measurement); the header says whose appendix it is and links back to it and on
     to the next core notebook;
   - the **further** part (``NN_*``, metadata ``part: further``): optional, beyond the articles;
2. the Setup cell (code, cell metadata ``nbskeleton: setup``, output ignored by nbval, shown collapsed
   in JupyterLab and as a form in Colab): makes the repository importable in JupyterLab, on Colab
   (clones it; ``helpers.setup_env.setup`` installs only what Colab lacks, never torch/torchvision) and
   in CI, then checks minimum versions and names the device;
3. checks cells (cell tag ``checks``: the asserts that keep committed outputs true, apart from the
   teaching cells): shown collapsed like the Setup cell (``source_hidden``, a Colab ``#@title`` form);
4. the notebook metadata ``kernelspec`` (the kernel ``make setup`` registers, as JupyterLab writes it) and
   no per-cell execution timestamps, so opening and saving a notebook without edits changes nothing;
5. the notebook table in README.md, between ``<!-- notebooks:start -->`` and ``<!-- notebooks:end -->``
   (with a link to the Japanese edition where ``notebooks/ja/`` has one).

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

NOTEBOOKS = ROOT / "notebooks"
README = ROOT / "README.md"
NAME_RE = re.compile(r"^\d\d(?:_[a-z0-9_]+|[a-z]_appendix_[a-z0-9_]+)\.ipynb$")

#: The two source articles, by title, as every core notebook's header and the README name them.
ARTICLE_A = "【PyTorch】大規模データの取り扱い方"
ARTICLE_B = "【PyTorch】 DataLoaderのバッチ取り出し時の挙動について"
PARTS = ("core", "further")


def notebooks() -> list[Path]:
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    bad = [p.name for p in paths if not NAME_RE.match(p.name)]
    if bad:
        raise SystemExit(f"notebook names must look like 00_some_topic.ipynb or 00a_appendix_some_topic.ipynb: {bad}")
    return paths


def is_appendix(path: Path) -> bool:
    """``01a_appendix_*.ipynb``: an appendix of notebook 01."""
    return path.name[2] != "_"


def part(path: Path, nb: dict) -> str:
    """``'core'``, ``'further'`` (metadata ``nbskeleton.part``) or ``'appendix'`` (by its name)."""
    if is_appendix(path):
        return "appendix"
    value = nb["metadata"].get("nbskeleton", {}).get("part")
    if value not in PARTS:
        raise SystemExit(f"{path.name}: metadata.nbskeleton.part must be one of {PARTS}, not {value!r}")
    return value


def _title(path: Path) -> str:
    return json.loads(path.read_text(encoding="utf-8"))["metadata"].get("nbskeleton", {}).get("title", path.stem)


def _link(path: Path, arrow: str = "") -> str:
    text = f"{path.name[:3].rstrip('_')} · {_title(path)}"
    return f"[{arrow}{text}]({path.name})" if arrow != "→" else f"[{text} →]({path.name})"


def colab_url(name: str) -> str:
    return f"https://colab.research.google.com/github/{GITHUB_REPO}/blob/{GITHUB_BRANCH}/notebooks/{name}"


def colab_badge(name: str) -> str:
    return f'<a href="{colab_url(name)}" target="_parent"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>'


def header_source(nb: dict, paths: list[Path], i: int) -> str:
    meta = nb["metadata"].get("nbskeleton", {})
    title, goal = meta.get("title"), meta.get("goal")
    if not title or not goal:
        raise SystemExit(f"{paths[i].name}: metadata.nbskeleton needs 'title' and 'goal'")
    here = paths[i]
    kind = part(here, nb)
    main_path = [p for p in paths if not is_appendix(p)]  # the core path, then the further part
    number = here.name[:2]
    if kind == "appendix":
        parent = next(p for p in main_path if p.name[:2] == number)
        after = [p for p in main_path if p.name[:2] > number]
        prev_link = f"[← back to {parent.name[:2]} · {_title(parent)}]({parent.name})"
        next_link = _link(after[0], "→") if after else "[README →](../README.md)"
    else:
        j = main_path.index(here)
        prev_link = _link(main_path[j - 1], "← ") if j > 0 else "[← README](../README.md)"
        next_link = _link(main_path[j + 1], "→") if j + 1 < len(main_path) else "[README →](../README.md)"
    lines = ["<!-- nbskeleton:header — written by tools/nbskeleton.py; edit title/goal in the notebook metadata -->",
             f"# {title}", "", f"**Goal:** {goal}", ""]
    if kind == "core":
        step = meta.get("step")
        if not step:
            raise SystemExit(f"{here.name}: a core notebook's metadata.nbskeleton needs 'step' (which article step)")
        lines += [f"**Core path.** The source articles: *{ARTICLE_A}* (A) and *{ARTICLE_B}* (B). "
                  f"This notebook: {step}.", ""]
        appendices = [p for p in paths if is_appendix(p) and p.name[:2] == number]
        if appendices:
            lines += ["**Appendices** (optional depth, linked below where they fit): "
                      + ", ".join(_link(p) for p in appendices) + ".", ""]
    elif kind == "appendix":
        lines += [f"**Appendix to notebook {number}**: optional depth behind the core path, which does not "
                  f"need it.", ""]
    else:
        lines += ["**Further, optional**: beyond the source articles; the core path (00–05) does not need it.", ""]
    lines += [colab_badge(here.name), "", f"{prev_link} · [all notebooks](../README.md#the-notebooks) · {next_link}"]
    return "\n".join(lines)


def setup_source() -> str:
    name = GITHUB_REPO.split("/")[1]
    return f'''#@title Setup {{ display-mode: "form" }}
# The same cell in every notebook (written by tools/nbskeleton.py): JupyterLab, Colab and CI.
import os, subprocess, sys
from pathlib import Path

REPO_URL, BRANCH = "{REPO_URL}", "{GITHUB_BRANCH}"
CLONE = Path.cwd() / "{name}"  # where Colab keeps the clone (survives a runtime restart)
ROOT = next((p for p in (CLONE, Path.cwd(), *Path.cwd().parents) if (p / "helpers").is_dir()), None)
if ROOT is None and "google.colab" in sys.modules:  # Colab: fetch helpers/ and data_sample/ once
    ROOT = CLONE
    subprocess.run(["git", "clone", "-q", "--depth", "1", "-b", BRANCH, REPO_URL, str(ROOT)], check=True)
assert ROOT, "run this notebook from inside a clone of " + REPO_URL
os.chdir(ROOT)  # paths such as data_sample/ and outputs/ are relative to the repository root
sys.path[:0] = [] if str(ROOT) in sys.path else [str(ROOT)]
from helpers.setup_env import setup  # on Colab: installs what is missing, never torch/torchvision
print(setup())  # checks the minimum versions, names the device'''


#: The Setup cell's metadata: nbval ignores its output (versions and device vary); JupyterLab shows it
#: collapsed (``source_hidden``), Colab as a form (``cellView``), both with a click to expand.
SETUP_METADATA = {"nbskeleton": "setup", "tags": ["nbval-ignore-output"],
                  "jupyter": {"source_hidden": True}, "cellView": "form"}
#: A checks cell (tag ``checks``): collapsed the same way; its first line is a Colab form title.
CHECKS_METADATA = {"jupyter": {"source_hidden": True}, "cellView": "form"}
CHECKS_TITLE = re.compile(r'^#@title .+\{ display-mode: "form" \}$')
#: The kernelspec JupyterLab writes for the kernel `make setup` registers inside .venv; any other value
#: is rewritten on open, so a save without edits would make a diff.
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


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
                         "metadata": json.loads(json.dumps(SETUP_METADATA)), "outputs": [], "source": setup_lines})
    else:
        cell = cells.pop(j)
        if cell["source"] != setup_lines and "".join(cell["source"]) != "".join(setup_lines):
            cell["source"] = setup_lines
        cell["metadata"] = {**cell["metadata"], **json.loads(json.dumps(SETUP_METADATA))}
        cells.insert(1, cell)
    # Diff noise a run leaves behind: per-cell execution timestamps; and the kernel JupyterLab expects.
    for cell in cells:
        cell.get("metadata", {}).pop("execution", None)
        if "checks" in cell.get("metadata", {}).get("tags", []):
            first = "".join(cell["source"]).split("\n", 1)[0]
            if cell["cell_type"] != "code" or not CHECKS_TITLE.match(first):
                raise SystemExit(f"{paths[i].name}: a checks cell is a code cell whose first line is "
                                 f"'#@title Checks: ... {{ display-mode: \"form\" }}', not {first!r}")
            cell["metadata"].update(json.loads(json.dumps(CHECKS_METADATA)))
    nb["metadata"]["kernelspec"] = dict(KERNELSPEC)
    return nb


#: ``from helpers.X import ...`` / ``import helpers.X`` in a code cell: X is a helper module the notebook uses.
HELPER_IMPORT = re.compile(r"^\s*(?:from|import)\s+helpers\.(\w+(?:\.\w+)*)", re.MULTILINE)
#: ``from helpers import a, b``: a and b are helper modules too.
HELPER_FROM_PACKAGE = re.compile(r"^\s*from\s+helpers(\.lab)?\s+import\s+\(?([\w ,]+)", re.MULTILINE)
#: Modules every notebook imports for its own plumbing (Setup, showing code): not listed per notebook.
PLUMBING = {"setup_env", "notebook", "project"}


def helper_modules(nb: dict) -> list[str]:
    """The ``helpers`` modules a notebook's code cells import (the Setup cell and plumbing left out)."""
    found: set[str] = set()
    for cell in nb["cells"]:
        if cell["cell_type"] != "code" or cell.get("metadata", {}).get("nbskeleton") == "setup":
            continue
        source = "".join(cell["source"])
        found.update(HELPER_IMPORT.findall(source))
        for lab, names in HELPER_FROM_PACKAGE.findall(source):
            found.update(("lab." if lab else "") + n.strip() for n in names.split(",") if n.strip())
    return sorted(found - PLUMBING - {"lab"})  # "lab" alone: the package, named by its modules


def readme_table(paths: list[Path]) -> str:
    rows = ["| # | part | notebook | what it teaches | helper modules it uses | |", "|---|---|---|---|---|---|"]
    for p in paths:
        nb = json.loads(p.read_text(encoding="utf-8"))
        meta = nb["metadata"].get("nbskeleton", {})
        modules = ", ".join(f"[`{m}`](helpers/{m.replace('.', '/')}.py)" for m in helper_modules(nb))
        ja = f" · [日本語](notebooks/ja/{p.name})" if (NOTEBOOKS / "ja" / p.name).exists() else ""  # tools/nbtranslate.py
        rows.append(f"| {p.name[:3].rstrip('_')} | {part(p, nb)} | [{meta.get('title', p.stem)}](notebooks/{p.name}){ja} | "
                    f"{meta.get('goal', '')} | {modules} | {colab_badge(p.name)} |")
    return "\n".join(rows)


def dump(nb: dict) -> str:
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"  # as nbformat and JupyterLab write


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
