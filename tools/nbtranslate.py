#!/usr/bin/env python3
"""Build the Japanese editions of the core notebooks from the English ones and a translation catalogue.

    python tools/nbtranslate.py            # (re)build notebooks/ja/*.ipynb from notebooks/ and the catalogue
    python tools/nbtranslate.py --check    # change nothing; exit 1 if a translation is stale or missing, or
                                           # a Japanese notebook is not what the build gives (tests run this)
    python tools/nbtranslate.py --todo 03_transforms   # what to translate: the stale and missing entries
    python tools/nbtranslate.py --record 03_transforms ja.json   # file the translations of those entries

The catalogue, ``notebooks/ja/translations/NN_name.json``, holds one entry per markdown cell of the
English notebook, keyed by the cell's id: the Japanese text and the SHA-256 of the English text it
translates (and the same for the metadata's title, goal and step, from which the header is written).
When an English cell changes, its hash no longer matches and the entry is *stale*: the build refuses it
until someone translates the new text and records the new hash (``--todo`` prints the English text and
its hash; ``--record`` files translations given as ``{"meta": {key: ja}, "cells": {id: ja}}``, stamped
with the hash of today's English text; give an entry as ``{"en_sha256": hash from --todo, "ja": text}``
and it is refused if the English text changed after ``--todo`` showed it). Notebooks are named in full.

What the build writes, per core notebook: the English notebook with every markdown cell replaced by its
translation, the header written in Japanese (the articles' titles, a Colab badge for the Japanese path,
prev/next between the Japanese editions), links rewritten for the ``ja/`` folder (a notebook with a
Japanese edition stays in ``ja/``, the others point back to ``../``), and nothing else: code cells,
their outputs and the Setup cell are the English notebook's, byte for byte. The English notebook is
executed and checked by nbval; the Japanese edition runs the same code (after Setup the working folder
is the repository root in both), so it is not executed twice (tests/test_japanese_edition.py checks
the identity).
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import nbskeleton  # noqa: E402  (the header's pieces, the badge, the notebook order, dump())

NOTEBOOKS = ROOT / "notebooks"
JA = NOTEBOOKS / "ja"
CATALOGUE = JA / "translations"
META_KEYS = ("title", "goal", "step")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def source(cell: dict) -> str:
    return "".join(cell["source"])


def translated_names() -> list[str]:
    """The English notebooks that have a catalogue (the core path)."""
    return sorted(p.stem + ".ipynb" for p in CATALOGUE.glob("*.json"))


def load_catalogue(name: str) -> dict:
    path = CATALOGUE / (Path(name).stem + ".json")
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"meta": {}, "cells": {}}


def english_texts(nb: dict) -> tuple[dict[str, str], dict[str, str]]:
    """What must be translated: the metadata's title/goal/step, and every markdown cell but the header."""
    meta = nb["metadata"].get("nbskeleton", {})
    cells = {c["id"]: source(c) for c in nb["cells"]
             if c["cell_type"] == "markdown" and c.get("metadata", {}).get("nbskeleton") != "header"}
    return {k: meta[k] for k in META_KEYS if k in meta}, cells


def problems(name: str, nb: dict, catalogue: dict) -> list[str]:
    """Missing and stale entries (a stale one translates text the English notebook no longer has)."""
    meta, cells = english_texts(nb)
    out = []
    for kind, english, entries in (("meta", meta, catalogue.get("meta", {})), ("cell", cells, catalogue.get("cells", {}))):
        for key, text in english.items():
            entry = entries.get(key)
            if not entry or not entry.get("ja"):
                out.append(f"{name}: {kind} {key!r} has no translation")
            elif entry.get("en_sha256") != sha(text):
                out.append(f"{name}: {kind} {key!r} is stale: the English text changed since it was translated")
        for key in sorted(set(entries) - set(english)):
            out.append(f"{name}: {kind} {key!r} is translated but the English notebook has no such "
                       f"{'cell' if kind == 'cell' else 'field'}")
    return out


_LINK = re.compile(r"\]\((\.\./)?([^)\s#]+)(#[^)\s]*)?\)")


def rewrite_links(text: str, editions: set[str]) -> str:
    """Links as seen from ``notebooks/ja/``: a notebook with a Japanese edition is a neighbour there, any
    other notebook is one folder up; repository paths (``../README.md``) gain a ``../``, and the README
    becomes README.ja.md."""
    def fix(m: re.Match) -> str:
        up, target, anchor = m.group(1) or "", m.group(2), m.group(3) or ""
        if "://" in target or target.startswith("mailto:"):
            return m.group(0)
        if not up and target.endswith(".ipynb"):
            return f"]({target if target in editions else '../' + target}{anchor})"
        if up:
            if target == "README.md":
                target, anchor = "README.ja.md", ""
            return f"](../../{target}{anchor})"
        return m.group(0)
    return _LINK.sub(fix, text)


def colab_badge_ja(name: str) -> str:
    url = nbskeleton.colab_url(name).replace("/notebooks/", "/notebooks/ja/")
    return f'<a href="{url}" target="_parent"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>'


