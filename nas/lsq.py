"""LSQ+ quantization-aware training in plain PyTorch (Bhalgat et al. 2020, as SpaceEvo's code applies it).

Every Conv2d and Linear of a model is wrapped (`prepare_lsq`) so that it fake-quantizes its input and its
weight before computing: the input to unsigned `bits` integers with a learned per-tensor scale and offset
(asymmetric), the weight to signed integers with a learned per-tensor scale (symmetric). Rounding passes the
gradient straight through; the scales' and offset's gradients are scaled by 1 / sqrt(elements x Qp) (LSQ's
gradient scale; per sample for inputs). BatchNorm stays in float during QAT, as in SpaceEvo.

In a supernet (`quantize_supernet`) an elastic layer has one set of quantizers for all its sizes, and
`quantized_subnet` gives an architecture's stand-alone LSQ+ model with the weights and scales it uses.

Initialisation, at the first forward pass, from min-max: input scale (max - min) / (2^bits - 1), offset min;
weight scale 2 max|w| / (2^bits - 1) ("min_max"). `weight_init="as_coded"` reproduces the released SpaceEvo
code, where `max(2 * (a, eps))` repeats a tuple instead of doubling, giving max|w| / (2^bits - 1): half the
range, so the largest weights start clipped.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from nas.elastic import ElasticConv2d, ElasticLinear
from nas.space import NASError, Value

if TYPE_CHECKING:
    from nas.supernet import Supernet

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


class Quantizers(nn.Module):
    """The learned LSQ+ parameters of one layer: input scale and offset, weight scale (initialised from min-max
    at the first call, `quantize`)."""

    initialised: torch.Tensor

    def __init__(self, bits: int = 8, weight_init: str = "min_max") -> None:
        super().__init__()
        if weight_init not in WEIGHT_INITS:
            raise NASError(f"LSQ+ weight_init {weight_init!r} is not one of {', '.join(WEIGHT_INITS)}")
        if not 2 <= bits <= 16:
            raise NASError(f"LSQ+ bits {bits} is not in 2..16")
        self.bits, self.weight_init = bits, weight_init
        self.input_scale = nn.Parameter(torch.ones(1))
        self.input_offset = nn.Parameter(torch.zeros(1))
        self.weight_scale = nn.Parameter(torch.ones(1))
        self.register_buffer("initialised", torch.tensor(False))

    @torch.no_grad()
    def _initialise(self, x: torch.Tensor, weight: torch.Tensor) -> None:
        levels = 2 ** self.bits - 1
        self.input_scale.fill_(max(float(x.max() - x.min()), EPSILON) / levels)
        self.input_offset.fill_(float(x.min()))
        largest = float(weight.abs().max())
        self.weight_scale.fill_(max(largest * (2 if self.weight_init == "min_max" else 1), EPSILON) / levels)
        self.initialised.fill_(True)

    def quantize(self, x: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The fake-quantized input and weight (initialising the scales from them at the first call)."""
        if not bool(self.initialised):
            self._initialise(x, weight)
        with torch.no_grad():  # keep the scales positive and away from zero, as the released code does
            floor = EPSILON / (2 ** self.bits - 1)
            self.input_scale.clamp_(min=floor)
            self.weight_scale.clamp_(min=floor)
        return (fake_quant_activation(x, self.input_scale, self.input_offset, self.bits, self.training),
                fake_quant_weight(weight, self.weight_scale, self.bits, self.training))

    def quantizer_state(self) -> dict[str, torch.Tensor]:
        return {"input_scale": self.input_scale, "input_offset": self.input_offset,
                "weight_scale": self.weight_scale, "initialised": self.initialised}


def _apply(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, conv: Any) -> torch.Tensor:
    """A Linear (conv None) or a convolution with `conv`'s stride, padding, dilation and groups."""
    if conv is None:
        return F.linear(x, weight, bias)
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


class LSQPlus(Quantizers):
    """A Conv2d or Linear computing on its LSQ+ fake-quantized input and weight (`layer` keeps the weights)."""

    def __init__(self, layer: nn.Conv2d | nn.Linear, bits: int = 8, weight_init: str = "min_max") -> None:
        super().__init__(bits, weight_init)
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xq, wq = self.quantize(x, self.layer.weight)
        return _apply(xq, wq, self.layer.bias, None if isinstance(self.layer, nn.Linear) else self.layer)


class ElasticLSQ(Quantizers):
    """An elastic Conv2d or Linear of a supernet (`nas.elastic`) computing on LSQ+ fake-quantized inputs and
    weights; one set of quantizers serves every architecture (SpaceEvo's quantized-for-all supernet)."""

    def __init__(self, elastic: ElasticConv2d | ElasticLinear, bits: int = 8, weight_init: str = "min_max") -> None:
        super().__init__(bits, weight_init)
        self.elastic = elastic

    def run(self, x: torch.Tensor, op: Any) -> torch.Tensor:
        state = self.elastic.state_for(op)
        xq, wq = self.quantize(x, state["weight"])
        conv = None if isinstance(self.elastic, ElasticLinear) else SimpleNamespace(
            stride=op.stride, padding=op.pad, dilation=op.dilation, groups=op.groups)
        return _apply(xq, wq, state.get("bias"), conv)

    def state_for(self, op: Any) -> dict[str, torch.Tensor]:
        """The weights of `op` and the shared quantizers, keyed as its stand-alone `LSQPlus` names them."""
        return {**{f"layer.{k}": v for k, v in self.elastic.state_for(op).items()}, **self.quantizer_state()}


def prepare_lsq(model: nn.Module, bits: int = 8, weight_init: str = "min_max") -> nn.Module:
    """Wrap every Conv2d and Linear of `model` (in place) in `LSQPlus`; returns the model."""
    for name, child in list(model.named_children()):
        if isinstance(child, (nn.Conv2d, nn.Linear)):
            setattr(model, name, LSQPlus(child, bits, weight_init))
        elif not isinstance(child, Quantizers):
            prepare_lsq(child, bits, weight_init)
    return model


def quantize_supernet(supernet: Supernet, bits: int = 8, weight_init: str = "min_max") -> Supernet:
    """LSQ+ quantizers (in place) on every Conv2d and Linear of `supernet`'s store: an elastic layer gets one set
    for all its sizes (`ElasticLSQ`), a separate layer its own (`LSQPlus`); returns the supernet."""
    for key, module in list(supernet.weights.items()):
        if isinstance(module, (ElasticConv2d, ElasticLinear)):
            supernet.weights[key] = ElasticLSQ(module, bits, weight_init)
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            supernet.weights[key] = LSQPlus(module, bits, weight_init)
        elif not isinstance(module, Quantizers):
            prepare_lsq(module, bits, weight_init)
    supernet.quantized_bits = bits
    supernet.forget_programs()
    return supernet


def quantized_subnet(supernet: Supernet, arch: Mapping[str, Value]) -> nn.Module:
    """The stand-alone LSQ+ model of `arch` with its weights and quantizers from a `quantize_supernet` supernet."""
    from nas.build import build_module

    if not supernet.quantized_bits:
        raise NASError("quantized_subnet needs a supernet with LSQ+ quantizers (nas.lsq.quantize_supernet)")
    model = prepare_lsq(build_module(supernet.graph(arch)), supernet.quantized_bits)
    model.load_state_dict(supernet.subnet_state_dict(arch))
    return model
