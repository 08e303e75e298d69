"""LSQ+ quantization-aware training in plain PyTorch (Bhalgat et al. 2020, as SpaceEvo's code applies it).

Every Conv2d and Linear of a model is wrapped (`prepare_lsq`) so that it fake-quantizes its input and its
weight before computing: the input to unsigned `bits` integers with a learned per-tensor scale and offset
(asymmetric), the weight to signed integers with a learned per-tensor scale (symmetric). Rounding passes the
gradient straight through; the scales' and offset's gradients are scaled by 1 / sqrt(elements x Qp) (LSQ's
gradient scale; per sample for inputs). BatchNorm stays in float during QAT, as in SpaceEvo.

Initialisation, at the first forward pass, from min-max: input scale (max - min) / (2^bits - 1), offset min;
weight scale 2 max|w| / (2^bits - 1) ("min_max"). `weight_init="as_coded"` reproduces the released SpaceEvo
code, where `max(2 * (a, eps))` repeats a tuple instead of doubling, giving max|w| / (2^bits - 1): half the
range, so the largest weights start clipped.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nas.space import NASError

EPSILON = 1e-7  # the smallest scale x (2^bits - 1), as the released code clamps it
WEIGHT_INITS = ("min_max", "as_coded")


def grad_scale(x: torch.Tensor, factor: float) -> torch.Tensor:
    """`x` in the forward pass, `factor` x its gradient in the backward pass."""
    scaled = x * factor
    return (x - scaled).detach() + scaled


def round_pass(x: torch.Tensor) -> torch.Tensor:
    """Rounding whose gradient is the identity (straight-through estimator)."""
    return (x.round() - x).detach() + x


def fake_quant_activation(x: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, bits: int = 8,
                          training: bool = True) -> torch.Tensor:
    """round(clip((x - offset) / |scale|, 0, 2^bits - 1)) x |scale| + offset, with LSQ's gradients."""
    qp = 2 ** bits - 1
    if training:
        factor = 1.0 / math.sqrt(x[0].numel() * qp)
        scale, offset = grad_scale(scale, factor), grad_scale(offset, factor)
    v = F.hardtanh((x - offset) / scale.abs(), 0.0, float(qp))
    v = round_pass(v) if training else v.round()
    return v * scale.abs() + offset


def fake_quant_weight(w: torch.Tensor, scale: torch.Tensor, bits: int = 8, training: bool = True) -> torch.Tensor:
    """round(clip(w / |scale|, -2^(bits-1), 2^(bits-1) - 1)) x |scale|, with LSQ's gradients."""
    qn, qp = -2 ** (bits - 1), 2 ** (bits - 1) - 1
    if training:
        scale = grad_scale(scale, 1.0 / math.sqrt(w.numel() * qp))
    v = F.hardtanh(w / scale.abs(), float(qn), float(qp))
    v = round_pass(v) if training else v.round()
    return v * scale.abs()


class LSQPlus(nn.Module):
    """A Conv2d or Linear computing on its LSQ+ fake-quantized input and weight (`layer` keeps the weights)."""

    initialised: torch.Tensor

    def __init__(self, layer: nn.Conv2d | nn.Linear, bits: int = 8, weight_init: str = "min_max") -> None:
        super().__init__()
        if weight_init not in WEIGHT_INITS:
            raise NASError(f"LSQ+ weight_init {weight_init!r} is not one of {', '.join(WEIGHT_INITS)}")
        if not 2 <= bits <= 16:
            raise NASError(f"LSQ+ bits {bits} is not in 2..16")
        self.layer, self.bits, self.weight_init = layer, bits, weight_init
        self.input_scale = nn.Parameter(torch.ones(1))
        self.input_offset = nn.Parameter(torch.zeros(1))
        self.weight_scale = nn.Parameter(torch.ones(1))
        self.register_buffer("initialised", torch.tensor(False))

    @torch.no_grad()
    def _initialise(self, x: torch.Tensor) -> None:
        levels = 2 ** self.bits - 1
        self.input_scale.fill_(max(float(x.max() - x.min()), EPSILON) / levels)
        self.input_offset.fill_(float(x.min()))
        largest = float(self.layer.weight.abs().max())
        self.weight_scale.fill_(max(largest * (2 if self.weight_init == "min_max" else 1), EPSILON) / levels)
        self.initialised.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not bool(self.initialised):
            self._initialise(x)
        with torch.no_grad():  # keep the scales positive and away from zero, as the released code does
            floor = EPSILON / (2 ** self.bits - 1)
            self.input_scale.clamp_(min=floor)
            self.weight_scale.clamp_(min=floor)
        xq = fake_quant_activation(x, self.input_scale, self.input_offset, self.bits, self.training)
        wq = fake_quant_weight(self.layer.weight, self.weight_scale, self.bits, self.training)
        if isinstance(self.layer, nn.Linear):
            return F.linear(xq, wq, self.layer.bias)
        conv = self.layer
        return F.conv2d(xq, wq, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def prepare_lsq(model: nn.Module, bits: int = 8, weight_init: str = "min_max") -> nn.Module:
    """Wrap every Conv2d and Linear of `model` (in place) in `LSQPlus`; returns the model."""
    for name, child in list(model.named_children()):
        if isinstance(child, (nn.Conv2d, nn.Linear)):
            setattr(model, name, LSQPlus(child, bits, weight_init))
        elif not isinstance(child, LSQPlus):
            prepare_lsq(child, bits, weight_init)
    return model
