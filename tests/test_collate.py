"""collate_reading behaves exactly like torch's default_collate; assert_same_batch finds every kind of
difference; collate_keep_boxes and collate_raw_boxes do what the notebook says they do."""
from __future__ import annotations

import collections
import functools
import math
import types
from collections import OrderedDict, defaultdict, namedtuple
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch.utils.data import DataLoader, default_collate

from helpers.lab.collate_reading import ERROR_FORMAT, collate_reading
from helpers.lab.batches import CollateOutcome, assert_same_batch, check_against_default_collate, collate_and_report, collate_raw_boxes, describe, shared_memory_report
from helpers.collate import collate_channels_last, collate_keep_boxes, stack_channels_last
from helpers.errors import DataError

# Named tuple types must live at module level (pickling, and exact type comparison).
Pair = namedtuple("Pair", ["first", "second"])
Triple = namedtuple("Triple", ["a", "b", "c"])
Single = namedtuple("Single", ["only"])
NAMEDTUPLES = {1: Single, 2: Pair, 3: Triple}

NP_DTYPES = [np.bool_, np.uint8, np.int32, np.int64, np.float16, np.float32, np.float64]
NP_SCALAR_TYPES = [np.bool_, np.uint8, np.uint16, np.int32, np.int64, np.float16, np.float32, np.float64]
MAPPING_TYPES = ["dict", "OrderedDict", "defaultdict", "mappingproxy"]

# ---------------------------------------------------------------------------------------------------
# Strategies: first a *schema* (the structure of one sample), then samples that follow it.

shapes = hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3)
leaf_schemas = st.one_of(
    st.tuples(st.just("tensor"), st.sampled_from(NP_DTYPES), shapes),
    st.tuples(st.just("ndarray"), st.sampled_from(NP_DTYPES), shapes),
    st.tuples(st.just("npscalar"), st.sampled_from(NP_SCALAR_TYPES)),
    st.tuples(st.sampled_from(["bool", "int", "float", "number", "str", "bytes"])),
    # Samples that do NOT share a structure: a shape drawn per sample, or an unsupported None.
    st.tuples(st.sampled_from(["ragged-tensor", "ragged-ndarray"]), st.sampled_from(NP_DTYPES)),
    st.tuples(st.just("none")),
)
keys = st.text(alphabet="abcdefgh", min_size=1, max_size=3)


def _containers(children):
    return st.one_of(
        st.tuples(
            st.just("mapping"),
            st.sampled_from(MAPPING_TYPES),
            st.lists(st.tuples(keys, children), min_size=1, max_size=3, unique_by=lambda kv: kv[0]),
        ),
        st.tuples(st.sampled_from(["list", "tuple"]), st.lists(children, min_size=0, max_size=3)),
        st.tuples(st.just("namedtuple"), st.lists(children, min_size=1, max_size=3)),
        st.tuples(st.just("ragged-list"), children),  # a length drawn per sample
    )


schemas = st.recursive(leaf_schemas, _containers, max_leaves=6)


def _array(dtype, shape):
    elements = None
    if np.dtype(dtype).kind == "f":
        elements = st.floats(width=np.dtype(dtype).itemsize * 8, allow_nan=True, allow_infinity=True)
    return hnp.arrays(dtype, shape, elements=elements)


def _make_mapping(kind: str, items: list[tuple[str, Any]]):
    if kind == "dict":
        return dict(items)
    if kind == "OrderedDict":
        return OrderedDict(items)
    if kind == "defaultdict":
        return defaultdict(list, items)
    return types.MappingProxyType(dict(items))


