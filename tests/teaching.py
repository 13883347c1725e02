"""The teaching versions in the core notebooks: code cells tagged ``teaching-version``, the article-sized
code a reader can retype (a dozen-line Dataset, three plain transforms, a twenty-line training loop).

They are not copies of the helpers: the ``tests/test_teaching_*.py`` files run them here, beside the
helper each one teaches, on ``data_sample/``, and fail when the two disagree (docs/notebooks.md).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TAG = "teaching-version"


def teaching_cells(notebook: str) -> list[tuple[str, str]]:
    """``(cell id, source)`` of the notebook's teaching-version cells, in order (``notebook``: a file
    name in ``notebooks/``, with or without ``.ipynb``)."""
    name = notebook if notebook.endswith(".ipynb") else notebook + ".ipynb"
    nb = json.loads((ROOT / "notebooks" / name).read_text(encoding="utf-8"))
    cells = [(c.get("id", "?"), "".join(c["source"])) for c in nb["cells"]
             if c["cell_type"] == "code" and TAG in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise LookupError(f"{name} has no code cell tagged {TAG!r}")
    return cells


def run_teaching_cells(notebook: str, namespace: dict[str, Any] | None = None) -> dict[str, Any]:
    """Execute the notebook's teaching-version cells in order, in ``namespace`` (the names they expect
    from the notebook's other cells, e.g. a data folder), from the repository root as the notebooks
    run; return the namespace. What they print is captured (``namespace['_printed']``)."""
    ns: dict[str, Any] = {"__name__": "__teaching__", **(namespace or {})}
    out = io.StringIO()
    here = os.getcwd()
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(out):
            for cell_id, source in teaching_cells(notebook):
                exec(compile(source, f"{notebook} [cell {cell_id}]", "exec"), ns)
    finally:
        os.chdir(here)
    ns["_printed"] = out.getvalue()
    return ns
