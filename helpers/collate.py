"""How a DataLoader turns a list of samples into one batch: a readable ``default_collate``, a batch checker,
and the collate function that keeps a variable number of boxes per image.

``collate_reading`` follows ``torch.utils.data._utils.collate`` of today's PyTorch branch by branch, so a
notebook can read it line by line next to the PyTorch 0.4.0 version that the source article explains.

Notebooks: 04 teaches it; 05, 07 use it.
"""
from __future__ import annotations

import collections.abc
import copy
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import default_collate

from .errors import DataError

#: The message of the final TypeError, word for word as PyTorch writes it.
ERROR_FORMAT = (
    "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}"
)
#: NumPy dtype codes that cannot become tensors: S = bytes, a = bytes (old name), U = str, O = object.
NUMPY_STR_OBJECT_DTYPES = re.compile(r"[SaUO]")


def collate_reading(batch: Sequence[Any]) -> Any:
    """Collate ``batch`` (a list of samples) exactly as ``torch.utils.data.default_collate`` does.

    The type of the FIRST sample decides the branch; the others are assumed to look the same.
    Each branch notes what changed since PyTorch 0.4.0. (Types a user adds to PyTorch's registry
    ``default_collate_fn_map`` are not seen here; torchvision adds none: its ``tv_tensors`` are
    Tensors, and stacking them gives plain tensors, e.g. a BoundingBoxes loses its format.)
    """
    # Like the original, an empty batch fails here with IndexError ('list index out of range').
    elem = batch[0]
    elem_type = type(elem)

    # Branches 1-6 are no longer an if/elif chain in PyTorch: they live in a registry,
    # `torch.utils.data._utils.collate.default_collate_fn_map` = {Tensor, np.ndarray,
    # (np.bool_, np.number, np.object_), float, int, str, bytes} -> function. `collate` looks up the
    # exact type first, then tries isinstance() in that insertion order; an if/elif chain in the same
    # order gives the same answers. The registry exists so that users can add their own types.

    # 1. Tensors: stack along a new first dimension.
    if isinstance(elem, torch.Tensor):
        # New since 0.4.0: nested and sparse tensors are refused with a clear message.
        if elem.is_nested:
            raise RuntimeError(
                "Batches of nested tensors are not currently supported by the default collate_fn; "
                "please provide a custom collate_fn to handle them appropriately."
            )
        if elem.layout in {torch.sparse_coo, torch.sparse_csr, torch.sparse_bsr,
                           torch.sparse_csc, torch.sparse_bsc}:
            raise RuntimeError(
                "Batches of sparse tensors are not currently supported by the default collate_fn; "
                "please provide a custom collate_fn to handle them appropriately."
            )
        out = None
        if torch.utils.data.get_worker_info() is not None:
            # In a worker process, stack straight into shared memory, so that sending the batch to
            # the main process costs no extra copy. 0.4.0 tested a module flag `_use_shared_memory`
            # and called `storage()._new_shared(numel)`; today's test is get_worker_info(), the
            # storage is the typed storage, and the device is passed on.
            numel = sum(x.numel() for x in batch)
            storage = elem._typed_storage()._new_shared(numel, device=elem.device)
            out = elem.new(storage).resize_(len(batch), *list(elem.size()))
        return torch.stack(batch, 0, out=out)

    # 2. NumPy arrays (np.memmap too, a subclass): each becomes a tensor, then branch 1 stacks them.
    if isinstance(elem, np.ndarray):
        # Only the first sample's dtype is checked, as in 0.4.0. Strings and objects have no tensor dtype.
        if NUMPY_STR_OBJECT_DTYPES.search(elem.dtype.str) is not None:
            raise TypeError(ERROR_FORMAT.format(elem.dtype))
        # 0.4.0: torch.stack([torch.from_numpy(b) ...]) directly, never into shared memory.
        # Today: torch.as_tensor, then recursion, so arrays also take branch 1's shared-memory path.
        # A 0-d array (shape ()) lands here too and becomes a tensor of shape (B,).
        return collate_reading([torch.as_tensor(b) for b in batch])

    # 3. NumPy scalars (np.float32(1.5), np.int64(3), np.bool_(True), ...): one tensor of shape (B,).
    #    0.4.0 converted them to Python numbers and looked the tensor type up in `numpy_type_map`
    #    (float16 -> HalfTensor, int32 -> IntTensor, ...); now torch.as_tensor keeps the NumPy dtype,
    #    uint16/uint32 and bool included. np.str_ and np.bytes_ are not np.number: they are str and
    #    bytes and reach branch 6. np.float64 is also a Python float, but this branch comes first.
    if isinstance(elem, (np.bool_, np.number, np.object_)):
        return torch.as_tensor(batch)

    # 4. Python float -> float64 tensor (0.4.0: torch.DoubleTensor(batch)).
    if isinstance(elem, float):
        return torch.tensor(batch, dtype=torch.float64)

    # 5. Python int, and bool (a subclass of int) -> torch.tensor(batch) with no dtype given
    #    (0.4.0: torch.LongTensor(batch), which turned bools into 0/1). So the dtype comes from ALL
    #    values: all ints -> int64, all bools -> bool, [True, 2] -> int64, and [1, 2.5] -> float32
    #    (the default float dtype, not float64 as when the first value is a float).
    if isinstance(elem, int):
        return torch.tensor(batch)

    # 6. str and bytes: the batch itself is returned, a list of B strings. Unchanged: 0.4.0's
    #    `string_classes` was (str, bytes) on Python 3; now the registry names both types.
    if isinstance(elem, (str, bytes)):
        return batch

    # From here on PyTorch's `collate` itself, not the registry: containers, collated recursively.

    # 7. Mappings (dict, OrderedDict, defaultdict, ...): one collated value per key of the FIRST sample.
    #    A key missing from a later sample raises KeyError; extra keys in later samples are ignored.
    #    0.4.0 always returned a plain dict; today the mapping type is kept when possible.
    if isinstance(elem, collections.abc.Mapping):
        # (PyTorch collates the values inside the `try` below, once per path; a TypeError from a value
        # is then caught and the values are collated again, which raises it again. Collating them once,
        # up front, gives the same results and the same errors.)
        collated = {key: collate_reading([d[key] for d in batch]) for key in elem}
        try:
            if isinstance(elem, collections.abc.MutableMapping):
                # A shallow copy keeps extra state of the mapping type (a defaultdict's
                # default_factory, say); then every value is replaced by its collated version.
                clone = copy.copy(elem)
                clone.update(collated)
                return clone
            return elem_type(collated)
        except TypeError:
            # The type cannot be copied/updated or built from a dict: fall back to a plain dict.
            return collated

    # 8. Named tuples (new since 0.4.0, where they were sequences and came back as plain lists):
    #    the same named tuple type, one collated value per field.
    #    zip() stops at the shortest sample; no length check here. Each field's values arrive as a
    #    tuple, so a str field comes back as a tuple of str, not a list.
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):
        return elem_type(*(collate_reading(samples) for samples in zip(*batch)))

    # 9. Other sequences (list, tuple, ...): transpose, then collate position by position, so a batch of
    #    B samples [a_i, b_i] becomes [collate(a_1..a_B), collate(b_1..b_B)].
    if isinstance(elem, collections.abc.Sequence):
        # New since 0.4.0: unequal lengths are an error (0.4.0's zip silently cut to the shortest).
        it = iter(batch)
        elem_size = len(next(it))
        if not all(len(other) == elem_size for other in it):
            raise RuntimeError("each element in list of batch should be of equal size")
        # zip() hands each position over as a tuple: str values come back as a tuple of str.
        transposed = list(zip(*batch))
        collated_seq = [collate_reading(samples) for samples in transposed]
        # Plain tuples become lists, as in 0.4.0 ("backwards compatibility" in the source).
        if isinstance(elem, tuple):
            return collated_seq
        # New: other sequence types are kept when possible (copy, then set item by item).
        try:
            if isinstance(elem, collections.abc.MutableSequence):
                clone = copy.copy(elem)
                for i, value in enumerate(collated_seq):
                    clone[i] = value
                return clone
            return elem_type(collated_seq)
        except TypeError:
            # e.g. range, or a bytearray that cannot hold tensors: a plain list.
            return collated_seq

    # 10. Anything else (None, complex, datetime64, custom objects): refused.
    raise TypeError(ERROR_FORMAT.format(elem_type))