def samples_of(schema) -> st.SearchStrategy:
    """Values that follow ``schema``, with random contents."""
    kind = schema[0]
    if kind == "tensor":
        return _array(schema[1], schema[2]).map(lambda a: torch.from_numpy(np.ascontiguousarray(a)))
    if kind == "ndarray":
        return _array(schema[1], schema[2])
    if kind.startswith("ragged-") and kind != "ragged-list":
        return shapes.flatmap(lambda shape: samples_of((kind[len("ragged-"):], schema[1], shape)))
    if kind == "ragged-list":
        return st.lists(samples_of(schema[1]), max_size=2)
    if kind == "none":
        return st.none()
    if kind == "npscalar":
        return _array(schema[1], ()).map(lambda a: a[()])  # a NumPy scalar of that type
    if kind == "bool":
        return st.booleans()
    if kind == "int":
        return st.integers(-(2**63), 2**63 - 1)
    if kind == "float":
        return st.floats(allow_nan=True)
    if kind == "number":  # mixed Python numbers: [True, 2] -> int64, [1, 2.5] -> float32, ...
        return st.one_of(st.booleans(), st.integers(-1000, 1000), st.floats(-1e6, 1e6))
    if kind == "str":
        return st.text(max_size=4)
    if kind == "bytes":
        return st.binary(max_size=4)
    if kind == "mapping":
        mapping_kind, items = schema[1], schema[2]
        names = [k for k, _ in items]
        values = st.tuples(*(samples_of(s) for _, s in items))
        return values.map(lambda vs: _make_mapping(mapping_kind, list(zip(names, vs))))
    if kind in ("list", "tuple"):
        values = st.tuples(*(samples_of(s) for s in schema[1]))
        return values.map(list) if kind == "list" else values
    if kind == "namedtuple":
        nt = NAMEDTUPLES[len(schema[1])]
        return st.tuples(*(samples_of(s) for s in schema[1])).map(lambda vs: nt(*vs))
    raise AssertionError(f"unknown schema {schema!r}")


@st.composite
def batches(draw, min_size: int = 1, max_size: int = 4):
    schema = draw(schemas)
    size = draw(st.integers(min_size, max_size))
    return draw(st.lists(samples_of(schema), min_size=size, max_size=size))


def _run(fn, batch):
    try:
        return fn(batch), None
    except Exception as error:  # noqa: BLE001 - the point is to compare whatever is raised
        return None, error


def assert_collates_like_pytorch(batch) -> None:
    ours, our_error = _run(collate_reading, batch)
    theirs, their_error = _run(default_collate, batch)
    if our_error is not None or their_error is not None:
        assert type(our_error) is type(their_error), (our_error, their_error)
        assert str(our_error) == str(their_error)
    else:
        assert_same_batch(ours, theirs)


# ---------------------------------------------------------------------------------------------------
# collate_reading == default_collate


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_collate_reading_matches_default_collate(batch):
    assert_collates_like_pytorch(batch)


@pytest.mark.parametrize(
    "batch",
    [
        pytest.param([[1, 2], [3]], id="unequal-lists"),
        pytest.param([(1, 2), (3, 4, 5)], id="unequal-tuples"),
        pytest.param([Pair(1, 2), Pair(3, 4)], id="namedtuple"),
        pytest.param([[1, 2], (3, 4)], id="list-then-tuple"),
        pytest.param([np.array(["a", "b"]), np.array(["c", "d"])], id="numpy-str"),
        pytest.param([np.array([b"a"]), np.array([b"b"])], id="numpy-bytes"),
        pytest.param([np.array([None, 1], dtype=object)] * 2, id="numpy-object"),
        pytest.param([np.str_("a"), np.str_("b")], id="numpy-str-scalar"),
        pytest.param([np.datetime64("2024-01-01")] * 2, id="numpy-datetime"),
        pytest.param([None, None], id="none"),
        pytest.param([1 + 2j, 3j], id="complex"),
        pytest.param([{1, 2}, {3, 4}], id="set"),
        pytest.param([object(), object()], id="object"),
        pytest.param([], id="empty-batch"),
        pytest.param([2**70, 1], id="int-overflow"),
        pytest.param([{"a": 1}, {"b": 2}], id="missing-key"),
        pytest.param([{"a": 1}, {"a": 2, "b": 3}], id="extra-key-ignored"),
        pytest.param([{"a": None}, {"a": None}], id="unsupported-inside-dict"),
        pytest.param([torch.zeros(2), torch.zeros(3)], id="tensor-shapes-differ"),
        pytest.param([torch.zeros(2), np.zeros(2)], id="tensor-then-array"),
        pytest.param([np.zeros((1, 4)), np.zeros((2, 4))], id="array-shapes-differ"),
        pytest.param([range(3), range(3)], id="range"),
        pytest.param([bytearray(b"ab"), bytearray(b"cd")], id="bytearray"),
        pytest.param([torch.zeros(2).to_sparse(), torch.zeros(2).to_sparse()], id="sparse"),
        pytest.param([torch.ones(3)[::2], torch.ones(3)[1:]], id="non-contiguous"),
        pytest.param([np.zeros((2, 3), np.float32).T] * 2, id="fortran-order-array"),
        pytest.param([np.zeros(2, np.float32).view(np.memmap)] * 2, id="memmap-view"),
    ],
)
def test_explicit_cases_match_default_collate(batch):
    assert_collates_like_pytorch(batch)


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype stage")
def test_nested_tensors_are_refused_like_pytorch():
    nested = torch.nested.nested_tensor([torch.zeros(2), torch.zeros(3)])
    assert_collates_like_pytorch([nested, nested])
    with pytest.raises(RuntimeError, match="nested tensors"):
        collate_reading([nested, nested])


