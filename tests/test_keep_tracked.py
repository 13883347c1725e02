"""tools/keep_tracked.py, which `make test` and `make run` go through, catches a change to a tracked file."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "keep_tracked.py"
pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


@pytest.fixture
def repo(tmp_path):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "tracked.txt").write_text("one\n")
    subprocess.run(git + ["add", "tracked.txt"], cwd=tmp_path, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "x"], cwd=tmp_path, check=True)
    return tmp_path


def run(repo, code):
    return subprocess.run([sys.executable, str(TOOL), "--", sys.executable, "-c", code],
                          cwd=repo, capture_output=True, text=True)


def test_a_command_that_leaves_tracked_files_alone_passes(repo):
    result = run(repo, "open('untracked.txt', 'w').write('x')")
    assert result.returncode == 0, result.stdout


def test_a_command_that_rewrites_a_tracked_file_fails_and_names_it(repo):
    result = run(repo, "open('tracked.txt', 'w').write('two')")
    assert result.returncode == 1 and "tracked.txt" in result.stdout


def test_a_second_change_to_an_already_modified_file_is_caught(repo):
    (repo / "tracked.txt").write_text("edited by hand\n")
    result = run(repo, "open('tracked.txt', 'w').write('two')")
    assert result.returncode == 1


def test_the_command_s_own_failure_is_passed_on(repo):
    assert run(repo, "raise SystemExit(3)").returncode == 3
