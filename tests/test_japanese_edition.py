"""The Japanese edition of the core path (notebooks/ja/): built by tools/nbtranslate.py from the English
notebooks and the catalogue, every markdown cell translated from today's English text, code and outputs
the English notebook's own, and Japanese prose in fact."""
from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import nbskeleton  # noqa: E402
import nbtranslate  # noqa: E402

PATHS = nbskeleton.notebooks()
CORE = [p.name for p in PATHS if nbskeleton.part(p, json.loads(p.read_text(encoding="utf-8"))) == "core"]
EDITIONS = nbtranslate.translated_names()


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_every_core_notebook_has_a_japanese_edition_built_from_a_current_translation():
    assert EDITIONS == CORE, f"core notebooks without a translation catalogue: {sorted(set(CORE) - set(EDITIONS))}"
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "nbtranslate.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in nbtranslate.JA.glob("*.ipynb")) == CORE


@pytest.mark.parametrize("name", EDITIONS)
def test_code_cells_and_outputs_are_the_english_notebooks(name):
    en, ja = load(ROOT / "notebooks" / name), load(nbtranslate.JA / name)
    assert len(en["cells"]) == len(ja["cells"])
    for a, b in zip(en["cells"], ja["cells"]):
        assert (a["cell_type"], a.get("id")) == (b["cell_type"], b.get("id"))
        if a["cell_type"] == "code":
            assert a == b, f"{name}: code cell {a.get('id')} differs from the English one"
    assert ja["metadata"]["kernelspec"] == en["metadata"]["kernelspec"]
    assert nbskeleton.dump(ja) == (nbtranslate.JA / name).read_text(encoding="utf-8")  # as JupyterLab saves it


def test_changing_one_word_of_an_english_cell_makes_its_translation_stale():
    name = EDITIONS[0]
    nb = load(ROOT / "notebooks" / name)
    catalogue = nbtranslate.load_catalogue(name)
    assert nbtranslate.problems(name, nb, catalogue) == []
    changed = copy.deepcopy(nb)
    cell = next(c for c in changed["cells"] if c["cell_type"] == "markdown" and c["id"] in catalogue["cells"])
    cell["source"] = ["".join(cell["source"]).replace(" the ", " a ", 1)]
    assert any("stale" in p and cell["id"] in p for p in nbtranslate.problems(name, changed, catalogue))
    missing = copy.deepcopy(catalogue)
    missing["cells"].pop(cell["id"])
    assert any("no translation" in p for p in nbtranslate.problems(name, nb, missing))


#: Code spans, fenced code, URLs and link targets are not prose.
NOT_PROSE = re.compile(r"```.*?```|`[^`]*`|\]\([^)]*\)|https?://\S+|<[^>]+>", re.S)
JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\u3000-\u303f\uff00-\uffef]")


@pytest.mark.parametrize("name", EDITIONS)
def test_the_prose_is_japanese(name):
    text = "".join("".join(c["source"]) for c in load(nbtranslate.JA / name)["cells"] if c["cell_type"] == "markdown")
    prose = re.sub(r"\s+", "", NOT_PROSE.sub("", text))
    share = len(JAPANESE.findall(prose)) / len(prose)
    assert share >= 0.70, f"{name}: {share:.0%} of the prose characters are Japanese script"


@pytest.mark.parametrize("name", EDITIONS)
def test_links_resolve_and_the_badge_points_at_the_japanese_path(name):
    nb = load(nbtranslate.JA / name)
    header = "".join(nb["cells"][0]["source"])
    assert f"/notebooks/ja/{name}" in header and nbskeleton.ARTICLE_A in header and nbskeleton.ARTICLE_B in header
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for target in re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", "".join(cell["source"])):
            if "://" not in target:
                assert (nbtranslate.JA / target).resolve().exists(), f"{name}: a link to {target} leads nowhere"


def test_readme_ja_links_back_and_lists_the_editions():
    ja = (ROOT / "README.ja.md").read_text(encoding="utf-8")
    en = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(README.ja.md)" in en.split("\n## ", 1)[0] and "(README.md)" in ja.split("\n## ", 1)[0]
    for name in EDITIONS:
        assert f"(notebooks/ja/{name})" in ja and f"(notebooks/ja/{name})" in en


def test_record_refuses_a_translation_of_english_text_that_has_changed_since(tmp_path):
    name = EDITIONS[0]
    nb = load(ROOT / "notebooks" / name)
    cell = next(c for c in nb["cells"] if c["cell_type"] == "markdown" and c.get("metadata", {}).get("nbskeleton") != "header")
    given = tmp_path / "ja.json"
    given.write_text(json.dumps({"cells": {cell["id"]: {"en_sha256": nbtranslate.sha("older English text"), "ja": "古い訳"}}}),
                     encoding="utf-8")
    before = (nbtranslate.CATALOGUE / (Path(name).stem + ".json")).read_text(encoding="utf-8")
    with pytest.raises(SystemExit, match="changed since --todo"):
        nbtranslate.main(["--record", name, str(given)])
    assert (nbtranslate.CATALOGUE / (Path(name).stem + ".json")).read_text(encoding="utf-8") == before


def test_the_japanese_results_are_the_english_ones():
    """README.ja.md's 結果 section quotes README.md's Results (which a test ties to notebook 05's
    outputs): each of its numbers must be there, so a rerun that updates one README and not the other
    fails here."""
    ja = (ROOT / "README.ja.md").read_text(encoding="utf-8")
    en = (ROOT / "README.md").read_text(encoding="utf-8")
    section = ja[ja.index("## 結果"):ja.index("\n## ", ja.index("## 結果") + 1)]
    results = en[en.index("## Results"):en.index("\n## ", en.index("## Results") + 1)]
    numbers = set(re.findall(r"(?<![\w.])\d[\d,]*(?:\.\d+)?%?(?:/\d+)?", re.sub(r"§\d+(\.\d+)*|\]\([^)]*\)", "", section)))
    assert len(numbers) > 15, f"only {len(numbers)} numbers in README.ja.md's 結果"
    missing = sorted(n for n in numbers if n not in results)
    assert not missing, f"README.ja.md's 結果 quotes numbers README.md's Results does not hold: {missing}"
