"""Segmentation metrics for the face class, counted over every pixel of a split, and per-face box recall.

Counts are summed over all pixels of the split before dividing (a large face weighs more than a small
one), not averaged per image: an image with no face would otherwise have an undefined IoU.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["PixelCounts", "BoxRecall", "pixel_counts", "per_image_iou", "box_recall", "box_pixel_slices"]


def _as_bool(x: torch.Tensor | np.ndarray, threshold: float) -> torch.Tensor:
    """A prediction as a bool tensor: bool stays, integers are read as 0/1 labels, floats as probabilities."""
    t = torch.as_tensor(x)
    if t.dtype == torch.bool:
        return t
    if t.is_floating_point():
        return t > threshold
    return t != 0


@dataclass
class PixelCounts:
    """Confusion counts of the face class (``tp``: face predicted face, ``fp``: background predicted
    face, ``fn``: face predicted background, ``tn``: background predicted background).

    Ratios whose denominator is zero (no face in the truth and none predicted) are 1.0: there was
    nothing to find and nothing was wrongly claimed. ``precision`` with no predicted face but some true
    face is 0/0 too; it is then defined as 1.0 (nothing claimed wrongly) while ``recall`` is 0.
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: PixelCounts) -> PixelCounts:
        return PixelCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    def update(self, pred, target, threshold: float = 0.5) -> PixelCounts:
        """Add the counts of one batch in place (see :func:`pixel_counts`) and return self."""
        c = pixel_counts(pred, target, threshold)
        self.tp, self.fp, self.fn, self.tn = self.tp + c.tp, self.fp + c.fp, self.fn + c.fn, self.tn + c.tn
        return self

    @staticmethod
    def _ratio(num: int, den: int) -> float:
        return 1.0 if den == 0 else num / den

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def iou(self) -> float:
        """Intersection over union of the face class: tp / (tp + fp + fn)."""
        return self._ratio(self.tp, self.tp + self.fp + self.fn)

    @property
    def dice(self) -> float:
        """Dice (F1) of the face class: 2 tp / (2 tp + fp + fn)."""
        return self._ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def precision(self) -> float:
        """tp / (tp + fp): the share of pixels called face that are face."""
        return self._ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        """tp / (tp + fn): the share of face pixels that were found."""
        return self._ratio(self.tp, self.tp + self.fn)

    def as_dict(self) -> dict[str, float]:
        """The four ratios, by name (for logs and tables)."""
        return {"iou": self.iou, "dice": self.dice, "precision": self.precision, "recall": self.recall}


def pixel_counts(pred, target, threshold: float = 0.5) -> PixelCounts:
    """Confusion counts of ``pred`` against ``target`` over all their pixels.

    ``pred``: probabilities (float, face where ``> threshold``), a bool mask, or a 0/1 integer mask;
    ``target``: a 0/1 or bool mask of the same shape (tensors or arrays, any shape, e.g. ``Bx1xHxW``).
    Logits are not accepted as such: pass ``torch.sigmoid(logits)`` or ``logits > 0``.
    """
    p = _as_bool(pred, threshold)
    t = _as_bool(target, 0.5).to(p.device)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {tuple(p.shape)} != target shape {tuple(t.shape)}")
    tp = int((p & t).sum())
    fp = int((p & ~t).sum())
    fn = int((~p & t).sum())
    return PixelCounts(tp, fp, fn, p.numel() - tp - fp - fn)


def per_image_iou(pred, target, threshold: float = 0.5) -> np.ndarray:
    """Face IoU of each image of a batch (first axis), with the zero-denominator rule of
    :class:`PixelCounts` (an image without faces where none is predicted scores 1.0); used to pick
    the worst predictions."""
    p = _as_bool(pred, threshold)
    t = _as_bool(target, 0.5).to(p.device)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {tuple(p.shape)} != target shape {tuple(t.shape)}")
    p, t = p.reshape(p.shape[0], -1), t.reshape(t.shape[0], -1)
    inter = (p & t).sum(1).double()
    union = (p | t).sum(1).double()
    iou = torch.where(union == 0, torch.ones_like(union), inter / union.clamp(min=1))
    return iou.cpu().numpy()


def box_pixel_slices(box, height: int, width: int) -> tuple[slice, slice]:
    """Rows and columns of the pixels a box covers, with ConvertGroundTruth's rule: pixel (i, j)
    belongs to the box when its centre (j + 0.5, i + 0.5) satisfies x_min <= j + .5 < x_max and
    y_min <= i + .5 < y_max. Clipped to the image; may be empty for a box smaller than a pixel."""
    x0, y0, x1, y1 = (float(v) for v in box)
    # j + 0.5 >= x0  <=>  j >= ceil(x0 - 0.5);  j + 0.5 < x1  <=>  j < ceil(x1 - 0.5)
    c0 = max(0, int(np.ceil(x0 - 0.5)))
    c1 = min(width, int(np.ceil(x1 - 0.5)))
    r0 = max(0, int(np.ceil(y0 - 0.5)))
    r1 = min(height, int(np.ceil(y1 - 0.5)))
    return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))


@dataclass
class BoxRecall:
    """Faces found out of faces present. ``empty`` counts boxes that cover no pixel centre at the
    prediction's resolution (too small once rescaled): they are in ``total`` and can never be found,
    so they are reported rather than silently dropped."""

    found: int = 0
    total: int = 0
    empty: int = 0

    def __add__(self, other: BoxRecall) -> BoxRecall:
        return BoxRecall(self.found + other.found, self.total + other.total, self.empty + other.empty)

    @property
    def recall(self) -> float:
        """found / total; 1.0 when there is no face at all."""
        return 1.0 if self.total == 0 else self.found / self.total


def box_recall(prob_or_pred, boxes, threshold: float = 0.5, min_fraction: float = 0.5) -> BoxRecall:
    """Per-face recall of one image: a face counts as found when MORE than ``min_fraction`` of the
    pixels of its box (at the prediction's resolution) are predicted face.

    ``prob_or_pred``: an ``HxW`` (or ``1xHxW``) probability map, bool mask or 0/1 mask;
    ``boxes``: ``(k, 4)`` XYXY boxes in the prediction's pixel coordinates (rescale them like the image,
    e.g. ``ConvertGroundTruth(keep_boxes=True)``).
    """
    pred = _as_bool(prob_or_pred, threshold)
    if pred.dim() == 3 and pred.shape[0] == 1:
        pred = pred[0]
    if pred.dim() != 2:
        raise ValueError(f"box_recall takes one image's HxW prediction, got shape {tuple(pred.shape)}")
    b = np.asarray(torch.as_tensor(boxes).detach().cpu(), dtype=np.float64).reshape(-1, 4) if len(boxes) else np.zeros((0, 4))
    h, w = pred.shape
    result = BoxRecall()
    for box in b:
        rows, cols = box_pixel_slices(box, h, w)
        region = pred[rows, cols]
        result.total += 1
        if region.numel() == 0:
            result.empty += 1
        elif float(region.float().mean()) > min_fraction:
            result.found += 1
    return result