# --------------------------------------------------------------------------------------------------
# PyTorch 0.4.0's default_collate, as the source article reads it, runnable today

#: 0.4.0's error message (before NumPy arrays were mentioned and the function's name was prepended).
ERROR_FORMAT_0_4_0 = "batch must contain tensors, numbers, dicts or lists; found {}"
#: 0.4.0's table from a NumPy scalar's dtype name to a tensor type (legacy constructors written as dtypes).
NUMPY_TYPE_MAP_0_4_0 = {
    "float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
    "int64": torch.int64, "int32": torch.int32, "int16": torch.int16, "int8": torch.int8,
    "uint8": torch.uint8,
}


def collate_0_4_0(batch: Sequence[Any]) -> Any:
    """``default_collate`` of PyTorch 0.4.0 (``torch/utils/data/dataloader.py``), branch for branch, on
    today's tensors, so the differences the notebook describes can be run instead of claimed.

    Left out: the shared-memory path of branch 1 (a worker-only detail that gives the same values).
    Legacy constructors (``torch.LongTensor(batch)``, ...) are written as ``torch.tensor(..., dtype=)``,
    which gives the same values and dtypes.
    """
    elem = batch[0]
    elem_type = type(elem)
    if isinstance(elem, torch.Tensor):
        return torch.stack(list(batch), 0)
    elif elem_type.__module__ == "numpy" and elem_type.__name__ not in ("str_", "string_"):
        if elem_type.__name__ == "ndarray":  # by name: np.memmap (a subclass) is not 'ndarray'
            if NUMPY_STR_OBJECT_DTYPES.search(elem.dtype.str) is not None:
                raise TypeError(ERROR_FORMAT_0_4_0.format(elem.dtype))
            return torch.stack([torch.from_numpy(b) for b in batch], 0)
        if elem.shape == ():  # NumPy scalars; a dtype missing from the table is a KeyError
            py_type = float if elem.dtype.name.startswith("float") else int
            return torch.tensor(list(map(py_type, batch)), dtype=NUMPY_TYPE_MAP_0_4_0[elem.dtype.name])
        # Any other NumPy object (np.memmap, a 1-d array subclass ...) matched this elif and fell off
        # its end: 0.4.0 returned None, silently.
    elif isinstance(elem, int):  # bool is an int: True/False become 1/0
        return torch.tensor([int(b) for b in batch], dtype=torch.int64)  # torch.LongTensor(batch)
    elif isinstance(elem, float):
        return torch.tensor(batch, dtype=torch.float64)  # torch.DoubleTensor(batch)
    elif isinstance(elem, (str, bytes)):
        return batch
    elif isinstance(elem, collections.abc.Mapping):
        return {key: collate_0_4_0([d[key] for d in batch]) for key in elem}  # always a plain dict
    elif isinstance(elem, collections.abc.Sequence):
        return [collate_0_4_0(samples) for samples in zip(*batch)]  # zip: cut to the shortest
    else:
        raise TypeError(ERROR_FORMAT_0_4_0.format(elem_type))
    return None


