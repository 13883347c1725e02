"""A compact U-Net that gives one face logit per pixel, and its receptive field computed from its layers.

Why this shape. A face is told from a skin-coloured blob by its *structure* (eyes, brows, mouth, hair
around an oval), so an output pixel must see the whole face it belongs to, plus a margin. Faces are
roughly 20-200 px in a 480x640 scene; rescaled to the training size (120x160 is a quarter, 240x320 a
half) they are about 5-50 px or 10-100 px. Each level of the U-Net halves the resolution and roughly
doubles the receptive field: with two 3x3 convolutions per block, 4 levels give
``receptive_field(FaceUNet()) == 200`` input pixels (3 levels: 96), so even the largest rescaled face
fits inside it with context around it.

Why this size. The cost sits at full resolution, so the first level is narrow (``base_channels=8``),
and widths double per level up to ``max_channels=64``: about 0.32 M parameters and 0.23 G
multiply-adds per 120x160 image (``count_parameters``; ``torch.utils.flop_counter`` for the latter).
The width was first picked on the TEST split, before the project had a validation split. The
validation sweep (``python -m helpers.lab.tune``, 3 seeds per candidate, rendered in appendix 05a §3)
found width 4 worse and width 16 better with every seed, at about three times the compute per image
(appendix 05a §2 prints the ratio). Width 8 stays the default for its cost: the quick configuration must
train in a few minutes on a 2-core CPU, where CI runs it; on a GPU, width 16 is the first thing to try.

Any height and width work: the input is zero-padded at the bottom and right up to a multiple of
``2**levels`` and the output cropped back, so the logit map always has the input's size.

Notebooks: 05 uses it (appendix 05a teaches its design).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FaceUNet", "MODEL_DEFAULTS", "build_model", "count_parameters", "receptive_field"]


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    raise ValueError(f"norm={kind!r}: expected 'batch' or 'group'")


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by a normalisation and a ReLU; the size is kept (padding 1)."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch") -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
        )


class FaceUNet(nn.Module):
    """U-Net: ``levels`` down-sampling steps (max-pool 2x2), a bottleneck, as many up-sampling steps
    (transposed conv 2x2, stride 2) each joined with the encoder's features of that size, and a 1x1 head.

    ``forward(x)`` takes a float ``Bx3xHxW`` batch (already normalised) and returns ``Bx1xHxW`` logits;
    ``torch.sigmoid`` of a logit is the pixel's face probability as trained (plain cross-entropy by
    default; how calibrated it is, appendix 05b §2 measures), face where > 0.5.
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 8,
        levels: int = 4,
        max_channels: int = 64,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels={levels}: a U-Net needs at least one down-sampling level")
        if base_channels < 1 or max_channels < base_channels:
            raise ValueError(f"base_channels={base_channels}, max_channels={max_channels}: need 1 <= base <= max")
        self.levels = levels
        widths = [min(base_channels * 2**i, max_channels) for i in range(levels + 1)]
        self.widths = widths
        self.down = nn.ModuleList()
        c_in = in_channels
        for w in widths[:-1]:
            self.down.append(ConvBlock(c_in, w, norm))
            c_in = w
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = ConvBlock(widths[-2], widths[-1], norm)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in reversed(range(levels)):
            self.up.append(nn.ConvTranspose2d(widths[i + 1], widths[i], kernel_size=2, stride=2))
            self.dec.append(ConvBlock(2 * widths[i], widths[i], norm))
        self.head = nn.Conv2d(widths[0], 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected a Bx{self.down[0][0].in_channels}xHxW batch, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        m = 2**self.levels
        pad_h, pad_w = (-h) % m, (-w) % m
        if pad_h or pad_w:
            # Zero padding of the normalised image (about the mean colour); cropped off again below.
            x = F.pad(x, (0, pad_w, 0, pad_h))
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.head(x)[..., :h, :w]

    def deepest_path(self) -> list[nn.Module]:
        """The modules on the longest input-to-output path, in order (what bounds the receptive field)."""
        path: list[nn.Module] = []
        for block in self.down:
            path += list(block)
            path.append(self.pool)
        path += list(self.bottleneck)
        for up, dec in zip(self.up, self.dec):
            path.append(up)
            path += list(dec)
        path.append(self.head)
        return path


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def receptive_field(model_or_layers: nn.Module | Iterable[nn.Module]) -> int:
    """Side in input pixels of the square an output pixel can depend on (the theoretical receptive field).

    Walks the layers of the deepest path (``model.deepest_path()`` when the model has one, else the
    given modules in order) with the usual recurrence: a layer of kernel ``k`` and dilation ``d`` adds
    ``(k - 1) * d * jump`` pixels, where ``jump`` is the input-pixel distance between neighbouring
    positions at that depth; a stride-``s`` layer multiplies ``jump`` by ``s``; a transposed conv of
    stride ``s`` divides it by ``s`` and adds ``(ceil(k / s) - 1)`` positions of the coarse grid.
    Layers that act per pixel (normalisation, activation) change nothing. The height is reported
    (all layers here are square).
    """
    layers = model_or_layers.deepest_path() if hasattr(model_or_layers, "deepest_path") else list(model_or_layers)
    rf, jump = 1.0, 1.0
    for layer in layers:
        if isinstance(layer, nn.ConvTranspose2d):
            k, s = _pair(layer.kernel_size)[0], _pair(layer.stride)[0]
            d = _pair(layer.dilation)[0]
            taps = -(-((k - 1) * d + 1) // s)  # coarse positions one output pixel draws on
            rf += (taps - 1) * jump
            jump /= s
        elif isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k = _pair(layer.kernel_size)[0]
            s = _pair(layer.stride if layer.stride is not None else k)[0]
            d = _pair(getattr(layer, "dilation", 1))[0]
            rf += (k - 1) * d * jump
            jump *= s
        elif isinstance(layer, nn.Upsample):
            raise TypeError("receptive_field: nn.Upsample is not handled; use ConvTranspose2d")
    return int(rf)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


#: The network's size. The module's docstring says why (receptive field vs. rescaled face size) and how
#: the width was chosen (the validation sweep of ``python -m helpers.lab.tune``, weighed against its
#: cost).
MODEL_DEFAULTS: dict[str, Any] = {"base_channels": 8, "levels": 4, "max_channels": 64, "norm": "batch"}


def build_model(**overrides: Any) -> FaceUNet:
    """``FaceUNet(**MODEL_DEFAULTS)``, with ``overrides`` applied."""
    return FaceUNet(**{**MODEL_DEFAULTS, **overrides})
