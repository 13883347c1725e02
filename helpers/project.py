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
    """``path`` relative to the repository root when it lies inside it, so outputs show no machine paths."""
    p = Path(path).resolve()
    try:
        return p.relative_to(ROOT).as_posix()
    except ValueError:
        return p.name if p.is_absolute() else str(path)