def then_and_now(samples: Sequence[Any]) -> tuple[str, str]:
    """What PyTorch 0.4.0 (:func:`collate_0_4_0`) and today's ``default_collate`` make of ``samples``,
    each as :func:`describe` writes it (or the exception raised)."""
    out = []
    for fn in (collate_0_4_0, default_collate):
        try:
            result = fn(samples)
        except Exception as e:  # noqa: BLE001 - the exception is the answer being shown
            out.append(f"{type(e).__name__}: {e}")
        else:
            out.append(describe(result))
    return out[0], out[1]


# --------------------------------------------------------------------------------------------------
# Comparing two batches


def _index_text(index: Sequence[int]) -> str:
    return "[" + ", ".join(str(i) for i in index) + "]"


def _same_value(x: Any, y: Any) -> bool:
    """``x == y``, with NaN equal to NaN."""
    equal = x == y
    if isinstance(equal, np.ndarray):  # an array-like that slipped through: not a scalar comparison
        return bool(equal.all())
    return bool(equal) or bool(x != x and y != y)


def _compare_tensors(a: torch.Tensor, b: torch.Tensor, path: str) -> None:
    if a.dtype != b.dtype:
        raise AssertionError(f"{path}: dtype {a.dtype} != {b.dtype}")
    if a.shape != b.shape:
        raise AssertionError(f"{path}: shape {tuple(a.shape)} != {tuple(b.shape)}")
    if a.device != b.device:
        raise AssertionError(f"{path}: device {a.device} != {b.device}")
    if a.layout != b.layout:
        raise AssertionError(f"{path}: layout {a.layout} != {b.layout}")
    if a.device.type == "meta":
        return  # meta tensors have no values: dtype, shape and device are all there is
    if a.layout != torch.strided:
        a, b = a.to_dense(), b.to_dense()
    a, b = a.detach(), b.detach()
    same = a == b
    if a.is_floating_point() or a.is_complex():
        same |= a.isnan() & b.isnan()  # NaN in the same place counts as equal
    if not bool(same.all()):
        differ = (~same).nonzero()
        index = tuple(differ[0].tolist())
        raise AssertionError(
            f"{path}: values differ at {_index_text(index)}: {a[index].item()!r} != {b[index].item()!r} "
            f"({differ.shape[0]} of {a.numel()} elements differ)"
        )


