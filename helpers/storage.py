"""Paths and boxes kept in a few NumPy arrays instead of millions of Python objects.

Why (pytorch/pytorch#13246, "copy-on-access"): a forked DataLoader worker shares its parent's memory
pages until one is written to. Reading a Python ``str`` or ``float`` from a list writes to it
(its reference count), and the garbage collector writes to every list it scans, so over an epoch
each worker ends up with a private copy of every page holding the index: memory grows by about the
size of the index per worker. A NumPy array is one object; its data buffer holds no reference counts
and is only read, so its pages stay shared.

That holds for workers started by ``fork`` only. Under ``forkserver`` (Linux's default from Python
3.14) and ``spawn`` (macOS, Windows) the dataset is *pickled* into each worker, which then holds its
own copy of every buffer. ``shared=True`` (the default) keeps the buffers in shared memory instead (torch tensors
whose storage is a shared-memory file): torch's multiprocessing pickler passes such a storage to a
worker as a file descriptor, by handle, not by value, so under every start method the index is held
once, whatever the number of workers. ``helpers.data_path.build_loaders`` uses it. Where no shared
memory can be had (a full ``/dev/shm``), the arrays stay plain, with a warning.

Notebooks: 01 teaches it; 04 uses it.
"""
from __future__ import annotations

import operator
from typing import Any, Sequence

import numpy as np

__all__ = ["BoxArray", "PathArray", "shared_array"]


def _index(i: Any, n: int, what: str) -> int:
    """``i`` as a non-negative position into ``n`` items (negative counts from the end, like a list)."""
    try:
        i = operator.index(i)
    except TypeError:
        raise TypeError(f"{what} indices must be integers, got {type(i).__name__}") from None
    if i < 0:
        i += n
    if not 0 <= i < n:
        raise IndexError(f"{what} index out of range: {i if i >= 0 else i - n} (length {n})")
    return i


def shared_array(a: np.ndarray) -> tuple[np.ndarray, Any]:
    """``a``'s contents copied into shared memory: ``(view, tensor)``, a NumPy view of a torch tensor
    whose storage is a shared-memory file, and that tensor (what is pickled: torch's multiprocessing
    pickler sends a worker its file descriptor, not its bytes; plain ``pickle`` copies the bytes).
    Any dtype: the bytes are shared as ``uint8`` and viewed back as ``a.dtype``."""
    import torch

    a = np.ascontiguousarray(a)
    flat = a.reshape(-1).view(np.uint8) if a.size else np.zeros(1, dtype=np.uint8)
    tensor = torch.from_numpy(flat).share_memory_()  # share_memory_ copies into a shared-memory file
    return _view_of(tensor, a.dtype, a.shape), tensor


