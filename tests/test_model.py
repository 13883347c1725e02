"""FaceUNet: output size for any input size, the receptive field, and that one step learns."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers.model import FaceUNet, count_parameters, receptive_field


def small(**kw) -> FaceUNet:
    torch.manual_seed(0)
    return FaceUNet(**{"base_channels": 4, "levels": 3, "max_channels": 16, **kw})


@pytest.mark.parametrize("size", [(32, 32), (48, 64), (37, 53), (1, 1), (15, 200), (120, 160)])
def test_output_is_one_logit_per_input_pixel(size):
    model = small().eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 1, *size)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()


def test_channels_last_and_group_norm_give_the_same_shape():
    model = small(norm="group").to(memory_format=torch.channels_last).eval()
    x = torch.randn(1, 3, 45, 67).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert model(x).shape == (1, 1, 45, 67)


def test_odd_sizes_are_zero_padded_bottom_right_and_cropped_back():
    """37x53 is padded to 40x56 (a multiple of 2**3) inside the model: the same as padding it outside."""
    model = small().eval()
    x = torch.randn(1, 3, 37, 53)
    with torch.no_grad():
        inside = model(x)
        outside = model(torch.nn.functional.pad(x, (0, 3, 0, 3)))[..., :37, :53]
    torch.testing.assert_close(inside, outside)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="levels"):
        FaceUNet(levels=0)
    with pytest.raises(ValueError, match="norm"):
        FaceUNet(norm="layer")
    with pytest.raises(ValueError, match="shape"):
        small()(torch.randn(3, 32, 32))


def test_receptive_field_follows_the_recurrence():
    # Hand count for 1 level: conv3 conv3 (5) pool (+1, jump 2) conv3 conv3 (+4 +4) up (jump 1) conv3 conv3 (+2 +2)
    assert receptive_field(small(levels=1)) == 5 + 1 + 8 + 4
    assert receptive_field(FaceUNet(levels=3)) == 96
    assert receptive_field(FaceUNet(levels=4)) == 200
    # A plain stack of layers works too.
    layers = [nn.Conv2d(1, 1, 3), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3, dilation=2)]
    assert receptive_field(layers) == 1 + 2 + 1 + 2 * 2 * 2
    with pytest.raises(TypeError, match="Upsample"):
        receptive_field([nn.Upsample(scale_factor=2)])


def test_receptive_field_bounds_the_pixels_an_output_depends_on():
    """Gradient of one output pixel w.r.t. the input: non-zero only inside the computed field, and the
    field is not a loose bound (the dependence reaches at least half of it)."""
    model = small(levels=2).double().eval()
    rf = receptive_field(model)
    x = torch.randn(1, 3, 96, 96, dtype=torch.double, requires_grad=True)
    model(x)[0, 0, 48, 48].backward()
    rows, cols = torch.nonzero(x.grad.abs().sum(1)[0], as_tuple=True)
    height = int(rows.max() - rows.min() + 1)
    width = int(cols.max() - cols.min() + 1)
    assert max(height, width) <= rf
    assert min(height, width) >= rf // 2


def test_parameter_count_of_the_default_model_is_small():
    n = count_parameters(FaceUNet())
    assert 100_000 < n < 2_000_000


def test_one_optimisation_step_decreases_the_loss_on_a_fixed_batch():
    torch.manual_seed(1)
    model = small()
    x = torch.randn(4, 3, 32, 32)
    y = torch.zeros(4, 1, 32, 32)
    y[:, :, 8:20, 10:24] = 1
    loss_fn = nn.BCEWithLogitsLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = loss_fn(model(x), y)
    opt.zero_grad()
    before.backward()
    opt.step()
    after = loss_fn(model(x), y)
    assert after.item() < before.item()
