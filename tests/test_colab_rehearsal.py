"""A fresh Colab runtime, rehearsed: every notebook's Setup cell clones the repository (redirected to a
snapshot of this tree), imports helpers from the clone, finds data_sample/, and leaves torch and
torchvision as they were (a Setup cell identical to one already rehearsed runs once; every badge is
checked). `make colab-check` runs the whole notebooks with Colab's older versions."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import colab_rehearsal  # noqa: E402


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs git and a clone")
def test_every_setup_cell_works_on_a_fresh_colab_runtime():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "colab_rehearsal.py"), "--setup-only"],
                            cwd=ROOT, capture_output=True, text=True, timeout=900)
    n = len(list((ROOT / "notebooks").glob("*.ipynb")))
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert f"Colab rehearsal: {n} of {n} notebooks without a problem" in result.stdout


def test_a_badge_pointing_at_another_notebook_is_caught():
    path = sorted((ROOT / "notebooks").glob("*.ipynb"))[0]
    nb = nbformat.read(path, as_version=4)
    assert colab_rehearsal.badge_problem(nb, path.name) is None
    assert "does not point at" in colab_rehearsal.badge_problem(nb, "99_elsewhere.ipynb")


def test_the_colab_stub_makes_google_colab_importable_without_hiding_google_packages(tmp_path):
    startup = tmp_path / "stub.py"
    startup.write_text(colab_rehearsal.COLAB_STUB + "import google.colab\nprint('ok')\n")
    out = subprocess.run([sys.executable, str(startup)], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "ok"