def _view_of(tensor: Any, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """The NumPy array of ``dtype`` and ``shape`` that a :func:`shared_array` tensor holds (no copy)."""
    n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    view = tensor.numpy()[:n].view(dtype).reshape(shape)
    view.flags.writeable = False  # every process reads the same pages: none may write them
    return view


class _SharedBuffers:
    """Pickling for classes that keep NumPy buffers in shared memory when built with ``shared=True``:
    the state then holds the torch tensors (passed by handle between processes) instead of the arrays."""

    _buffers: tuple[str, ...] = ()

    @property
    def shared(self) -> bool:
        """Whether the buffers live in shared memory (``shared=True``), passed to workers by handle."""
        tensors = self.__dict__.get("_tensors") or {}
        return bool(tensors) and all(t.is_shared() for t, _, _ in tensors.values())

    def _share(self) -> None:
        try:
            shared = {name: shared_array(getattr(self, name)) for name in self._buffers}
        except (RuntimeError, OSError) as e:  # /dev/shm full or missing: plain arrays still work
            import warnings

            warnings.warn(f"{type(self).__name__}: no shared memory ({e}); the index stays a plain array, "
                          "copied into each forkserver or spawn worker", RuntimeWarning, stacklevel=3)
            return
        self._tensors = {}
        for name, (view, tensor) in shared.items():
            setattr(self, name, view)
            self._tensors[name] = (tensor, view.dtype.str, view.shape)

    def __getstate__(self) -> dict:
        if not self.shared:
            return self.__dict__
        return {k: v for k, v in self.__dict__.items() if k not in self._buffers}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        for name, (tensor, dtype, shape) in state.get("_tensors", {}).items():
            setattr(self, name, _view_of(tensor, np.dtype(dtype), shape))


class PathArray(_SharedBuffers):
    """Paths stored in ONE fixed-width byte-string NumPy array (UTF-8), read back as ``str``.

    Each entry takes the length of the longest path in bytes, so memory is ``len * max_len``; paths
    of similar length (as in a data folder) waste little. ``paths[i]`` decodes one entry into a new
    ``str``. A path that is not valid Unicode, or contains NUL (NumPy's fixed-width strings drop
    trailing NULs, and no file system allows them), raises :class:`ValueError` naming its index.
    ``shared`` (default True): the array lives in shared memory, held once under every start method
    (module doc); ``shared=False`` keeps a plain NumPy array (no ``/dev/shm``; flat under ``fork`` only).
    """

    _buffers = ("_data",)

    def __init__(self, paths: Sequence[Any], shared: bool = True) -> None:
        encoded = []
        for i, p in enumerate(paths):
            s = str(p)  # pathlib.Path too
            if "\x00" in s:
                raise ValueError(f"PathArray: path {i} ({s!r}) contains a NUL character")
            try:
                encoded.append(s.encode("utf-8"))
            except UnicodeEncodeError as e:
                raise ValueError(f"PathArray: path {i} ({s!r}) cannot be encoded as UTF-8: {e.reason}") from None
        width = max((len(b) for b in encoded), default=1) or 1
        self._data = np.array(encoded, dtype=f"S{width}")
        del encoded
        if shared:
            self._share()

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, i: int) -> str:
        return self._data[_index(i, len(self._data), "PathArray")].decode("utf-8")

    def __iter__(self):
        return (b.decode("utf-8") for b in self._data)

    @property
    def nbytes(self) -> int:
        """Bytes of the array's data buffer (the whole index of paths)."""
        return int(self._data.nbytes)

    def __repr__(self) -> str:
        where = ", shared memory" if self.shared else ""
        return f"PathArray({len(self)} paths, dtype {self._data.dtype}, {self.nbytes:,} bytes{where})"


class BoxArray(_SharedBuffers):
    """Per-image boxes in one flat ``float32`` (N_boxes, 4) array plus ``int64`` offsets (N + 1).

    Image ``i`` owns rows ``offsets[i]:offsets[i + 1]``. ``boxes[i]`` returns a new (k, 4) float32
    array, a *copy* (k * 16 bytes): a transform that scales boxes in place then cannot change the
    stored labels, and no worker writes to the shared buffer. ``labels`` is a sequence with one entry
    per image, each a (k, 4) list or array (``[]`` for none). ``shared`` (default True): both arrays
    live in shared memory, held once under every start method (module doc); ``shared=False``: plain.
    """

    _buffers = ("_boxes", "_offsets")

    def __init__(self, labels: Sequence[Any], shared: bool = True) -> None:
        counts = np.zeros(len(labels) + 1, dtype=np.int64)
        parts = []
        for i, boxes in enumerate(labels):
            a = np.asarray(boxes, dtype=np.float32)
            if a.size == 0:
                a = a.reshape(0, 4)
            if a.ndim != 2 or a.shape[1] != 4:
                raise ValueError(f"BoxArray: labels[{i}] must be a (k, 4) list of boxes, got shape {a.shape}")
            counts[i + 1] = len(a)
            parts.append(a)
        self._offsets = np.cumsum(counts)
        self._boxes = np.concatenate(parts) if parts else np.empty((0, 4), dtype=np.float32)
        del parts
        if shared:
            self._share()

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        i = _index(i, len(self), "BoxArray")
        return self._boxes[self._offsets[i] : self._offsets[i + 1]].copy()

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    @property
    def n_boxes(self) -> int:
        """Number of boxes over all images."""
        return len(self._boxes)

    @property
    def nbytes(self) -> int:
        """Bytes of the two data buffers (boxes and offsets)."""
        return int(self._boxes.nbytes + self._offsets.nbytes)

    def __repr__(self) -> str:
        where = ", shared memory" if self.shared else ""
        return f"BoxArray({len(self)} images, {self.n_boxes} boxes, {self.nbytes:,} bytes{where})"
