"""Segmentation metrics for the face class, counted over every pixel of a split, per-face box recall,
and face-level precision and recall (predicted regions matched one-to-one to the true boxes).

Counts are summed over all pixels of the split before dividing (a large face weighs more than a small
one), not averaged per image: an image with no face would otherwise have an undefined IoU.

Box recall alone rewards predicting face everywhere (every box is then "found"); :class:`FaceCounts`
also counts the predicted regions that match no face (false-positive faces), so it does not.
Predictions are face SCORES (the network's sigmoid output, trained with a positive weight and a Dice
term: ordered like a probability, not calibrated as one), thresholded at 0.5 by default.
:class:`Reliability` measures how far from calibrated they are (a reliability diagram's counts;
``helpers.evaluation.evaluate(..., reliability_bins=10)`` fills one).

Notebooks: 05 (and appendix 05b) teaches it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .transforms import box_pixel_slices  # the pixel rule, defined once (notebook 03)

__all__ = ["as_face_mask", "PixelCounts", "BoxRecall", "FaceCounts", "Reliability", "pixel_counts", "per_image_iou",
           "box_recall", "face_counts", "MIN_REGION_PIXELS", "MATCH_FRACTION"]


def as_face_mask(x: torch.Tensor | np.ndarray, threshold: float = 0.5) -> torch.Tensor:
    """A prediction as a bool tensor, the one rule every metric and evaluation uses: bool stays, integers
    are read as 0/1 labels, floats as face scores (face where ``> threshold``)."""
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

    ``pred``: face scores (float, face where ``> threshold``), a bool mask, or a 0/1 integer mask;
    ``target``: a 0/1 or bool mask of the same shape (tensors or arrays, any shape, e.g. ``Bx1xHxW``).
    Logits are not accepted as such: pass ``torch.sigmoid(logits)`` or ``logits > 0``.
    """
    p = as_face_mask(pred, threshold)
    t = as_face_mask(target, 0.5).to(p.device)
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
    p = as_face_mask(pred, threshold)
    t = as_face_mask(target, 0.5).to(p.device)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {tuple(p.shape)} != target shape {tuple(t.shape)}")
    p, t = p.reshape(p.shape[0], -1), t.reshape(t.shape[0], -1)
    inter = (p & t).sum(1).double()
    union = (p | t).sum(1).double()
    iou = torch.where(union == 0, torch.ones_like(union), inter / union.clamp(min=1))
    return iou.cpu().numpy()


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

    Recall only: a prediction of face everywhere finds every face. :func:`face_counts` also counts
    false-positive faces.

    ``prob_or_pred``: an ``HxW`` (or ``1xHxW``) score map, bool mask or 0/1 mask;
    ``boxes``: ``(k, 4)`` XYXY boxes in the prediction's pixel coordinates (rescale them like the image,
    e.g. ``ConvertGroundTruth(keep_boxes=True)``).
    """
    pred = as_face_mask(prob_or_pred, threshold)
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


# --- face-level precision and recall ---------------------------------------------------------------

#: Predicted regions smaller than this many pixels (at the prediction's resolution: 120x160 for the
#: quick config) are not counted as detections, neither right nor wrong, but tallied in
#: ``FaceCounts.tiny`` so that nothing is dropped silently. The smallest synthetic faces are 20 px
#: tall and about 13 px wide at 480x640 (helpers.synth), about 5x3 px at 120x160, so a face that is
#: found at all gives more than 4 pixels; tiny regions are mostly speckle.
MIN_REGION_PIXELS = 4
#: The matching rule's two shares (see :func:`face_counts`).
MATCH_FRACTION = 0.5
# 8-connectivity: diagonal neighbours join a region (a thin diagonal face outline stays one region).
_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass
class FaceCounts:
    """Face-level counts over a split: predicted regions (connected face pixels) against true boxes.

    ``tp``: faces matched by a region (one region per face, one face per region); ``fn``: faces not
    matched (``empty`` of them cover no pixel at this resolution and can never be matched; they are
    included in ``fn``); ``fp``: regions of at least :data:`MIN_REGION_PIXELS` pixels that match no
    face; ``tiny``: regions below that size, ignored by precision and recall. ``fp_distractor``: how
    many of the ``fp`` regions lie on a distractor (a skin-coloured blob, a featureless head or an eye
    pair drawn by ``helpers.synth``, recorded in ``distractors.json``); ``None`` when some image had no
    distractor record (your own data): unknown, not zero.
    """

    tp: int = 0
    fn: int = 0
    fp: int = 0
    tiny: int = 0
    empty: int = 0
    fp_distractor: int | None = 0

    def __add__(self, other: FaceCounts) -> FaceCounts:
        fd = None if self.fp_distractor is None or other.fp_distractor is None else self.fp_distractor + other.fp_distractor
        return FaceCounts(self.tp + other.tp, self.fn + other.fn, self.fp + other.fp, self.tiny + other.tiny,
                          self.empty + other.empty, fd)

    @property
    def faces(self) -> int:
        """True faces in the split (``tp + fn``)."""
        return self.tp + self.fn

    @property
    def precision(self) -> float:
        """tp / (tp + fp): the share of predicted faces that are faces; 1.0 when nothing was predicted."""
        return 1.0 if self.tp + self.fp == 0 else self.tp / (self.tp + self.fp)

    @property
    def recall(self) -> float:
        """tp / (tp + fn): the share of faces found; 1.0 when there is no face."""
        return 1.0 if self.faces == 0 else self.tp / self.faces

    def as_dict(self) -> dict[str, float | int | None]:
        return {"face_precision": self.precision, "face_recall": self.recall, "faces": self.faces,
                "tp": self.tp, "fp": self.fp, "fn": self.fn, "tiny": self.tiny, "empty": self.empty,
                "fp_distractor": self.fp_distractor}


def _label_regions(pred: np.ndarray) -> tuple[np.ndarray, int]:
    from scipy import ndimage

    labels, n = ndimage.label(pred, structure=_EIGHT)
    return labels, int(n)


def face_counts(score_or_pred, boxes, distractors=None, threshold: float = 0.5,
                min_pixels: int = MIN_REGION_PIXELS, match_fraction: float = MATCH_FRACTION) -> FaceCounts:
    """Face-level counts of one image.

    Regions: connected components (8-connectivity) of the thresholded prediction; those under
    ``min_pixels`` pixels are only counted as ``tiny``. Box pixels: those whose centre lies in the box
    (:func:`box_pixel_slices`, the rule of the training masks).

    Matching rule (one-to-one): a region and a box are a candidate pair when at least
    ``match_fraction`` (0.5) of the region's pixels lie in the box AND the region covers at least
    ``match_fraction`` of the box's pixels. Pairs are taken greedily by the number of shared pixels,
    largest first (ties: lower box index, then lower region label), each box and each region used at
    most once. So a face split into two regions is matched by at most one of them (the other is a
    false positive only if it matches nothing else); a region spanning two faces lies mostly in
    neither box and matches none of them (two misses and one false positive); a prediction of face
    everywhere is one region lying mostly outside every box: precision 0, and no face found.

    An unmatched region counts as ``fp_distractor`` when at least ``match_fraction`` of its pixels
    lie inside the union of the ``distractors`` boxes; ``distractors=None`` (no record) makes
    ``fp_distractor`` None. ``boxes`` and ``distractors``: ``(k, 4)`` XYXY in the prediction's pixel
    coordinates; ``score_or_pred``: an ``HxW`` (or ``1xHxW``) score map, bool or 0/1 mask.
    """
    pred = as_face_mask(score_or_pred, threshold)
    if pred.dim() == 3 and pred.shape[0] == 1:
        pred = pred[0]
    if pred.dim() != 2:
        raise ValueError(f"face_counts takes one image's HxW prediction, got shape {tuple(pred.shape)}")
    pred_np = pred.cpu().numpy()
    h, w = pred_np.shape
    labels, n = _label_regions(pred_np)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    real = [r for r in range(1, n + 1) if sizes[r] >= min_pixels]
    result = FaceCounts(tiny=n - len(real))
    b = _as_boxes(boxes)
    candidates: list[tuple[int, int, int]] = []  # (-shared, box index, region label)
    for i, box in enumerate(b):
        rows, cols = box_pixel_slices(box, h, w)
        area = (rows.stop - rows.start) * (cols.stop - cols.start)
        if area == 0:
            result.empty += 1
            continue
        shared = np.bincount(labels[rows, cols].ravel(), minlength=n + 1)
        for r in real:
            if shared[r] and shared[r] >= match_fraction * sizes[r] and shared[r] >= match_fraction * area:
                candidates.append((-int(shared[r]), i, r))
    used_boxes: set[int] = set()
    used_regions: set[int] = set()
    for _, i, r in sorted(candidates):
        if i not in used_boxes and r not in used_regions:
            used_boxes.add(i)
            used_regions.add(r)
    result.tp = len(used_boxes)
    result.fn = len(b) - result.tp
    unmatched = [r for r in real if r not in used_regions]
    result.fp = len(unmatched)
    if distractors is None:
        result.fp_distractor = None
    else:
        on = np.zeros((h, w), dtype=bool)
        for box in _as_boxes(distractors):
            rows, cols = box_pixel_slices(box, h, w)
            on[rows, cols] = True
        inside = np.bincount(labels[on].ravel(), minlength=n + 1)
        result.fp_distractor = sum(1 for r in unmatched if inside[r] >= match_fraction * sizes[r])
    return result


def _as_boxes(boxes) -> np.ndarray:
    """``(k, 4)`` float64 array of any list/array/tensor of boxes (k may be 0)."""
    if boxes is None or len(boxes) == 0:
        return np.zeros((0, 4))
    return np.asarray(torch.as_tensor(boxes).detach().cpu(), dtype=np.float64).reshape(-1, 4)


class Reliability:
    """Counts for a reliability diagram: the pixels binned by their face score into ``bins`` equal-width
    bins of [0, 1]; per bin, the number of pixels, the sum of their scores and how many are face.

    A calibrated probability has, in every bin, a face fraction equal to its mean score (the
    diagonal). ``expected_calibration_error`` is the pixel-weighted mean of ``|face fraction - mean
    score|`` over the bins: 0 for a calibrated output.
    """

    def __init__(self, bins: int = 10) -> None:
        if bins < 1:
            raise ValueError(f"bins={bins}: need at least 1")
        self.bins = int(bins)
        self.pixels = np.zeros(self.bins, dtype=np.int64)
        self.score_sum = np.zeros(self.bins, dtype=np.float64)
        self.faces = np.zeros(self.bins, dtype=np.int64)

    def update(self, scores, target) -> Reliability:
        """Add a batch: ``scores`` in [0, 1] and the 0/1 ``target`` of the same shape. Returns self."""
        s = torch.as_tensor(scores).detach().float().cpu().flatten()
        t = torch.as_tensor(target).detach().cpu().flatten()
        if s.shape != t.shape:
            raise ValueError(f"scores {tuple(s.shape)} and target {tuple(t.shape)} differ in size")
        if s.numel() and (float(s.min()) < 0 or float(s.max()) > 1):
            raise ValueError("scores must lie in [0, 1] (apply the sigmoid to logits first)")
        index = (s * self.bins).long().clamp_(max=self.bins - 1)  # a score of 1.0 goes to the last bin
        self.pixels += torch.bincount(index, minlength=self.bins).numpy()
        self.score_sum += torch.bincount(index, weights=s.double(), minlength=self.bins).numpy()
        self.faces += torch.bincount(index, weights=(t != 0).double(), minlength=self.bins).numpy().astype(np.int64)
        return self

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, self.bins + 1)

    @property
    def mean_score(self) -> np.ndarray:
        """Mean score per bin (NaN for an empty bin)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.score_sum / self.pixels

    @property
    def face_fraction(self) -> np.ndarray:
        """Share of face pixels per bin (NaN for an empty bin)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.faces / self.pixels

    @property
    def expected_calibration_error(self) -> float:
        used = self.pixels > 0
        if not used.any():
            raise ValueError("no pixels counted")
        gap = np.abs(self.face_fraction[used] - self.mean_score[used])
        return float((gap * self.pixels[used]).sum() / self.pixels[used].sum())

    def table(self) -> str:
        """One line per non-empty bin: score range, pixels, mean score, face fraction."""
        rows = [f"{'score':>11} {'pixels':>10} {'mean score':>10} {'face share':>10}"]
        for lo, hi, n, m, f in zip(self.edges[:-1], self.edges[1:], self.pixels, self.mean_score,
                                   self.face_fraction):
            if n:
                rows.append(f"{lo:4.1f}-{hi:<4.1f}  {n:>10,} {m:10.3f} {f:10.3f}")
        return "\n".join(rows)