def header_ja(name: str, meta: dict, editions: list[str], paths: list[Path]) -> str:
    i = editions.index(name)
    prev_link = f"[← {editions[i - 1][:2]}]({editions[i - 1]})" if i else "[← README](../../README.ja.md)"
    if i + 1 < len(editions):
        next_link = f"[{editions[i + 1][:2]} →]({editions[i + 1]})"
    else:  # after the core path: the further part, in English
        after = [p for p in paths if not nbskeleton.is_appendix(p) and p.name[:2] > name[:2]]
        next_link = f"[{after[0].name[:2]} (英語) →](../{after[0].name})" if after else "[README →](../../README.ja.md)"
    appendices = [p.name for p in paths if nbskeleton.is_appendix(p) and p.name[:2] == name[:2]]
    lines = ["<!-- nbtranslate:header — written by tools/nbtranslate.py from the catalogue in notebooks/ja/translations/ -->",
             f"# {meta['title']}", "", f"**目標:** {meta['goal']}", "",
             f"**コアパス（日本語版）。** 元記事: *{nbskeleton.ARTICLE_A}*（A）と *{nbskeleton.ARTICLE_B}*（B）。"
             f"このノートブックの範囲: {meta['step']}。", ""]
    if appendices:
        lines += ["**付録**（英語のみ、必要なときに）: " + "、".join(f"[{a[:3]}](../{a})" for a in appendices) + "。", ""]
    lines += [colab_badge_ja(name), "",
              f"{prev_link} · [ノートブック一覧](../../README.ja.md#ノートブック) · [English](../{name}) · {next_link}"]
    return "\n".join(lines)


def build(name: str, nb: dict, catalogue: dict, editions: list[str], paths: list[Path]) -> dict:
    """The Japanese edition of ``nb`` (its problems must be empty)."""
    out = copy.deepcopy(nb)
    meta = {k: v["ja"] for k, v in catalogue["meta"].items()}
    for cell in out["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        if cell.get("metadata", {}).get("nbskeleton") == "header":
            text = header_ja(name, meta, editions, paths)
        else:
            text = rewrite_links(catalogue["cells"][cell["id"]]["ja"], set(editions))
        cell["source"] = nbskeleton.as_lines(text)
    out["metadata"]["nbtranslate"] = {"language": "ja", "english": f"../{name}"}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if anything is stale or differs")
    p.add_argument("--todo", metavar="NOTEBOOK", help="print the missing and stale entries of one notebook, as JSON")
    p.add_argument("--record", nargs=2, metavar=("NOTEBOOK", "JSON"),
                   help='file translations {"meta": {key: ja}, "cells": {id: ja}} into the catalogue; an entry '
                        'may be {"en_sha256": hash shown by --todo, "ja": text}, refused if the English changed since')
    args = p.parse_args(argv)
    paths = nbskeleton.notebooks()

    def find(given: str) -> str:  # an exact name, with or without .ipynb ('04' would also match 04a)
        names = [q.name for q in paths if q.stem == Path(given).stem]
        if not names:
            raise SystemExit(f"no notebook {given!r}: give its full name, e.g. {paths[0].stem}")
        return names[0]

    if args.record:
        name = find(args.record[0])
        nb = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))
        meta, cells = english_texts(nb)
        given = json.loads(Path(args.record[1]).read_text(encoding="utf-8"))
        catalogue = load_catalogue(name)
        catalogue["notebook"] = name
        for kind, english in (("meta", meta), ("cells", cells)):
            for key, ja in given.get(kind, {}).items():
                if key not in english:
                    raise SystemExit(f"{name}: no {kind} entry {key!r} in the English notebook")
                if isinstance(ja, dict):  # {"en_sha256": what --todo showed, "ja": ...}
                    if ja.get("en_sha256") != sha(english[key]):
                        raise SystemExit(f"{name}: {kind} {key!r}: the English text changed since --todo showed it; "
                                         "translate today's text (--todo again)")
                    ja = ja["ja"]
                catalogue.setdefault(kind, {})[key] = {"en_sha256": sha(english[key]), "ja": ja}
            catalogue[kind] = {k: catalogue[kind][k] for k in english if k in catalogue.get(kind, {})}  # cell order
        CATALOGUE.mkdir(parents=True, exist_ok=True)
        (CATALOGUE / (Path(name).stem + ".json")).write_text(
            json.dumps(catalogue, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print(f"recorded {sum(len(given.get(k, {})) for k in ('meta', 'cells'))} entries for {name}")
        return 0
    if args.todo:
        name = find(args.todo)
        nb = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))
        catalogue = load_catalogue(name)
        meta, cells = english_texts(nb)
        todo = {"meta": {k: {"en_sha256": sha(t), "en": t} for k, t in meta.items()
                         if catalogue["meta"].get(k, {}).get("en_sha256") != sha(t)},
                "cells": {k: {"en_sha256": sha(t), "en": t} for k, t in cells.items()
                          if catalogue["cells"].get(k, {}).get("en_sha256") != sha(t)}}
        print(json.dumps(todo, ensure_ascii=False, indent=1))
        return 0
    editions = translated_names()
    failures = []
    for name in editions:
        nb = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))
        catalogue = load_catalogue(name)
        found = problems(name, nb, catalogue)
        if found:
            failures += found
            continue
        text = nbskeleton.dump(build(name, nb, catalogue, editions, paths))
        target = JA / name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            if args.check:
                failures.append(f"notebooks/ja/{name} is not what the build gives: run tools/nbtranslate.py")
            else:
                target.write_text(text, encoding="utf-8")
                print("built", target.relative_to(ROOT).as_posix())
    for extra in sorted(set(q.name for q in JA.glob("*.ipynb")) - set(editions)):
        failures.append(f"notebooks/ja/{extra} has no catalogue")
    if failures:
        print("\n".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
