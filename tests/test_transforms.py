"""Rescale, ConvertGroundTruth, ToTensor: the pixel rule, the edge cases, and the check against
torchvision's transforms.v2 (hypothesis over image sizes, output sizes and boxes); plus the plots."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from torch.utils.data import default_collate  # noqa: E402
from torchvision import tv_tensors  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from helpers import plotting  # noqa: E402
from helpers.errors import DataError  # noqa: E402
from helpers.lab.v2_reference import (  # noqa: E402
    MASK_RESIZE_TAKES_INTERPOLATION, ResizeMask, check_against_reference, reference_pipeline, sanitize_keeps,
    snap_to_pixel_grid, tie_lines, to_tv_sample)
from helpers.transforms import (  # noqa: E402
    ConvertGroundTruth, Rescale, ToTensor, boxes_to_mask, default_pipeline, resized_size)

FAST = settings(max_examples=60, deadline=None)


def sample_of(h: int, w: int, boxes, name: str = "s.jpg", seed: int = 0) -> dict:
    image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return {"image": image, "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4), "name": name}


def brute_force_mask(boxes, h: int, w: int) -> np.ndarray:
    """The contract, pixel by pixel (broadcast): centre (j + .5, i + .5) in [x0, x1) x [y0, y1)."""
    cy, cx = np.arange(h)[:, None] + 0.5, np.arange(w)[None, :] + 0.5
    mask = np.zeros((h, w), dtype=bool)
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        mask |= (x0 <= cx) & (cx < x1) & (y0 <= cy) & (cy < y1)
    return mask.astype(np.uint8)


# ----------------------------------------------------------------------------- the pixel rule


def test_pixel_rule_examples():
    # pixel 0 has centre 0.5: [0.5, 1.5) contains it, [0.6, 1.5) does not, and 1.5 is not < 1.5
    assert boxes_to_mask([[0.5, 0.5, 1.5, 1.5]], 3, 3).tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 0]]
    assert boxes_to_mask([[0.6, 0.5, 1.5, 1.5]], 3, 3).sum() == 0
    assert boxes_to_mask([[0.5, 0.5, 1.51, 1.5]], 3, 3)[0].tolist() == [1, 1, 0]
    # integer box [x0, x1) covers exactly columns x0 .. x1 - 1
    assert boxes_to_mask([[1, 0, 3, 1]], 1, 5).tolist() == [[0, 1, 1, 0, 0]]
    # crossing the border: clipped by the rule itself
    assert boxes_to_mask([[-4, -4, 1, 9]], 3, 3).tolist() == [[1, 0, 0]] * 3
    # smaller than a pixel: marks the pixel only if it holds that pixel's centre
    assert boxes_to_mask([[1.4, 1.4, 1.6, 1.6]], 3, 3)[1, 1] == 1
    assert boxes_to_mask([[1.1, 1.1, 1.4, 1.4]], 3, 3).sum() == 0
    assert boxes_to_mask(np.zeros((0, 4)), 2, 3).tolist() == [[0, 0, 0]] * 2


coord = st.floats(-5, 25, allow_nan=False, width=32)


@FAST
@given(h=st.integers(1, 20), w=st.integers(1, 20), boxes=st.lists(st.tuples(coord, coord, coord, coord), max_size=4))
def test_mask_matches_the_rule_pixel_by_pixel(h, w, boxes):
    b = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    b = np.concatenate([np.minimum(b[:, :2], b[:, 2:]), np.maximum(b[:, :2], b[:, 2:])], axis=1)
    np.testing.assert_array_equal(boxes_to_mask(b, h, w), brute_force_mask(b, h, w))


# ----------------------------------------------------------------------------- Rescale


def test_output_size_follows_torchvision():
    for (h, w) in [(480, 640), (640, 480), (37, 53), (10, 10), (3, 1000)]:
        for size in [1, 7, 192, 500, (5, 9), (480, 640)]:
            image = tv_tensors.Image(torch.zeros(1, h, w, dtype=torch.uint8))
            assert resized_size(size, h, w) == tuple(v2.Resize(size)(image).shape[-2:])


def test_rescale_scales_image_and_boxes():
    s = sample_of(40, 60, [[6, 4, 30, 20], [0, 0, 60, 40]])
    out = Rescale((20, 15))(s)
    assert out["image"].shape == (20, 15, 3) and out["image"].dtype == np.uint8
    np.testing.assert_array_equal(out["boxes"], [[1.5, 2, 7.5, 10], [0, 0, 15, 20]])
    assert out["boxes"].dtype == np.float32 and out["name"] == "s.jpg"
    short = Rescale(20)(s)  # smaller edge 20, aspect kept
    assert short["image"].shape == (20, 30, 3)
    np.testing.assert_array_equal(short["boxes"], [[3, 2, 15, 10], [0, 0, 30, 20]])


def test_rescale_does_not_mutate_its_input():
    s = sample_of(40, 60, [[6, 4, 30, 20]])
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
    for t in (Rescale(10), ConvertGroundTruth(), ToTensor(), default_pipeline((8, 8))):
        t(s)
        assert s.keys() == before.keys()
        for k in s:
            np.testing.assert_array_equal(s[k], before[k])


def test_same_size_is_the_identity():
    s = sample_of(12, 16, [[1.25, 2, 3.5, 4]])
    for size in [(12, 16), 12]:
        out = Rescale(size)(s)
        np.testing.assert_array_equal(out["image"], s["image"])
        np.testing.assert_array_equal(out["boxes"], s["boxes"])


def test_upscaling():
    s = sample_of(4, 5, [[1, 1, 3, 2]])
    out = ConvertGroundTruth(keep_boxes=True)(Rescale((8, 15))(s))
    assert out["image"].shape == (8, 15, 3)
    np.testing.assert_array_equal(out["boxes"], [[3, 2, 9, 4]])
    np.testing.assert_array_equal(out["mask"], brute_force_mask([[3, 2, 9, 4]], 8, 15))
    assert out["mask"].sum() == 6 * 2


def test_rescale_rejects_bad_sizes_and_order():
    for bad in (0, -3, (4, 0), (1, 2, 3), 2.5, True, "12"):
        with pytest.raises(ValueError, match="output_size"):
            Rescale(bad)
    with_mask = ConvertGroundTruth()(sample_of(4, 4, [[0, 0, 2, 2]]))
    with pytest.raises(ValueError, match="apply Rescale before ConvertGroundTruth"):
        Rescale(2)(with_mask)
    with pytest.raises(TypeError, match=r"sample 'x' needs 'image' as an HxWx3 uint8 ndarray"):
        Rescale(2)({"image": np.zeros((4, 4), np.float32), "boxes": [], "name": "x"})
    with pytest.raises(DataError, match=r"finite \(k, 4\)"):
        ConvertGroundTruth()(sample_of(4, 4, [[0, 0, np.nan, 2]]))


# ----------------------------------------------------------------------------- ConvertGroundTruth, ToTensor


def test_convert_ground_truth_keys():
    s = sample_of(6, 8, [[1, 1, 4, 3]])
    out = ConvertGroundTruth()(s)
    assert set(out) == {"image", "mask", "name"}
    assert out["mask"].dtype == np.uint8 and out["mask"].shape == (6, 8) and out["mask"].sum() == 6
    kept = ConvertGroundTruth(keep_boxes=True)(s)
    assert set(kept) == {"image", "boxes", "mask", "name"}


def test_no_boxes_gives_an_empty_mask_and_stacks():
    samples = [sample_of(6, 8, [], name="none.jpg"), sample_of(6, 8, [[0, 0, 8, 6]], name="all.jpg")]
    pipe = default_pipeline((6, 8))
    out = [pipe(s) for s in samples]
    assert out[0]["mask"].sum() == 0 and out[1]["mask"].sum() == 48
    batch = default_collate(out)
    assert set(batch) == {"image", "mask", "name"}
    assert batch["image"].shape == (2, 3, 6, 8) and batch["image"].dtype == torch.uint8
    assert batch["mask"].shape == (2, 1, 6, 8) and batch["mask"].dtype == torch.uint8
    assert batch["name"] == ["none.jpg", "all.jpg"]
    kept = ToTensor()(ConvertGroundTruth(keep_boxes=True)(samples[0]))
    assert kept["boxes"].shape == (0, 4) and kept["boxes"].dtype == torch.float32


def test_box_smaller_than_a_pixel_after_rescaling():
    # 40x40 -> 4x4 (s = 10): [14, 14, 16, 16] becomes [1.4, 1.4, 1.6, 1.6], holding pixel (1, 1)'s centre;
    # [11, 11, 14, 14] becomes [1.1, 1.1, 1.4, 1.4], holding no centre.
    out = ConvertGroundTruth(keep_boxes=True)(Rescale(4)(sample_of(40, 40, [[14, 14, 16, 16], [11, 11, 14, 14]])))
    assert len(out["boxes"]) == 2  # Rescale keeps every box
    assert out["mask"].sum() == 1 and out["mask"][1, 1] == 1
    # torchvision's SanitizeBoundingBoxes (min_size=1) drops both: the mask is the target, not the boxes
    assert sanitize_keeps(out["boxes"], (4, 4)).tolist() == [False, False]


def test_to_tensor_dtypes_shapes_and_memory():
    s = ConvertGroundTruth(keep_boxes=True)(sample_of(5, 7, [[1, 1, 3, 4]]))
    before = {k: v.copy() for k, v in s.items() if isinstance(v, np.ndarray)}
    t = ToTensor()(s)
    assert t["image"].dtype == torch.uint8 and t["image"].shape == (3, 5, 7)
    assert t["mask"].dtype == torch.uint8 and t["mask"].shape == (1, 5, 7) and t["mask"].is_contiguous()
    assert t["boxes"].dtype == torch.float32 and t["boxes"].shape == (1, 4)
    assert torch.equal(t["image"].permute(1, 2, 0), torch.from_numpy(s["image"]))
    assert torch.equal(t["mask"][0], torch.from_numpy(s["mask"]))
    # No pixel copied: the image is a CHW view of the HWC array (channels_last memory), the mask a view too
    assert t["image"].data_ptr() == s["image"].ctypes.data and t["image"].stride() == (1, 7 * 3, 3)
    assert t["image"][None].is_contiguous(memory_format=torch.channels_last)
    assert t["mask"].data_ptr() == s["mask"].ctypes.data
    # ... and the input dict is not changed
    assert all(np.array_equal(s[k], v) for k, v in before.items()) and set(s) == {"image", "mask", "boxes", "name"}
    no_mask = ToTensor()({"image": s["image"], "name": "x"})
    assert set(no_mask) == {"image", "name"}


def test_to_tensor_accepts_arrays_with_any_strides():
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    read_only = image.copy()
    read_only.flags.writeable = False
    for view in (image[:, ::-1], image[::2], np.asfortranarray(image), read_only):
        t = ToTensor()({"image": view, "name": "x"})["image"]
        assert torch.equal(t, torch.from_numpy(np.ascontiguousarray(view.transpose(2, 0, 1))))


def test_composes_with_v2_compose():
    pipe = v2.Compose([Rescale((10, 12)), ConvertGroundTruth(), ToTensor()])
    out = pipe(sample_of(20, 24, [[2, 2, 12, 10]]))
    assert out["image"].shape == (3, 10, 12) and out["mask"].shape == (1, 10, 12)
    assert out["mask"].sum().item() == 5 * 4


# ----------------------------------------------------------------------------- against torchvision v2


def test_v2_resize_gives_masks_nearest_not_bilinear():
    """Read from torchvision's resize_mask: a Mask gets NEAREST whatever the transform's
    interpolation; from torchvision 0.28 on, NEAREST_EXACT is honoured when asked for explicitly,
    before it (Colab's 0.24-0.27) it is NEAREST too."""
    s = sample_of(9, 9, [[2, 2, 7, 7]])
    mask = to_tv_sample(s)["mask"]
    by_default = v2.Resize((4, 4))(mask)  # the transform's interpolation is bilinear
    nearest = v2.Resize((4, 4), interpolation="nearest")(mask)
    exact = v2.Resize((4, 4), interpolation="nearest-exact")(mask)
    assert isinstance(by_default, tv_tensors.Mask) and by_default.dtype == torch.uint8
    assert torch.equal(by_default, nearest)
    assert torch.equal(nearest, exact) == (not MASK_RESIZE_TAKES_INTERPOLATION)
    # ResizeMask gives NEAREST_EXACT on every version, and it differs from NEAREST here.
    assert not torch.equal(nearest, ResizeMask((4, 4), "nearest-exact")(mask))


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), oh=st.integers(1, 40), ow=st.integers(1, 40),
       mode=st.sampled_from(["nearest", "nearest-exact"]), data=st.data())
