"""The reader's path (issue 21): the core notebooks 00-05 are short, each step opens with its
article-sized code, the checks that keep outputs true sit apart from the teaching, and the depth lives
in appendices linked from where a reader would want it."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from teaching import TAG

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import nbskeleton  # noqa: E402

PATHS = nbskeleton.notebooks()
NBS = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in PATHS}
CORE = [p.name for p in PATHS if nbskeleton.part(p, NBS[p.name]) == "core"]
APPENDICES = [p.name for p in PATHS if nbskeleton.is_appendix(p)]

MAX_CORE_WORDS, MAX_CORE_CELLS, MAX_CELLS_PER_NOTEBOOK, MAX_VISIBLE_ASSERTS = 6500, 150, 40, 30
ASSERT = re.compile(r"^\s*assert\b", re.MULTILINE)


def _markdown_words(nb: dict) -> int:
    return sum(len("".join(c["source"]).split()) for c in nb["cells"] if c["cell_type"] == "markdown")


def _visible(cell: dict) -> bool:
    return not cell.get("metadata", {}).get("jupyter", {}).get("source_hidden", False)


def test_the_core_path_is_00_to_05_and_short():
    assert CORE == [p.name for p in PATHS if re.match(r"^0[0-5]_", p.name)], CORE
    words = {n: _markdown_words(NBS[n]) for n in CORE}
    cells = {n: len(NBS[n]["cells"]) for n in CORE}
    assert sum(words.values()) <= MAX_CORE_WORDS, f"{sum(words.values())} words of prose in the core path: {words}"
    assert sum(cells.values()) <= MAX_CORE_CELLS, f"{sum(cells.values())} cells in the core path: {cells}"
    assert max(cells.values()) <= MAX_CELLS_PER_NOTEBOOK, cells


@pytest.mark.parametrize("name", CORE[1:])
def test_each_step_opens_with_its_article_sized_code(name):
    cells = NBS[name]["cells"]
    first = next((i for i, c in enumerate(cells) if TAG in c.get("metadata", {}).get("tags", [])), None)
    assert first is not None and first < 8, f"{name}: the first {TAG!r} cell is cell {first}, not among the first 8"
    assert _visible(cells[first])
    tests = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").glob("test_teaching_*.py"))
    assert name.removesuffix(".ipynb") in tests, f"no tests/test_teaching_*.py runs {name}'s teaching version"


def test_the_visible_cells_of_the_core_path_hold_few_asserts():
    counts = {n: sum(len(ASSERT.findall("".join(c["source"]))) for c in NBS[n]["cells"]
                     if c["cell_type"] == "code" and _visible(c)) for n in CORE}
    assert sum(counts.values()) <= MAX_VISIBLE_ASSERTS, counts


@pytest.mark.parametrize("name", CORE + APPENDICES)
def test_what_we_checked_is_three_to_five_takeaways(name):
    text = "\n".join("".join(c["source"]) for c in NBS[name]["cells"] if c["cell_type"] == "markdown")
    section = text.split("## What we checked", 1)[1].split("\n## ", 1)[0]
    bullets = re.findall(r"^- ", section, re.MULTILINE)
    assert 3 <= len(bullets) <= 5, f"{name}: {len(bullets)} takeaways under 'What we checked'"


@pytest.mark.parametrize("name", APPENDICES)
def test_each_appendix_is_linked_from_its_core_notebook_where_it_fits(name):
    parent = next(n for n in CORE if n[:2] == name[:2])
    body = [c for c in NBS[parent]["cells"][1:] if c["cell_type"] == "markdown"]  # not the header
    assert any(f"({name}" in "".join(c["source"]) for c in body), f"{parent} never links to {name} in its text"


def test_the_source_articles_are_named_in_the_readme_and_every_core_header():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for title in (nbskeleton.ARTICLE_A, nbskeleton.ARTICLE_B):
        assert title in readme
        for name in CORE:
            assert title in "".join(NBS[name]["cells"][0]["source"]), name
