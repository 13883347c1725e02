"""What happens to a batch on the device: ``uint8`` images normalised THERE (4x fewer bytes travel than
float32), masks as float 0/1, and the mixed-precision settings every device gets (:func:`amp_settings`).

Training (:func:`helpers.train.train_step`), evaluation (:func:`helpers.evaluation.evaluate`) and
inference (:func:`helpers.inference.predict`) all go through these, so a batch is prepared one way.

Notebooks: 05 teaches it.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["MEAN", "STD", "normalise", "prepare_batch", "amp_settings"]

#: Per-channel mean and standard deviation used to normalise images on the device (ImageNet's
#: statistics: a common, documented choice; the network is trained from scratch, so any fixed values
#: that bring the inputs near zero mean and unit spread would do).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """``uint8`` ``Bx3xHxW`` (on any device) -> float32 ``(x / 255 - MEAN) / STD``, computed where the batch is."""
    if images.dtype != torch.uint8:
        raise TypeError(f"normalise expects uint8 images (as the DataLoader yields them), got {images.dtype}")
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1)
    return (images.float().div_(255) - mean).div_(std)


def prepare_batch(batch: Mapping[str, Any], device: str | torch.device,
                  channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, masks)`` of a collated batch on ``device``: images float32 normalised there, masks float 0/1.

    The transfer is ``non_blocking`` (it overlaps with compute when the batch is in pinned memory, as
    ``pin_memory=True`` makes it); the ``uint8`` -> float conversion happens after the copy, so 4x fewer
    bytes travel. ``channels_last`` returns the images stored NHWC, the layout convolutions prefer (else
    contiguous NCHW); a batch that comes in that layout is not copied again.
    """
    for key in ("image", "mask"):
        if key not in batch:
            raise KeyError(f"batch has no {key!r} (keys: {sorted(batch)}); compose ConvertGroundTruth and ToTensor")
    images = normalise(batch["image"].to(device, non_blocking=True))  # keeps the batch's memory order
    # A no-op when the batch already comes in this layout (build_loaders' channels_last batches):
    images = images.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    masks = batch["mask"].to(device, non_blocking=True).float()
    return images, masks


def _native_bf16() -> bool:
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # older torch without the argument
        return torch.cuda.get_device_capability()[0] >= 8


def amp_settings(device: str | torch.device) -> tuple[bool, torch.dtype]:
    """``(enabled, dtype)`` for ``torch.autocast``. On CUDA: bf16 where the GPU computes it natively
    (Ampere and later: A100, L4, H100), which needs no loss scaling; else fp16 (e.g. Colab's T4), which
    needs a ``GradScaler`` against gradient underflow. Elsewhere off (float32): autocast on a CPU
    rarely speeds up convolutions, and MPS is kept in float32 for simplicity."""
    if torch.device(device).type == "cuda":
        return True, (torch.bfloat16 if _native_bf16() else torch.float16)
    return False, torch.float32
