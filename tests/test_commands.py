"""The commands the README gives exist and parse; CI runs exactly the README's `make test`."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("target", ["run", "test", "lab", "refresh", "skeleton", "bench", "unit", "nbtest"])
def test_make_target_parses(target):
    result = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_make_command_in_the_readme_exists():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    mentioned = set(re.findall(r"`make (\w+)`", readme)) | set(re.findall(r"^make (\w+)", readme, re.M))
    assert {"run", "test", "lab", "refresh"} <= mentioned
    assert mentioned <= targets, f"README mentions targets the Makefile lacks: {mentioned - targets}"


def test_ci_runs_make_test_and_nothing_else():
    commands = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert commands[-1] == "make test"
    assert all(c.startswith(("set ", "cd ")) for c in commands[:-1]), commands
