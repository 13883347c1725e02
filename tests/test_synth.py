"""Tests of the synthetic face-scene generator: determinism, valid boxes, variety, caching, CLI, data_sample."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import PIL
from PIL import Image
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import synth
from helpers.project import DATA_SAMPLE, ROOT

SMALL = (120, 160)  # (height, width): small scenes keep the file-writing tests fast


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _pinned(package: str) -> str | None:
    m = re.search(rf"^{package}==(\S+)", (ROOT / "requirements.txt").read_text(), re.MULTILINE | re.IGNORECASE)
    return m.group(1) if m else None


# ------------------------------------------------------------------------------------------ determinism
def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path):
    a = synth.generate(tmp_path / "a", 6, seed=3, size=SMALL, workers=1, progress=False)
    b = synth.generate(tmp_path / "b", 6, seed=3, size=SMALL, workers=1, progress=False)
    c = synth.generate(tmp_path / "c", 6, seed=4, size=SMALL, workers=1, progress=False)
    fa, fb, fc = _files(a.parent), _files(b.parent), _files(c.parent)
    assert fa == fb
    assert sorted(fa) == sorted(fc)
    assert fa["bbox.json"] != fc["bbox.json"]
    assert all(fa[name] != fc[name] for name in fa if name.endswith(".jpg"))


def test_number_of_workers_does_not_change_the_output(tmp_path):
    one = synth.generate(tmp_path / "one", 8, seed=5, size=SMALL, workers=1, progress=False)
    two = synth.generate(tmp_path / "two", 8, seed=5, size=SMALL, workers=2, progress=False)
    assert _files(one.parent) == _files(two.parent)


def test_spawn_start_method_gives_the_same_output(tmp_path):
    """Workers started with ``spawn`` (macOS, Windows) import everything they need and agree with fork/in-process."""
    code = (
        "import multiprocessing, sys\n"
        "from helpers.synth import generate\n"
        "if __name__ == '__main__':\n"
        "    multiprocessing.set_start_method('spawn')\n"
        "    generate(sys.argv[1], 4, seed=2, size=(120, 160), workers=2, progress=False)\n"
    )
    script = tmp_path / "spawn_run.py"
    script.write_text(code)
    run = subprocess.run([sys.executable, str(script), str(tmp_path / "spawned")], cwd=tmp_path, env=_env(),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    ref = synth.generate(tmp_path / "ref", 4, seed=2, size=SMALL, workers=1, progress=False)
    assert _files(tmp_path / "spawned") == _files(ref.parent)


def test_render_scene_is_a_pure_function_of_seed_index_size():
    img1, boxes1 = synth.render_scene(11, 7, SMALL)
    img2, boxes2 = synth.render_scene(11, 7, SMALL)
    assert boxes1 == boxes2 and img1.tobytes() == img2.tobytes()
    assert synth.render_scene(11, 8, SMALL)[0].tobytes() != img1.tobytes()


# ------------------------------------------------------------------------------------------ validity
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), index=st.integers(1, synth.MAX_IMAGES),
       width=st.integers(16, 700), height=st.integers(16, 500))
def test_boxes_are_int_ordered_and_inside_the_image(seed, index, width, height):
    img, boxes = synth.render_scene(seed, index, (height, width))
    assert img.mode == "RGB" and img.size == (width, height)
    assert len(boxes) <= 6
    for box in boxes:
        assert len(box) == 4 and all(type(v) is int for v in box)
        x0, y0, x1, y1 = box
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height


def test_bbox_json_names_keys_and_format(tmp_path):
    path = synth.generate(tmp_path, 12, seed=1, size=SMALL, workers=1, progress=False)
    text = path.read_text()
    labels = json.loads(text)
    assert list(labels) == sorted(labels) == [f"image_{i:06d}.jpg" for i in range(1, 13)]
    assert sorted(p.name for p in tmp_path.glob("*.jpg")) == list(labels)
    assert text == synth.bbox_json_text(labels)  # one canonical form
    assert json.loads((tmp_path / synth.META_FILE).read_text()) == {
        "generator": "helpers.synth", "version": synth.GENERATOR_VERSION, "n": 12, "seed": 1,
        "size": list(SMALL), "quality": synth.DEFAULT_QUALITY}
    with Image.open(tmp_path / "image_000001.jpg") as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == SMALL[::-1]  # PIL: (width, height)


# ------------------------------------------------------------------------------------------ variety
def test_scenes_show_the_promised_variety():
    sizes, counts, border, overlapping = [], [], 0, 0
    for index in range(1, 61):
        _, boxes = synth.render_scene(0, index)
        counts.append(len(boxes))
        for x0, y0, x1, y1 in boxes:
            sizes.append(max(x1 - x0, y1 - y0))
            border += x0 == 0 or y0 == 0 or x1 == 640 or y1 == 480
        overlapping += sum(min(p[2], q[2]) > max(p[0], q[0]) and min(p[3], q[3]) > max(p[1], q[1])
                           for p, q in combinations(boxes, 2))
    sizes = np.array(sizes)
    assert min(counts) == 0 and max(counts) <= 6 and sum(c >= 4 for c in counts) >= 5
    assert len(set(counts)) >= 6  # nearly every count from 0 to 6 occurs
    assert sizes.min() < 30 and 150 < sizes.max() <= 210
    assert np.mean(sizes < 50) > 0.15 and np.mean(sizes > 100) > 0.15  # spread, not clustered
    assert border >= 10 and border < 0.6 * len(sizes)  # some, not most, cross the edge
    assert overlapping >= 3


def test_skin_tones_span_light_to_dark():
    rng = np.random.default_rng(0)
    luma = np.array([np.dot(synth._skin(rng), (0.299, 0.587, 0.114)) for _ in range(300)])
    assert luma.min() < 70 and luma.max() > 200
    assert np.mean(luma < 120) > 0.2 and np.mean(luma > 170) > 0.2


# ------------------------------------------------------------------------------------------ ensure_dataset
def test_ensure_dataset_skips_when_current_and_regenerates_when_not(tmp_path, monkeypatch):
    out = tmp_path / "data"
    path = synth.ensure_dataset(out, 4, seed=0, size=SMALL, workers=1, progress=False)
    assert path == out / "bbox.json" and synth.dataset_is_current(out, 4, 0, SMALL)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    assert synth.ensure_dataset(out, 4, seed=0, size=SMALL, workers=1, progress=False) == path
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps  # nothing rewritten

    first = path.read_text()
    synth.ensure_dataset(out, 4, seed=1, size=SMALL, workers=1, progress=False)  # other seed
    assert path.read_text() != first and json.loads((out / "synth.json").read_text())["seed"] == 1

    synth.ensure_dataset(out, 2, seed=1, size=SMALL, workers=1, progress=False)  # fewer images
    assert sorted(p.name for p in out.glob("*.jpg")) == ["image_000001.jpg", "image_000002.jpg"]

    assert not synth.dataset_is_current(out, 2, 1, (SMALL[0], SMALL[1] + 1))
    assert not synth.dataset_is_current(out, 2, 1, SMALL, quality=50)
    monkeypatch.setattr(synth, "GENERATOR_VERSION", synth.GENERATOR_VERSION + 1)
    assert not synth.dataset_is_current(out, 2, 1, SMALL)  # a newer generator redraws


def test_distractors_are_recorded_without_changing_a_pixel(tmp_path):
    # sha256 of the pixels of two scenes as drawn BEFORE distractors were recorded (their rng use is unchanged).
    import hashlib

    before = {(0, 1): "b5ce832caef057c798099c56f92fa699abaf1eb9e6aa462cac4fd548dc49fc3a",
              (7, 3): "27564f776d373a18e002b3d5a53092bc23ce69adeaf26290d32db41838b26e93"}
    for (seed, index), digest in before.items():
        img, boxes, fakes = synth.render_scene(seed, index, distractors=True)
        assert hashlib.sha256(img.tobytes()).hexdigest() == digest
        plain, plain_boxes = synth.render_scene(seed, index)
        assert plain.tobytes() == img.tobytes() and plain_boxes == boxes
        assert all(0 <= b[0] < b[2] <= 640 and 0 <= b[1] < b[3] <= 480 for b in fakes)
    synth.generate(tmp_path, 6, seed=0, size=SMALL, workers=1, progress=False)
    fakes = json.loads((tmp_path / "distractors.json").read_text())
    assert sorted(fakes) == [synth.image_name(i) for i in range(1, 7)]
    assert fakes == {synth.image_name(i): synth.render_scene(0, i, SMALL, distractors=True)[2] for i in range(1, 7)}
    assert sum(map(len, fakes.values())) > 0


def test_ensure_dataset_adds_a_missing_distractors_file_and_keeps_the_images(tmp_path):
    synth.generate(tmp_path, 3, seed=0, size=SMALL, workers=1, progress=False)
    expected = (tmp_path / "distractors.json").read_text()
    (tmp_path / "distractors.json").unlink()  # a folder generated before the file existed
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.jpg")}
    synth.ensure_dataset(tmp_path, 3, seed=0, size=SMALL, workers=1, progress=False)
    assert (tmp_path / "distractors.json").read_text() == expected
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.jpg")} == stamps  # no image redrawn


def test_a_folder_without_bbox_json_or_with_a_missing_image_is_incomplete(tmp_path):
    synth.generate(tmp_path, 3, seed=0, size=SMALL, workers=1, progress=False)
    (tmp_path / "image_000002.jpg").unlink()
    assert not synth.dataset_is_current(tmp_path, 3, 0, SMALL)
    synth.ensure_dataset(tmp_path, 3, seed=0, size=SMALL, workers=1, progress=False)
    assert (tmp_path / "image_000002.jpg").is_file() and synth.dataset_is_current(tmp_path, 3, 0, SMALL)
    (tmp_path / "bbox.json").unlink()
    assert not synth.dataset_is_current(tmp_path, 3, 0, SMALL)


def test_an_interrupted_run_leaves_no_bbox_json(tmp_path, monkeypatch):
    synth.generate(tmp_path, 3, seed=0, size=SMALL, workers=1, progress=False)
    real = synth._render_task

    def failing(task):
        if task[2] == 3:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(synth, "_render_task", failing)
    with pytest.raises(KeyboardInterrupt):
        synth.generate(tmp_path, 3, seed=9, size=SMALL, workers=1, progress=False)
    assert not (tmp_path / "bbox.json").exists() and not (tmp_path / "synth.json").exists()
    assert not synth.dataset_is_current(tmp_path, 3, 9, SMALL)
    assert not synth.dataset_is_current(tmp_path, 3, 0, SMALL)  # the old data set is gone too


def test_other_files_in_the_folder_are_left_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "image_1.jpg").write_text("not one of ours")
    synth.generate(tmp_path, 2, seed=0, size=SMALL, workers=1, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "image_1.jpg").exists()


@pytest.mark.parametrize("kwargs, word", [
    ({"n": -1}, "n"), ({"n": 1_000_000}, "n"), ({"n": 2.0}, "n"), ({"seed": -1}, "seed"),
    ({"size": (0, 100)}, "height"), ({"size": (100,)}, "size"), ({"quality": 100}, "quality"),
    ({"workers": 0}, "workers"),
])
def test_bad_arguments_are_refused_with_the_parameter_named(tmp_path, kwargs, word):
    args = {"n": 2, "size": SMALL, "progress": False} | kwargs
    with pytest.raises(ValueError, match=word):
        synth.generate(tmp_path / "x", **args)
    assert not (tmp_path / "x").exists()


def test_out_dir_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "file"
    target.write_text("")
    with pytest.raises(ValueError, match="not a folder"):
        synth.generate(target, 1, size=SMALL, progress=False)


# ------------------------------------------------------------------------------------------ CLI
def test_cli_writes_the_same_data_set_as_the_api(tmp_path):
    cmd = [sys.executable, "-m", "helpers.synth", "--out", str(tmp_path / "cli"), "--n", "3", "--seed", "7",
           "--size", *map(str, SMALL), "--workers", "1"]
    run = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "wrote 3 images" in run.stdout and "bbox.json" in run.stdout
    assert "3/3" in run.stderr  # the progress bar goes to stderr
    api = synth.generate(tmp_path / "api", 3, seed=7, size=SMALL, workers=1, progress=False)
    assert _files(tmp_path / "cli") == _files(api.parent)


def test_cli_rejects_bad_arguments(tmp_path):
    cmd = [sys.executable, "-m", "helpers.synth", "--out", str(tmp_path / "cli"), "--n", "-5"]
    run = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "n must be >= 0" in run.stderr


# ------------------------------------------------------------------------------------------ data_sample
@pytest.fixture(scope="module")
def regenerated_sample(tmp_path_factory) -> Path:
    """data_sample/ made again with its README's command: ``--n 64 --seed 0`` and the defaults."""
    out = tmp_path_factory.mktemp("data_sample")
    synth.generate(out, 64, seed=0, workers=2, progress=False)
    return out


def test_data_sample_bbox_json_is_what_its_command_makes(regenerated_sample):
    assert (DATA_SAMPLE / "bbox.json").read_text() == (regenerated_sample / "bbox.json").read_text()
    assert (DATA_SAMPLE / "synth.json").read_text() == (regenerated_sample / "synth.json").read_text()
    names = {p.name for p in DATA_SAMPLE.iterdir()}
    assert names == {p.name for p in regenerated_sample.iterdir()} | {"README.md"}
    assert "python -m helpers.synth --out data_sample --n 64 --seed 0" in (DATA_SAMPLE / "README.md").read_text()


@pytest.mark.skipif(PIL.__version__ != _pinned("pillow") or np.__version__ != _pinned("numpy"),
                    reason="JPEG bytes are only reproducible with the pinned Pillow and NumPy")
def test_data_sample_images_are_byte_identical(regenerated_sample):
    different = [p.name for p in sorted(DATA_SAMPLE.glob("*.jpg"))
                 if p.read_bytes() != (regenerated_sample / p.name).read_bytes()]
    assert not different, f"data_sample images differ from a fresh run: {different[:5]}"
