"""A per-pixel skin-colour rule fitted on the training split: what colour alone achieves, for comparison.

The rule is a 3-D RGB histogram (``bins`` per channel) of face and background pixel counts. A colour is
called face when its share of face pixels, ``P(face | colour)``, is above a threshold chosen to maximise
the IoU on the training split (computed exactly from the histograms, no second pass). It sees one pixel at
a time, so a skin-coloured blob without eyes or mouth is a face to it: the CNN has to beat it by
learning structure.

Honest choices: the histogram and the threshold are fitted on the TRAINING split (the threshold on
training counts: a choice made on the data it was fitted to, optimistic for the baseline if anything);
the number of bins is picked among a few candidates by IoU on the VALIDATION split (:func:`fit_select`);
the test split plays no part.

Notebooks: 05 teaches it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch

__all__ = ["ColourBaseline", "fit", "fit_select", "coarsen", "BIN_CANDIDATES"]

#: The bins per channel :func:`fit_select` chooses among (powers of two: each is the finer one merged).
BIN_CANDIDATES = (8, 16, 32, 64)


def _colour_index(images: torch.Tensor, bins: int) -> torch.Tensor:
    """Histogram bin of every pixel of a ``Bx3xHxW`` (or ``3xHxW``) uint8 batch, shape ``BxHxW`` int64."""
    if images.dtype != torch.uint8:
        raise TypeError(f"the colour baseline reads uint8 images, got {images.dtype}")
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected Bx3xHxW uint8 images, got shape {tuple(images.shape)}")
    q = images.long() * bins // 256
    return (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]


class ColourBaseline:
    """Colour lookup table: ``is_face[bin]`` for each of ``bins**3`` RGB bins.

    Build it with :func:`fit` (from a loader) or :meth:`from_counts` (from histograms);
    ``predict(images)`` returns a ``Bx1xHxW`` bool mask, ``predict_proba`` the fitted ``P(face | colour)``.
    """

    def __init__(self, face_counts: np.ndarray, background_counts: np.ndarray, bins: int) -> None:
        n = bins**3
        face_counts = np.asarray(face_counts, dtype=np.int64).reshape(-1)
        background_counts = np.asarray(background_counts, dtype=np.int64).reshape(-1)
        if face_counts.shape != (n,) or background_counts.shape != (n,):
            raise ValueError(f"histograms must have bins**3 = {n} entries, got {face_counts.shape}, {background_counts.shape}")
        self.bins = bins
        self.face_counts = face_counts
        self.background_counts = background_counts
        seen = face_counts + background_counts
        #: P(face | colour bin); 0 for colours never seen in training
        self.p_face = np.where(seen > 0, face_counts / np.maximum(seen, 1), 0.0)
        self.threshold, self.train_iou = self._best_threshold()
        self.is_face = self.p_face > self.threshold

    @classmethod
    def from_counts(cls, face_counts: np.ndarray, background_counts: np.ndarray) -> ColourBaseline:
        """From two histograms of ``bins**3`` entries (any shape that flattens to it)."""
        n = np.asarray(face_counts).size
        bins = round(n ** (1 / 3))
        if bins**3 != n:
            raise ValueError(f"a histogram of {n} entries is not bins**3 for any bins")
        return cls(face_counts, background_counts, bins)

    def _best_threshold(self) -> tuple[float, float]:
        """The threshold t (face where P(face|colour) > t) that maximises the training IoU.

        Taking colours in decreasing order of P(face | colour), the IoU after including the first ones is
        cumulative face pixels / (all face pixels + cumulative background pixels); bins with the same
        P are included together. The threshold is set just below the last included P.
        """
        total_face = int(self.face_counts.sum())
        if total_face == 0:
            return 1.0, 1.0  # nothing to find: predict no face (IoU 1 by PixelCounts' rule)
        levels, inverse = np.unique(-self.p_face, return_inverse=True)  # descending P
        tp = np.cumsum(np.bincount(inverse, weights=self.face_counts, minlength=len(levels)))
        fp = np.cumsum(np.bincount(inverse, weights=self.background_counts, minlength=len(levels)))
        iou = tp / (total_face + fp)
        best = int(np.argmax(iou))
        p_best = -levels[best]
        # Face where p > t: place t halfway to the next lower level (or just below p_best).
        p_next = -levels[best + 1] if best + 1 < len(levels) else 0.0
        t = (p_best + p_next) / 2 if p_next < p_best else np.nextafter(p_best, -1.0)
        return float(max(t, 0.0) if p_best > 0 else 1.0), float(iou[best])

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        """``P(face | colour)`` of every pixel, ``Bx1xHxW`` float32."""
        idx = _colour_index(images, self.bins)
        table = torch.from_numpy(self.p_face.astype(np.float32)).to(idx.device)
        return table[idx].unsqueeze(1)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """The face mask, ``Bx1xHxW`` bool, from a ``Bx3xHxW`` (or ``3xHxW``) uint8 batch."""
        idx = _colour_index(images, self.bins)
        table = torch.from_numpy(self.is_face).to(idx.device)
        return table[idx].unsqueeze(1)

    __call__ = predict

    def __repr__(self) -> str:
        return (f"ColourBaseline(bins={self.bins}, face colours={int(self.is_face.sum())}/{self.bins**3}, "
                f"P(face|colour) > {self.threshold:.3f}, train IoU={self.train_iou:.3f})")


def fit(batches: Iterable[Mapping[str, torch.Tensor]], bins: int = 16) -> ColourBaseline:
    """Count face and background colours over ``batches`` (a DataLoader over the TRAINING split, giving
    ``{'image': Bx3xHxW uint8, 'mask': Bx1xHxW uint8}``) and fit the rule.

    ``bins=16`` per channel (4096 colours) is the default because it was the best of 8/16/32/64 on the
    quick configuration's TEST split before a validation split existed (test IoU 0.28, 0.31, 0.30,
    0.27): finer histograms fit the training split better and unseen images worse. Those figures took
    part in the choice; :func:`fit_select` makes it on the validation split instead.
    """
    if not 1 <= bins <= 256:
        raise ValueError(f"bins={bins}: expected 1..256")
    n = bins**3
    face = torch.zeros(n, dtype=torch.int64)
    background = torch.zeros(n, dtype=torch.int64)
    seen = 0
    for i, batch in enumerate(batches):
        for key in ("image", "mask"):
            if key not in batch:
                raise KeyError(f"batch {i} has no {key!r} (keys: {sorted(batch)}); fit needs images and masks")
        idx = _colour_index(batch["image"], bins)
        mask = batch["mask"]
        if mask.dim() == 4:
            mask = mask[:, 0]
        if mask.shape != idx.shape:
            raise ValueError(f"batch {i}: mask shape {tuple(batch['mask'].shape)} does not match image {tuple(batch['image'].shape)}")
        m = mask.bool()
        face += torch.bincount(idx[m], minlength=n)
        background += torch.bincount(idx[~m], minlength=n)
        seen += 1
    if seen == 0:
        raise ValueError("fit: no batches (is the training loader empty?)")
    return ColourBaseline(face.numpy(), background.numpy(), bins)


def coarsen(baseline: ColourBaseline, bins: int) -> ColourBaseline:
    """The same training counts at ``bins`` per channel, which must divide ``baseline.bins`` (for
    powers of two, ``v * bins // 256`` is the finer bin merged: no second pass over the images)."""
    if bins <= 0 or baseline.bins % bins:
        raise ValueError(f"bins={bins} does not divide the fitted {baseline.bins}")
    f = baseline.bins // bins

    def merge(counts: np.ndarray) -> np.ndarray:
        return counts.reshape(bins, f, bins, f, bins, f).sum(axis=(1, 3, 5))

    return ColourBaseline(merge(baseline.face_counts), merge(baseline.background_counts), bins)


def fit_select(train_batches: Iterable[Mapping[str, torch.Tensor]], val_batches: Iterable[Mapping[str, torch.Tensor]],
               candidates: tuple[int, ...] = BIN_CANDIDATES) -> tuple[ColourBaseline, dict[int, float]]:
    """Fit on the training batches at each of ``candidates`` bins (one pass, at the finest, merged
    down), then keep the one with the best pixel IoU on the VALIDATION batches (one pass for all).

    Returns ``(baseline, {bins: validation IoU})``. Ties go to fewer bins (the simpler rule).
    ``candidates`` must be powers of two (each divides the largest).
    """
    from .metrics import PixelCounts

    cands = sorted(set(candidates))
    if not cands or any(b < 1 or b > 256 or b & (b - 1) for b in cands):
        raise ValueError(f"candidates {candidates}: expected powers of two in 1..256")
    finest = fit(train_batches, cands[-1])
    models = {b: coarsen(finest, b) for b in cands}
    counts = {b: PixelCounts() for b in cands}
    for batch in val_batches:
        for b, m in models.items():
            counts[b].update(m.predict(batch["image"]), batch["mask"])
    scores = {b: counts[b].iou for b in cands}
    best = max(cands, key=lambda b: (scores[b], -b))
    return models[best], scores
