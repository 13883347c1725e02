"""The sample transforms ``Rescale``, ``ConvertGroundTruth``, ``ToTensor`` (their check against
torchvision's ``transforms.v2`` doing the same job is ``helpers.lab.v2_reference``).

Each transform is a callable class: parameters go to ``__init__``, ``__call__(sample)`` returns a NEW
dict and never changes the one it was given, so they compose with ``torchvision.transforms.v2.Compose``
and pickle into DataLoader workers under any start method (``fork``, ``spawn``, ``forkserver``).

The pixel rule (the data contract): pixel (row i, column j) covers the square [j, j+1) x [i, i+1), and it
is face iff its CENTRE (j + 0.5, i + 0.5) lies in [x_min, x_max) x [y_min, y_max) of some box.

What the check against v2 finds, in short (``helpers.lab.v2_reference`` computes it):

- Boxes: ``Rescale`` multiplies by the same float32 ratios as ``v2.Resize``: the same numbers, bit for bit.
- Mask: for the Mask ``tv_tensor``, ``v2.Resize`` silently replaces any interpolation other than
  NEAREST / NEAREST_EXACT by **NEAREST** (see ``resize_mask`` in torchvision 0.29), so the mask passed
  through the same ``v2.Resize`` as the image is sampled with NEAREST: source index floor(j * s), the
  LEFT EDGE of output pixel j (s = input size / output size). NEAREST_EXACT samples floor((j + 0.5) * s),
  its CENTRE. Only NEAREST_EXACT matches our centre rule:
  for an integer box edge x0, output pixel j is face under our rule iff x0 <= (j + 0.5) * s, which (x0
  being an integer) is iff x0 <= floor((j + 0.5) * s), i.e. iff the source pixel nearest-exact picks is
  face in the original-size mask (source column c is face iff x0 <= c + 0.5, i.e. iff x0 <= c). The same
  holds at x_max and for rows. So, with integer input boxes, Rescale + ConvertGroundTruth equals the
  original-size mask resized NEAREST_EXACT; and the NEAREST mask equals our rule applied to the
  rescaled boxes shifted by half an output pixel right and down.
- The one exception is floating point: where (j + 0.5) * s is exactly an integer (an output pixel
  centre on a source pixel edge: a "tie"), both torch (float32 scale) and our float32 boxes may round
  either way (e.g. 2 -> 41 columns: torch maps pixel 20's centre to 0.99999996, not 1). Mismatches can
  only occur on such tie rows/columns (:func:`tie_lines`); without ties, or for a power-of-two scale
  (exact in binary), the masks are identical. This project's sizes are: 480x640 -> 192x256 has no
  ties, 480x640 -> 240x320 is a factor of 2.
- Fractional input boxes: v2 resizes a mask already rasterised at the input resolution, which snaps each
  box edge to the input pixel grid first; the reference equals our rule applied to the snapped boxes.
- ``SanitizeBoundingBoxes`` (min_size=1, min_area=1) drops boxes narrower or lower than one output
  pixel, and boxes whose rescaled x_max / y_max lands a float32 ulp past the border (:func:`sanitize_keeps`);
  ``Rescale`` keeps every box, and ``ConvertGroundTruth`` still marks a sub-pixel box's pixel when it
  contains that pixel's centre (the mask, the training target, does not depend on this choice).

Notebooks: 03 teaches it; 04, 07, 08 use it.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from .errors import DataError


def _name(sample: dict) -> str:
    return f"sample {sample.get('name', '<unnamed>')!r}"


def _check_image(sample: dict, who: str) -> np.ndarray:
    image = sample.get("image")
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        got = f"{type(image).__name__} {getattr(image, 'shape', '')} {getattr(image, 'dtype', '')}"
        raise TypeError(f"{who}: {_name(sample)} needs 'image' as an HxWx3 uint8 ndarray, got {got}")
    return image


def _check_boxes(sample: dict, who: str) -> np.ndarray:
    if "boxes" not in sample:
        raise KeyError(f"{who}: {_name(sample)} has no 'boxes'")
    boxes = np.asarray(sample["boxes"], dtype=np.float32)
    if boxes.size == 0:
        return np.zeros((0, 4), dtype=np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.isfinite(boxes).all():
        raise DataError(f"{who}: {_name(sample)} needs finite (k, 4) XYXY 'boxes', got {boxes.tolist()}")
    return boxes


def resized_size(size: int | Sequence[int], height: int, width: int) -> tuple[int, int]:
    """(new_height, new_width) for ``size`` exactly as ``v2.Resize`` computes it.

    An int sets the smaller edge and keeps the aspect ratio (the longer edge is truncated to an int);
    an (h, w) pair is the size itself.
    """
    if isinstance(size, int):
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = size, int(size * long / short)
        return (new_long, new_short) if width <= height else (new_short, new_long)
    h, w = size
    return int(h), int(w)


def _valid_size(size: int | Sequence[int]) -> int | tuple[int, int]:
    if isinstance(size, bool):
        raise ValueError(f"output_size must be an int or (h, w), got {size!r}")
    if isinstance(size, (int, np.integer)):
        if size < 1:
            raise ValueError(f"output_size must be >= 1, got {size}")
        return int(size)
    if isinstance(size, Sequence) and len(size) == 2 and all(isinstance(v, (int, np.integer)) for v in size):
        if min(size) < 1:
            raise ValueError(f"output_size must be >= 1, got {tuple(size)}")
        return int(size[0]), int(size[1])
    raise ValueError(f"output_size must be an int or (h, w), got {size!r}")


def scale_boxes(boxes: np.ndarray, old_size: tuple[int, int], new_size: tuple[int, int]) -> np.ndarray:
    """XYXY ``boxes`` of an ``old_size = (height, width)`` image scaled to ``new_size = (height, width)``.

    Multiplies by the float32 ratios (new_w / old_w, new_h / old_h): the product :class:`Rescale`
    computes (and ``v2.Resize``). ``FaceDataset(decode_size=...)`` scales with it while decoding, so its
    boxes equal those of the full decode + ``Rescale`` bit for bit and the masks are identical
    (tests/test_fast_pipeline.py); a ``Rescale`` to the same size then finds image and boxes at size
    and returns them unchanged.
    """
    (old_h, old_w), (new_h, new_w) = old_size, new_size
    ratios = np.array([new_w / old_w, new_h / old_h] * 2, dtype=np.float32)
    return np.asarray(boxes, dtype=np.float32) * ratios


class Rescale:
    """Resize the image to ``output_size`` and scale its boxes to match.

    ``output_size``: an int sets the smaller edge, aspect ratio kept (as ``torchvision``'s Resize);
    an ``(h, w)`` pair is the exact size. Boxes are multiplied by (new_w / old_w, new_h / old_h) in
    float32, the same arithmetic as ``v2.Resize``; every box is kept (see ``ConvertGroundTruth`` for
    boxes that become smaller than a pixel).

    The image is resized by Pillow's bilinear filter, which is antialiased (its support widens when
    shrinking, so downscaling averages instead of skipping pixels). Pillow works on the uint8 HxWx3
    array directly, with no tensor round trip inside the worker; it agrees with torchvision's
    ``antialias=True`` bilinear tensor resize to within 2 grey levels, 1 at this project's sizes
    (checked in the tests). Requesting the size the image already has returns image and boxes
    unchanged.
    """

    def __init__(self, output_size: int | tuple[int, int]) -> None:
        self.output_size = _valid_size(output_size)

    def __call__(self, sample: dict) -> dict:
        if "mask" in sample:
            raise ValueError(
                f"Rescale: {_name(sample)} already has a 'mask'; apply Rescale before "
                "ConvertGroundTruth (the mask is drawn from the rescaled boxes)"
            )
        image = _check_image(sample, "Rescale")
        old_h, old_w = image.shape[:2]
        new_h, new_w = resized_size(self.output_size, old_h, old_w)
        out = dict(sample)
        if (new_h, new_w) != (old_h, old_w):
            resized = Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR)
            out["image"] = np.array(resized)
        if "boxes" in sample:
            ratios = np.array([new_w / old_w, new_h / old_h] * 2, dtype=np.float32)
            out["boxes"] = _check_boxes(sample, "Rescale") * ratios
        return out

    def __repr__(self) -> str:
        return f"Rescale(output_size={self.output_size!r})"


def box_pixel_slices(box, height: int, width: int) -> tuple[slice, slice]:
    """The rows and columns of the pixels a box covers: THE pixel rule, used by the masks and the metrics.

    Pixel (i, j) belongs to the box when its centre (j + 0.5, i + 0.5) satisfies x_min <= j + 0.5 < x_max
    and y_min <= i + 0.5 < y_max; that is ceil(x_min - 0.5) <= j < ceil(x_max - 0.5), one slice of
    columns (and of rows). Clipped to the image, which is what the rule says for a box that crosses the
    border; empty for a box that contains no pixel centre. Float64 arithmetic, so the rule is exact
    for float32 box coordinates.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    c0, c1 = max(math.ceil(x0 - 0.5), 0), min(math.ceil(x1 - 0.5), width)
    r0, r1 = max(math.ceil(y0 - 0.5), 0), min(math.ceil(y1 - 0.5), height)
    return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))