def test_error_messages_are_pytorchs():
    with pytest.raises(RuntimeError, match="^each element in list of batch should be of equal size$"):
        collate_reading([[1, 2], [3]])
    with pytest.raises(TypeError) as info:
        collate_reading([np.array(["a"]), np.array(["b"])])
    assert str(info.value) == ERROR_FORMAT.format(np.dtype("<U1"))
    with pytest.raises(TypeError) as info:
        collate_reading([None])
    assert str(info.value) == ERROR_FORMAT.format(type(None))
    with pytest.raises(IndexError):
        collate_reading([])


def test_number_dtypes():
    assert collate_reading([1.5, 2.0]).dtype == torch.float64
    assert collate_reading([1, 2]).dtype == torch.int64
    assert collate_reading([True, False]).dtype == torch.bool
    assert collate_reading([True, 2]).dtype == torch.int64
    # The first value picks the branch: an int first means torch.tensor() infers the default float.
    assert collate_reading([1, 2.5]).dtype == torch.get_default_dtype()
    assert collate_reading([np.float16(1), np.float16(2)]).dtype == torch.float16
    assert collate_reading([np.array(1.0), np.array(2.0)]).shape == (2,)


def test_str_and_bytes_come_back_as_they_were():
    names = ["a.jpg", "b.jpg"]
    assert collate_reading(names) is names
    assert collate_reading([b"x", b"y"]) == [b"x", b"y"]
    # Inside a list or named tuple each position arrives as a tuple: so does the result.
    assert collate_reading([["a", 1], ["b", 2]])[0] == ("a", "b")
    assert collate_reading([Pair("a", 1), Pair("b", 2)]).first == ("a", "b")


class FrozenMapping(collections.abc.Mapping):
    """A read-only mapping that cannot be built from a dict: default_collate falls back to dict."""

    def __init__(self, **items):
        self._data = items

    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self):
        return len(self._data)


class TaggedList(list):
    """A list subclass with extra state that copy.copy keeps."""

    tag = "untagged"


def test_mapping_and_sequence_types_are_kept_like_pytorch():
    od = [OrderedDict([("b", 1), ("a", 2)]), OrderedDict([("b", 3), ("a", 4)])]
    out = collate_reading(od)
    assert type(out) is OrderedDict and list(out) == ["b", "a"]
    dd = [defaultdict(int, x=1), defaultdict(int, x=2)]
    out = collate_reading(dd)
    assert type(out) is defaultdict and out.default_factory is int
    frozen = [FrozenMapping(x=1), FrozenMapping(x=2)]
    assert type(collate_reading(frozen)) is dict
    tagged = [TaggedList([1, 2]), TaggedList([3, 4])]
    tagged[0].tag = "first"
    out = collate_reading(tagged)
    assert type(out) is TaggedList and out.tag == "first"
    assert type(collate_reading([range(2), range(2)])) is list
    assert type(collate_reading([(1, 2), (3, 4)])) is list
    for batch in (od, dd, frozen, tagged):
        assert_collates_like_pytorch(batch)


def test_inputs_are_not_modified():
    batch = [{"x": [1, 2], "y": OrderedDict(z=np.zeros(2))}, {"x": [3, 4], "y": OrderedDict(z=np.ones(2))}]
    collate_reading(batch)
    assert batch[0]["x"] == [1, 2] and type(batch[0]["y"]["z"]) is np.ndarray


