"""The colour-threshold baseline on hand-made colour problems."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.baseline import ColourBaseline, coarsen, fit, fit_select
from helpers.metrics import pixel_counts

SKIN = (220, 170, 140)
GREEN = (30, 160, 40)
BLUE = (20, 40, 200)


def batch(rows: list[list[tuple[int, int, int]]], face: list[list[int]]) -> dict[str, torch.Tensor]:
    """One-image batch from a grid of colours and a grid of 0/1 labels."""
    image = torch.tensor(np.array(rows, np.uint8)).permute(2, 0, 1)[None].contiguous()
    mask = torch.tensor(np.array(face, np.uint8))[None, None]
    return {"image": image, "mask": mask}


def test_a_colour_that_is_mostly_face_is_called_face():
    # skin: 3 face pixels, 1 background -> P(face|skin) = .75; green: always background
    b = batch([[SKIN, SKIN, GREEN], [SKIN, SKIN, GREEN]], [[1, 1, 0], [1, 0, 0]])
    model = fit([b], bins=8)
    pred = model.predict(b["image"])
    assert pred.shape == (1, 1, 2, 3) and pred.dtype == torch.bool
    assert pred[0, 0].tolist() == [[True, True, False], [True, True, False]]
    assert model.train_iou == pytest.approx(3 / 4)
    assert model.predict_proba(b["image"])[0, 0, 0].tolist() == pytest.approx([0.75, 0.75, 0.0])
    # a colour never seen in training is background
    assert not model.predict(batch([[BLUE]], [[0]])["image"]).any()


def test_the_threshold_maximises_training_iou_not_p_above_one_half():
    # Colour A: 10 face pixels, 0 background (P = 1). Colour B: 4 face, 5 background (P = 4/9 < 1/2).
    # "P > 1/2" calls only A face: IoU = 10 / 14 = 0.714. A and B: IoU = 14 / (14 + 5) = 0.737, better.
    a, b = (200, 150, 120), (120, 90, 60)
    image = [[a] * 10 + [b] * 9]
    face = [[1] * 10 + [1] * 4 + [0] * 5]
    model = fit([batch(image, face)], bins=16)
    assert model.threshold < 4 / 9
    assert model.train_iou == pytest.approx(14 / 19)
    got = pixel_counts(model.predict(batch(image, face)["image"]), torch.tensor(face)[None, None])
    assert got.iou == pytest.approx(model.train_iou)


def test_colour_cannot_separate_a_skin_coloured_blob_from_a_face():
    """The distractor problem in small: the same colour is face in one place and not in another,
    so the best colour rule is wrong somewhere whatever it does."""
    b = batch([[SKIN, SKIN, SKIN, SKIN]], [[1, 1, 0, 0]])
    model = fit([b], bins=8)
    iou = pixel_counts(model.predict(b["image"]), b["mask"]).iou
    assert iou == pytest.approx(0.5)  # all four called face: 2 right, 2 wrong


def test_from_counts_and_errors():
    face, bg = np.zeros(8**3, np.int64), np.zeros(8**3, np.int64)
    face[5], bg[6] = 3, 7
    model = ColourBaseline.from_counts(face, bg)
    assert model.bins == 8 and model.is_face.sum() == 1 and model.train_iou == 1.0
    assert "train IoU=1.000" in repr(model)
    with pytest.raises(ValueError, match="bins"):
        ColourBaseline.from_counts(np.zeros(10), np.zeros(10))
    with pytest.raises(TypeError, match="uint8"):
        model.predict(torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="Bx3xHxW"):
        model.predict(torch.zeros(1, 4, 2, 2, dtype=torch.uint8))
    with pytest.raises(ValueError, match="no batches"):
        fit([])
    with pytest.raises(KeyError, match="mask"):
        fit([{"image": torch.zeros(1, 3, 2, 2, dtype=torch.uint8)}])


def test_no_face_pixels_at_all_predicts_nothing():
    b = batch([[SKIN, GREEN]], [[0, 0]])
    model = fit([b], bins=4)
    assert not model.predict(b["image"]).any()


def test_coarsen_equals_fitting_at_fewer_bins():
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.integers(0, 256, (2, 3, 8, 8), dtype=np.uint8))
    mask = torch.from_numpy(rng.integers(0, 2, (2, 1, 8, 8), dtype=np.uint8))
    fine = fit([{"image": image, "mask": mask}], bins=64)
    for bins in (8, 16, 32):
        direct = fit([{"image": image, "mask": mask}], bins=bins)
        merged = coarsen(fine, bins)
        assert (merged.face_counts == direct.face_counts).all() and merged.threshold == direct.threshold
    with pytest.raises(ValueError, match="divide"):
        coarsen(fine, 24)


def test_fit_select_picks_the_bins_on_validation():
    # Training skin (220, 170, 140); validation skin (216, 166, 136): the same bin at 8 and 16 bins per
    # channel, a colour never seen in training at 32 and 64. Validation prefers the coarse rule; ties
    # go to fewer bins.
    train = batch([[SKIN, SKIN, GREEN]], [[1, 1, 0]])
    val = batch([[(216, 166, 136), GREEN, GREEN]], [[1, 0, 0]])
    model, scores = fit_select([train], [val])
    assert scores == {8: 1.0, 16: 1.0, 32: 0.0, 64: 0.0} and model.bins == 8
    with pytest.raises(ValueError, match="powers of two"):
        fit_select([train], [val], candidates=(12,))
