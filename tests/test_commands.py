"""The commands the README gives exist and parse; CI runs exactly the README's `make test` and
`make colab-check`."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("target", ["run", "test", "lab", "refresh", "skeleton", "bench", "unit", "nbtest",
                                    "colab-check"])
def test_make_target_parses(target):
    result = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_make_command_in_the_readme_exists():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    mentioned = set(re.findall(r"`make ([\w-]+)`", readme)) | set(re.findall(r"^make ([\w-]+)", readme, re.M))
    assert {"run", "test", "lab", "refresh", "colab-check"} <= mentioned
    assert mentioned <= targets, f"README mentions targets the Makefile lacks: {mentioned - targets}"


def test_ci_runs_make_test_then_the_colab_check_and_nothing_else():
    commands = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert commands[-2:] == ["make test", "make colab-check"]
    assert all(c.startswith(("set ", "cd ")) for c in commands[:-2]), commands


def test_make_test_and_make_run_go_through_the_tracked_files_guard():
    dry = {t: subprocess.run(["make", "-n", t], cwd=ROOT, capture_output=True, text=True).stdout
           for t in ("test", "run", "nbtest")}
    for target, commands in dry.items():
        assert "tools/keep_tracked.py --" in commands, f"make {target} does not check that tracked files stay"
        assert "FACES_PROGRESS=0" in commands, f"make {target} would record progress bars"


def test_the_kernel_is_registered_inside_the_environment_under_the_notebooks_name():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert 'ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)"' in makefile
    assert "--user" not in makefile
