"""PathArray and BoxArray hold exactly what the lists held, pickle cheaply, and serve the index datasets."""
from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from helpers.storage import BoxArray, PathArray
from helpers.lab.memory import IndexOnlyDataset, synthetic_index

# Any Unicode except NUL and lone surrogates (which no file name can hold as UTF-8).
path_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
coord = st.floats(0, 5000, allow_nan=False, width=32)
box = st.tuples(coord, coord, coord, coord).map(list)
box_lists = st.lists(st.lists(box, max_size=6), max_size=30)


@settings(max_examples=60, deadline=None)
@given(st.lists(path_text, max_size=30))
def test_path_array_round_trip(paths):
    arr = PathArray(paths)
    assert len(arr) == len(paths)
    assert [arr[i] for i in range(len(arr))] == paths
    assert list(arr) == paths
    if paths:
        assert arr[-1] == paths[-1]
    assert list(pickle.loads(pickle.dumps(arr))) == paths


@settings(max_examples=60, deadline=None)
@given(box_lists)
def test_box_array_round_trip(labels):
    arr = BoxArray(labels)
    assert len(arr) == len(labels)
    assert arr.n_boxes == sum(len(b) for b in labels)
    for i, boxes in enumerate(labels):
        got = arr[i]
        assert got.dtype == np.float32 and got.shape == (len(boxes), 4)
        np.testing.assert_array_equal(got, np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
    again = pickle.loads(pickle.dumps(arr))
    assert [b.tolist() for b in again] == [b.tolist() for b in arr]


def test_path_array_is_one_fixed_width_bytes_array():
    arr = PathArray(["a.jpg", Path("dir/é.jpg"), ""])
    assert arr._data.dtype.kind == "S" and arr._data.dtype.itemsize == len("dir/é.jpg".encode())
    assert arr.nbytes == 3 * arr._data.dtype.itemsize
    assert list(arr) == ["a.jpg", "dir/é.jpg", ""]
    assert "3 paths" in repr(arr)


def test_path_array_rejects_what_does_not_round_trip():
    with pytest.raises(ValueError, match=r"path 1 \('b\\udc80.jpg'\) cannot be encoded as UTF-8"):
        PathArray(["a.jpg", "b\udc80.jpg"])
    with pytest.raises(ValueError, match=r"path 0 .* contains a NUL"):
        PathArray(["a.jpg\x00"])


def test_indexing_behaves_like_a_list():
    paths, boxes = PathArray(["a", "b"]), BoxArray([[], [[0, 0, 1, 1]]])
    for arr in (paths, boxes):
        with pytest.raises(IndexError, match="out of range"):
            arr[2]
        with pytest.raises(IndexError):
            arr[-3]
        with pytest.raises(TypeError, match="integers"):
            arr[0.0]
        with pytest.raises(TypeError):
            arr["0"]
    assert paths[np.int64(1)] == "b"
    assert boxes[np.int32(-1)].tolist() == [[0, 0, 1, 1]]


def test_box_array_returns_a_copy():
    arr = BoxArray([[[1, 2, 3, 4]]])
    got = arr[0]
    got *= 10  # a transform scaling boxes in place
    assert arr[0].tolist() == [[1, 2, 3, 4]]


def test_box_array_accepts_arrays_and_rejects_bad_shapes():
    arr = BoxArray([np.zeros((0, 4)), np.ones((2, 4), dtype=np.float64), []])
    assert [len(b) for b in arr] == [0, 2, 0]
    assert arr.nbytes == 2 * 4 * 4 + 4 * 8
    with pytest.raises(ValueError, match=r"labels\[1\] must be a \(k, 4\) list of boxes, got shape \(1, 3\)"):
        BoxArray([[], [[1, 2, 3]]])
    with pytest.raises(ValueError, match=r"labels\[0\]"):
        BoxArray([[1, 2, 3, 4]])  # one box not wrapped in a list
    assert len(BoxArray([])) == 0


def test_pickles_are_small():
    files, labels = synthetic_index(2000)
    paths, boxes = PathArray(files, shared=False), BoxArray(labels, shared=False)
    # The pickle is the raw buffers plus a little framing, far below the lists' pickles.
    assert len(pickle.dumps(paths)) < paths.nbytes + 500
    assert len(pickle.dumps(boxes)) < boxes.nbytes + 500
    assert len(pickle.dumps(paths)) + len(pickle.dumps(boxes)) < len(pickle.dumps((files, labels)))


def test_synthetic_index_shape_and_determinism():
    files, labels = synthetic_index(3000, seed=1)
    assert (files, labels) == synthetic_index(3000, seed=1)
    assert labels != synthetic_index(3000, seed=2)[1]
    assert files[1234] == "data/images/000001/image_0001234.jpg"
    counts = [len(b) for b in labels]
    assert min(counts) == 0 and max(counts) == 6
    for boxes in labels:
        for x0, y0, x1, y1 in boxes:
            assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 480
            assert all(isinstance(v, float) for v in (x0, y0, x1, y1))


def test_index_datasets_agree_and_go_through_a_dataloader():
    files, labels = synthetic_index(500, seed=4)
    as_lists = IndexOnlyDataset(files, labels)
    as_arrays = IndexOnlyDataset(PathArray(files), BoxArray(labels))
    assert len(as_lists) == len(as_arrays) == 500
    items = [as_lists[i] for i in range(500)]
    assert items == [as_arrays[i] for i in range(500)]
    assert items[7] == len(files[7]) + len(labels[7])
    batches = [b for b in DataLoader(as_arrays, batch_size=128, num_workers=0)]
    assert sum(int(b.sum()) for b in batches) == sum(items)
    with pytest.raises(ValueError, match="2 paths but 1 box lists"):
        IndexOnlyDataset(PathArray(["a", "b"]), BoxArray([[]]))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork start method (fast) only on Linux")
def test_arrays_work_in_worker_processes():
    # Under spawn the dataset is pickled to each worker: the pickle round trips above cover that.
    files, labels = synthetic_index(300, seed=5)
    ds = IndexOnlyDataset(PathArray(files), BoxArray(labels))
    loader = DataLoader(ds, batch_size=100, num_workers=2, multiprocessing_context="fork")
    assert sum(int(b.sum()) for b in loader) == sum(len(f) + len(b) for f, b in zip(files, labels))


def test_face_dataset_accepts_the_arrays(tmp_path):
    from PIL import Image

    from helpers.dataset import FaceDataset

    files, labels = [], [[], [[1.0, 2.0, 9.0, 7.0], [0.0, 0.0, 4.0, 4.0]], [[3.0, 3.0, 5.0, 6.0]]]
    for i in range(3):
        path = tmp_path / f"image_{i:06d}.jpg"
        Image.new("RGB", (12, 10), (40 * i, 90, 160)).save(path)
        files.append(str(path))
    as_lists = FaceDataset(files, labels)
    as_arrays = FaceDataset(PathArray(files), BoxArray(labels))
    for i in range(3):
        a, b = as_lists[i], as_arrays[i]
        assert a["name"] == b["name"] == f"image_{i:06d}.jpg"
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["boxes"], b["boxes"])
        assert b["boxes"].dtype == np.float32 and b["boxes"].shape == (len(labels[i]), 4)