def test_resize_mask_fallback_equals_v2_where_v2_honours_the_interpolation(h, w, oh, ow, mode, data):
    """The F.interpolate path (used before torchvision 0.28) gives v2's mask bit for bit."""
    if not MASK_RESIZE_TAKES_INTERPOLATION:
        pytest.skip("this torchvision's v2.Resize ignores the interpolation for masks")
    values = data.draw(st.lists(st.integers(0, 1), min_size=h * w, max_size=h * w))
    mask = tv_tensors.Mask(torch.tensor(values, dtype=torch.uint8).reshape(1, h, w))
    via_v2 = ResizeMask((oh, ow), mode, use_v2=True)(mask)
    fallback = ResizeMask((oh, ow), mode, use_v2=False)(mask)
    assert isinstance(fallback, tv_tensors.Mask) and fallback.dtype == torch.uint8
    assert torch.equal(via_v2, fallback)


def test_resize_mask_nearest_exact_is_the_centre_rule_on_any_torchvision():
    """Whatever torchvision is installed, the reference mask follows the centre rule (no ties: 9 -> 4)."""
    s = sample_of(9, 9, [[2, 2, 7, 7]])
    mask = ResizeMask((4, 4), "nearest-exact")(to_tv_sample(s)["mask"])
    ours = ConvertGroundTruth()(Rescale((4, 4))(s))["mask"]
    assert np.array_equal(mask.numpy()[0] if mask.ndim == 3 else mask.numpy(), np.asarray(ours).reshape(4, 4))
    with pytest.raises(ValueError, match="nearest"):
        ResizeMask(4, "bilinear")


