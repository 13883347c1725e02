"""Pictures for the notebooks: images with their boxes, masks overlaid, before/after a transform, a batch.

Every function draws into matplotlib Axes, returns the Figure or Axes it drew on, and never calls
``plt.show()`` (end the notebook line with ``;``). Images are drawn with ``extent=(0, W, H, 0)``, so
pixel (i, j) covers [j, j+1) x [i, i+1) exactly as in the data contract and a box's corners land on
pixel edges. Samples may hold NumPy arrays (HxWx3 image, HxW mask) or tensors (3xHxW, 1xHxW).

Notebooks: drawing code, used in 00, 02, 03, 04, 05, 08.
"""
from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

#: Colour of drawn boxes; each box is drawn over a black halo (:data:`HALO_COLOR`) so that it stays
#: visible on pale and on dark backgrounds alike.
BOX_COLOR = "#ffe000"
HALO_COLOR = "black"
#: The mask overlay: a blue tint (no skin tone and no distractor of the synthetic scenes is saturated
#: blue, unlike the red used before, which looked like skin and like the salmon distractors) and a
#: white outline of the face region.
MASK_COLOR = (0.05, 0.25, 1.0)
MASK_EDGE_COLOR = "white"


def as_hwc(image) -> np.ndarray:
    """An image as an HxWx3 (or HxW) NumPy array, from an ndarray, a PIL image or a 3xHxW tensor."""
    if hasattr(image, "detach"):  # torch.Tensor
        array = image.detach().cpu().numpy()
        if array.ndim == 3 and array.shape[0] in (1, 3):
            array = array.transpose(1, 2, 0)
    else:
        array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    return array


def as_hw_mask(mask) -> np.ndarray:
    """A mask as an HxW array, from an HxW ndarray or a 1xHxW tensor/array."""
    array = mask.detach().cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask)
    return array.reshape(array.shape[-2:])


def _show_image(ax: Axes, image) -> np.ndarray:
    array = as_hwc(image)
    height, width = array.shape[:2]
    ax.imshow(array, extent=(0, width, height, 0), interpolation="nearest",
              cmap="gray" if array.ndim == 2 else None)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_axis_off()
    return array


def draw_boxes(ax: Axes, image=None, boxes=(), color: str = BOX_COLOR, linewidth: float = 1.5,
               label: bool = False) -> Axes:
    """Draw ``image`` (if given) and its XYXY ``boxes`` as rectangles; ``label`` numbers the boxes."""
    if image is not None:
        _show_image(ax, image)
    b = boxes.detach().cpu().numpy() if hasattr(boxes, "detach") else np.asarray(boxes, dtype=float)
    for k, (x0, y0, x1, y1) in enumerate(b.reshape(-1, 4)):
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=HALO_COLOR,
                               linewidth=linewidth + 1.5))
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=linewidth))
        if label:
            ax.text(x0, y0, str(k), color="black", fontsize=7, va="bottom",
                    bbox={"facecolor": color, "edgecolor": "none", "pad": 1})
    return ax


def show_mask_overlay(image, mask, ax: Axes | None = None, alpha: float = 0.45) -> Axes:
    """Draw ``image`` with the 0/1 ``mask`` tinted on top (face pixels in blue, outlined in white)."""
    if ax is None:
        _, ax = plt.subplots()
    _show_image(ax, image)
    m = as_hw_mask(mask).astype(bool)
    overlay = np.zeros(m.shape + (4,), dtype=float)
    overlay[m] = (*MASK_COLOR, alpha)
    ax.imshow(overlay, extent=(0, m.shape[1], m.shape[0], 0), interpolation="nearest")
    if m.any() and not m.all():  # contour at the pixel edges: pixel (i, j) is centred at (j + 0.5, i + 0.5)
        ys, xs = np.arange(m.shape[0]) + 0.5, np.arange(m.shape[1]) + 0.5
        ax.contour(xs, ys, m.astype(float), levels=[0.5], colors=MASK_EDGE_COLOR, linewidths=0.8)
    ax.set_xlim(0, m.shape[1])
    ax.set_ylim(m.shape[0], 0)
    return ax