def test_shared_arrays_hold_the_same_index_and_pass_by_handle():
    # shared=True (the default, what build_loaders uses): the same entries, in shared memory, read-only; torch's
    # multiprocessing pickler (what forkserver and spawn workers receive) sends a handle, not the bytes.
    from multiprocessing.reduction import ForkingPickler

    files, labels = synthetic_index(20_000, seed=3)
    plain, shared = (PathArray(files, shared=False), BoxArray(labels, shared=False)), (PathArray(files), BoxArray(labels))
    for a, b in zip(plain, shared):
        assert not a.shared and b.shared and a.nbytes == b.nbytes and len(a) == len(b)
        assert "shared memory" in repr(b) and "shared memory" not in repr(a)
        assert len(ForkingPickler.dumps(a)) > a.nbytes  # copied into every forkserver/spawn worker
        assert len(ForkingPickler.dumps(b)) < 2000  # a handle: the same pages in every worker
        again = pickle.loads(pickle.dumps(b))  # plain pickle (a file on disk): the bytes themselves
        assert len(pickle.dumps(b)) > b.nbytes and not again.shared
    assert list(shared[0]) == files and shared[0][-1] == files[-1]
    assert [b.tolist() for b in shared[1]] == [b.tolist() for b in plain[1]]
    assert list(pickle.loads(pickle.dumps(shared[0]))) == files
    with pytest.raises(ValueError, match="read-only"):
        shared[1]._boxes[0, 0] = 1.0  # no process may write the pages all of them read
    got = shared[1][1]
    got *= 2  # a copy, as for plain arrays
    assert shared[1][1].tolist() == plain[1][1].tolist()
    assert len(PathArray([], shared=True)) == len(BoxArray([], shared=True)) == 0
