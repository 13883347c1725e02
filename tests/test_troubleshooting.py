"""docs/troubleshooting.md quotes the messages this repository prints: re-create them and check that
every quoted one still reads as quoted (the numbers and paths of the examples included)."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from helpers.datafiles import read_file_lists
from helpers.dataset import FaceDataset
from helpers.loader import DEFAULT_TIMEOUT_S
from helpers.project import OUTPUTS, ROOT, relative
from helpers.setup_env import check_versions

DOC = (ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8")


@pytest.fixture
def folder():
    """A data folder inside the repository (messages show such paths relative to it), shown as outputs/mydata."""
    OUTPUTS.mkdir(exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="troubleshooting-", dir=OUTPUTS))
    yield path
    shutil.rmtree(path)


def message(folder: Path, call) -> str:
    with pytest.raises(Exception) as e:
        call()
    text = f"{type(e.value).__module__}.{type(e.value).__name__}: {e.value}"
    return text.replace(relative(folder), "outputs/mydata").replace("builtins.", "")


def write(folder: Path, boxes: dict, exif_orientation: int | None = None) -> None:
    img = Image.new("RGB", (640, 480))
    exif = img.getexif()
    if exif_orientation:
        exif[0x0112] = exif_orientation
    img.save(folder / "image_000001.jpg", exif=exif.tobytes())
    (folder / "bbox.json").write_text(json.dumps(boxes))


def first_sample(folder: Path):
    lists = read_file_lists(folder, 0.0)
    return FaceDataset(lists.files_train, lists.labels_train)[0]


def test_the_quoted_data_messages_are_the_printed_ones(folder):
    write(folder, {"image_000001.jpg": [[300, 200, 250, 260]]})
    quoted = [message(folder, lambda: read_file_lists(folder, 0.0))]
    write(folder, {"image_000001.jpg": [[500, 200, 700, 260]]})
    quoted.append(message(folder, lambda: first_sample(folder)))
    write(folder, {"image_000001.jpg": [], "image_000002.jpg": []})
    quoted.append(message(folder, lambda: read_file_lists(folder, 0.0)))
    quoted.append(message(folder, lambda: FaceDataset([folder / "image_000002.jpg"], [[]])[0]))
    # EXIF: stored 640x480, orientation 6 (shown 480 wide, 640 high), box drawn on the upright picture
    write(folder, {"image_000001.jpg": [[100, 400, 300, 600]]}, exif_orientation=6)
    quoted.append(message(folder, lambda: first_sample(folder)))
    for text in quoted:
        assert text in DOC, text


def test_the_quoted_setup_and_loader_messages_are_the_printed_ones():
    old = message(Path("/nonexistent"), lambda: check_versions({"torchvision": "99.0"}))
    import torchvision
    old = old.replace(torchvision.__version__, "0.21.0").replace("99.0", "0.24")
    assert old in DOC
    assert f"RuntimeError: DataLoader timed out after {DEFAULT_TIMEOUT_S} seconds" in DOC
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    too_old = "Python 3.10+ is needed (3.11 recommended); set PYTHON=python3.11"
    assert too_old in makefile and too_old in DOC