def _title(sample: dict) -> str:
    image = as_hwc(sample["image"])
    parts = [str(sample["name"])] if sample.get("name") is not None else []
    height, width = image.shape[:2]
    parts.append(f"{height}×{width} px")  # height × width, the project's one size convention
    if "boxes" in sample:
        parts.append(f"{len(sample['boxes'])} boxes")
    return ", ".join(parts)


def show_sample(sample: dict, ax: Axes | None = None, title: bool = True) -> Axes:
    """Draw one sample: its image, its boxes (if present) and its mask overlaid (if present)."""
    if ax is None:
        _, ax = plt.subplots()
    if "mask" in sample:
        show_mask_overlay(sample["image"], sample["mask"], ax)
    else:
        _show_image(ax, sample["image"])
    if "boxes" in sample:
        draw_boxes(ax, None, sample["boxes"])
    if title:
        ax.set_title(_title(sample), fontsize=9)
    return ax


def show_image_and_mask(sample: dict, figsize: tuple[float, float] = (10, 3.6)) -> Figure:
    """Three panels for a sample with a mask: image and boxes, the mask alone, the mask overlaid."""
    fig, axes = plt.subplots(1, 3, figsize=figsize)
    draw_boxes(axes[0], sample["image"], sample.get("boxes", ()))
    axes[0].set_title("image and boxes", fontsize=9)
    _show_image(axes[1], as_hw_mask(sample["mask"]) * 255)
    axes[1].set_title("mask (white = face)", fontsize=9)
    show_mask_overlay(sample["image"], sample["mask"], axes[2])
    axes[2].set_title("overlaid", fontsize=9)
    fig.tight_layout()
    return fig


def show_before_after(transform: Callable[[dict], dict], sample: dict,
                      figsize: tuple[float, float] = (9, 3.6)) -> Figure:
    """Two panels: ``sample`` and ``transform(sample)``, each titled with its size and box count."""
    after = transform(sample)
    fig, (left, right) = plt.subplots(1, 2, figsize=figsize)
    show_sample(sample, left)
    left.set_title("before: " + _title(sample), fontsize=9)
    show_sample(after, right)
    right.set_title(f"after {type(transform).__name__}: " + _title(after), fontsize=9)
    fig.tight_layout()
    return fig


