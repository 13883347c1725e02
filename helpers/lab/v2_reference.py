"""The same job done by torchvision's transforms v2: ``Rescale`` + ``ConvertGroundTruth`` checked against
``v2.Resize`` on ``tv_tensors`` (boxes bit for bit, masks pixel for pixel), and the details where the
two differ by design (tie lines, fractional boxes, boxes smaller than a pixel).

Code that checks the pipeline, not part of it: the training path never imports ``helpers.lab``
(a test checks).

Notebooks: 03 uses it (03a teaches it); 04 uses it (appendix 04b).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode

from ..transforms import ConvertGroundTruth, Rescale, _check_boxes, _check_image, _valid_size, boxes_to_mask, resized_size

# ----------------------------------------------------------------------------- the same job in v2


def to_tv_sample(sample: dict) -> dict:
    """A NumPy sample as ``tv_tensors``: ``'image'`` Image 3xHxW uint8, ``'boxes'`` BoundingBoxes
    (XYXY, ``canvas_size=(H, W)``), and ``'mask'``: the ORIGINAL-size mask of the boxes
    (:func:`boxes_to_mask`) as a Mask HxW uint8. ``'name'`` is carried along."""
    image = _check_image(sample, "to_tv_sample")
    boxes = _check_boxes(sample, "to_tv_sample")
    height, width = image.shape[:2]
    return {
        "image": tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))),
        "boxes": tv_tensors.BoundingBoxes(
            torch.from_numpy(boxes.copy()), format="XYXY", canvas_size=(height, width)
        ),
        "mask": tv_tensors.Mask(torch.from_numpy(boxes_to_mask(boxes, height, width))),
        "name": sample.get("name"),
    }


#: Whether this torchvision's ``resize_mask`` takes an ``interpolation`` (added in torchvision 0.28).
#: Before it, ``v2.Resize(..., NEAREST_EXACT)`` resizes a ``Mask`` with NEAREST whatever it is asked:
#: on Colab runtimes that ship torchvision 0.24-0.27, the mask then follows the pixel-corner rule.
MASK_RESIZE_TAKES_INTERPOLATION = "interpolation" in inspect.signature(v2.functional.resize_mask).parameters


class ResizeMask:
    """Resize a ``tv_tensors.Mask`` with the interpolation asked for, on any torchvision.

    With torchvision >= 0.28 this is ``v2.Resize(size, interpolation)``. Older versions ignore the
    interpolation for masks (always NEAREST), so there the mask goes through
    ``torch.nn.functional.interpolate(mode=...)`` — the function ``v2.Resize`` itself calls for tensors —
    and comes back a ``Mask``; the two give identical masks where both can run (tests/test_transforms.py).
    """

    def __init__(self, size: int | tuple[int, int], interpolation: str | InterpolationMode = "nearest-exact",
                 use_v2: bool | None = None) -> None:
        self.size = _valid_size(size)
        self.interpolation = InterpolationMode(interpolation)
        if self.interpolation not in (InterpolationMode.NEAREST, InterpolationMode.NEAREST_EXACT):
            raise ValueError(f"a mask is resized with 'nearest' or 'nearest-exact', got {interpolation!r}")
        self.use_v2 = MASK_RESIZE_TAKES_INTERPOLATION if use_v2 is None else use_v2
        self._v2 = v2.Resize(self.size, interpolation=self.interpolation)

    def __call__(self, mask: torch.Tensor) -> tv_tensors.Mask:
        if self.use_v2:
            return self._v2(tv_tensors.Mask(mask))
        h, w = resized_size(self.size, *mask.shape[-2:])
        batch = mask.reshape(-1, 1, *mask.shape[-2:]).to(torch.float32)
        out = torch.nn.functional.interpolate(batch, size=(h, w), mode=self.interpolation.value)
        return tv_tensors.Mask(out.to(mask.dtype).reshape(*mask.shape[:-2], h, w))

    def __repr__(self) -> str:
        how = "v2.Resize" if self.use_v2 else "F.interpolate"
        return f"ResizeMask(size={self.size}, interpolation={self.interpolation.value!r}, via {how})"


class ReferencePipeline:
    """torchvision's version of Rescale + ConvertGroundTruth, on a sample from :func:`to_tv_sample`.

    Image and boxes go through ``v2.Resize(size)`` (bilinear, antialias), then, if ``sanitize``,
    ``v2.SanitizeBoundingBoxes(labels_getter=None)`` (we have no labels key; it drops boxes narrower
    or lower than 1 pixel). The original-size mask goes through ``v2.Resize(size,
    interpolation=mask_interpolation)``: ``"nearest-exact"`` (default) matches the centre rule;
    ``"nearest"`` is what a Mask gets from the same ``v2.Resize`` as the image. The mask is kept out of
    SanitizeBoundingBoxes on purpose: it indexes any Mask whose first dimension happens to equal the
    number of boxes (meant for per-box masks), which would cut rows out of an HxW mask.
    """

    def __init__(
        self,
        size: int | tuple[int, int],
        mask_interpolation: str | InterpolationMode = "nearest-exact",
        sanitize: bool = True,
    ) -> None:
        size = _valid_size(size)
        self.resize = v2.Resize(size, antialias=True)
        self.mask_interpolation = InterpolationMode(mask_interpolation)
        self.resize_mask = ResizeMask(size, self.mask_interpolation)
        self.sanitize = v2.SanitizeBoundingBoxes(labels_getter=None) if sanitize else None

    def __call__(self, tv_sample: dict) -> dict:
        out = self.resize({"image": tv_sample["image"], "boxes": tv_sample["boxes"]})
        if self.sanitize is not None:
            out = self.sanitize(out)
        return {**out, "mask": self.resize_mask(tv_sample["mask"]), "name": tv_sample.get("name")}


def reference_pipeline(
    size: int | tuple[int, int], mask_interpolation: str = "nearest-exact", sanitize: bool = True
) -> ReferencePipeline:
    """See :class:`ReferencePipeline`."""
    return ReferencePipeline(size, mask_interpolation=mask_interpolation, sanitize=sanitize)


def tie_lines(n_in: int, n_out: int, interpolation: str = "nearest-exact") -> np.ndarray:
    """Output indices (bool, length ``n_out``) whose sample point falls exactly on an input pixel edge.

    NEAREST_EXACT samples at (j + 0.5) * n_in / n_out, a tie when (2j + 1) * n_in is a multiple of
    2 * n_out; NEAREST samples at j * n_in / n_out (j = 0 excluded: 0 is exact in any arithmetic).
    Only there can float rounding decide a mask pixel; computed with integers, so exactly.
    """
    j = np.arange(n_out, dtype=np.int64)
    if InterpolationMode(interpolation) == InterpolationMode.NEAREST_EXACT:
        return ((2 * j + 1) * n_in) % (2 * n_out) == 0
    if InterpolationMode(interpolation) == InterpolationMode.NEAREST:
        return (j > 0) & ((j * n_in) % n_out == 0)
    raise ValueError(f"interpolation must be 'nearest' or 'nearest-exact', got {interpolation!r}")


def snap_to_pixel_grid(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Integer boxes with the same mask as ``boxes`` at this resolution: x -> ceil(x - 0.5), clipped.

    This is what rasterising at the input size does to a fractional box; integer boxes are unchanged.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    snapped = np.ceil(b - 0.5)
    snapped[:, 0::2] = np.clip(snapped[:, 0::2], 0, width)
    snapped[:, 1::2] = np.clip(snapped[:, 1::2], 0, height)
    return snapped.astype(np.float32)


def expected_reference_mask(
    boxes: np.ndarray, in_size: tuple[int, int], out_size: tuple[int, int], interpolation: str = "nearest-exact"
) -> np.ndarray:
    """The mask v2 gives by resizing the original-size mask, predicted with our rule (ties aside):
    snap the boxes to the input grid, rescale them as ``Rescale`` does, and, for NEAREST, shift them by
    half an output pixel right and down (NEAREST samples pixel corners, not centres)."""
    (h_in, w_in), (h_out, w_out) = in_size, out_size
    ratios = np.array([w_out / w_in, h_out / h_in] * 2, dtype=np.float32)
    scaled = (snap_to_pixel_grid(boxes, h_in, w_in) * ratios).astype(np.float64)
    if InterpolationMode(interpolation) == InterpolationMode.NEAREST:
        scaled = scaled + 0.5
    return boxes_to_mask(scaled, h_out, w_out)


def sanitize_keeps(boxes: np.ndarray, canvas_size: tuple[int, int]) -> np.ndarray:
    """Which boxes ``v2.SanitizeBoundingBoxes()`` (min_size=1, min_area=1) keeps, as a bool array.

    It drops a box narrower or lower than 1 pixel, and a box with a coordinate outside the canvas. The
    second bites boxes that touch the right or bottom border: x_max * (new_w / old_w) computed in
    float32 can land one ulp above new_w (e.g. 35 * float32(18 / 35) > 18), and the box is dropped.
    """
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    height, width = canvas_size
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    inside = (b >= 0).all(axis=1) & (b[:, 0::2] <= width).all(axis=1) & (b[:, 1::2] <= height).all(axis=1)
    return (w >= 1) & (h >= 1) & (w * h >= 1) & inside


@dataclass
class ReferenceCheck:
    """Rescale + ConvertGroundTruth versus :class:`ReferencePipeline` on one sample."""

    name: str | None
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    mask_interpolation: str
    boxes_max_abs_diff: float  # ours vs v2.Resize, all boxes (before SanitizeBoundingBoxes)
    boxes_close: bool  # np.allclose(ours, v2, rtol=1e-6, atol=1e-5): equal to float32 precision
    n_boxes: int
    n_dropped_by_sanitize: int  # v2 drops them (see sanitize_keeps), Rescale keeps every box
    sanitize_as_expected: bool  # the sanitized v2 boxes == our boxes[sanitize_keeps(...)]
    mask_mismatch: int  # pixels where our mask != v2's resized original mask
    mask_mismatch_vs_expected: int  # v2 mask vs expected_reference_mask (snap / half-pixel shift)
    mismatch_off_ties: int  # of those, pixels not on a tie row or column: must be 0
    image_max_abs_diff: int  # Pillow bilinear vs torch bilinear (antialias) on uint8
    mask_ours: np.ndarray = field(repr=False)
    mask_reference: np.ndarray = field(repr=False)

    @property
    def ok(self) -> bool:
        """Boxes agree, SanitizeBoundingBoxes drops exactly the boxes :func:`sanitize_keeps` predicts,
        and the mask differs from :func:`expected_reference_mask` nowhere but on tie lines."""
        return self.boxes_close and self.sanitize_as_expected and self.mismatch_off_ties == 0

    @property
    def mask_identical(self) -> bool:
        """Our mask equals v2's pixel for pixel (expected for integer boxes without ties)."""
        return self.mask_mismatch == 0

    def __str__(self) -> str:
        (h, w), (oh, ow) = self.in_size, self.out_size
        return "\n".join(
            [
                f"{self.name}: {h}x{w} -> {oh}x{ow}, mask resized with {self.mask_interpolation}",
                f"  boxes: {self.n_boxes}, max |ours - v2.Resize| = {self.boxes_max_abs_diff:g}; "
                f"SanitizeBoundingBoxes dropped {self.n_dropped_by_sanitize} "
                f"(as expected: {self.sanitize_as_expected})",
                f"  mask: {self.mask_mismatch} of {oh * ow} pixels differ from ours; "
                f"{self.mask_mismatch_vs_expected} differ from the predicted reference, "
                f"{self.mismatch_off_ties} of them off tie lines",
                f"  image: max |Pillow - torch| = {self.image_max_abs_diff} grey level"
                f"{'' if self.image_max_abs_diff == 1 else 's'}",
            ]
        )


