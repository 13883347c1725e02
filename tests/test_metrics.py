"""Pixel metrics, box recall and face-level counts on hand-made masks whose answers are known."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.transforms import box_pixel_slices
from helpers.metrics import (
    BoxRecall, FaceCounts, PixelCounts, box_recall, face_counts, per_image_iou, pixel_counts,
)


def masks_4x4():
    target = np.zeros((4, 4), np.uint8)
    target[:2, :2] = 1  # 4 face pixels
    pred = np.zeros((4, 4), np.uint8)
    pred[:2, 1:3] = 1  # 4 predicted: 2 right (tp), 2 wrong (fp); 2 missed (fn)
    return pred, target


def test_counts_and_ratios_of_a_hand_made_case():
    pred, target = masks_4x4()
    c = pixel_counts(pred, target)
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 2, 2, 10)
    assert c.iou == pytest.approx(2 / 6)
    assert c.dice == pytest.approx(4 / 8)
    assert c.precision == pytest.approx(0.5)
    assert c.recall == pytest.approx(0.5)
    assert c.as_dict() == {"iou": c.iou, "dice": c.dice, "precision": 0.5, "recall": 0.5}


def test_probabilities_bools_and_ints_are_read_alike():
    pred, target = masks_4x4()
    prob = pred * 0.8 + 0.1  # 0.9 where predicted, 0.1 elsewhere
    for p in (pred, pred.astype(bool), torch.from_numpy(prob), prob.astype(np.float32)):
        assert pixel_counts(p, torch.from_numpy(target)) == PixelCounts(2, 2, 2, 10)
    # the threshold is strict: p == threshold is not face
    assert pixel_counts(np.full((2, 2), 0.5), np.ones((2, 2))).tp == 0
    assert pixel_counts(np.full((2, 2), 0.5), np.ones((2, 2)), threshold=0.4).tp == 4


def test_counts_are_summed_over_the_split_not_averaged_per_image():
    a_pred, a_true = np.ones((1, 10, 10)), np.ones((1, 10, 10))  # 100 px, perfect
    b_pred, b_true = np.zeros((1, 10, 10)), np.zeros((1, 10, 10))
    b_true[0, 0, 0] = 1  # 1 px face, missed: per-image IoU 0
    total = PixelCounts().update(a_pred, a_true).update(b_pred, b_true)
    assert total.iou == pytest.approx(100 / 101)  # the mean of per-image IoUs would be 0.5
    assert (pixel_counts(a_pred, a_true) + pixel_counts(b_pred, b_true)) == total
    assert per_image_iou(np.concatenate([a_pred, b_pred]), np.concatenate([a_true, b_true])).tolist() == [1.0, 0.0]


def test_zero_denominators_are_defined():
    empty = pixel_counts(np.zeros((3, 3)), np.zeros((3, 3)))
    assert (empty.iou, empty.dice, empty.precision, empty.recall) == (1.0, 1.0, 1.0, 1.0)
    missed = pixel_counts(np.zeros((3, 3)), np.ones((3, 3)))
    assert (missed.iou, missed.dice, missed.precision, missed.recall) == (0.0, 0.0, 1.0, 0.0)
    invented = pixel_counts(np.ones((3, 3)), np.zeros((3, 3)))
    assert (invented.iou, invented.precision, invented.recall) == (0.0, 0.0, 1.0)
    assert per_image_iou(np.zeros((2, 1, 3, 3)), np.zeros((2, 1, 3, 3))).tolist() == [1.0, 1.0]


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        pixel_counts(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="shape"):
        per_image_iou(np.zeros((2, 3, 3)), np.zeros((2, 3, 4)))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 12), st.integers(1, 12))
def test_ratios_agree_with_set_definitions(seed, h, w):
    rng = np.random.default_rng(seed)
    pred, true = rng.random((h, w)) < 0.4, rng.random((h, w)) < 0.3
    c = pixel_counts(pred, true)
    inter, union = (pred & true).sum(), (pred | true).sum()
    assert c.total == h * w
    assert c.iou == pytest.approx(inter / union if union else 1.0)
    assert c.dice == pytest.approx(2 * inter / (pred.sum() + true.sum()) if union else 1.0)
    # Dice and IoU are tied: D = 2 J / (1 + J)
    assert c.dice == pytest.approx(2 * c.iou / (1 + c.iou))


def test_box_pixels_follow_the_pixel_centre_rule():
    # x from 1.5 to 4.5: centres 1.5, 2.5, 3.5 are inside (cols 1..3), 4.5 is not
    assert box_pixel_slices([1.5, 0, 4.5, 2], 10, 10) == (slice(0, 2), slice(1, 4))
    # x from 1.6 to 4.6: centres 2.5, 3.5, 4.5 (cols 2..4)
    assert box_pixel_slices([1.6, 0.4, 4.6, 1.4], 10, 10) == (slice(0, 1), slice(2, 5))
    # a box smaller than a pixel between two centres covers nothing
    rows, cols = box_pixel_slices([2.6, 2.6, 3.4, 3.4], 10, 10)
    assert rows.stop - rows.start == 0 and cols.stop - cols.start == 0
    # clipped to the image
    assert box_pixel_slices([-5, -5, 50, 3], 4, 6) == (slice(0, 3), slice(0, 6))


def test_box_recall_on_hand_made_cases():
    pred = np.zeros((10, 10), bool)
    pred[0:4, 0:4] = True  # face 1 fully found
    pred[6:10, 6:8] = True  # face 2: 8 of 16 pixels -> exactly half, NOT more than half
    pred[6:10, 0:3] = True  # face 3: 12 of 16 pixels -> found
    boxes = [[0, 0, 4, 4], [6, 6, 10, 10], [0, 6, 4, 10], [4.6, 4.6, 5.4, 5.4]]  # last: covers no centre
    r = box_recall(pred, boxes)
    assert (r.found, r.total, r.empty) == (2, 4, 1)
    assert r.recall == pytest.approx(0.5)
    # a lower min_fraction counts the half-found face
    assert box_recall(pred, boxes, min_fraction=0.4).found == 3
    # probabilities and 1xHxW are accepted; no boxes means nothing to find
    assert box_recall(torch.from_numpy(pred[None] * 0.9), torch.tensor(boxes)).found == 2
    assert box_recall(pred, []) == BoxRecall(0, 0, 0) and BoxRecall().recall == 1.0
    assert (box_recall(pred, boxes[:1]) + box_recall(pred, boxes[1:])) == r
    with pytest.raises(ValueError, match="HxW"):
        box_recall(np.zeros((2, 5, 5)), boxes)


# --- face-level counts: the matching rule on hand-made masks -----------------------------------------


def test_one_region_per_box_is_matched():
    pred = np.zeros((20, 20), bool)
    pred[1:5, 1:5] = True  # box 0 exactly
    pred[10:16, 10:15] = True  # box 1, a little larger than it: 20 of 30 pixels inside, box fully covered
    c = face_counts(pred, [[1, 1, 5, 5], [10, 10, 14, 15]], distractors=[])
    assert c == FaceCounts(tp=2, fn=0, fp=0, tiny=0, empty=0, fp_distractor=0)
    assert c.precision == c.recall == 1.0


def test_two_regions_on_one_box():
    box = [[0, 0, 10, 10]]
    pred = np.zeros((12, 12), bool)
    pred[0:10, 0:6] = True  # 60% of the box: matches
    pred[0:10, 8:10] = True  # 20% of the box, all inside it: no match left, a false positive (a duplicate)
    c = face_counts(pred, box)
    assert (c.tp, c.fn, c.fp) == (1, 0, 1) and c.precision == 0.5 and c.recall == 1.0
    # Two halves of 40% each: neither covers half of the box, so the face is missed and both are wrong.
    pred = np.zeros((12, 12), bool)
    pred[0:10, 0:4] = True
    pred[0:10, 6:10] = True
    c = face_counts(pred, box)
    assert (c.tp, c.fn, c.fp) == (0, 1, 2)


def test_a_region_spanning_two_boxes_matches_neither():
    pred = np.zeros((10, 20), bool)
    pred[2:6, 2:18] = True  # one region over two 4x4 faces and the gap between them (1/4 of it in each)
    c = face_counts(pred, [[2, 2, 6, 6], [14, 2, 18, 6]])
    assert (c.tp, c.fn, c.fp) == (0, 2, 1) and c.precision == 0.0 and c.recall == 0.0
    # A region mostly on one face and reaching into the other matches the first only.
    pred = np.zeros((10, 20), bool)
    pred[2:6, 2:7] = True
    c = face_counts(pred, [[2, 2, 6, 6], [6, 2, 10, 6]])
    assert (c.tp, c.fn, c.fp) == (1, 1, 0)


def test_face_everywhere_finds_no_face_and_has_precision_zero():
    pred = np.ones((40, 40), bool)
    boxes = [[2, 2, 8, 8], [20, 20, 30, 30], [30, 2, 36, 10]]
    assert box_recall(pred, boxes).recall == 1.0  # what box recall alone would report
    c = face_counts(pred, boxes)
    assert (c.tp, c.fn, c.fp) == (0, 3, 1) and c.precision == 0.0 and c.recall == 0.0


def test_tiny_regions_and_empty_boxes_are_counted_not_dropped():
    pred = np.zeros((10, 10), bool)
    pred[0, 0] = pred[9, 9] = True  # two 1-pixel regions
    pred[0:3, 8] = True  # 3 pixels in a column: below 4
    pred[4:7, 0:2] = True  # 6 pixels, no box: a false positive
    boxes = [[4.6, 4.6, 5.4, 5.4]]  # covers no pixel centre
    c = face_counts(pred, boxes)
    assert c == FaceCounts(tp=0, fn=1, fp=1, tiny=3, empty=1, fp_distractor=None)
    assert face_counts(pred, boxes, min_pixels=1).fp == 4


def test_eight_connectivity_joins_diagonal_pixels():
    pred = np.eye(6, dtype=bool)  # a diagonal line: one region of 6 pixels
    assert face_counts(pred, []).fp == 1


def test_false_positives_on_distractors_are_counted_apart():
    pred = np.zeros((20, 20), bool)
    pred[1:5, 1:5] = True  # a face
    pred[10:14, 10:14] = True  # on a distractor
    pred[10:14, 1:5] = True  # elsewhere
    c = face_counts(pred, [[1, 1, 5, 5]], distractors=[[9, 9, 15, 15]])
    assert (c.tp, c.fp, c.fp_distractor) == (1, 2, 1)
    assert face_counts(pred, [[1, 1, 5, 5]], distractors=None).fp_distractor is None
    # Unknown in one image makes the sum unknown; known + known adds up.
    assert (c + FaceCounts(fp_distractor=None)).fp_distractor is None
    assert (c + c).fp_distractor == 2 and (c + c).tp == 2


def test_face_counts_accepts_scores_tensors_and_nothing():
    scores = torch.zeros(1, 8, 8)
    scores[0, 2:6, 2:6] = 0.7
    c = face_counts(scores, torch.tensor([[2.0, 2.0, 6.0, 6.0]]))
    assert c.tp == 1 and face_counts(scores, [[2, 2, 6, 6]], threshold=0.8).fn == 1
    assert FaceCounts().precision == FaceCounts().recall == 1.0
    with pytest.raises(ValueError, match="HxW"):
        face_counts(np.zeros((2, 5, 5)), [])


def test_reliability_bins_scores_and_measures_the_calibration_gap():
    from helpers.metrics import Reliability

    exact = Reliability(10).update(torch.tensor([0.0, 0.0, 1.0, 1.0]), torch.tensor([0, 0, 1, 1]))
    assert exact.pixels.tolist() == [2] + [0] * 8 + [2]  # a score of 1.0 lands in the last bin
    assert exact.expected_calibration_error == 0.0
    over = Reliability(4).update(torch.full((8,), 0.8), torch.tensor([1, 0] * 4))
    assert over.pixels.tolist() == [0, 0, 0, 8] and over.faces.tolist() == [0, 0, 0, 4]
    assert over.expected_calibration_error == pytest.approx(0.3)
    assert "0.800" in over.table() and "0.500" in over.table()
    both = Reliability(10).update(torch.tensor([0.05, 0.95]), torch.tensor([0, 1])).update(
        np.array([0.95]), np.array([0]))
    assert both.pixels[9] == 2 and both.face_fraction[9] == 0.5 and np.isnan(both.mean_score[3])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Reliability().update(torch.tensor([1.5]), torch.tensor([1]))
    with pytest.raises(ValueError, match="differ"):
        Reliability().update(torch.zeros(3), torch.zeros(2))


def test_evaluate_bins_a_networks_scores_for_a_reliability_diagram_in_the_same_pass():
    from helpers.evaluation import evaluate

    class Half(torch.nn.Module):  # a score of 0.5 everywhere (logit 0)
        def forward(self, x):
            return torch.zeros(x.shape[0], 1, *x.shape[2:]) + 0 * x[:, :1]

    batch = {"image": torch.zeros(2, 3, 4, 5, dtype=torch.uint8), "mask": torch.zeros(2, 1, 4, 5, dtype=torch.uint8)}
    batch["mask"][0, 0, :2] = 1
    table = evaluate(Half(), [batch], reliability_bins=10).reliability
    assert table.pixels.sum() == 40 and table.pixels[5] == 40 and table.faces[5] == 10
    assert table.expected_calibration_error == pytest.approx(0.25)
    assert evaluate(Half(), [batch]).reliability is None
    with pytest.raises(ValueError, match="only a network"):
        evaluate(lambda images: torch.zeros(images.shape[0], 1, 4, 5), [batch], reliability_bins=10)
