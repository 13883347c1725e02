"""A real photograph for checks beside the synthetic data: scikit-image's astronaut, with its face box.

``skimage.data.astronaut()`` (Eileen Collins, NASA, public domain) ships inside scikit-image's wheel, so
no download is needed; Colab has scikit-image. The face box was checked by drawing it on the photo: its
edges run along the hairline, both cheeks and just under the chin. Used by tests/test_real_photo.py,
notebook 08, and to report honestly what a model trained on cartoons does on a photograph.

Notebooks: 05 teaches it; 08 uses it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .datafiles import BBOX_FILE

#: The face in the 512x512 photo, XYXY pixels (``[x_min, y_min, x_max, y_max]``).
ASTRONAUT_FACE = (180, 70, 265, 178)
#: Its key in the ``bbox.json`` that :func:`write_astronaut_folder` writes (a sub-folder on purpose).
ASTRONAUT_NAME = "nasa/astronaut.jpg"


def astronaut() -> np.ndarray:
    """The photo, ``512x512x3`` uint8 RGB (needs scikit-image)."""
    from skimage.data import astronaut as load

    return load()


def write_astronaut_folder(folder: str | Path, quality: int = 95) -> Path:
    """A data folder holding the photo as a JPEG (``nasa/astronaut.jpg``) and its ``bbox.json``; returns it."""
    from PIL import Image

    folder = Path(folder)
    (folder / ASTRONAUT_NAME).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(astronaut()).save(folder / ASTRONAUT_NAME, quality=quality)
    (folder / BBOX_FILE).write_text(json.dumps({ASTRONAUT_NAME: [list(ASTRONAUT_FACE)]}) + "\n", encoding="utf-8")
    return folder


def face_scores(score: np.ndarray, box: tuple[float, float, float, float] = ASTRONAUT_FACE,
                threshold: float = 0.5) -> dict[str, float]:
    """How a face-score map (``HxW``, e.g. :func:`helpers.inference.predict` on the photo) matches one box.

    ``iou``, ``precision``, ``recall`` of the pixels above ``threshold`` against the box's pixels (the
    pixel-centre rule of ``helpers.transforms.boxes_to_mask``), ``face_share``: the share of the whole
    image called face, and the mean score inside and outside the box (``mean_score_*``: the network's
    output is a score, not a calibrated probability).
    """
    from .metrics import as_face_mask
    from .transforms import boxes_to_mask

    scores = np.asarray(score, dtype=np.float64)
    truth = boxes_to_mask(np.array([box], np.float32), *scores.shape).astype(bool)
    pred = as_face_mask(scores, threshold).numpy()
    inter, union = int((pred & truth).sum()), int((pred | truth).sum())
    inside, outside = float(scores[truth].mean()), float(scores[~truth].mean())
    return {
        "iou": inter / union if union else 1.0,
        "precision": inter / int(pred.sum()) if pred.any() else 0.0,
        "recall": inter / int(truth.sum()),
        "face_share": float(pred.mean()),
        "mean_score_in_box": inside,
        "mean_score_outside": outside,
    }


def model_on_astronaut(model: Any, image_size: tuple[int, int], device: Any = None) -> dict[str, float]:
    """:func:`face_scores` of ``model``'s prediction on the photo, at the photo's own size."""
    from PIL import Image

    from .inference import predict

    prob = predict(model, Image.fromarray(astronaut()), image_size, device=device)
    return face_scores(prob)