def integer_box(draw, h: int, w: int) -> list[int]:
    """An integer box inside an h x w image, often touching the right or bottom border."""
    x0, y0 = draw(st.integers(0, w - 1)), draw(st.integers(0, h - 1))
    x1 = draw(st.one_of(st.just(w), st.integers(x0 + 1, w)))
    y1 = draw(st.one_of(st.just(h), st.integers(y0 + 1, h)))
    return [x0, y0, x1, y1]


@st.composite
def cases(draw, fractional: bool = False):
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    n = draw(st.integers(0, 4))
    boxes = np.array([integer_box(draw, h, w) for _ in range(n)], dtype=np.float32).reshape(-1, 4)
    if fractional:
        jitter = np.array(draw(st.lists(st.floats(-0.45, 0.45), min_size=boxes.size, max_size=boxes.size)))
        boxes = np.clip(boxes + jitter.reshape(boxes.shape).astype(np.float32), 0, [w, h, w, h]).astype(np.float32)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 0.05)
    size = draw(st.one_of(st.integers(1, 64), st.tuples(st.integers(1, 64), st.integers(1, 64))))
    if resized_size(size, h, w) == (1, 1):  # torch 2.14 bug: uint8 antialiased bilinear to 1x1 asserts
        size = (1, 2)
    return sample_of(h, w, boxes, seed=h * 100 + w), size