def check_against_reference(
    sample: dict, size: int | tuple[int, int], mask_interpolation: str = "nearest-exact"
) -> ReferenceCheck:
    """Run ``sample`` through Rescale + ConvertGroundTruth and through :class:`ReferencePipeline`,
    and measure every difference (see the module docstring for what is expected and why)."""
    ours = ConvertGroundTruth(keep_boxes=True)(Rescale(size)(sample))
    reference = ReferencePipeline(size, mask_interpolation=mask_interpolation, sanitize=False)
    tv = to_tv_sample(sample)
    resized = reference.resize({"image": tv["image"], "boxes": tv["boxes"]})
    sanitized = v2.SanitizeBoundingBoxes(labels_getter=None)(resized)["boxes"]
    mask_ref = reference.resize_mask(tv["mask"]).numpy()

    in_size = tuple(sample["image"].shape[:2])
    out_size = tuple(ours["image"].shape[:2])
    boxes_ours = ours["boxes"]
    boxes_ref = resized["boxes"].numpy()
    kept = sanitize_keeps(boxes_ours, out_size)
    expected = expected_reference_mask(sample["boxes"], in_size, out_size, mask_interpolation)
    differs = expected != mask_ref
    on_tie = (
        tie_lines(in_size[0], out_size[0], mask_interpolation)[:, None]
        | tie_lines(in_size[1], out_size[1], mask_interpolation)[None, :]
    )
    image_diff = np.abs(ours["image"].astype(np.int16) - resized["image"].numpy().transpose(1, 2, 0))
    return ReferenceCheck(
        name=sample.get("name"),
        in_size=in_size,
        out_size=out_size,
        mask_interpolation=InterpolationMode(mask_interpolation).value,
        boxes_max_abs_diff=float(np.abs(boxes_ours - boxes_ref).max(initial=0.0)),
        boxes_close=bool(np.allclose(boxes_ours, boxes_ref, rtol=1e-6, atol=1e-5)),
        n_boxes=len(boxes_ours),
        n_dropped_by_sanitize=len(boxes_ours) - len(sanitized),
        sanitize_as_expected=bool(np.array_equal(sanitized.numpy(), boxes_ours[kept])),
        mask_mismatch=int((ours["mask"] != mask_ref).sum()),
        mask_mismatch_vs_expected=int(differs.sum()),
        mismatch_off_ties=int((differs & ~on_tie).sum()),
        image_max_abs_diff=int(image_diff.max(initial=0)),
        mask_ours=ours["mask"],
        mask_reference=mask_ref,
    )
