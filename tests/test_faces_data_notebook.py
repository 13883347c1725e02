"""``FACES_DATA`` reaches notebook 05 and its appendix 05b: they run top to bottom, each in a fresh
kernel, on a folder that helpers.convert wrote (WIDER format, sub-folders in the names, no
``distractors.json``), so a check that only the generated data passes cannot slip back in unguarded.
The quick configuration as it is (16 epochs) on 64 images: 25-40 s on a 2-core CPU for 05; 05b then
loads the checkpoint 05 wrote.

The kernels run in a copy of ``helpers/`` and the notebooks, so the checkpoint and the figure the
notebooks write go to that copy's ``outputs/``, never to this clone's."""
from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

from helpers.convert import convert_wider
from helpers.datafiles import load_bboxes
from helpers.notebook import PROGRESS_ENV
from helpers.project import DATA_SAMPLE, ROOT
from helpers.runconfig import DATA_ENV_VAR, ENV_VAR

sys.path.insert(0, str(ROOT / "tools"))
from run_notebooks import machine_paths, run_in_fresh_kernel  # noqa: E402  (how `make run` executes them)

#: The two event folders the sample's images are spread over, as in WIDER FACE (``0--Parade/...``).
EVENTS = ("0--Parade", "1--Picnic")


def converted_sample(tmp_path: Path) -> Path:
    """The 64 images of ``data_sample/`` in a WIDER FACE annotation file, alternately in the two event
    folders, converted by ``helpers.convert``: a data folder as a reader's own would be."""
    images = tmp_path / "WIDER_train" / "images"
    lines = []
    for k, (name, boxes) in enumerate(sorted(load_bboxes(DATA_SAMPLE / "bbox.json").items())):
        key = f"{EVENTS[k % 2]}/{name}"
        (images / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DATA_SAMPLE / name, images / key)
        assert all(float(v).is_integer() for box in boxes for v in box)  # WIDER writes whole pixels
        faces = [f"{x0:g} {y0:g} {x1 - x0:g} {y1 - y0:g} 0 0 0 0 0 0" for x0, y0, x1, y1 in boxes]
        lines += [key, str(len(faces)), *(faces or ["0 0 0 0 0 0 0 0 0 0"])]
    annotations = tmp_path / "wider_face_train_bbx_gt.txt"
    annotations.write_text("\n".join(lines) + "\n")
    out = tmp_path / "converted"
    report = convert_wider(annotations, images, out)
    assert report.images == 64 and not report.dropped and not report.clipped
    return out


def printed(nb) -> str:
    """Everything the executed notebook's code cells printed (stdout and stderr)."""
    return "".join(out.get("text", "") for cell in nb.cells for out in cell.get("outputs", [])
                   if out.get("output_type") == "stream")


@pytest.mark.slow
def test_notebook_05_and_05b_run_top_to_bottom_on_a_converted_folder(tmp_path):
    data = converted_sample(tmp_path)
    assert not (data / "distractors.json").exists() and (data / EVENTS[1]).is_dir()
    repo = tmp_path / "repo"  # what the Setup cell needs to find its root: helpers/ beside notebooks/
    shutil.copytree(ROOT / "helpers", repo / "helpers", ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "notebooks").mkdir()
    (repo / "docs").mkdir()  # the sweep records notebook 05 renders
    for record in sorted((ROOT / "docs").glob("tune_validation*.json")):
        shutil.copy2(record, repo / "docs" / record.name)
    nb = nbformat.read(ROOT / "notebooks" / "05_training.ipynb", as_version=4)
    appendix = nbformat.read(ROOT / "notebooks" / "05b_appendix_evaluation_in_depth.ipynb", as_version=4)
    env = {**os.environ, DATA_ENV_VAR: str(data), ENV_VAR: "quick", PROGRESS_ENV: "0"}

    error = run_in_fresh_kernel(nb, repo / "notebooks", timeout=600, env=env)

    text = printed(nb)
    assert error is None, f"notebook 05 failed on a converted folder: {error}\n{text[-3000:]}"
    assert "quick: the images of converted rescaled to 120x160 (HxW), 16 epochs" in text
    assert "your folder: the targets below were fixed for the generated data; here they are printed" in text
    assert "labels: converted/bbox.json" in text  # the folder by its name: no machine path
    assert re.search(r"^ *training: \d+ images", text, re.M)
    assert not machine_paths(nb), machine_paths(nb)
    assert (repo / "outputs" / "checkpoints" / "faces-quick.pt").is_file()  # in the copy, not in this clone

    error = run_in_fresh_kernel(appendix, repo / "notebooks", timeout=300, env=env)

    text = printed(appendix)
    assert error is None, f"appendix 05b failed on a converted folder: {error}\n{text[-3000:]}"
    assert "loaded notebook 05's network from outputs/checkpoints/faces-quick.pt" in text  # 05's, not retrained
    # the worst validation images are named by their bbox.json keys, event folder included
    worst = re.findall(r"^(\S+\.jpg): IoU ", text, re.M)
    assert worst and all(name.split("/")[0] in EVENTS for name in worst), worst
    assert not machine_paths(appendix), machine_paths(appendix)