def boxes_to_mask(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """HxW uint8 mask: 1 on the pixels of every box, by :func:`box_pixel_slices` (a pixel is face when its
    centre lies in [x_min, x_max) x [y_min, y_max) of some box)."""
    mask = np.zeros((height, width), dtype=np.uint8)
    for box in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        mask[box_pixel_slices(box, height, width)] = 1
    return mask


class ConvertGroundTruth:
    """Add ``'mask'``: an HxW uint8 0/1 array of the image's size, 1 on face pixels.

    The rule: pixel (i, j) is face iff its centre (j + 0.5, i + 0.5) lies in [x_min, x_max) x
    [y_min, y_max) of at least one box (see :func:`boxes_to_mask`). Consequences, all tested: no boxes
    -> all zeros; a box crossing the border is clipped by the rule itself; a box smaller than a pixel
    marks exactly the pixels whose centre it contains (possibly none). ``'boxes'`` is dropped (the
    mask replaces it, and boxes of different counts would not stack into a batch) unless
    ``keep_boxes=True``.
    """

    def __init__(self, keep_boxes: bool = False) -> None:
        self.keep_boxes = keep_boxes

    def __call__(self, sample: dict) -> dict:
        image = _check_image(sample, "ConvertGroundTruth")
        boxes = _check_boxes(sample, "ConvertGroundTruth")
        out = dict(sample)
        out["mask"] = boxes_to_mask(boxes, image.shape[0], image.shape[1])
        if not self.keep_boxes:
            del out["boxes"]
        return out

    def __repr__(self) -> str:
        return f"ConvertGroundTruth(keep_boxes={self.keep_boxes})"


def _shareable(array: np.ndarray) -> np.ndarray:
    """``array`` itself when a tensor can share its memory (C-contiguous and writable: a decoded image,
    a drawn mask); else a copy that can (a view with reordered or negative strides such as ``np.flip``'s,
    or a read-only array such as ``np.asarray(pil_image)``)."""
    if array.flags.c_contiguous and array.flags.writeable:
        return array
    return np.array(array, order="C")


class ToTensor:
    """NumPy sample -> tensors: ``'image'`` uint8 3xHxW, ``'mask'`` uint8 1xHxW, ``'boxes'`` (if still
    there) float32 (k, 4); other keys (``'name'``) unchanged.

    No pixel is copied: ``'image'`` is a 3xHxW VIEW of the HxWx3 array (``torch.from_numpy`` shares its
    memory, ``permute`` only reorders the strides), so the pixels stay in the decoder's order, the
    three channels of a pixel side by side. PyTorch calls that layout ``channels_last``: the tensor
    has the shape of a CHW image and the memory of an HWC one. It is the layout
    :func:`helpers.train.train` runs the convolutions in, so nothing has to reorder it on the way:
    :func:`helpers.collate.collate_channels_last` stacks such images with one plain copy each
    (``default_collate`` accepts them too, and reorders them into a contiguous batch as it stacks).
    The tensors share memory with the input arrays; the input dict itself is not changed.

    Why uint8: a batch leaves the DataLoader workers through shared memory and is copied to the GPU;
    uint8 is 4x smaller than float32 (8x smaller than the float64 that the well-known PyTorch
    data-loading tutorial ends up with, because NumPy computes in float64). The model converts on the
    device: ``image.float() / 255`` and ``mask.float()``, after ``.to(device, non_blocking=True)``.
    The mask keeps a channel axis (1xHxW) so that it lines up with a 1-channel model output.
    """

    def __call__(self, sample: dict) -> dict:
        image = _check_image(sample, "ToTensor")
        out = dict(sample)
        out["image"] = torch.from_numpy(_shareable(image)).permute(2, 0, 1)
        if "mask" in sample:
            mask = np.asarray(sample["mask"])
            if mask.shape != image.shape[:2] or mask.dtype != np.uint8:
                raise TypeError(
                    f"ToTensor: {_name(sample)} needs 'mask' as an HxW uint8 array of the image's size "
                    f"{image.shape[:2]}, got {mask.shape} {mask.dtype}"
                )
            out["mask"] = torch.from_numpy(_shareable(mask))[None]
        if "boxes" in sample:
            out["boxes"] = torch.from_numpy(_check_boxes(sample, "ToTensor").copy())
        return out

    def __repr__(self) -> str:
        return "ToTensor()"


def default_pipeline(size: int | tuple[int, int], keep_boxes: bool = False) -> v2.Compose:
    """The pipeline the later notebooks train with: Rescale, then the mask (and boxes if kept), then tensors."""
    return v2.Compose([Rescale(size), ConvertGroundTruth(keep_boxes=keep_boxes), ToTensor()])