def test_shared_memory_branch(monkeypatch):
    # Pretend to be inside a worker: both implementations must stack into shared memory.
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: object())
    batch = [{"t": torch.arange(6).reshape(2, 3), "a": np.ones((2, 2), np.float32)} for _ in range(3)]
    ours, theirs = collate_reading(batch), default_collate(batch)
    assert_same_batch(ours, theirs)
    assert ours["t"].is_shared() and ours["a"].is_shared() and theirs["t"].is_shared()
    monkeypatch.undo()
    assert not collate_reading(batch)["t"].is_shared()


class SmallDictDataset(torch.utils.data.Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, i):
        return {"t": torch.full((2, 3), i, dtype=torch.uint8), "a": np.full(4, i, np.float32), "name": f"s{i}", "i": i}


def _collate_and_report_sharing(collate_fn, batch):
    """Runs in the worker: the batch, and whether its tensors are in shared memory BEFORE the queue."""
    out = collate_fn(batch)
    return out, {k: v.is_shared() for k, v in out.items() if isinstance(v, torch.Tensor)}


def test_in_a_real_worker_both_collate_into_shared_memory():
    results = {}
    for fn in (collate_reading, default_collate):
        loader = DataLoader(
            SmallDictDataset(), batch_size=3, num_workers=1,
            collate_fn=functools.partial(_collate_and_report_sharing, fn),
            multiprocessing_context="fork",
        )
        results[fn.__name__] = list(loader)
    for (ours, our_sharing), (theirs, their_sharing) in zip(results["collate_reading"], results["default_collate"]):
        assert_same_batch(ours, theirs)
        # Tensors and arrays are stacked into shared memory; Python numbers go through torch.tensor().
        assert our_sharing == their_sharing == {"t": True, "a": True, "i": False}


# ---------------------------------------------------------------------------------------------------
# assert_same_batch


def _fails(a, b, message):
    with pytest.raises(AssertionError) as info:
        assert_same_batch(a, b)
    assert str(info.value) == message


def test_assert_same_batch_names_the_path_of_the_first_difference():
    img = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    base = {"image": img, "mask": torch.ones(2, 1, 4, 4, dtype=torch.uint8), "name": ["a", "b"]}
    assert_same_batch(base, {**base, "image": img.clone(), "name": ["a", "b"]})

    _fails(base, {**base, "image": img.float()}, "batch['image']: dtype torch.uint8 != torch.float32")
    _fails(base, {**base, "image": img[:1]}, "batch['image']: shape (2, 3, 4, 4) != (1, 3, 4, 4)")
    changed = img.clone()
    changed[1, 2, 3, 0] = 7
    _fails(base, {**base, "image": changed}, "batch['image']: values differ at [1, 2, 3, 0]: 0 != 7 (1 of 96 elements differ)")
    _fails(base, {**base, "name": ["a", "c"]}, "batch['name'][1]: 'b' != 'c'")
    _fails(base, {**base, "name": ["a"]}, "batch['name']: length 2 != 1")
    _fails(base, {**base, "name": ("a", "b")}, "batch['name']: type list != tuple")
    _fails(base, OrderedDict(base), "batch: type dict != OrderedDict")
    _fails(base, {"image": img, "mask": base["mask"]}, "batch: keys differ: only in first ['name'], only in second []")
    _fails(base, {"mask": base["mask"], "image": img, "name": ["a", "b"]},
           "batch: same keys in a different order: ['image', 'mask', 'name'] != ['mask', 'image', 'name']")
    _fails(base, {**base, "image": img.to("meta")}, "batch['image']: device cpu != meta")
    _fails([b"x"], [b"y"], "batch[0]: b'x' != b'y'")
    _fails(Pair(1, torch.zeros(1)), Pair(1, torch.ones(1)),
           "batch.second: values differ at [0]: 0.0 != 1.0 (1 of 1 elements differ)")
    _fails(defaultdict(int), defaultdict(list), "batch: default_factory <class 'int'> != <class 'list'>")
    _fails(1, True, "batch: type int != bool")
    _fails(np.zeros(3), np.array([0.0, 1.0, 0.0]), "batch: values differ at [1]: np.float64(0.0) != np.float64(1.0) (1 of 3 elements differ)")
    _fails(torch.zeros(2).to_sparse(), torch.zeros(2), "batch: layout torch.sparse_coo != torch.strided")


