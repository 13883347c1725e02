"""Where things are: this repository's folders and its GitHub address (the one place it is named)."""
from __future__ import annotations

from pathlib import Path

#: GitHub "owner/name" of this repository. The Colab badges and the Setup cell that
#: fetches the repository on Colab are generated from this line by tools/nbskeleton.py;
#: a fork changes it here and runs `make skeleton`.
GITHUB_REPO = "face-pixels/pytorch-large-image-data"
GITHUB_BRANCH = "main"
REPO_URL = f"https://github.com/{GITHUB_REPO}"

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
DATA_SAMPLE = ROOT / "data_sample"
#: Everything generated (data sets, executed notebooks, checkpoints, figures) goes here; ignored by git.
OUTPUTS = ROOT / "outputs"


def relative(path: str | Path) -> str:
    """``path`` relative to the repository root when it lies inside it, so outputs show no machine paths
    (the one definition: every message and output that names a file goes through it)."""
    given = Path(path)
    try:
        return given.resolve().relative_to(ROOT).as_posix()
    except (ValueError, OSError):
        # Outside the repository: a relative path as the caller gave it; an absolute one by its name
        # only, so no message or output shows a path of this machine.
        return given.name if given.is_absolute() else given.as_posix()
