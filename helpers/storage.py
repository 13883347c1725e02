"""Paths and boxes kept in a few NumPy arrays instead of millions of Python objects.

Why (pytorch/pytorch#13246, "copy-on-access"): a forked DataLoader worker shares its parent's memory
pages until one is written to. Reading a Python ``str`` or ``float`` from a list writes to it
(its reference count), and the garbage collector writes to every list it scans, so over an epoch
each worker ends up with a private copy of every page holding the index: memory grows by about the
size of the index per worker. A NumPy array is one object; its data buffer holds no reference counts
and is only read, so its pages stay shared.

Notebooks: 01 teaches it; 04 uses it.
"""
from __future__ import annotations

import operator
from typing import Any, Sequence

import numpy as np


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


class PathArray:
    """Paths stored in ONE fixed-width byte-string NumPy array (UTF-8), read back as ``str``.

    Each entry takes the length of the longest path in bytes, so memory is ``len * max_len``; paths
    of similar length (as in a data folder) waste little. ``paths[i]`` decodes one entry into a new
    ``str``. A path that is not valid Unicode, or contains NUL (NumPy's fixed-width strings drop
    trailing NULs, and no file system allows them), raises :class:`ValueError` naming its index.
    """

    def __init__(self, paths: Sequence[Any]) -> None:
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
        return f"PathArray({len(self)} paths, dtype {self._data.dtype}, {self.nbytes:,} bytes)"


class BoxArray:
    """Per-image boxes in one flat ``float32`` (N_boxes, 4) array plus ``int64`` offsets (N + 1).

    Image ``i`` owns rows ``offsets[i]:offsets[i + 1]``. ``boxes[i]`` returns a new (k, 4) float32
    array, a *copy* (k * 16 bytes): a transform that scales boxes in place then cannot change the
    stored labels, and no worker writes to the shared buffer. ``labels`` is a sequence with one entry
    per image, each a (k, 4) list or array (``[]`` for none).
    """

    def __init__(self, labels: Sequence[Any]) -> None:
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
        return f"BoxArray({len(self)} images, {self.n_boxes} boxes, {self.nbytes:,} bytes)"