def _tie_free(check) -> bool:
    (h, w), (oh, ow) = check.in_size, check.out_size
    mode = check.mask_interpolation
    return not tie_lines(h, oh, mode).any() and not tie_lines(w, ow, mode).any()


@settings(max_examples=150, deadline=None)
@given(case=cases())
def test_integer_boxes_match_v2_nearest_exact(case):
    sample, size = case
    check = check_against_reference(sample, size)
    assert check.boxes_close, check  # Rescale's boxes == v2.Resize's boxes
    assert check.sanitize_as_expected, check
    assert check.mismatch_off_ties == 0, check  # the mask, except where float rounding decides a tie
    assert check.mask_mismatch == check.mask_mismatch_vs_expected  # integer boxes: expected == ours
    if _tie_free(check):
        assert check.mask_mismatch == 0, check
        np.testing.assert_array_equal(check.mask_ours, check.mask_reference)
    assert check.image_max_abs_diff <= 2, check  # Pillow vs torch antialiased bilinear


@settings(max_examples=80, deadline=None)
@given(case=cases())
def test_v2_nearest_is_our_rule_shifted_half_a_pixel(case):
    sample, size = case
    check = check_against_reference(sample, size, mask_interpolation="nearest")
    assert check.ok and check.mismatch_off_ties == 0, check
    if _tie_free(check):
        assert check.mask_mismatch_vs_expected == 0, check


