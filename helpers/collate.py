"""The collate function that keeps a variable number of boxes per image: every other key is collated as
``default_collate`` does, and the boxes stay a list of one ``(k_i, 4)`` tensor per image.

(The reading of ``default_collate`` itself, today's and PyTorch 0.4.0's, and the batch checker are in
``helpers.lab.collate_reading`` and ``helpers.lab.batches``: they explain and check, the pipeline does not
need them.)

Notebooks: 04 teaches it; 05, 07 use it.
"""
from __future__ import annotations

import collections.abc
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import default_collate

from .errors import DataError


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


__all__ = ["collate_keep_boxes"]