def test_assert_same_batch_nan_equals_nan_in_the_same_place():
    nan = float("nan")
    assert_same_batch(torch.tensor([1.0, nan]), torch.tensor([1.0, nan]))
    assert_same_batch([nan, "x"], [nan, "x"])
    assert_same_batch(np.array([nan]), np.array([nan]))
    _fails(torch.tensor([nan, 1.0]), torch.tensor([1.0, nan]),
           "batch: values differ at [0]: nan != 1.0 (2 of 2 elements differ)")
    _fails(nan, 0.0, "batch: nan != 0.0")
    assert_same_batch(torch.zeros(3, device="meta"), torch.zeros(3, device="meta"))  # no values to compare


def _tensor_leaves(obj, path="batch"):
    """(path, tensor) of every non-empty tensor in a collated structure, as assert_same_batch writes paths."""
    if isinstance(obj, torch.Tensor):
        return [(path, obj)] if obj.numel() else []
    if isinstance(obj, collections.abc.Mapping):
        return [leaf for k, v in obj.items() for leaf in _tensor_leaves(v, f"{path}[{k!r}]")]
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return [leaf for f, v in zip(obj._fields, obj) for leaf in _tensor_leaves(v, f"{path}.{f}")]
    if isinstance(obj, (list, tuple)):
        return [leaf for i, v in enumerate(obj) for leaf in _tensor_leaves(v, f"{path}[{i}]")]
    return []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=batches(), data=st.data())
def test_assert_same_batch_finds_a_changed_element(batch, data):
    try:
        collated = default_collate(batch)
    except Exception:  # noqa: BLE001 - unsupported structures are covered elsewhere
        return
    other = default_collate(batch)
    assert_same_batch(collated, other)  # equal batches pass
    leaves = _tensor_leaves(other)
    if not leaves:
        return
    path, tensor = data.draw(st.sampled_from(leaves))
    flat = tensor.view(-1)
    position = data.draw(st.integers(0, flat.numel() - 1))
    if tensor.dtype == torch.bool:
        flat[position] = ~flat[position]
    elif tensor.is_floating_point() and math.isnan(flat[position].item()):
        flat[position] = 0
    else:
        flat[position] = 1 if flat[position].item() != 1 else 2
    with pytest.raises(AssertionError) as info:
        assert_same_batch(collated, other)
    assert str(info.value).startswith(f"{path}: values differ at ")


# ---------------------------------------------------------------------------------------------------
# describe, collate_keep_boxes, collate_raw_boxes


def test_describe():
    batch = {"image": torch.zeros(4, 3, 8, 8, dtype=torch.uint8), "name": ["a", "b", "c", "d"]}
    assert describe(batch) == "{'image': uint8 tensor (4, 3, 8, 8), 'name': list[4] of str}"
    assert describe([torch.zeros(3, 4), torch.zeros(1, 4)]) == "list[2]: [float32 tensor (3, 4), float32 tensor (1, 4)]"
    assert describe(Pair(np.zeros(2, np.int32), [])) == "Pair(first=int32 ndarray (2,), second=list[0])"
    assert describe(list(range(6)), max_items=2) == "list[6] of int"
    assert describe([1, "a", 2.0], max_items=2) == "list[3]: [int, str, ... 1 more]"
    assert describe(torch.zeros(1, device="meta")) == "float32 tensor (1,) on meta"


def _face_samples(counts, as_tensor=False):
    rng = np.random.default_rng(0)
    samples = []
    for i, k in enumerate(counts):
        boxes = rng.integers(0, 50, size=(k, 4)).astype(np.float32)
        boxes[:, 2:] += boxes[:, :2] + 1
        sample = {"image": torch.zeros(3, 4, 5, dtype=torch.uint8), "boxes": boxes,
                  "mask": torch.zeros(1, 4, 5, dtype=torch.uint8), "name": f"image_{i:06d}.jpg"}
        if as_tensor:
            sample["boxes"] = torch.from_numpy(boxes)
        samples.append(sample)
    return samples