@settings(max_examples=80, deadline=None)
@given(case=cases(fractional=True))
def test_fractional_boxes_match_v2_after_snapping_to_the_input_grid(case):
    sample, size = case
    check = check_against_reference(sample, size)
    assert check.ok, check
    if _tie_free(check):
        assert check.mask_mismatch_vs_expected == 0, check


def test_fractional_boxes_differ_by_design():
    # Box [0.6, 0, 3, 2] on a 2x4 image: at the input size pixel 0 (centre 0.5) is outside, so the
    # original-size mask starts at column 1; doubling it gives columns 2..5. Our rule rescales the box
    # to [1.2, 0, 6, 4] and marks columns 1..5 (centre 1.5 >= 1.2): one column more, by design.
    s = sample_of(2, 4, [[0.6, 0, 3, 2]])
    check = check_against_reference(s, (4, 8))
    assert check.mask_ours[0].tolist() == [0, 1, 1, 1, 1, 1, 0, 0]
    assert check.mask_reference[0].tolist() == [0, 0, 1, 1, 1, 1, 0, 0]
    assert check.mask_mismatch == 4 and check.ok  # == our rule on the snapped box [1, 0, 3, 2]
    assert snap_to_pixel_grid(s["boxes"], 2, 4).tolist() == [[1, 0, 3, 2]]


def test_a_tie_decided_by_float_rounding():
    # 2 -> 41 columns, box from x = 1: output pixel 20 has centre 20.5, exactly x = 1.0 in the input,
    # the box's edge, so it is face (x_min <= centre). Torch computes 20.5 * float32(2 / 41) =
    # 0.99999996 and samples column 0: not face. Only tie columns can differ like this.
    check = check_against_reference(sample_of(1, 2, [[1, 0, 2, 1]]), (1, 41))
    assert tie_lines(2, 41).nonzero()[0].tolist() == [20]
    assert check.mask_ours[0, 20] == 1 and check.mask_reference[0, 20] == 0
    assert check.mask_mismatch == 1 and check.mismatch_off_ties == 0 and check.ok


@pytest.mark.parametrize("size", [(192, 256), (240, 320), 200])
def test_project_sizes_match_exactly(size):
    rng = np.random.default_rng(7)
    x0, y0 = rng.integers(0, 600, 30), rng.integers(0, 440, 30)
    boxes = np.stack([x0, y0, x0 + rng.integers(1, 41, 30), y0 + rng.integers(1, 41, 30)], 1)
    boxes = np.vstack([boxes, [[0, 0, 640, 480], [639, 479, 640, 480], [3, 3, 4, 4]]])
    check = check_against_reference(sample_of(480, 640, boxes), size)
    assert check.ok and check.mask_identical and check.boxes_max_abs_diff == 0, check
    assert check.image_max_abs_diff <= 1, check


def test_sanitize_drops_a_border_box_by_float_rounding():
    # 35 rows -> 18: y_max 35 * float32(18 / 35) is just above 18, outside the canvas, so
    # SanitizeBoundingBoxes drops the box although it is 4 px tall; Rescale keeps it.
    s = sample_of(35, 2, [[1, 27, 2, 35]])
    ours = Rescale((18, 13))(s)["boxes"]
    assert ours[0, 3] > 18
    check = check_against_reference(s, (18, 13))
    assert check.n_dropped_by_sanitize == 1 and check.sanitize_as_expected and check.mask_mismatch == 0


