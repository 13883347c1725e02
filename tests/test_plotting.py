"""helpers.plotting: the error map paints each kind of pixel in its colour; the zoom window holds every error."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from helpers.plotting import ERROR_COLORS, error_map, error_window, show_error_map


def masks():
    target = np.zeros((40, 60), np.uint8)
    target[10:20, 10:20] = 1
    pred = np.zeros_like(target)
    pred[12:22, 10:20] = 1  # shifted down: rows 10-11 missed, rows 20-21 false
    pred[30, 50] = 1  # one isolated false positive
    return pred, target


def test_each_pixel_kind_gets_its_colour_and_true_negatives_stay_grey():
    pred, target = masks()
    image = np.full((40, 60, 3), 200, np.uint8)
    out = error_map(image, pred, target)
    assert tuple(out[15, 15]) == ERROR_COLORS["true positive"]
    assert tuple(out[21, 15]) == ERROR_COLORS["false positive"] == tuple(out[30, 50])
    assert tuple(out[10, 15]) == ERROR_COLORS["false negative"]
    grey = out[0, 0]
    assert grey[0] == grey[1] == grey[2] and tuple(grey) not in ERROR_COLORS.values()
    with pytest.raises(ValueError, match="differ in size"):
        error_map(image, pred[:-1], target)


def test_the_zoom_window_holds_every_wrong_pixel_and_stays_in_the_image():
    pred, target = masks()
    rows, cols = error_window(pred, target, pad=3, min_side=8)
    wrong = np.argwhere(pred != target)
    assert all(rows.start <= r < rows.stop and cols.start <= c < cols.stop for r, c in wrong)
    assert 0 <= rows.start and rows.stop <= 40 and 0 <= cols.start and cols.stop <= 60
    small_rows, small_cols = error_window(target, target)  # nothing wrong: the whole image
    assert (small_rows, small_cols) == (slice(0, 40), slice(0, 60))
    one = np.zeros((100, 100), np.uint8)
    one[50, 50] = 1
    r, c = error_window(one, np.zeros_like(one), pad=2, min_side=24)
    assert r.stop - r.start >= 24 and c.stop - c.start >= 24 and r.start <= 50 < r.stop


def test_show_error_map_draws_two_panels_with_a_legend():
    pred, target = masks()
    fig = show_error_map(np.zeros((40, 60, 3), np.uint8), pred, target, title="t")
    assert len(fig.axes) == 2 and fig.axes[-1].get_legend() is not None


def test_reliability_diagram_draws_one_bar_per_used_bin_and_the_diagonal():
    import torch

    from helpers.metrics import Reliability
    from helpers.plotting import show_reliability

    table = Reliability(10).update(torch.tensor([0.05, 0.05, 0.95, 0.55]), torch.tensor([0, 0, 1, 1]))
    ax = show_reliability(table)
    assert len(ax.patches) == 3  # bins 0, 5 and 9 hold pixels
    assert "ECE" in ax.get_title()
    assert any(list(line.get_xdata()) == [0, 1] for line in ax.lines)
