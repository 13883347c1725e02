"""helpers.convert: WIDER FACE and COCO fixtures round-trip to bbox.json, every error names its place,
and a converted folder (with sub-folders) trains for one epoch through helpers.train's code path."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.convert import ConversionError, DownloadError, convert_coco, convert_wider, download_wider, main
from helpers.datafiles import load_bboxes, read_file_lists
from helpers.dataset import FaceDataset

W, H = 64, 48


def jpeg(path: Path, size: tuple[int, int] = (W, H), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=90)
    return path


WIDER_OK = """\
0--Parade/0_Parade_a_1.jpg
2
4 5 10 12 0 0 0 0 0 0
30 8 20 20 1 0 0 0 1 0
0--Parade/0_Parade_b_2.jpg
0
0 0 0 0 0 0 0 0 0 0
1--Handshaking/1_Hand_c_3.jpg
4
10 10 0 8 0 0 0 0 0 0
50 40 20 20 0 0 0 0 0 0
-2 3 10 10 0 0 0 0 0 0
20 20 8 8 0 0 0 1 0 0
"""


@pytest.fixture
def wider(tmp_path):
    images = tmp_path / "WIDER_train" / "images"
    for k, name in enumerate(["0--Parade/0_Parade_a_1.jpg", "0--Parade/0_Parade_b_2.jpg",
                              "1--Handshaking/1_Hand_c_3.jpg"]):
        jpeg(images / name, seed=k)
    annot = tmp_path / "wider_face_train_bbx_gt.txt"
    annot.write_text(WIDER_OK)
    return annot, images


def test_wider_round_trip(wider, tmp_path):
    annot, images = wider
    out = tmp_path / "out"
    report = convert_wider(annot, images, out)
    boxes = load_bboxes(out / "bbox.json")
    assert boxes == {
        "0--Parade/0_Parade_a_1.jpg": [[4, 5, 14, 17], [30, 8, 50, 28]],
        "0--Parade/0_Parade_b_2.jpg": [],  # count 0 and its placeholder line: no face
        "1--Handshaking/1_Hand_c_3.jpg": [[50, 40, 64, 48], [0, 3, 8, 13]],  # two clipped
    }
    assert (report.images, report.faces, report.clipped) == (3, 4, 2)
    assert report.dropped == {"zero-size boxes": 1, "invalid faces (WIDER flag; --keep-invalid keeps them)": 1}
    text = report.summary()
    assert "kept 3 images with 4 faces" in text and "clipped to the image: 2 boxes" in text
    assert "line 10 (1--Handshaking/1_Hand_c_3.jpg): dropped (zero-size boxes): width 0, height 8" in text
    assert "line 13 (1--Handshaking/1_Hand_c_3.jpg): dropped (invalid faces" in text
    assert "line 11 (1--Handshaking/1_Hand_c_3.jpg): clipped [50, 40, 70, 60] to [50, 40, 64, 48]" in text
    # the images are the same files (hard links here), never re-encoded
    for name in boxes:
        assert (out / name).read_bytes() == (images / name).read_bytes()
    assert report.linked + report.copied == 3
    # the project's own loader reads the folder; 'name' is the bbox.json key, sub-folder included
    lists = read_file_lists(out, test_fraction=0.0)
    ds = FaceDataset(lists.files_train, lists.labels_train, root=out)
    assert [ds[i]["name"] for i in range(len(ds))] == sorted(boxes)
    assert FaceDataset(lists.files_train, lists.labels_train)[0]["name"] == "0_Parade_a_1.jpg"  # no root


def test_wider_keep_invalid_copy_and_beyond_error(wider, tmp_path):
    annot, images = wider
    report = convert_wider(annot, images, tmp_path / "out", keep_invalid=True, copy=True)
    assert report.faces == 5 and report.copied == 3 and report.linked == 0
    assert not os.path.samefile(tmp_path / "out/0--Parade/0_Parade_a_1.jpg", images / "0--Parade/0_Parade_a_1.jpg")
    with pytest.raises(ConversionError, match=re.escape(
            "wider_face_train_bbx_gt.txt, line 11 (1--Handshaking/1_Hand_c_3.jpg): box [x, y, w, h] = "
            "[50, 40, 20, 20] reaches beyond the 48x64 (HxW) image (use --beyond clip to clip such boxes)")):
        convert_wider(annot, images, tmp_path / "out2", beyond="error")
    assert not (tmp_path / "out2" / "bbox.json").exists()


def _wider_error(tmp_path, text: str, images=None) -> str:
    images = images or tmp_path / "imgs"
    for name in ("a.jpg", "b.jpg", "sub/c.jpg"):
        if not (images / name).exists():
            jpeg(images / name)
    annot = tmp_path / "gt.txt"
    annot.write_text(text)
    with pytest.raises(ConversionError) as e:
        convert_wider(annot, images, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written for bad input
    return str(e.value)


@pytest.mark.parametrize("text, message", [
    ("a.jpg\n1\n1 2 3\n", "gt.txt, line 3: expected 10 integers (x y w h blur expression illumination invalid "
                          "occlusion pose), got '1 2 3'"),
    ("a.jpg\n1\n1 2 3 x 0 0 0 0 0 0\n", "gt.txt, line 3: expected 10 integers"),
    ("a.jpg\none\n", "gt.txt, line 2: expected the number of faces of 'a.jpg' (an integer >= 0), got 'one'"),
    ("a.jpg\n-1\n", "gt.txt, line 2: expected the number of faces of 'a.jpg' (an integer >= 0), got '-1'"),
    ("a.jpg\n", "gt.txt, line 1: image 'a.jpg' has no face-count line (end of file)"),
    # count larger than the face lines that follow
    ("a.jpg\n3\n1 1 5 5 0 0 0 0 0 0\nb.jpg\n0\n",
     "gt.txt, line 4: 'a.jpg' on line 1 declares 3 faces but only 1 face line(s) follow before the next image 'b.jpg'"),
    ("a.jpg\n2\n1 1 5 5 0 0 0 0 0 0\n",
     "gt.txt, line 3: 'a.jpg' on line 1 declares 2 faces but only 1 face line(s) follow (end of file or blank line)"),
    # count smaller than the face lines that follow
    ("a.jpg\n1\n1 1 5 5 0 0 0 0 0 0\n2 2 5 5 0 0 0 0 0 0\nb.jpg\n0\n",
     "gt.txt, line 4: expected an image path, got '2 2 5 5 0 0 0 0 0 0' (a face line? 'a.jpg' on line 1 "
     "declares 1 face(s) on line 2: does that count agree with the face lines that follow it?)"),
    ("a.jpg\n0\n1 1 5 5 0 0 0 0 0 0\n",
     "gt.txt, line 3: 'a.jpg' on line 1 declares 0 faces, but this line holds a box [1, 1, 5, 5]; fix the count on line 2"),
    ("a.jpg\n0\n0 0 0 0 0 0 0 0 0 0\nb.jpg\n0\na.jpg\n0\n",
     "gt.txt, line 6: image 'a.jpg' is listed twice (first on line 1)"),
    ("../a.jpg\n0\n", "gt.txt, line 1: image name '../a.jpg' points outside IMAGES_DIR"),
    ("/etc/a.jpg\n0\n", "gt.txt, line 1: image name '/etc/a.jpg' is absolute; names must be relative to IMAGES_DIR"),
    ("sub\\c.jpg\n0\n", "gt.txt, line 1: image name 'sub\\\\c.jpg' contains '\\'; use '/' between folders"),
    ("hello\n", "gt.txt, line 1: expected an image path, got 'hello'"),
    ("missing.jpg\n0\n", "gt.txt, line 1: image imgs/missing.jpg not found"),
    ("", "gt.txt: no image records (is this a WIDER FACE *_bbx_gt.txt file?)"),
    ("a.jpg\n1\n1 1 5 5 0 0 0 0 0 0\n\n\nsub/c.jpg\n0\n", None),  # blank lines between records are fine
])
def test_wider_errors(tmp_path, text, message):
    if message is None:
        (tmp_path / "imgs").mkdir()
        for name in ("a.jpg", "sub/c.jpg"):
            jpeg(tmp_path / "imgs" / name)
        (tmp_path / "gt.txt").write_text(text)
        assert convert_wider(tmp_path / "gt.txt", tmp_path / "imgs", tmp_path / "out").faces == 1
        return
    got = _wider_error(tmp_path, text)
    got = got.replace(str(tmp_path) + "/", "")
    assert message in got, got


def test_not_jpeg_or_png_and_nonempty_output(tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "a.bmp")
    (tmp_path / "gt.txt").write_text("a.bmp\n0\n")
    with pytest.raises(ConversionError, match="line 1: .*a.bmp is not a JPEG or PNG image"):
        convert_wider(tmp_path / "gt.txt", images, tmp_path / "out")
    jpeg(images / "b.jpg")
    (tmp_path / "gt.txt").write_text("b.jpg\n0\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("")
    with pytest.raises(ConversionError, match="the output folder exists and is not empty"):
        convert_wider(tmp_path / "gt.txt", images, tmp_path / "out")


def test_an_image_whose_header_cannot_be_read(tmp_path):
    images = tmp_path / "imgs"
    data = jpeg(images / "cut.jpg").read_bytes()
    (images / "cut.jpg").write_bytes(data[:8])  # cut inside its first marker segment: a JPEG, but unreadable
    (tmp_path / "gt.txt").write_text("cut.jpg\n0\n")
    with pytest.raises(ConversionError) as e:
        convert_wider(tmp_path / "gt.txt", images, tmp_path / "out")
    assert str(e.value).startswith("gt.txt, line 1: cannot read imgs/cut.jpg: "), str(e.value)  # then Pillow's reason
    assert not (tmp_path / "out").exists()


def test_an_unknown_option_value_is_refused_before_anything_is_read(tmp_path):
    with pytest.raises(ValueError, match="^beyond must be 'clip' or 'error', got 'drop'$"):
        convert_wider(tmp_path / "gt.txt", tmp_path, tmp_path / "out", beyond="drop")
    with pytest.raises(ValueError, match="^crowd must be 'skip', 'keep' or 'error', got 'split'$"):
        convert_coco(tmp_path / "c.json", tmp_path, tmp_path / "out", crowd="split")
    with pytest.raises(ValueError, match="^beyond must be 'clip' or 'error', got 'drop'$"):
        convert_coco(tmp_path / "c.json", tmp_path, tmp_path / "out", beyond="drop")


@pytest.mark.parametrize("kind, content, message", [
    ("wider", None, "gt.txt: file not found"),
    ("coco", None, "instances.json: file not found"),
    ("wider", b"a.jpg\n0\n\xff\n", "gt.txt: not UTF-8 text (byte 8)"),
    ("coco", b'{"images": "\xe9"}', "instances.json: not UTF-8 text (byte 12)"),
    ("coco", b'{"images": [', "instances.json: not valid JSON: Expecting value (line 1, column 13)"),
    ("coco", b"[]", "instances.json: the top level must be an object with images, annotations, categories"),
])
def test_annotation_files_that_cannot_be_read(tmp_path, kind, content, message):
    annot = tmp_path / ("gt.txt" if kind == "wider" else "instances.json")
    if content is not None:
        annot.write_bytes(content)
    convert = convert_wider if kind == "wider" else convert_coco
    with pytest.raises(ConversionError) as e:
        convert(annot, tmp_path / "imgs", tmp_path / "out")
    assert str(e.value) == message
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------- COCO


def coco_fixture(tmp_path) -> tuple[Path, Path, dict]:
    images = tmp_path / "coco_images"
    jpeg(images / "train/a.jpg")
    jpeg(images / "train/b.jpg", size=(32, 40))
    jpeg(images / "c.jpg")
    data = {
        "images": [
            {"id": 1, "file_name": "train/a.jpg", "width": W, "height": H},
            {"id": 2, "file_name": "train/b.jpg", "width": 32, "height": 40},
            {"id": 3, "file_name": "c.jpg", "width": W, "height": H},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 7, "name": "face"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 7, "bbox": [2.5, 3, 10, 12], "iscrowd": 0},
            {"id": 11, "image_id": 1, "category_id": 1, "bbox": [0, 0, 30, 40], "iscrowd": 0},
            {"id": 12, "image_id": 2, "category_id": 7, "bbox": [20, 30, 20, 20], "iscrowd": 0},
            {"id": 13, "image_id": 2, "category_id": 7, "bbox": [5, 5, 0, 3]},
            {"id": 14, "image_id": 1, "category_id": 7, "bbox": [30, 10, 20, 20], "iscrowd": 1},
            {"id": 15, "image_id": 2, "category_id": 7, "bbox": [40, 2, 4, 4], "iscrowd": 0},
        ],
    }
    annot = tmp_path / "instances.json"
    annot.write_text(json.dumps(data))
    return annot, images, data


def test_coco_round_trip(tmp_path):
    annot, images, _ = coco_fixture(tmp_path)
    report = convert_coco(annot, images, tmp_path / "out")
    assert load_bboxes(tmp_path / "out" / "bbox.json") == {
        "c.jpg": [],  # no face annotation: a negative example, kept
        "train/a.jpg": [[2.5, 3, 12.5, 15]],
        "train/b.jpg": [[20, 30, 32, 40]],  # clipped
    }
    assert report.dropped == {"annotations of other categories": 1, "zero-size boxes": 1,
                              "crowd annotations (--crowd keep keeps them)": 1,
                              "boxes wholly outside the image": 1}
    assert report.clipped == 1
    assert "instances.json: annotation id 13 (train/b.jpg): dropped (zero-size boxes)" in report.summary()
    assert "annotation id 15 (train/b.jpg): dropped (boxes wholly outside the image): [40, 2, 44, 6]" in report.summary()
    kept = convert_coco(annot, images, tmp_path / "out2", crowd="keep")
    assert kept.faces == 3
    with pytest.raises(ConversionError, match=r"annotation id 14 \(train/a.jpg\): a crowd annotation"):
        convert_coco(annot, images, tmp_path / "out3", crowd="error")


def _coco_error(tmp_path, change) -> str:
    annot, images, data = coco_fixture(tmp_path)
    change(data)
    annot.write_text(json.dumps(data))
    with pytest.raises(ConversionError) as e:
        convert_coco(annot, images, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    return str(e.value)


def _set(path, value):
    def change(data):
        obj = data
        for k in path[:-1]:
            obj = obj[k]
        obj[path[-1]] = value
    return change


@pytest.mark.parametrize("change, message", [
    (_set(["images", 2, "id"], 1), "instances.json: image id 1 appears twice (images[0] and images[2])"),
    (_set(["images", 2, "file_name"], "train/a.jpg"),
     "instances.json: image id 3: file 'train/a.jpg' is listed twice (image ids 1 and 3)"),
    (_set(["images", 2, "file_name"], "../c.jpg"), "image id 3: image name '../c.jpg' points outside IMAGES_DIR"),
    (_set(["images", 2, "file_name"], ""), "instances.json: image id 3: the image name is empty"),
    (_set(["images", 2, "file_name"], "c.txt"), "instances.json: image id 3: 'c.txt' does not end like an image "
                                                "file (.jpg, .jpeg, .png, .bmp, .gif, .webp, .tif, .tiff)"),
    (_set(["images", 2, "width"], 100),
     "image id 3: 'c.jpg' is 48x64 (HxW) as stored but the JSON says 48x100; boxes must refer to the stored pixels"),
    (_set(["images", 2, "width"], "64"), "image id 3: 'width' must be int, got '64'"),
    (_set(["annotations", 0, "bbox"], [1, 2, 3]),
     "annotation id 10 (train/a.jpg): 'bbox' must be [x, y, width, height] (4 numbers), got [1, 2, 3]"),
    (_set(["annotations", 0, "image_id"], 99), "annotation id 10: image_id 99 is not in 'images'"),
    (_set(["annotations", 0, "bbox"], [float("nan"), 3, 10, 12]),  # json writes NaN, and reads it back
     "annotation id 10 (train/a.jpg): box [x, y, w, h] = [nan, 3, 10, 12] has a value that is not a finite number"),
    (_set(["annotations", 2, "bbox"], [20, 30, float("inf"), 20]),
     "annotation id 12 (train/b.jpg): box [x, y, w, h] = [20, 30, inf, 20] has a value that is not a finite number"),
    (_set(["annotations", 1, "id"], 10), "annotation id 10: the id appears twice (the second time at annotations[1])"),
    (_set(["categories", 1, "name"], "head"),
     "instances.json: no category named 'face' (categories: ['head', 'person']); choose one with --category"),
    (lambda d: d["categories"].append({"id": 8, "name": "face"}),
     "instances.json: 2 categories named 'face' (categories: ['face', 'face', 'person']); choose one with --category"),
    (lambda d: d.pop("annotations"), "instances.json: missing 'annotations'"),
    (lambda d: d.update(images=[], annotations=[]), "instances.json: no image to convert"),
    (_set(["images", 0, "file_name"], "nope.jpg"), "image id 1: image coco_images/nope.jpg not found"),
])
def test_coco_errors(tmp_path, change, message):
    got = _coco_error(tmp_path, change).replace(str(tmp_path) + "/", "")
    assert message in got, got


def test_cli(tmp_path, wider, capsys):
    annot, images = wider
    assert main(["wider", str(annot), str(images), str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert "kept 3 images with 4 faces" in out and "dropped: 1 zero-size boxes" in out
    assert main(["wider", str(annot), str(images), str(tmp_path / "cli")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "the output folder exists and is not empty" in err
    coco, coco_images, _ = coco_fixture(tmp_path)
    assert main(["coco", str(coco), str(coco_images), str(tmp_path / "cli2"), "--crowd", "keep"]) == 0
    assert "kept 3 images with 3 faces" in capsys.readouterr().out


def test_converted_folder_trains_one_epoch(tmp_path):
    """A converted folder with sub-folders and mixed image sizes goes through build_loaders and train."""
    from helpers.runconfig import RunConfig
    from helpers.data_path import build_loaders
    from helpers.train import train

    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    lines = []
    for i in range(12):
        w, h = (64, 48) if i % 2 else (40, 56)  # real photos vary in size
        img = rng.integers(0, 120, size=(h, w, 3), dtype=np.uint8)
        img[8:24, 10:26] = (230, 180, 150)
        name = f"{i % 3}--Event/img_{i}.jpg"
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(images / name, quality=95)
        lines += [name, "1", "10 8 16 16 0 0 0 0 0 0"]
    (tmp_path / "gt.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "converted"
    convert_wider(tmp_path / "gt.txt", images, out)
    config = RunConfig(name="convert-test", n_images=12, test_fraction=0.25, data_seed=0, image_size=(24, 32),
                       epochs=1, batch_size=2, lr=1e-2, num_workers=0)
    loaders = build_loaders(config, "cpu", data_dir=out)
    names = [n for batch in loaders[1] for n in batch["name"]]
    assert names and all(re.fullmatch(r"\d--Event/img_\d+\.jpg", n) for n in names)
    result = train(config, loaders=loaders, device="cpu", model_kwargs={"base_channels": 4, "levels": 2,
                                                                         "max_channels": 8},
                   progress=False, log=None, checkpoint_path=tmp_path / "ck.pt")
    assert len(result.history["epoch"]) == 1 and np.isfinite(result.history["train_loss"][0])
    assert {n for n, _ in result.evaluation.per_image} == set(names)


def test_faces_data_points_the_run_config_at_a_converted_folder(wider, tmp_path, monkeypatch):
    from helpers import synth
    from helpers.runconfig import DATA_ENV_VAR, pick_config
    from helpers.checkpoints import config_from_dict

    annot, images = wider
    out = tmp_path / "mine"
    convert_wider(annot, images, out)
    before = (out / "bbox.json").read_text()
    monkeypatch.delenv(DATA_ENV_VAR, raising=False)
    assert pick_config("quick").data_dir.name.startswith("faces-quick-")  # unset: the generated data
    monkeypatch.setenv(DATA_ENV_VAR, str(out))
    config = pick_config("quick")
    assert config.data_dir == out and config.data_folder == str(out)
    assert config_from_dict(config.as_dict()) == config  # a checkpoint records which data it trained on
    # notebook 00/05's call never generates into (or overwrites) a folder it did not write
    assert synth.ensure_dataset(config.data_dir, config.n_images, seed=config.data_seed, progress=False) \
        == out / "bbox.json"
    assert (out / "bbox.json").read_text() == before and not (out / "synth.json").exists()
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"FACES_DATA='.*nowhere': no bbox.json in that folder"):
        pick_config("quick")


def test_wider_file_from_windows_and_coco_without_sizes(tmp_path):
    """A byte-order mark and CRLF line ends (a file saved on Windows) are read; COCO width/height may be absent."""
    jpeg(tmp_path / "imgs" / "sub" / "a.jpg")
    (tmp_path / "gt.txt").write_bytes("\ufeffsub/a.jpg\r\n1\r\n1 2 3 4 0 0 0 0 0 0\r\n".encode("utf-8"))
    assert load_bboxes(convert_wider(tmp_path / "gt.txt", tmp_path / "imgs", tmp_path / "o1").out_dir / "bbox.json") \
        == {"sub/a.jpg": [[1, 2, 4, 6]]}
    coco = {"images": [{"id": 1, "file_name": "sub/a.jpg"}], "categories": [{"id": 1, "name": "face"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}]}
    (tmp_path / "c.json").write_text(json.dumps(coco))
    assert convert_coco(tmp_path / "c.json", tmp_path / "imgs", tmp_path / "o2").faces == 1


def test_decode_finds_a_truncated_image_the_header_check_lets_through(tmp_path, capsys):
    images = tmp_path / "imgs"
    jpeg(images / "ok.jpg")
    data = jpeg(images / "cut.jpg", seed=3).read_bytes()
    (images / "cut.jpg").write_bytes(data[: len(data) // 2])  # the header is intact, the pixels are not
    (tmp_path / "gt.txt").write_text("ok.jpg\n1\n1 1 5 5 0 0 0 0 0 0\ncut.jpg\n0\n")
    plain = convert_wider(tmp_path / "gt.txt", images, tmp_path / "o1")
    assert plain.ok and plain.validation is None
    report = convert_wider(tmp_path / "gt.txt", images, tmp_path / "o2", decode=True)
    assert not report.ok and [p.file.rsplit("/", 1)[-1] for p in report.validation.problems] == ["cut.jpg"]
    assert "decoded every image (FaceDataset.validate): 1 with a problem" in report.summary()
    assert "truncated JPEG" in report.summary()
    assert main(["wider", str(tmp_path / "gt.txt"), str(images), str(tmp_path / "o3"), "--decode"]) == 1
    assert "truncated JPEG" in capsys.readouterr().out


# ------------------------------------------------------------------------------- the WIDER FACE download


def _no_network(request, timeout):
    import socket
    import urllib.error

    raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))


def _network(request, timeout):
    class Answer:
        def close(self):
            pass

    return Answer()


def _refused(root, split, download):
    raise RuntimeError("File not found or corrupted.\n(more lines from inside torchvision)")


@pytest.mark.parametrize("urlopen, has_gdown, widerface, message", [
    (_no_network, True, None,
     "cannot reach https://drive.google.com to download WIDER FACE ([Errno -2] Name or service not known): "
     "this machine seems to be offline; connect it to the internet (Colab is), or unset FACES_DOWNLOAD_WIDER "
     "to skip the download"),
    (_network, False, None,
     "torchvision downloads WIDER FACE from Google Drive with the gdown package, which is not installed: "
     "pip install gdown (Colab has it), or unset FACES_DOWNLOAD_WIDER to skip the download"),
    (_network, True, _refused,
     "downloading WIDER FACE failed (RuntimeError: File not found or corrupted.); try again later "
     "(Google Drive limits how often a file is fetched), or unset FACES_DOWNLOAD_WIDER to skip the download"),
])
def test_a_failed_wider_download_says_what_happened_in_one_line(tmp_path, monkeypatch, urlopen, has_gdown,
                                                                widerface, message):
    """Notebook 08's opt-in download cell, offline or without gdown: one line, not torchvision's traceback."""
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr("urllib.request.urlopen", urlopen)  # no test reaches the network
    monkeypatch.setattr("importlib.util.find_spec",
                        lambda name, *a: (object() if has_gdown else None) if name == "gdown" else find_spec(name, *a))
    monkeypatch.setattr("torchvision.datasets.WIDERFace", widerface or _refused)
    with pytest.raises(DownloadError) as e:
        download_wider(tmp_path)
    assert str(e.value) == message
    shown_below = e.value.__cause__ or (None if e.value.__suppress_context__ else e.value.__context__)
    assert shown_below is None  # no traceback from inside torchvision chained under the message


def test_a_wider_download_returns_the_folder_convert_wider_reads(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("urllib.request.urlopen", _network)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: object())
    monkeypatch.setattr("torchvision.datasets.WIDERFace", lambda **kw: calls.append(kw))
    assert download_wider(tmp_path / "dl") == tmp_path / "dl" / "widerface"
    assert calls == [{"root": str(tmp_path / "dl"), "split": "train", "download": True}]
