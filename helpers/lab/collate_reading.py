"""``default_collate`` read branch by branch: today's (``collate_reading``) and PyTorch 0.4.0's as the
source article describes it (``collate_0_4_0``), both runnable, and what each makes of a batch.

Code that explains and checks the pipeline, not part of it: the training path never imports
``helpers.lab`` (a test checks).

Notebooks: 04 teaches it (appendix 04a).
"""
from __future__ import annotations

import collections.abc
import copy
import re
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import default_collate

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
    from .batches import describe  # (batches imports this module)

    out = []
    for fn in (collate_0_4_0, default_collate):
        try:
            result = fn(samples)
        except Exception as e:  # noqa: BLE001 - the exception is the answer being shown
            out.append(f"{type(e).__name__}: {e}")
        else:
            out.append(describe(result))
    return out[0], out[1]
