"""Inference: the face score of every pixel of one image at its original size (:func:`predict`), read
and resized as training reads it.

Notebooks: 05 (appendix 05b) teaches it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .on_device import amp_settings, normalise

__all__ = ["predict"]


def _read_resized(image: Any, image_size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """``(HxWx3 uint8 RGB at image_size, (height, width) of the whole image)`` of a PIL image or an image
    file. A file is read as training reads it (``FaceDataset(decode_size=image_size)``: EXIF orientation
    applied, any mode converted to RGB, a JPEG decoded at a reduced scale, errors naming the file). A
    PIL image (already decoded) is converted to RGB and resized with Pillow's bilinear filter, as
    ``Rescale`` does, without an array round trip at full size."""
    from PIL import Image

    height, width = (int(v) for v in image_size)
    if isinstance(image, Image.Image):
        rgb = image.convert("RGB")
        full = (rgb.height, rgb.width)
        if rgb.size != (width, height):
            rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
        return np.array(rgb), full
    from .dataset import read_resized

    return read_resized(image, (height, width))


@torch.no_grad()
def predict(model: nn.Module, image: str | Path | Any, image_size: tuple[int, int],
            device: str | torch.device | None = None) -> np.ndarray:
    """The face SCORE of every pixel of ``image`` (a path or a PIL image) at its ORIGINAL size,
    ``HxW`` float32 in [0, 1]: ``sigmoid(logit)``, face where > 0.5: a probability as trained by the
    default loss (plain cross-entropy, :class:`helpers.loss.FaceLoss`), calibrated as far as notebook
    appendix 05b §2 measures.

    The image is brought to ``image_size`` as in training (a file: decoded straight to that size, as
    ``build_loaders``' datasets do), run through the network, and the logits are upsampled bilinearly
    back to the original size before the sigmoid.
    """
    from .transforms import ToTensor

    device = torch.device(device) if device is not None else next(model.parameters()).device
    rgb, (h, w) = _read_resized(image, tuple(image_size))
    sample = ToTensor()({"image": rgb})
    x = normalise(sample["image"].unsqueeze(0).to(device))
    model.eval()
    amp_on, amp_dtype = amp_settings(device)
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_on):
        logits = model(x)
    logits = F.interpolate(logits.float(), size=(h, w), mode="bilinear", align_corners=False)
    return torch.sigmoid(logits)[0, 0].cpu().numpy().astype(np.float32)
