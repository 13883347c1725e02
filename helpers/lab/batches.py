"""Looking at batches: an exact comparison (``assert_same_batch``), a one-line description
(``describe``), the check of ``collate_reading`` against ``default_collate``, whether a batch sits in
shared memory, and the deliberate mistake of collating raw, variable-length boxes.

Code that explains and checks the pipeline, not part of it: the training path never imports
``helpers.lab`` (a test checks).

Notebooks: 04 teaches it (and its appendices 04a, 04c); 05, 07 use it.
"""
from __future__ import annotations

import collections.abc
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import default_collate

from .collate_reading import collate_reading

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
