"""Measuring the classifier on a split: pixel IoU/Dice/precision/recall, per-face box recall and
face-level precision/recall (:func:`evaluate`), the distractor boxes it needs to count false faces
on them apart (:func:`split_distractors`), the one scoring of the TEST split (:func:`final_test`), and a
table of results side by side (:func:`evaluation_table`). The metrics themselves are in
:mod:`helpers.metrics`.

Use the VALIDATION split for every choice; the test split is scored once, by :func:`final_test`.

Notebooks: 05 teaches it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .metrics import (MIN_REGION_PIXELS, BoxRecall, FaceCounts, PixelCounts, Reliability, as_face_mask, box_recall,
                      face_counts, per_image_iou)
from .on_device import amp_settings, prepare_batch

__all__ = ["Evaluation", "evaluate", "split_distractors", "final_test", "evaluation_table"]


@dataclass
class Evaluation:
    """What :func:`evaluate` measured over a whole split."""

    counts: PixelCounts
    loss: float = float("nan")
    boxes: BoxRecall | None = None
    #: (name, IoU) of every image, in loader order (for picking the worst)
    per_image: list[tuple[str, float]] = field(default_factory=list)
    #: face-level counts (precision, recall, false positives, on distractors) when batches carry boxes
    faces: FaceCounts | None = None
    #: the network's scores binned against the truth (a reliability diagram), when asked for
    reliability: Reliability | None = None

    def summary(self) -> dict[str, Any]:
        """Every figure by name (pixel ratios, box recall, face-level counts): for logs and JSON."""
        out: dict[str, Any] = dict(self.counts.as_dict())
        if self.boxes is not None:
            out["box_recall"] = self.boxes.recall
        if self.faces is not None:
            out.update(self.faces.as_dict())
        return out

    def worst(self, k: int = 4) -> list[tuple[str, float]]:
        """The ``k`` images with the lowest IoU."""
        return sorted(self.per_image, key=lambda t: t[1])[:k]


@torch.no_grad()
def evaluate(model: nn.Module | Callable[[torch.Tensor], torch.Tensor], loader: Iterable,
             device: str | torch.device = "cpu", threshold: float = 0.5,
             loss_fn: nn.Module | None = None, channels_last: bool = False,
             distractors: Mapping[str, Any] | None = None, reliability_bins: int | None = None) -> Evaluation:
    """Face IoU/Dice/precision/recall over all pixels of ``loader``'s split, per-image IoU and, when the
    batches carry ``'boxes'`` (``build_loaders(keep_test_boxes=True)``), per-face box recall and
    face-level counts (:func:`helpers.metrics.face_counts`: precision and recall of predicted regions).

    ``model``: the network (run in eval mode on normalised images; face score = sigmoid(logit)), or any
    callable taking the ``uint8`` ``Bx3xHxW`` batch and returning scores or a mask of
    ``Bx1xHxW`` (e.g. ``ColourBaseline.predict``). ``distractors``: image name -> distractor boxes at
    the prediction's resolution (:func:`split_distractors`); ``None`` or a missing name: false
    positives on distractors unknown (``faces.fp_distractor`` None). ``reliability_bins``: also bin the
    network's scores (sigmoid(logit)) against the truth, in the same pass: ``Evaluation.reliability``,
    the counts of a reliability diagram (:class:`helpers.metrics.Reliability`).

    Use it on the validation split while choosing; the test split goes through :func:`final_test`.
    """
    device = torch.device(device)
    is_net = isinstance(model, nn.Module)
    amp_on, amp_dtype = amp_settings(device)
    if reliability_bins is not None and not is_net:
        raise ValueError("reliability_bins: only a network's scores are binned (the callable may return a mask)")
    was_training = is_net and model.training
    if is_net:
        model.eval()
    counts, boxes, faces, per_image = PixelCounts(), None, None, []
    table = Reliability(reliability_bins) if reliability_bins is not None else None
    loss_sum, n_batches = 0.0, 0
    try:
        for batch in loader:
            if is_net:
                x, y = prepare_batch(batch, device, channels_last)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_on):
                    logits = model(x)
                logits = logits.float()
                if loss_fn is not None:
                    loss_sum += float(loss_fn(logits, y))
                    n_batches += 1
                pred = logits > 0  # sigmoid(logit) > 0.5
                if threshold != 0.5:
                    pred = torch.sigmoid(logits) > threshold
                if table is not None:
                    table.update(torch.sigmoid(logits), y)
            else:
                y = batch["mask"].to(device)
                out = model(batch["image"].to(device))
                pred = as_face_mask(out, threshold)
            y = y.bool() if y.dtype != torch.bool else y
            counts.update(pred, y)
            per_image += list(zip(batch.get("name", [""] * len(pred)), per_image_iou(pred, y).tolist()))
            if "boxes" in batch:
                boxes = boxes or BoxRecall()
                faces = faces or FaceCounts()
                names = batch.get("name", [None] * len(pred))
                for p, b, name in zip(pred, batch["boxes"], names):
                    p = p[0].cpu()
                    boxes = boxes + box_recall(p, b)
                    fakes = distractors.get(name) if distractors is not None else None
                    faces = faces + face_counts(p, b, fakes)
    finally:
        if was_training:
            model.train()
    return Evaluation(counts, loss_sum / n_batches if n_batches else float("nan"), boxes, per_image, faces, table)


def split_distractors(dataset: Any, image_size: tuple[int, int],
                      data_dir: str | Path | None = None) -> dict[str, np.ndarray] | None:
    """The distractor boxes (``distractors.json``, written by ``helpers.synth``) of every image of
    ``dataset`` (a :class:`FaceDataset`), scaled like its boxes to ``image_size`` (h, w), by name: what
    :func:`evaluate`'s ``distractors`` takes. ``None`` when the folder has no ``distractors.json``
    (your own data): unknown, not zero. The original size comes from each image's header."""
    from PIL import Image

    from .datafiles import load_distractors

    folder = Path(data_dir) if data_dir is not None else dataset.root
    record = load_distractors(folder) if folder is not None else None
    if record is None:
        return None
    h, w = image_size
    out: dict[str, np.ndarray] = {}
    for i in range(len(dataset)):
        name = dataset.name(i)
        if name not in record:
            continue
        with Image.open(dataset.path(i)) as im:
            ow, oh = im.size
        ratios = np.array([w / ow, h / oh] * 2, dtype=np.float32)  # Rescale's arithmetic
        out[name] = np.asarray(record[name], dtype=np.float32).reshape(-1, 4) * ratios
    return out