def _compare_arrays(a: np.ndarray, b: np.ndarray, path: str) -> None:
    if a.dtype != b.dtype:
        raise AssertionError(f"{path}: dtype {a.dtype} != {b.dtype}")
    if a.shape != b.shape:
        raise AssertionError(f"{path}: shape {a.shape} != {b.shape}")
    same = np.asarray(a == b)
    if a.dtype.kind in "fc":
        same |= np.isnan(a) & np.isnan(b)
    if not same.all():
        differ = np.argwhere(~same)
        index = tuple(int(i) for i in differ[0])
        raise AssertionError(
            f"{path}: values differ at {_index_text(index)}: {a[index]!r} != {b[index]!r} "
            f"({len(differ)} of {a.size} elements differ)"
        )


def assert_same_batch(a: Any, b: Any, path: str = "batch") -> None:
    """Raise AssertionError naming the path of the first difference between two (collated) batches.

    Compared: the exact type of every object (a tuple is not a list, an OrderedDict is not a dict);
    mapping keys IN ORDER (the batch's key order is what a loop over it sees; a different order is
    reported as such); a defaultdict's default_factory; sequence lengths; tensors' dtype, shape, device,
    layout and values exactly (NaN equals NaN in the same place; meta tensors have no values to
    compare); NumPy arrays the same way; str, bytes and other objects with ``==`` (NaN equal to NaN).
    Message example: ``batch['image']: dtype torch.uint8 != torch.float32``.
    """
    if type(a) is not type(b):
        raise AssertionError(f"{path}: type {type(a).__name__} != {type(b).__name__}")
    if isinstance(a, torch.Tensor):
        _compare_tensors(a, b, path)
    elif isinstance(a, np.ndarray):
        _compare_arrays(a, b, path)
    elif isinstance(a, collections.abc.Mapping):
        keys_a, keys_b = list(a.keys()), list(b.keys())
        if keys_a != keys_b:
            only_a = [k for k in keys_a if k not in b]
            only_b = [k for k in keys_b if k not in a]
            if only_a or only_b:
                raise AssertionError(f"{path}: keys differ: only in first {only_a}, only in second {only_b}")
            raise AssertionError(f"{path}: same keys in a different order: {keys_a} != {keys_b}")
        if isinstance(a, collections.defaultdict) and a.default_factory != b.default_factory:
            raise AssertionError(f"{path}: default_factory {a.default_factory!r} != {b.default_factory!r}")
        for key in keys_a:
            assert_same_batch(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, tuple) and hasattr(a, "_fields"):
        for field, x, y in zip(a._fields, a, b):
            assert_same_batch(x, y, f"{path}.{field}")
    elif isinstance(a, collections.abc.Sequence) and not isinstance(a, (str, bytes, bytearray)):
        if len(a) != len(b):
            raise AssertionError(f"{path}: length {len(a)} != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_batch(x, y, f"{path}[{i}]")
    elif not _same_value(a, b):
        raise AssertionError(f"{path}: {a!r} != {b!r}")


# --------------------------------------------------------------------------------------------------
# Describing a batch in one line (shapes and dtypes, never values)


def describe(obj: Any, max_items: int = 4) -> str:
    """A one-line description of a (collated) structure: types, shapes and dtypes, no values.

    ``{'image': uint8 tensor (4, 3, 192, 256), 'name': list[4] of str}``; a list whose items all read
    the same is shown once as ``list[n] of ...``, otherwise item by item (``max_items`` at most).
    """
    if isinstance(obj, torch.Tensor):
        where = "" if obj.device.type == "cpu" else f" on {obj.device}"
        return f"{str(obj.dtype).replace('torch.', '')} tensor {tuple(obj.shape)}{where}"
    if isinstance(obj, np.ndarray):
        return f"{obj.dtype} ndarray {obj.shape}"
    if isinstance(obj, collections.abc.Mapping):
        inner = ", ".join(f"{k!r}: {describe(v, max_items)}" for k, v in obj.items())
        return ("{" + inner + "}") if type(obj) is dict else f"{type(obj).__name__}({{{inner}}})"
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        inner = ", ".join(f"{f}={describe(v, max_items)}" for f, v in zip(obj._fields, obj))
        return f"{type(obj).__name__}({inner})"
    if isinstance(obj, (list, tuple)):
        name = type(obj).__name__
        parts = [describe(v, max_items) for v in obj]
        if not parts:
            return f"{name}[0]"
        if all(p == parts[0] for p in parts):
            return f"{name}[{len(obj)}] of {parts[0]}"
        shown = ", ".join(parts[:max_items]) + (f", ... {len(parts) - max_items} more" if len(parts) > max_items else "")
        return f"{name}[{len(obj)}]: [{shown}]"
    return type(obj).__name__


# --------------------------------------------------------------------------------------------------
# Side by side with PyTorch, and where a batch was built


def check_against_default_collate(samples: Sequence[Any]) -> str:
    """Run ``collate_reading`` and ``default_collate`` on the same samples, require that they agree, and
    return one line: ``describe`` of the batch, or ``ErrorType: message`` when both raise.

    Agreeing means ``assert_same_batch`` passes, or both raise the same exception type with the same
    message; anything else raises AssertionError.
    """
    outcomes = []
    for collate in (collate_reading, default_collate):
        try:
            outcomes.append((collate(samples), None))
        except Exception as error:  # noqa: BLE001 - whatever is raised is compared below
            outcomes.append((None, error))
    (ours, our_error), (theirs, their_error) = outcomes
    if our_error is not None or their_error is not None:
        if type(our_error) is not type(their_error) or str(our_error) != str(their_error):
            raise AssertionError(f"collate_reading: {our_error!r}, default_collate: {their_error!r}")
        return f"{type(our_error).__name__}: {our_error}"
    assert_same_batch(ours, theirs)
    return describe(ours)


def _all_shared(obj: Any) -> bool | None:
    """True if every tensor in ``obj`` is in shared memory, False if one is not, None if it holds none.
    Empty tensors are skipped: they have no memory to share (and arrive from a worker unshared)."""
    if isinstance(obj, torch.Tensor):
        return obj.is_shared() if obj.numel() else None
    if isinstance(obj, collections.abc.Mapping):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        found = [f for f in (_all_shared(x) for x in obj) if f is not None]
        return all(found) if found else None
    return None


def shared_memory_report(batch: Mapping[str, Any]) -> dict[str, bool]:
    """Per key of a dict batch: are all its (non-empty) tensors in shared memory? Keys without any are left out."""
    flags = {key: _all_shared(value) for key, value in batch.items()}
    return {key: flag for key, flag in flags.items() if flag is not None}


def collate_and_report(samples: Sequence[Any], collate_fn: Any = default_collate) -> tuple[Any, dict[str, bool]]:
    """A ``collate_fn`` for looking inside a worker: ``(collate_fn(samples), shared_memory_report(batch))``.

    The report is taken where the batch was built, BEFORE it leaves the worker: on the way to the main
    process PyTorch moves every tensor into shared memory anyway (a copy when it is not there yet), so
    only here does it show which tensors the collate function stacked straight into shared memory.
    Use ``functools.partial(collate_and_report, collate_fn=...)``: it pickles, for any start method.
    """
    batch = collate_fn(samples)
    return batch, shared_memory_report(batch)


# --------------------------------------------------------------------------------------------------
# Boxes: a different number per image


def _boxes_as_tensor(boxes: Any, index: int, sample: Mapping[str, Any], key: str) -> torch.Tensor:
    if isinstance(boxes, torch.Tensor):
        tensor = boxes
    elif isinstance(boxes, np.ndarray):
        tensor = torch.from_numpy(boxes)
    else:
        tensor = torch.as_tensor(boxes, dtype=torch.float32)
        if tensor.numel() == 0:
            tensor = tensor.reshape(0, 4)  # [] -> no boxes, shape (0, 4)
    if tensor.ndim != 2 or tensor.shape[1] != 4:
        name = sample.get("name", "?")
        raise DataError(
            f"sample {index} ({name!r}): {key!r} must have shape (k, 4), got {tuple(tensor.shape)}"
        )
    return tensor


def collate_keep_boxes(batch: Sequence[Mapping[str, Any]], key: str = "boxes") -> dict[str, Any]:
    """``default_collate`` for every key but ``key``, which stays a list of B tensors of shape (k_i, 4).

    The fix for a variable number of boxes per image when the boxes themselves are needed (torchvision's
    detection references do the same with ``tuple(zip(*batch))``). Keys keep the first sample's order;
    NumPy boxes become tensors sharing their memory, lists become float32 tensors.
    """
    if len(batch) == 0:
        raise ValueError("collate_keep_boxes: the batch is empty")
    for i, sample in enumerate(batch):
        if not isinstance(sample, collections.abc.Mapping):
            raise TypeError(f"collate_keep_boxes: sample {i} is a {type(sample).__name__}, not a dict")
        if key not in sample:
            name = sample.get("name", "?")
            raise DataError(
                f"sample {i} ({name!r}) has no {key!r} (ConvertGroundTruth(keep_boxes=False) drops them)"
            )
    boxes = [_boxes_as_tensor(s[key], i, s, key) for i, s in enumerate(batch)]
    rest = default_collate([{k: v for k, v in s.items() if k != key} for s in batch])
    return {k: (boxes if k == key else rest[k]) for k in batch[0]}


@dataclass
class CollateOutcome:
    """What ``default_collate`` made of a batch: the batch, or the exception; and a one-line summary."""

    batch: Any
    error: Exception | None
    summary: str


def collate_raw_boxes(boxes_per_sample: Sequence[Sequence[Sequence[float]]], as_type: str = "list") -> CollateOutcome:
    """Run ``default_collate`` on samples ``{'boxes': boxes_i}`` and report what came out for 'boxes'.

    ``as_type`` is how each sample holds its boxes: ``'list'`` (lists of Python floats, as read from
    JSON), ``'ndarray'`` or ``'tensor'`` (float32, shape (k_i, 4)). With B samples of k boxes each
    (PyTorch 2.x):

    - ``'list'``, equal k: no error, but the boxes come out TRANSPOSED: a list of k lists of 4 float64
      tensors of shape (B,); ``out[j][c][i]`` is coordinate c of box j of sample i.
      All k = 0: ``[]``, the boxes vanish without a trace.
    - ``'ndarray'``/``'tensor'``, equal k: one float32 tensor (B, k, 4), correct only because every
      image happens to have the same number of faces (k = 0 gives (B, 0, 4)).
    - unequal k: RuntimeError, for lists ``each element in list of batch should be of equal size``,
      for arrays and tensors ``stack expects each tensor to be equal size, but got [k_0, 4] at entry 0
      and [k_i, 4] at entry i``.
    """
    samples = []
    for boxes in boxes_per_sample:
        if as_type == "list":
            value: Any = [[float(v) for v in box] for box in boxes]
        elif as_type in ("ndarray", "tensor"):
            value = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
            if as_type == "tensor":
                value = torch.from_numpy(value)
        else:
            raise ValueError(f"as_type must be 'list', 'ndarray' or 'tensor', not {as_type!r}")
        samples.append({"boxes": value})
    try:
        batch = default_collate(samples)
    except (RuntimeError, TypeError) as error:
        return CollateOutcome(None, error, f"{type(error).__name__}: {error}")
    return CollateOutcome(batch, None, describe(batch["boxes"]))


__all__ = [
    "ERROR_FORMAT",
    "CollateOutcome",
    "assert_same_batch",
    "check_against_default_collate",
    "collate_and_report",
    "collate_keep_boxes",
    "collate_raw_boxes",
    "collate_reading",
    "describe",
    "shared_memory_report",
]
