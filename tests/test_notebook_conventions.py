"""Every notebook follows the collection's skeleton and is part of the nbval run."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import COLLECTED_NOTEBOOKS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
sys.path.insert(0, str(ROOT / "tools"))
from run_notebooks import MACHINE_PATH  # noqa: E402  (the one definition: make run checks with it too)


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_there_are_notebooks_numbered_in_reading_order():
    names = [p.name for p in NOTEBOOKS]
    assert names, "no notebooks found"
    assert all(re.match(r"^\d\d(_[a-z0-9_]+|[a-z]_appendix_[a-z0-9_]+)\.ipynb$", n) for n in names), names
    numbers = [int(n[:2]) for n in names if n[2] == "_"]
    assert numbers == list(range(len(numbers))), f"numbers should run 00, 01, ... without gaps: {names}"
    for n in (n for n in names if n[2] != "_"):  # 01a_appendix_..., 01b_...: after an 01, letters in order
        assert int(n[:2]) in numbers and (n[2] == "a" or any(m[:3] == n[:2] + chr(ord(n[2]) - 1) for m in names)), n


def test_nbval_collects_every_notebook(request):
    if not request.config.getoption("nbval", default=False):
        pytest.skip("meaningful only with --nbval, as `make test` runs it")
    collected = request.config.stash.get(COLLECTED_NOTEBOOKS, set())
    missing = [p.name for p in NOTEBOOKS if p.resolve() not in collected]
    assert not missing, f"these notebooks are not run by nbval: {missing}"


def test_skeleton_cells_and_readme_table_are_up_to_date():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "nbskeleton.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_was_executed_top_to_bottom_with_clean_outputs(path):
    nb = load(path)
    code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    counts = [c.get("execution_count") for c in code]
    assert counts == list(range(1, len(code) + 1)), f"re-run {path.name} top to bottom in a fresh kernel: {counts}"
    assert nb["cells"][0]["metadata"].get("nbskeleton") == "header"
    assert "colab.research.google.com" in "".join(nb["cells"][0]["source"])
    assert nb["cells"][1]["metadata"].get("nbskeleton") == "setup"
    for cell in code:
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", f"{path.name}: a saved error output"
            texts = [out.get("text", "")] + [v for k, v in out.get("data", {}).items() if k.startswith("text/")]
            for text in texts:
                text = "".join(text) if isinstance(text, list) else text
                hit = MACHINE_PATH.search(text)
                assert not hit, f"{path.name}: an output shows a path of this machine: {hit.group(1)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_opens_and_saves_in_jupyterlab_without_a_diff(path):
    """The kernelspec JupyterLab writes for the kernel `make setup` registers, no execution timestamps,
    no progress-bar frames (stderr carriage returns), and the Setup cell collapsed in Lab and Colab."""
    nb = load(path)
    assert nb["metadata"]["kernelspec"] == {"display_name": "Python 3 (ipykernel)", "language": "python",
                                            "name": "python3"}
    for cell in nb["cells"]:
        assert "execution" not in cell.get("metadata", {}), f"{path.name}: execution timestamps in a cell"
        for out in cell.get("outputs", []):
            text = "".join(out.get("text", ""))
            assert not (out.get("name") == "stderr" and "\r" in text), f"{path.name}: progress-bar frames saved"
    setup = nb["cells"][1]["metadata"]
    assert setup.get("jupyter", {}).get("source_hidden") is True and setup.get("cellView") == "form"
    assert max(len(line) for line in nb["cells"][1]["source"]) <= 110


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_ends_with_what_we_checked_and_exercises(path):
    text = "\n".join("".join(c["source"]) for c in load(path)["cells"] if c["cell_type"] == "markdown")
    assert "## What we checked" in text, f"{path.name}: add a 'What we checked' section"
    assert "## Exercises" in text, f"{path.name}: add an 'Exercises' section"


#: The project's image sizes written width-first: the collection writes sizes height × width (H×W), the
#: order of torch's shapes and of ``RunConfig.image_size`` (README, "Conventions").
WIDTH_FIRST = re.compile(r"\b(640\s*[x×]\s*480|160\s*[x×]\s*120|320\s*[x×]\s*240)\b")


def _texts_to_check():
    for path in NOTEBOOKS:
        for cell in load(path)["cells"]:
            yield f"notebooks/{path.name}", "".join(cell["source"])
            for out in cell.get("outputs", []):
                yield f"notebooks/{path.name} (output)", "".join(out.get("text", "")) + "".join(
                    "".join(v) for k, v in out.get("data", {}).items() if k == "text/plain")
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "helpers").rglob("*.py"))]:
        yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")


def test_sizes_are_written_height_by_width_everywhere():
    offenders = sorted({f"{where}: {m.group(1)}" for where, text in _texts_to_check()
                        for m in WIDTH_FIRST.finditer(text)})
    assert not offenders, "sizes are written H×W (e.g. 480x640); width-first found in:\n" + "\n".join(offenders)


def test_each_helper_module_names_the_notebooks_that_use_it():
    """A module's docstring ends with 'Notebooks: NN teaches it; ... use it.' listing every notebook that
    imports it (tools/nbskeleton.py reads the imports), so a reader of the code finds the lesson."""
    import ast

    sys.path.insert(0, str(ROOT / "tools"))
    from nbskeleton import PLUMBING, helper_modules

    users: dict[str, set[str]] = {}
    for path in NOTEBOOKS:
        for module in helper_modules(load(path)):
            users.setdefault(module, set()).add(path.name[:2])
    for module, numbers in sorted(users.items()):
        assert module not in PLUMBING
        doc = ast.get_docstring(ast.parse((ROOT / "helpers" / f"{module.replace('.', '/')}.py").read_text(encoding="utf-8"))) or ""
        line = next((x for x in doc.splitlines() if x.startswith("Notebooks:")), "")
        assert line, f"helpers/{module}.py: its docstring lacks a 'Notebooks:' line"
        missing = sorted(n for n in numbers if n not in re.findall(r"\b\d\d\b", line))
        assert not missing, f"helpers/{module}.py: notebooks {missing} import it but its 'Notebooks:' line omits them"


def _printed_text(notebook: dict) -> str:
    """Everything a notebook's code printed or displayed as text."""
    parts = []
    for cell in notebook["cells"]:
        for out in cell.get("outputs", []):
            if "text" in out:
                parts.append("".join(out["text"]))
            for kind, value in out.get("data", {}).items():
                if kind in ("text/plain", "text/markdown"):
                    parts.append("".join(value))
    return "\n".join(parts)


