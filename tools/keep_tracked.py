#!/usr/bin/env python3
"""Run a command and fail if it changed a file git tracks: `make test` and `make run` must not.

    python tools/keep_tracked.py -- pytest -q tests notebooks

Exit status: the command's own if it failed, else 1 if a tracked file differs from before (the files
are listed), else 0. Outside a git clone the command just runs.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys


def tracked_state() -> tuple[str, str] | None:
    """(``git status`` of tracked files, digest of their diff against HEAD), or None outside git."""
    status = subprocess.run(["git", "status", "--porcelain=v1", "--untracked-files=no"],
                            capture_output=True, text=True)
    if status.returncode != 0:
        return None
    diff = subprocess.run(["git", "diff", "--binary", "HEAD"], capture_output=True, check=True).stdout
    return status.stdout, hashlib.sha256(diff).hexdigest()


def changed_files(before: str, after: str) -> list[str]:
    files = set(after.splitlines()) ^ set(before.splitlines())
    return sorted({line[3:] for line in files}) or ["(a file already modified before was changed again)"]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print(__doc__)
        return 2
    before = tracked_state()
    rc = subprocess.run(argv).returncode
    after = tracked_state()
    if rc == 0 and before is not None and after != before:
        changed = changed_files(before[0], after[0])
        print("this command changed files that git tracks (it must not):", *changed, sep="\n  ")
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