@pytest.mark.parametrize("as_tensor", [False, True])
def test_collate_keep_boxes(as_tensor):
    samples = _face_samples([3, 0, 1], as_tensor)
    out = collate_keep_boxes(samples)
    assert list(out) == ["image", "boxes", "mask", "name"]
    assert [tuple(b.shape) for b in out["boxes"]] == [(3, 4), (0, 4), (1, 4)]
    for sample, boxes in zip(samples, out["boxes"]):
        assert_same_batch(boxes, torch.as_tensor(sample["boxes"]))
    rest = default_collate([{k: v for k, v in s.items() if k != "boxes"} for s in samples])
    assert_same_batch({k: v for k, v in out.items() if k != "boxes"}, rest)
    assert "boxes" in samples[0]  # the samples are not modified


def test_collate_keep_boxes_errors_name_the_sample():
    samples = _face_samples([1, 2])
    del samples[1]["boxes"]
    with pytest.raises(DataError, match=r"sample 1 \('image_000001.jpg'\) has no 'boxes'"):
        collate_keep_boxes(samples)
    samples = _face_samples([1, 2])
    samples[1]["boxes"] = np.zeros(4, np.float32)
    with pytest.raises(DataError, match=r"sample 1 \('image_000001.jpg'\): 'boxes' must have shape \(k, 4\), got \(4,\)"):
        collate_keep_boxes(samples)
    with pytest.raises(ValueError, match="empty"):
        collate_keep_boxes([])
    lists = [{"boxes": [], "name": "a"}, {"boxes": [[0, 0, 1, 1]], "name": "b"}]
    out = collate_keep_boxes(lists)
    assert [b.shape for b in out["boxes"]] == [(0, 4), (1, 4)] and out["boxes"][1].dtype == torch.float32


def test_collate_keep_boxes_in_a_loader():
    samples = _face_samples([2, 0, 5, 1])
    loader = DataLoader(samples, batch_size=4, collate_fn=collate_keep_boxes)
    (batch,) = list(loader)
    assert describe(batch) == (
        "{'image': uint8 tensor (4, 3, 4, 5), 'boxes': list[4]: [float32 tensor (2, 4), float32 tensor (0, 4), "
        "float32 tensor (5, 4), float32 tensor (1, 4)], 'mask': uint8 tensor (4, 1, 4, 5), 'name': list[4] of str}"
    )


# ---------------------------------------------------------------------------------------------------
# collate_channels_last: default_collate's values, channels_last memory


def _to_tensor_samples(counts):
    """Samples as ToTensor makes them: images are 3xHxW views of HxWx3 arrays."""
    from helpers.transforms import ToTensor

    rng = np.random.default_rng(1)
    out = []
    for i, sample in enumerate(_face_samples(counts)):
        raw = {"image": rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8), "boxes": sample["boxes"],
               "mask": rng.integers(0, 2, size=(4, 5), dtype=np.uint8), "name": sample["name"]}
        out.append(ToTensor()(raw))
    return out


@pytest.mark.parametrize("keep_boxes", [False, True])
def test_collate_channels_last_equals_default_collate(keep_boxes):
    samples = _to_tensor_samples([2, 0, 3])
    if not keep_boxes:
        for sample in samples:
            del sample["boxes"]
    ours = collate_channels_last(samples, keep_boxes=keep_boxes)
    theirs = (collate_keep_boxes if keep_boxes else default_collate)(samples)
    assert list(ours) == list(theirs)
    assert_same_batch(ours, theirs)  # value for value, names and boxes included
    assert theirs["image"].is_contiguous()  # default_collate reorders the pixels into planes ...
    image = ours["image"]  # ... collate_channels_last keeps them as decoded
    assert image.shape == (3, 3, 4, 5) and image.is_contiguous(memory_format=torch.channels_last)
    assert image.stride() == (4 * 5 * 3, 1, 5 * 3, 3)