def test_every_figure_in_the_readme_results_is_printed_by_notebook_05_or_its_appendices():
    """The README's results cannot go stale: each number in its Results section appears in the committed
    outputs of notebook 05 or its appendices (05a: the sweep and the model's size, 05b: the photograph),
    but section references (§8.1) and the full configuration's settings, which are checked against
    helpers.runconfig instead."""
    from helpers.runconfig import CONFIGS

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("## Results")
    section = readme[start:readme.index("\n## ", start + 1)]
    full = CONFIGS["full"]
    settings = f"The full configuration ({full.n_images:,} images at {full.image_size[0]}×{full.image_size[1]}, " \
               f"{full.epochs} epochs)"
    assert settings in section, f"the README's full-configuration sentence no longer says: {settings}"
    section = section.replace(settings, "")
    section = re.sub(r"§\d+(\.\d+)*", "", section)
    printed = "\n".join(_printed_text(load(path)) for path in sorted((ROOT / "notebooks").glob("05*.ipynb")))
    numbers = set(re.findall(r"(?<![\w.])\d[\d,]*(?:\.\d+)?%?(?:/\d+)?", section))
    assert len(numbers) > 30, f"only {len(numbers)} numbers found in the Results section"
    missing = sorted(n for n in numbers if n not in printed and n.replace(",", "") not in printed)  # 1,597 = 1597
    assert not missing, f"README Results numbers that notebook 05 and its appendices do not print: {missing}"


def test_every_figure_in_the_readme_measured_section_is_in_the_pasted_benchmark_output():
    """The README's Measured table quotes docs/benchmarks.md, where the benchmark commands' output is
    pasted: each of its numbers must be there (so a new run pasted there and not here shows up)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("## Measured")
    section = readme[start:readme.index("\n## ", start + 1)]
    docs = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    numbers = set(re.findall(r"(?<![\w.])\d[\d,]*(?:\.\d+)?%?(?:/\d+)?", section))
    assert len(numbers) > 15, f"only {len(numbers)} numbers found in the Measured section"
    missing = sorted(n for n in numbers if n not in docs and n.replace(",", "") not in docs)
    assert not missing, f"README Measured numbers that docs/benchmarks.md does not hold: {missing}"
