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


def relative(path: str | Path, folders: int = 0) -> str:
    """``path`` relative to the repository root when it lies inside it, so outputs show no machine paths
    (the one definition: every message and output that names a file goes through it).

    Outside the repository a relative path is shown as given, and an absolute one by its name and its
    last ``folders`` folders (``folders=1``: ``faces/bbox.json``), never by the machine's whole path."""
    given = Path(path)
    try:
        return given.resolve().relative_to(ROOT).as_posix()
    except (ValueError, OSError):
        if not given.is_absolute():
            return given.as_posix()
        parts = given.parts[1:]  # without the root
        return "/".join(parts[-(folders + 1):]) if parts else given.as_posix()


def write_json(path: str | Path, data) -> Path:
    """Write ``data`` as indented JSON to ``path`` (folders created): how every command here saves its
    ``--json`` result."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path
