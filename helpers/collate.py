"""The collate functions of the pipeline: :func:`collate_keep_boxes` keeps a variable number of boxes per
image (every other key is collated as ``default_collate`` does, and the boxes stay a list of one
``(k_i, 4)`` tensor per image); :func:`collate_channels_last` stacks the images in the memory order
``ToTensor`` leaves them in (channels_last), with one plain copy per image instead of a reordering one.

(The reading of ``default_collate`` itself, today's and PyTorch 0.4.0's, and the batch checker are in
``helpers.lab.collate_reading`` and ``helpers.lab.batches``: they explain and check, the pipeline does not
need them.)

Notebooks: 04 teaches it (appendix 04c); 05, 07 use it.
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


# --------------------------------------------------------------------------------------------------
# Images: stacked in the memory order they come in


def stack_channels_last(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """B images of shape 3xHxW -> one Bx3xHxW batch stored channels_last (memory B x H x W x 3).

    ``ToTensor``'s images are 3xHxW views of HxWx3 memory. ``torch.stack`` (what ``default_collate``
    runs) always writes a contiguous Bx3xHxW batch, so it gathers every pixel's three channels into
    three planes: a reordering copy. Here ``default_collate`` itself stacks the HxWx3 views into a
    B x H x W x 3 block, one plain copy per image (in a DataLoader worker, straight into shared memory,
    as for any batch), and the batch is that block's Bx3xHxW view: the same shape and values as
    ``default_collate`` gives for the images themselves, with ``channels_last`` strides, the layout
    ``train`` runs the convolutions in. Images in any other layout are stacked correctly too
    (reordered as they are copied).
    """
    if len(images) == 0:
        raise ValueError("stack_channels_last: no image to stack")
    for i, image in enumerate(images):
        if not isinstance(image, torch.Tensor) or image.ndim != 3:
            raise TypeError(f"stack_channels_last: image {i} must be a CxHxW tensor, got "
                            f"{type(image).__name__} {tuple(getattr(image, 'shape', ()))}")
    hwc = [image.permute(1, 2, 0) for image in images]  # views: for ToTensor's images, contiguous HxWx3
    return default_collate(hwc).permute(0, 3, 1, 2)


def collate_channels_last(batch: Sequence[Mapping[str, Any]], keep_boxes: bool = False) -> dict[str, Any]:
    """The pipeline's collate function: ``'image'`` by :func:`stack_channels_last`, every other key as
    ``default_collate`` does it (``keep_boxes=True``: as :func:`collate_keep_boxes`, the boxes a list).

    The batch equals ``default_collate``'s (or ``collate_keep_boxes``'s) value for value; only the
    images' memory order differs (``channels_last``). Use ``functools.partial(collate_channels_last,
    keep_boxes=True)`` as a DataLoader's ``collate_fn`` to keep the boxes.
    """
    if len(batch) == 0:
        raise ValueError("collate_channels_last: the batch is empty")
    for i, sample in enumerate(batch):
        if not isinstance(sample, collections.abc.Mapping):
            raise TypeError(f"collate_channels_last: sample {i} is a {type(sample).__name__}, not a dict")
        if "image" not in sample:
            raise KeyError(f"collate_channels_last: sample {i} ({sample.get('name', '?')!r}) has no 'image'")
    images = stack_channels_last([sample["image"] for sample in batch])
    rest = [{k: v for k, v in sample.items() if k != "image"} for sample in batch]
    collated = collate_keep_boxes(rest) if keep_boxes else default_collate(rest)
    return {k: (images if k == "image" else collated[k]) for k in batch[0]}


__all__ = ["collate_keep_boxes", "stack_channels_last", "collate_channels_last"]