def test_stack_channels_last_takes_any_layout_and_refuses_what_is_not_an_image():
    contiguous = [torch.arange(60, dtype=torch.uint8).reshape(3, 4, 5) + i for i in range(2)]
    out = stack_channels_last(contiguous)
    assert torch.equal(out, torch.stack(contiguous)) and out.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="no image"):
        stack_channels_last([])
    with pytest.raises(TypeError, match=r"image 1 must be a CxHxW tensor, got ndarray \(3, 4, 5\)"):
        stack_channels_last([contiguous[0], np.zeros((3, 4, 5), np.uint8)])
    with pytest.raises(RuntimeError, match="stack expects each tensor to be equal size"):
        stack_channels_last([contiguous[0], torch.zeros(3, 4, 6, dtype=torch.uint8)])
    with pytest.raises(TypeError, match="sample 0 is a list, not a dict"):
        collate_channels_last([[1, 2]])
    with pytest.raises(KeyError, match=r"sample 1 \('b.jpg'\) has no 'image'"):
        collate_channels_last([{"image": contiguous[0], "name": "a.jpg"}, {"name": "b.jpg"}])
    with pytest.raises(ValueError, match="empty"):
        collate_channels_last([])


class ToTensorDataset(torch.utils.data.Dataset):
    def __init__(self):
        self.samples = _to_tensor_samples([1, 2, 0, 1, 3, 1])
        for sample in self.samples:
            del sample["boxes"]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


def test_collate_channels_last_in_a_real_worker_writes_shared_memory():
    dataset = ToTensorDataset()
    loader = DataLoader(dataset, batch_size=3, num_workers=1, multiprocessing_context="fork",
                        collate_fn=functools.partial(_collate_and_report_sharing, collate_channels_last))
    for (batch, sharing), start in zip(loader, (0, 3)):
        assert sharing == {"image": True, "mask": True}  # built in shared memory, as default_collate does
        assert_same_batch(batch, default_collate(dataset.samples[start:start + 3]))
        assert batch["image"].is_contiguous(memory_format=torch.channels_last)


BOXES_EQUAL = [  # 3 samples with 2 boxes each
    [[1, 2, 3, 4], [5, 6, 7, 8]],
    [[9, 10, 11, 12], [13, 14, 15, 16]],
    [[17, 18, 19, 20], [21, 22, 23, 24]],
]
BOXES_UNEQUAL = [[[1, 2, 3, 4]], [[5, 6, 7, 8], [9, 10, 11, 12]]]


def test_raw_lists_of_boxes_come_out_transposed():
    outcome = collate_raw_boxes(BOXES_EQUAL, "list")
    assert isinstance(outcome, CollateOutcome) and outcome.error is None
    assert outcome.summary == "list[2] of list[4] of float64 tensor (3,)"
    out = outcome.batch["boxes"]
    for i in range(3):
        for j in range(2):
            for c in range(4):
                assert out[j][c][i].item() == BOXES_EQUAL[i][j][c]
    assert collate_raw_boxes([[], [], []], "list").batch["boxes"] == []  # boxes vanish
    assert collate_raw_boxes([[], [], []], "list").summary == "list[0]"


@pytest.mark.parametrize("as_type", ["ndarray", "tensor"])
def test_raw_arrays_of_boxes_stack_only_when_counts_match(as_type):
    outcome = collate_raw_boxes(BOXES_EQUAL, as_type)
    assert outcome.summary == "float32 tensor (3, 2, 4)"
    assert outcome.batch["boxes"].tolist() == BOXES_EQUAL
    assert collate_raw_boxes([[], []], as_type).summary == "float32 tensor (2, 0, 4)"
    unequal = collate_raw_boxes(BOXES_UNEQUAL, as_type)
    assert unequal.batch is None and isinstance(unequal.error, RuntimeError)
    assert unequal.summary == (
        "RuntimeError: stack expects each tensor to be equal size, but got [1, 4] at entry 0 and [2, 4] at entry 1"
    )


def test_raw_lists_of_unequal_counts_raise():
    outcome = collate_raw_boxes(BOXES_UNEQUAL, "list")
    assert outcome.summary == "RuntimeError: each element in list of batch should be of equal size"
    with pytest.raises(ValueError, match="as_type"):
        collate_raw_boxes(BOXES_EQUAL, "tuple")


# ---------------------------------------------------------------------------------------------------
# check_against_default_collate, shared_memory_report, collate_and_report


