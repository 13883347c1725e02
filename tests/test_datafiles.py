"""bbox.json validation, the stable train/test split, the file lists, and the memory estimates."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from helpers.datafiles import FileLists, check_boxes_inside, load_bboxes, read_file_lists, split_train_test, split_train_val_test
from helpers.lab.memory import eager_load_bytes, extrapolate, label_list_bytes, path_list_bytes
from helpers.errors import BBoxFormatError, DataError, ImageReadError


def write_json_text(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bbox.json"
    path.write_text(text, encoding="utf-8")
    return path


def write_bbox(folder: Path, data) -> Path:
    return write_json_text(folder, json.dumps(data))


def make_folder(folder: Path, boxes: dict, size=(40, 30)) -> Path:
    """A tiny data folder: one small JPEG per name in ``boxes`` and the bbox.json."""
    for name in boxes:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (120, 80, 40)).save(path)
    write_bbox(folder, boxes)
    return folder


# --- load_bboxes: good input ------------------------------------------------------------------------


def test_load_bboxes_returns_floats_in_file_order(tmp_path):
    path = write_bbox(tmp_path, {"b.jpg": [[1, 2, 3, 4], [0, 0, 10.5, 20]], "a.jpg": [], "sub/c.jpg": [[5, 5, 6, 6]]})
    boxes = load_bboxes(path)
    assert list(boxes) == ["b.jpg", "a.jpg", "sub/c.jpg"]
    assert boxes["b.jpg"] == [[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 10.5, 20.0]]
    assert all(isinstance(v, float) for v in boxes["b.jpg"][0])
    assert boxes["a.jpg"] == []


def test_load_bboxes_accepts_inside_paths_that_are_not_normalised(tmp_path):
    boxes = load_bboxes(write_bbox(tmp_path, {"./a.jpg": [], "sub/../b.jpg": []}))
    assert list(boxes) == ["./a.jpg", "sub/../b.jpg"]


# --- load_bboxes: every bad case names the file and the entry -------------------------------------

BAD_BOXES = [
    # (value of entry 'img.jpg', words the message must contain)
    ({"x": 1}, ["entry 'img.jpg'", "list of boxes", "dict"]),
    ("[1,2,3,4]", ["entry 'img.jpg'", "list of boxes", "str"]),
    (None, ["entry 'img.jpg'", "NoneType"]),
    ([[1, 2, 3]], ["entry 'img.jpg', box 0", "4 numbers"]),
    ([[1, 2, 3, 4, 5]], ["entry 'img.jpg', box 0", "4 numbers"]),
    ([[0, 0, 5, 5], "1,2,3,4"], ["entry 'img.jpg', box 1", "4 numbers"]),
    ([[1, 2, "3", 4]], ["entry 'img.jpg', box 0", "4 numbers"]),
    ([[True, 0, 5, 5]], ["entry 'img.jpg', box 0", "4 numbers"]),
    ([[0, 0, 5, None]], ["entry 'img.jpg', box 0", "4 numbers"]),
    ([[0, 0, 5, 5], [0, 0, 5, 5], [12, 0, 10, 5]], ["entry 'img.jpg', box 2: x_max (10.0) must be > x_min (12.0)"]),
    ([[3, 0, 3, 5]], ["box 0: x_max (3.0) must be > x_min (3.0)"]),
    ([[0, 7, 5, 2]], ["box 0: y_max (2.0) must be > y_min (7.0)"]),
    ([[0, 4, 5, 4]], ["box 0: y_max (4.0) must be > y_min (4.0)"]),
    ([[-1, 0, 5, 5]], ["box 0: x_min (-1.0) is negative"]),
    ([[0, -0.5, 5, 5]], ["box 0: y_min (-0.5) is negative"]),
    ([[0, 0, 10**400, 5]], ["box 0", "too large"]),
]


@pytest.mark.parametrize("value, words", BAD_BOXES)
def test_bad_boxes_raise_naming_file_entry_and_box(tmp_path, value, words):
    path = write_bbox(tmp_path, {"ok.jpg": [[0, 0, 1, 1]], "img.jpg": value})
    with pytest.raises(BBoxFormatError) as err:
        load_bboxes(path)
    msg = str(err.value)
    assert "bbox.json: " in msg
    for w in words:
        assert w in msg


@pytest.mark.parametrize("literal, name", [("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "-inf")])
def test_non_finite_coordinates_raise(tmp_path, literal, name):
    # json.dumps would write these too; Python's json accepts them, the contract does not.
    path = write_json_text(tmp_path, '{"img.jpg": [[0, 0, 5, %s]]}' % literal)
    with pytest.raises(BBoxFormatError, match=rf"entry 'img.jpg', box 0: y_max is {name}, not a finite number"):
        load_bboxes(path)


@pytest.mark.parametrize(
    "key, words",
    [
        ("", ["entry ''", "empty"]),
        ("../x.jpg", ["entry '../x.jpg'", "outside the data folder"]),
        ("a/../../x.jpg", ["entry 'a/../../x.jpg'", "outside the data folder"]),
        ("..", ["outside the data folder"]),
        (".", ["outside the data folder"]),
        ("/etc/x.jpg", ["entry '/etc/x.jpg'", "relative"]),
        ("C:/data/x.jpg", ["entry 'C:/data/x.jpg'", "relative"]),
        ("\\\\server\\share\\x.jpg", ["relative"]),
        ("bad\x00name.jpg", ["NUL"]),
        ("bad\ud800.jpg", ["not valid Unicode"]),
    ],
)
def test_bad_keys_raise(tmp_path, key, words):
    path = write_bbox(tmp_path / "data", {"ok.jpg": [], key: []})
    with pytest.raises(BBoxFormatError) as err:
        load_bboxes(path)
    msg = str(err.value)
    assert "bbox.json: " in msg
    for w in words:
        assert w in msg


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")
def test_symlink_leading_outside_raises(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    Image.new("RGB", (4, 4)).save(outside / "x.jpg")
    data = tmp_path / "data"
    data.mkdir()
    os.symlink(outside, data / "link")
    path = write_bbox(data, {"link/x.jpg": []})
    with pytest.raises(BBoxFormatError, match=r"entry 'link/x.jpg'.*resolves outside the data folder"):
        load_bboxes(path)


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")
def test_symlink_staying_inside_is_fine(tmp_path):
    data = tmp_path / "data"
    (data / "real").mkdir(parents=True)
    os.symlink(data / "real", data / "link")
    assert list(load_bboxes(write_bbox(data, {"link/x.jpg": []}))) == ["link/x.jpg"]


def test_duplicate_key_raises(tmp_path):
    path = write_json_text(tmp_path, '{"a.jpg": [], "b.jpg": [[0, 0, 1, 1]], "a.jpg": [[0, 0, 2, 2]]}')
    with pytest.raises(BBoxFormatError, match=r"bbox.json: entry 'a.jpg' appears more than once"):
        load_bboxes(path)


def test_two_keys_naming_one_file_raise(tmp_path):
    path = write_bbox(tmp_path, {"a.jpg": [], "./a.jpg": []})
    with pytest.raises(BBoxFormatError, match=r"entry './a.jpg' names the same file as entry 'a.jpg'"):
        load_bboxes(path)


def test_missing_file_raises(tmp_path):
    with pytest.raises(BBoxFormatError, match=r"nowhere.*bbox.json: file not found"):
        load_bboxes(tmp_path / "nowhere" / "bbox.json")


def test_folder_instead_of_file_raises(tmp_path):
    (tmp_path / "bbox.json").mkdir()
    with pytest.raises(BBoxFormatError, match="is a folder"):
        load_bboxes(tmp_path / "bbox.json")


def test_invalid_json_names_line_and_column(tmp_path):
    path = write_json_text(tmp_path, '{\n  "a.jpg": [],\n  "b.jpg": [[0, 0, 1, 1]],,\n}')
    with pytest.raises(BBoxFormatError, match=r"bbox.json: not valid JSON: .*\(line 3, column 27\)"):
        load_bboxes(path)


def test_not_utf8_raises(tmp_path):
    (tmp_path / "bbox.json").write_bytes(b'{"\xff.jpg": []}')
    with pytest.raises(BBoxFormatError, match="not UTF-8"):
        load_bboxes(tmp_path / "bbox.json")


@pytest.mark.parametrize("data, kind", [([], "list"), ([["a.jpg", []]], "list"), ("a.jpg", "str"), (3, "int"), (None, "NoneType")])
def test_top_level_must_be_an_object(tmp_path, data, kind):
    with pytest.raises(BBoxFormatError, match=rf"bbox.json: the top level must be an object .* got {kind}"):
        load_bboxes(write_bbox(tmp_path, data))


def test_error_is_a_data_error_and_value_error(tmp_path):
    with pytest.raises(DataError):
        load_bboxes(write_bbox(tmp_path, {"a.jpg": [[0, 0, 0, 0]]}))
    with pytest.raises(ValueError):
        load_bboxes(write_bbox(tmp_path, {"a.jpg": [[0, 0, 0, 0]]}))


# --- check_boxes_inside ----------------------------------------------------------------------------


def test_boxes_inside_the_image_pass_including_the_edges():
    check_boxes_inside([[0, 0, 40, 30], [10, 5, 12, 7]], 40, 30, "x")
    check_boxes_inside([], 40, 30, "x")


@pytest.mark.parametrize("box, index", [([0, 0, 41, 30], 1), ([0, 0, 40, 30.5], 1), ([-1, 0, 5, 5], 1)])
def test_box_outside_the_image_raises(box, index):
    where = "data/bbox.json: entry 'image_000007.jpg'"
    with pytest.raises(BBoxFormatError) as err:
        check_boxes_inside([[0, 0, 1, 1], box], 40, 30, where)
    msg = str(err.value)
    assert msg.startswith(f"{where}, box {index}: ")
    assert "outside the image (width 40, height 30" in msg


def test_check_boxes_inside_accepts_arrays_and_rejects_wrong_width():
    import numpy as np

    check_boxes_inside(np.array([[1, 1, 2, 2]], dtype=np.float32), 4, 4, "w")
    check_boxes_inside(np.zeros((0, 4), dtype=np.float32), 4, 4, "w")
    with pytest.raises(BBoxFormatError, match="w, box 0: expected 4 numbers, got 3"):
        check_boxes_inside([[1, 1, 2]], 4, 4, "w")


# --- split_train_test --------------------------------------------------------------------------------

NAMES = [f"image_{i:06d}.jpg" for i in range(1, 501)]


def test_split_is_deterministic_disjoint_sorted_and_complete():
    train, test = split_train_test(NAMES, 0.2, seed=0)
    assert (train, test) == split_train_test(list(reversed(NAMES)), 0.2, seed=0)
    assert not set(train) & set(test)
    assert set(train) | set(test) == set(NAMES)
    assert train == sorted(train) and test == sorted(test)
    assert 0.14 < len(test) / len(NAMES) < 0.26  # binomial(500, 0.2): mean 100, sd 9


def test_split_pinned_values():
    # Guards against an accidental change of the hash: a data set's split must not move between versions.
    train, test = split_train_test([f"image_{i:06d}.jpg" for i in range(1, 11)], 0.3, seed=0)
    assert test == ["image_000001.jpg", "image_000003.jpg", "image_000005.jpg", "image_000007.jpg", "image_000008.jpg"]
    assert train == ["image_000002.jpg", "image_000004.jpg", "image_000006.jpg", "image_000009.jpg", "image_000010.jpg"]


def test_adding_images_moves_no_existing_image():
    train, test = split_train_test(NAMES[:300], 0.2, seed=3)
    train2, test2 = split_train_test(NAMES, 0.2, seed=3)
    assert set(train) <= set(train2) and set(test) <= set(test2)


def test_seed_changes_the_split_and_fraction_bounds():
    assert split_train_test(NAMES, 0.2, seed=0) != split_train_test(NAMES, 0.2, seed=1)
    assert split_train_test(NAMES, 0.0) == (sorted(NAMES), [])
    assert split_train_test(NAMES, 1.0) == ([], sorted(NAMES))
    with pytest.raises(ValueError, match="test_fraction"):
        split_train_test(NAMES, 1.5)
    with pytest.raises(DataError, match="'a.jpg' appears more than once"):
        split_train_test(["a.jpg", "b.jpg", "a.jpg"])


@settings(max_examples=40, deadline=None)
@given(st.sets(st.text(min_size=1, max_size=12), max_size=40), st.floats(0, 1), st.integers(0, 2**31))
def test_split_properties(names, fraction, seed):
    train, test = split_train_test(names, fraction, seed)
    assert sorted(train + test) == sorted(names)
    assert not set(train) & set(test)
    # Monotone in the fraction: a larger fraction only moves images into test.
    _, test_more = split_train_test(names, min(1.0, fraction + 0.1), seed)
    assert set(test) <= set(test_more)


def test_three_way_split_keeps_the_old_test_set_and_carves_validation_out_of_training():
    old_train, old_test = split_train_test(NAMES, 0.2, seed=0)
    train, val, test = split_train_val_test(NAMES, 0.2, 0.15, seed=0)
    assert test == old_test  # the test images of every earlier run, exactly
    assert sorted(train + val) == old_train and not set(train) & set(val)
    assert train == sorted(train) and val == sorted(val)
    assert (train, val, test) == split_train_val_test(list(reversed(NAMES)), 0.2, 0.15, seed=0)
    assert 0.09 < len(val) / len(NAMES) < 0.21  # binomial(500, 0.15): mean 75, sd 8
    assert split_train_val_test(NAMES, 0.2, 0.0) == (old_train, [], old_test)
    # Adding images moves none between the three splits.
    small = split_train_val_test(NAMES[:300], 0.2, 0.15, seed=0)
    assert all(set(a) <= set(b) for a, b in zip(small, (train, val, test)))
    with pytest.raises(ValueError, match="val_fraction"):
        split_train_val_test(NAMES, 0.2, -0.1)
    with pytest.raises(ValueError, match="exceeds 1"):
        split_train_val_test(NAMES, 0.9, 0.2)


# --- read_file_lists ----------------------------------------------------------------------------------


def test_read_file_lists_with_validation(tmp_path):
    boxes = sample_boxes(40)
    make_folder(tmp_path, boxes)
    lists = read_file_lists(tmp_path, 0.25, seed=0, val_fraction=0.25)
    train, val, test = split_train_val_test(boxes, 0.25, 0.25, 0)
    assert lists.files_val == [str(tmp_path / n) for n in val] and val
    assert lists.labels_val == [[[float(v) for v in b] for b in boxes[n]] for n in val]
    assert lists.files_test == read_file_lists(tmp_path, 0.25, seed=0).files_test
    assert len(set(lists.files_train) | set(lists.files_val) | set(lists.files_test)) == 40


def sample_boxes(n: int) -> dict:
    return {f"image_{i:06d}.jpg": [[i % 7, 1, i % 7 + 5, 9]] * (i % 3) for i in range(1, n + 1)}


def test_read_file_lists(tmp_path):
    boxes = sample_boxes(30)
    make_folder(tmp_path / "data", boxes)
    lists = read_file_lists(tmp_path / "data", test_fraction=0.25, seed=0)
    assert isinstance(lists, FileLists)
    files_train, files_test, labels_train, labels_test = lists[:4]
    assert lists.files_val == [] and lists.labels_val == []  # val_fraction defaults to 0
    train, test = split_train_test(boxes, 0.25, 0)
    assert files_train == [str(tmp_path / "data" / n) for n in train]
    assert files_test == [str(tmp_path / "data" / n) for n in test]
    assert labels_train == [[[float(v) for v in b] for b in boxes[n]] for n in train]
    assert labels_test == [[[float(v) for v in b] for b in boxes[n]] for n in test]
    assert all(isinstance(f, str) for f in files_train + files_test)


def test_read_file_lists_keeps_a_relative_folder_relative(tmp_path, monkeypatch):
    make_folder(tmp_path / "data", sample_boxes(20))
    monkeypatch.chdir(tmp_path)
    lists = read_file_lists("data", 0.3)
    assert all(f.startswith("data" + os.sep) for f in lists.files_train + lists.files_test)
    assert all(Path(f).is_file() for f in lists.files_train + lists.files_test)


def test_read_file_lists_with_subfolders(tmp_path):
    boxes = {"a/x.jpg": [], "b/y.jpg": [[0, 0, 1, 1]], "z.jpg": [], "a/w.jpg": []}
    make_folder(tmp_path, boxes)
    lists = read_file_lists(tmp_path, 0.5, seed=2)
    names = sorted(Path(f).relative_to(tmp_path).as_posix() for f in lists.files_train + lists.files_test)
    assert names == sorted(boxes)


def test_listed_but_missing_images_raise_naming_them(tmp_path):
    make_folder(tmp_path, sample_boxes(5))
    (tmp_path / "image_000002.jpg").unlink()
    (tmp_path / "image_000004.jpg").unlink()
    with pytest.raises(DataError, match=r"bbox.json: 2 listed image\(s\) not found in the folder: 'image_000002.jpg', 'image_000004.jpg'"):
        read_file_lists(tmp_path)


def test_unlisted_images_on_disk_raise_naming_them(tmp_path):
    make_folder(tmp_path, sample_boxes(5))
    Image.new("RGB", (4, 4)).save(tmp_path / "extra.PNG")
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "sub" / "stray.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"2 image\(s\) in the folder are not listed in bbox.json: 'extra.PNG', 'sub/stray.jpg'"):
        read_file_lists(tmp_path)


def test_many_missing_images_are_summarised(tmp_path):
    write_bbox(tmp_path, {f"m{i:02d}.jpg": [] for i in range(25)})
    with pytest.raises(DataError, match=r"25 listed image\(s\) .* and 15 more"):
        read_file_lists(tmp_path)


def test_bad_bbox_json_propagates_from_read_file_lists(tmp_path):
    make_folder(tmp_path, {"a.jpg": []})
    write_bbox(tmp_path, {"a.jpg": [[5, 5, 1, 9]]})
    with pytest.raises(BBoxFormatError, match=r"entry 'a.jpg', box 0: x_max \(1.0\) must be > x_min \(5.0\)"):
        read_file_lists(tmp_path)


def test_a_split_with_an_empty_side_raises(tmp_path):
    make_folder(tmp_path, {"only.jpg": []})
    with pytest.raises(DataError, match=r"left \d for training and \d for testing"):
        read_file_lists(tmp_path, 0.5)
    assert read_file_lists(tmp_path, 0.0).files_test == []
    with pytest.raises(DataError, match=r"left 1 for training, 0 for validation and 0 for testing"):
        read_file_lists(tmp_path, 0.0, val_fraction=0.3)


# --- what keeping paths saves -----------------------------------------------------------------------------


def test_eager_load_bytes_counts_h_w_3(tmp_path):
    make_folder(tmp_path, {"a.jpg": []}, size=(40, 30))
    Image.new("RGB", (8, 6)).save(tmp_path / "b.png")
    Image.new("L", (5, 5)).save(tmp_path / "gray.jpg")  # counted as RGB: the Dataset converts it
    assert eager_load_bytes([tmp_path / "a.jpg", tmp_path / "b.png", tmp_path / "gray.jpg"]) == 40 * 30 * 3 + 8 * 6 * 3 + 5 * 5 * 3


def test_eager_load_bytes_names_an_unreadable_image(tmp_path):
    make_folder(tmp_path, {"good.jpg": []})
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ImageReadError, match=r"broken.jpg \(index 1\): cannot read"):
        eager_load_bytes([tmp_path / "good.jpg", tmp_path / "broken.jpg"])
    with pytest.raises(ImageReadError, match=r"gone.jpg \(index 0\)"):
        eager_load_bytes([tmp_path / "gone.jpg"])


def test_path_and_label_bytes_are_sizeof_sums():
    files = ["a" * 10, "b" * 20]
    assert path_list_bytes(files) == sys.getsizeof(files) + sys.getsizeof("a" * 10) + sys.getsizeof("b" * 20)
    labels = [[], [[1.0, 2.0, 3.0, 4.0]]]
    expected = sys.getsizeof(labels) + sys.getsizeof([]) + sys.getsizeof(labels[1]) + sys.getsizeof(labels[1][0]) + 4 * sys.getsizeof(1.0)
    assert label_list_bytes(labels) == expected
    assert path_list_bytes([]) == sys.getsizeof([])


def test_extrapolate_is_linear():
    assert extrapolate(3_000, 30, 100_000) == 10_000_000
    assert extrapolate(7, 3) == round(7 * 100_000 / 3)
    with pytest.raises(ValueError):
        extrapolate(1, 0)