def show_batch(batch: dict, n: int = 8, ncols: int = 4, size: float = 2.6) -> Figure:
    """A grid of the first ``n`` images of a collated batch (``'image'`` Bx3xHxW), masks overlaid
    when the batch has ``'mask'`` (Bx1xHxW), boxes drawn when it has ``'boxes'`` (one (k, 4) per
    image), titled with ``'name'`` when present."""
    count = min(n, len(batch["image"]))
    ncols = max(1, min(ncols, count))
    nrows = max(1, -(-count // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols * 4 / 3, size * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= count:
            ax.set_axis_off()
            continue
        if "mask" in batch:
            show_mask_overlay(batch["image"][k], batch["mask"][k], ax)
        else:
            _show_image(ax, batch["image"][k])
        if "boxes" in batch:  # boxes kept as a list per image (helpers.collate)
            draw_boxes(ax, None, batch["boxes"][k])
        if "name" in batch:
            ax.set_title(str(batch["name"][k]), fontsize=8)
    fig.tight_layout()
    return fig


# --- where a prediction is wrong ---------------------------------------------------------------------

#: Okabe–Ito colours (told apart with the common colour-vision deficiencies) painted over a grey image.
ERROR_COLORS: dict[str, tuple[int, int, int]] = {
    "true positive": (0, 158, 115),  # bluish green: face, predicted face
    "false positive": (230, 159, 0),  # orange: background predicted face
    "false negative": (204, 121, 167),  # reddish purple: face missed
}


def error_map(image, pred, target) -> np.ndarray:
    """``HxWx3`` uint8: ``image`` in grey (so the colours stand out) with every true-positive,
    false-positive and false-negative pixel painted in its :data:`ERROR_COLORS` colour. ``pred`` and
    ``target`` are 0/1 (or bool) masks of the image's size; true negatives keep the grey image."""
    rgb = as_hwc(image).astype(np.float32)
    grey = rgb.mean(axis=2) if rgb.ndim == 3 else rgb
    out = np.repeat((0.35 * grey + 0.65 * 255 * 0.5)[:, :, None], 3, axis=2)  # dimmed grey
    p, t = as_hw_mask(pred).astype(bool), as_hw_mask(target).astype(bool)
    if p.shape != grey.shape or t.shape != grey.shape:
        raise ValueError(f"error_map: image {grey.shape}, prediction {p.shape} and target {t.shape} differ in size")
    for name, where in (("true positive", p & t), ("false positive", p & ~t), ("false negative", ~p & t)):
        out[where] = ERROR_COLORS[name]
    return out.round().astype(np.uint8)


def error_window(pred, target, pad: int = 6, min_side: int = 24) -> tuple[slice, slice]:
    """Rows and columns around every wrong pixel (false positive or false negative), ``pad`` pixels
    wider on each side and at least ``min_side`` high and wide where the image allows: the crop to zoom
    into. The whole image when nothing is wrong."""
    p, t = as_hw_mask(pred).astype(bool), as_hw_mask(target).astype(bool)
    h, w = p.shape
    rows, cols = np.nonzero(p != t)
    if rows.size == 0:
        return slice(0, h), slice(0, w)

    def span(lo: int, hi: int, n: int) -> slice:
        lo, hi = max(lo - pad, 0), min(hi + 1 + pad, n)
        need = min(min_side, n)
        if hi - lo < need:  # widen around the centre, then shift back inside the image
            lo = max(lo - (need - (hi - lo)) // 2, 0)
            hi = min(lo + need, n)
            lo = max(hi - need, 0)
        return slice(lo, hi)

    return span(int(rows.min()), int(rows.max()), h), span(int(cols.min()), int(cols.max()), w)


def show_error_map(image, pred, target, axes=None, title: str = "", zoom: bool = True) -> Figure:
    """The error map of one image (:func:`error_map`) and, when ``zoom``, the window around its errors
    (:func:`error_window`) enlarged beside it, outlined on the full view; a legend names the colours."""
    painted = error_map(image, pred, target)
    if axes is None:
        _, axes = plt.subplots(1, 2 if zoom else 1, figsize=(7.5 if zoom else 4, 3), squeeze=False)
        axes = axes[0]
    axes = list(np.atleast_1d(axes))
    _show_image(axes[0], painted)
    axes[0].set_title(title, fontsize=9)
    if zoom:
        rows, cols = error_window(pred, target)
        axes[0].add_patch(Rectangle((cols.start, rows.start), cols.stop - cols.start, rows.stop - rows.start,
                                    fill=False, edgecolor="white", linewidth=1.2, linestyle="--"))
        _show_image(axes[1], painted[rows, cols])
        axes[1].set_title(f"zoom: rows {rows.start}-{rows.stop - 1}, columns {cols.start}-{cols.stop - 1}",
                          fontsize=8)
    handles = [Rectangle((0, 0), 1, 1, color=np.array(c) / 255) for c in ERROR_COLORS.values()]
    axes[-1].legend(handles, list(ERROR_COLORS), fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                    frameon=False)
    fig = axes[0].figure
    fig.tight_layout()
    return fig


def show_reliability(table, ax: Axes | None = None, title: str = "") -> Axes:
    """A reliability diagram from a :class:`helpers.metrics.Reliability`: the share of face pixels
    against the mean score, per score bin (bars, bin width), with the diagonal a calibrated probability
    would follow and each bin's pixel count written above its bar."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 4.0))
    edges = table.edges
    used = table.pixels > 0
    ax.bar(edges[:-1][used], table.face_fraction[used], width=np.diff(edges)[used], align="edge",
           color=MASK_COLOR, alpha=0.75, edgecolor="white", label="share of face pixels")
    ax.plot(table.mean_score[used], table.face_fraction[used], "o", color="black", markersize=3,
            label="at the bin's mean score")
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="calibrated")
    for lo, width, frac, n in zip(edges[:-1][used], np.diff(edges)[used], table.face_fraction[used],
                                  table.pixels[used]):
        ax.text(lo + width / 2, min(frac, 0.93) + 0.02, f"{n:,}", ha="center", fontsize=6, rotation=90)
    ax.set(xlim=(0, 1), ylim=(0, 1.05), xlabel="face score", ylabel="share of face pixels")
    ax.set_title(title or f"reliability (ECE {table.expected_calibration_error:.3f})", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", frameon=False)
    return ax