def test_check_against_default_collate():
    assert check_against_default_collate([1, 2.5]) == "float32 tensor (2,)"
    assert check_against_default_collate([Pair(1, "a"), Pair(2, "b")]) == (
        "Pair(first=int64 tensor (2,), second=tuple[2] of str)"
    )
    assert check_against_default_collate([[1, 2], [3]]) == (
        "RuntimeError: each element in list of batch should be of equal size"
    )
    assert check_against_default_collate([None, None]) == "TypeError: " + ERROR_FORMAT.format(type(None))
    assert check_against_default_collate([{"a": 1}, {"b": 2}]) == "KeyError: 'a'"


def test_check_against_default_collate_fails_when_they_disagree(monkeypatch):
    import helpers.lab.batches as module

    monkeypatch.setattr(module, "collate_reading", lambda samples: torch.tensor(samples, dtype=torch.float64))
    with pytest.raises(AssertionError, match="dtype torch.float64 != torch.int64"):
        module.check_against_default_collate([1, 2])
    monkeypatch.setattr(module, "collate_reading", lambda samples: [][0])
    with pytest.raises(AssertionError, match="collate_reading: IndexError"):
        module.check_against_default_collate([1, 2])


def test_shared_memory_report():
    shared = torch.zeros(2).share_memory_()
    batch = {"a": shared, "b": torch.zeros(2), "boxes": [shared, torch.zeros(1)], "ok": [shared, shared],
             "name": ["x", "y"], "nested": {"t": shared}, "empty": torch.zeros(0), "with_empty": [shared, torch.zeros(0)]}
    assert shared_memory_report(batch) == {"a": True, "b": False, "boxes": False, "ok": True, "nested": True,
                                           "with_empty": True}


def test_collate_and_report_in_a_real_worker():
    samples = _face_samples([2, 0, 5, 1])
    without_boxes = [{k: v for k, v in s.items() if k != "boxes"} for s in samples]
    results = []
    for collate_fn, data in ((collate_reading, without_boxes), (collate_keep_boxes, samples)):
        loader = DataLoader(data, batch_size=2, num_workers=1, multiprocessing_context="fork",
                            collate_fn=functools.partial(collate_and_report, collate_fn=collate_fn))
        results.append(list(loader))
    for batch, in_worker in results[0]:
        assert in_worker == {"image": True, "mask": True}
        assert shared_memory_report(batch) == {"image": True, "mask": True}
    for batch, in_worker in results[1]:
        # boxes come as they were in the samples: not in shared memory until the queue moves them there
        assert in_worker == {"image": True, "boxes": False, "mask": True}
        assert shared_memory_report(batch) == {"image": True, "boxes": True, "mask": True}
    in_main = collate_and_report(without_boxes, collate_reading)[1]
    assert in_main == {"image": False, "mask": False}


def test_the_0_4_0_emulation_differs_from_today_where_the_notebook_says():
    from collections import OrderedDict, namedtuple

    from helpers.lab.collate_reading import collate_0_4_0

    # Where nothing changed, the two agree.
    samples = [{"image": torch.arange(6, dtype=torch.uint8).reshape(1, 2, 3), "x": 1.5, "name": "a"}] * 2
    assert_same_batch(collate_0_4_0(samples), default_collate(samples))
    # bools became 0/1 int64; uint16 / bool NumPy scalars were missing from numpy_type_map.
    assert collate_0_4_0([True, False]).dtype == torch.int64 and default_collate([True, False]).dtype == torch.bool
    with pytest.raises(KeyError):
        collate_0_4_0([np.uint16(1), np.uint16(2)])
    # np.memmap matched the NumPy branch by module, missed it by name, and fell off its end.
    assert collate_0_4_0([np.zeros(3, np.float32).view(np.memmap)] * 2) is None
    # Named tuples and OrderedDicts lost their type; unequal sequences were cut to the shortest.
    Pair = namedtuple("Pair", "a b")
    assert type(collate_0_4_0([Pair(1, "x"), Pair(2, "y")])) is list
    assert type(collate_0_4_0([OrderedDict(a=1)] * 2)) is dict
    assert len(collate_0_4_0([[1, 2], [3, 4, 5]])) == 2
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([[1, 2], [3, 4, 5]])
