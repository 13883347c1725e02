"""The sample contract, written once: the keys a sample dict holds at each stage of the pipeline, and the
type, dtype and shape of each value. Every module that makes or reads samples follows it; ``check``
says, naming the key, where a sample breaks it (tests/test_sample.py runs it on every stage of the real
pipeline; notebooks 02 and 04 run it on theirs). The key names stay plain strings in the code, as the
notebooks and the source articles write them (``sample["image"]``); this module is where they are defined,
and a test reads the code to check that every key it reads from a sample or a batch is one of them.

Stages:

- ``raw``: what ``FaceDataset`` returns without a transform (notebook 02): ``image`` HxWx3 uint8 NumPy
  array (RGB, upright), ``boxes`` (k, 4) float32 NumPy array of XYXY pixel boxes, ``name`` str (the key
  the image has in ``bbox.json``);
- ``rescaled``: after ``Rescale`` (notebook 03): the same keys, image at the training size, boxes scaled;
- ``training``: after ``default_pipeline`` (``Rescale``, ``ConvertGroundTruth``, ``ToTensor``):
  ``image`` 3xHxW uint8 tensor, ``mask`` 1xHxW uint8 tensor of 0/1, ``name`` str, and ``boxes`` (k, 4)
  float32 tensor only when kept (``ConvertGroundTruth(keep_boxes=True)``);
- ``batch``: a DataLoader batch of training samples (notebook 04): ``image`` Bx3xHxW uint8, ``mask``
  Bx1xHxW uint8, ``name`` a list of B str, ``boxes`` a list of B (k_i, 4) tensors when kept.

Notebooks: 02 teaches it; 04 uses it.
"""
from __future__ import annotations

from typing import Any, Mapping, TypedDict

import numpy as np
import torch

#: The key names, once.
IMAGE, BOXES, MASK, NAME = "image", "boxes", "mask", "name"


class RawSample(TypedDict):
    image: np.ndarray  # HxWx3 uint8
    boxes: np.ndarray  # (k, 4) float32, XYXY pixels
    name: str


class TrainingSample(TypedDict, total=False):
    image: torch.Tensor  # 3xHxW uint8
    mask: torch.Tensor  # 1xHxW uint8, 0/1
    name: str
    boxes: torch.Tensor  # (k, 4) float32, only when kept


#: stage -> (required keys, optional keys)
STAGES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "raw": ((IMAGE, BOXES, NAME), ()),
    "rescaled": ((IMAGE, BOXES, NAME), ()),
    "training": ((IMAGE, MASK, NAME), (BOXES,)),
    "batch": ((IMAGE, MASK, NAME), (BOXES,)),
}


def check(sample: Mapping[str, Any], stage: str, size: tuple[int, int] | None = None) -> None:
    """Raise ``ValueError`` naming the key when ``sample`` breaks the contract of ``stage``;
    ``size``: the (H, W) the image (and mask) must have."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}: expected one of {sorted(STAGES)}")
    required, optional = STAGES[stage]
    keys = set(sample)
    if not set(required) <= keys or not keys <= set(required) | set(optional):
        raise ValueError(f"{stage} sample: keys {sorted(keys)}, expected {sorted(required)}"
                         + (f" (+ optional {sorted(optional)})" if optional else ""))

    def fail(key: str, what: str) -> None:
        raise ValueError(f"{stage} sample {sample.get(NAME)!r}: {key!r} {what}")

    image = sample[IMAGE]
    if stage in ("raw", "rescaled"):
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
            fail(IMAGE, f"must be an HxWx3 uint8 array, got {type(image).__name__} {getattr(image, 'shape', '')}")
        hw = image.shape[:2]
        boxes = sample[BOXES]
        if not (isinstance(boxes, np.ndarray) and boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4):
            fail(BOXES, f"must be a (k, 4) float32 array, got {type(boxes).__name__} {getattr(boxes, 'shape', '')}")
    else:
        lead = 1 if stage == "batch" else 0
        if not (isinstance(image, torch.Tensor) and image.dtype == torch.uint8 and image.ndim == 3 + lead
                and image.shape[lead] == 3):
            fail(IMAGE, f"must be a {'B' if lead else ''}x3xHxW uint8 tensor, got {type(image).__name__} "
                        f"{tuple(getattr(image, 'shape', ()))}")
        hw = tuple(image.shape[-2:])
        mask = sample[MASK]
        if not (isinstance(mask, torch.Tensor) and mask.dtype == torch.uint8 and mask.ndim == 3 + lead
                and mask.shape[lead] == 1 and tuple(mask.shape[-2:]) == hw):
            fail(MASK, f"must be a {'B' if lead else ''}x1xHxW uint8 tensor of the image's size, got "
                       f"{tuple(getattr(mask, 'shape', ()))}")
        if stage == "batch" and (not isinstance(sample[NAME], list) or len(sample[NAME]) != image.shape[0]):
            fail(NAME, "must be a list with one name per image")
    if stage != "batch" and not isinstance(sample[NAME], str):
        fail(NAME, f"must be a str, got {type(sample[NAME]).__name__}")
    if size is not None and tuple(hw) != tuple(size):
        fail(IMAGE, f"is {tuple(hw)}, expected {tuple(size)} (H, W)")