def final_test(contestants: Mapping[str, nn.Module | Callable[[torch.Tensor], torch.Tensor]], loader: Iterable,
               device: str | torch.device = "cpu", distractors: Mapping[str, Any] | None = None,
               channels_last: bool = False) -> dict[str, Evaluation]:
    """Score every contestant (name -> network or callable, as :func:`evaluate` takes) on the TEST split.

    Run it ONCE, at the very end, after every choice (loss weights, model size, epochs, the baseline's
    bins and threshold) has been made on the training and validation splits. Looking at test figures
    and then changing something makes them a second validation split, and no longer an honest
    estimate. All contestants are scored in the same call so there is no reason to come back.
    ``loader``: ``build_loaders(..., keep_test_boxes=True).test`` (boxes give box recall and
    face-level counts).
    """
    return {name: evaluate(model, loader, device if isinstance(model, nn.Module) else "cpu",
                           channels_last=channels_last and isinstance(model, nn.Module), distractors=distractors)
            for name, model in contestants.items()}


def evaluation_table(evaluations: Mapping[str, Evaluation]) -> str:
    """The figures of several :class:`Evaluation`s side by side, one row each: pixel IoU, Dice, precision
    and recall; box recall; face-level precision and recall (faces found / faces), false face regions and
    how many of those lie on distractors (``?`` when unknown: a folder without ``distractors.json``)."""
    head = (f"{'':<16} {'IoU':>6} {'Dice':>6} {'prec.':>6} {'recall':>6} | {'box rec.':>8} | "
            f"{'face prec.':>10} {'face rec.':>9} {'found':>9} {'false':>6} {'on distr.':>9}")
    rows = [head, "-" * len(head)]
    for name, ev in evaluations.items():
        c, b, f = ev.counts, ev.boxes, ev.faces
        row = f"{name:<16} {c.iou:6.3f} {c.dice:6.3f} {c.precision:6.3f} {c.recall:6.3f} | "
        row += f"{b.recall:8.3f} | " if b is not None else f"{'-':>8} | "
        if f is not None:
            on = "?" if f.fp_distractor is None else str(f.fp_distractor)
            row += f"{f.precision:10.3f} {f.recall:9.3f} {f'{f.tp}/{f.faces}':>9} {f.fp:6d} {on:>9}"
        rows.append(row.rstrip())
    tiny = {name: ev.faces.tiny for name, ev in evaluations.items() if ev.faces is not None}
    if tiny:  # not faces, not errors, but not silently dropped either
        rows.append(f"regions under {MIN_REGION_PIXELS} px, not counted as faces: "
                    + ", ".join(f"{name} {n}" for name, n in tiny.items()))
    return "\n".join(rows)