def test_reference_pipeline_output():
    s = sample_of(40, 40, [[0, 0, 20, 20], [24, 24, 26, 26]])
    out = reference_pipeline((4, 4))(to_tv_sample(s))
    assert isinstance(out["image"], tv_tensors.Image) and out["image"].shape == (3, 4, 4)
    assert isinstance(out["boxes"], tv_tensors.BoundingBoxes) and out["boxes"].canvas_size == (4, 4)
    assert out["boxes"].tolist() == [[0, 0, 2, 2]]  # the sub-pixel box is sanitized away
    assert isinstance(out["mask"], tv_tensors.Mask) and out["mask"].shape == (4, 4)
    assert out["mask"].sum().item() == 4 + 1  # ... but its pixel stays in the mask
    empty = reference_pipeline(3)(to_tv_sample(sample_of(6, 6, [])))
    assert empty["boxes"].shape == (0, 4) and empty["mask"].sum().item() == 0


def test_sanitize_would_cut_rows_out_of_a_semantic_mask():
    """Why ReferencePipeline keeps the mask out of SanitizeBoundingBoxes: a Mask whose first dimension
    equals the number of boxes is taken for per-box masks and indexed with the boxes' keep flags."""
    mask = tv_tensors.Mask(torch.ones(2, 5, dtype=torch.uint8))  # an HxW mask with H == 2
    boxes = tv_tensors.BoundingBoxes([[0, 0, 3, 2], [1, 1, 1.5, 1.5]], format="XYXY", canvas_size=(2, 5))
    out = v2.SanitizeBoundingBoxes(labels_getter=None)({"boxes": boxes, "mask": mask})
    assert out["mask"].shape == (1, 5)  # a row of the image is gone
    kept = reference_pipeline((2, 5))({"image": tv_tensors.Image(torch.zeros(3, 2, 5, dtype=torch.uint8)),
                                      "boxes": boxes, "mask": mask})
    assert kept["mask"].shape == (2, 5) and len(kept["boxes"]) == 1


def test_check_report_reads_well():
    check = check_against_reference(sample_of(480, 640, [[10, 10, 100, 90]], name="image_000001.jpg"), (192, 256))
    text = str(check)
    assert text.splitlines()[0] == "image_000001.jpg: 480x640 -> 192x256, mask resized with nearest-exact"
    assert "0 of 49152 pixels differ from ours" in text


# ----------------------------------------------------------------------------- plots


def test_plots_return_figures_and_draw_boxes():
    s = sample_of(20, 30, [[2, 2, 10, 8], [12, 5, 20, 15]])
    ax = plotting.show_sample(s)

    def boxes_drawn(axes):  # each box: a black halo and the box colour on top
        rects = [p for p in axes.patches if isinstance(p, Rectangle)]
        return sum(matplotlib.colors.to_hex(p.get_edgecolor()) == plotting.BOX_COLOR for p in rects)

    assert boxes_drawn(ax) == 2 and len(ax.patches) == 4
    assert ax.get_xlim() == (0, 30) and ax.get_ylim() == (20, 0)  # pixel j spans [j, j + 1)
    fig = plotting.show_before_after(Rescale(10), s)
    assert len(fig.axes) == 2 and "10×15 px" in fig.axes[1].get_title()  # height × width
    t = ToTensor()(ConvertGroundTruth(keep_boxes=True)(s))
    ax2 = plotting.show_sample(t)  # tensors too
    assert boxes_drawn(ax2) == 2 and len(ax2.images) == 2
    fig2 = plotting.show_image_and_mask(ConvertGroundTruth(keep_boxes=True)(s))
    assert len(fig2.axes) == 3
    pipe = default_pipeline((8, 8))
    batch = default_collate([pipe(sample_of(20, 30, [[0, 0, 5, 5]], name=f"{i}")) for i in range(5)])
    fig3 = plotting.show_batch(batch, n=8, ncols=4)
    assert len(fig3.axes) == 8 and [a.get_title() for a in fig3.axes[:5]] == ["0", "1", "2", "3", "4"]
    plt.close("all")
