"""Composite layers shared by spaces, added to a `GraphBuilder` as primitive ops."""
from __future__ import annotations

from nas.graph import GraphBuilder
from nas.ops import Activation, BatchNorm2d, Conv2d, GlobalAvgPool, Mul


def conv_bn_act(g: GraphBuilder, prefix: str, x: str, out_ch: int, kernel: int, stride: int = 1,
                act: str | None = "relu", groups: int = 1, bn_eps: float = 1e-5, bn_momentum: float = 0.1,
                zero_gamma: bool = False) -> str:
    """Conv (no bias) -> BatchNorm -> optional activation."""
    in_ch = g.shape(x)[0]
    x = g.add(f"{prefix}_conv", Conv2d(in_ch, out_ch, kernel, stride, groups=groups), x)
    x = g.add(f"{prefix}_bn", BatchNorm2d(out_ch, bn_eps, bn_momentum, zero_gamma), x)
    if act:
        x = g.add(f"{prefix}_act", Activation(act), x)
    return x


def squeeze_excite(g: GraphBuilder, prefix: str, x: str, squeeze: int, act: str = "relu",
                   gate: str = "hsigmoid") -> str:
    """Squeeze-and-excitation (Hu et al.): global pool -> 1x1 conv -> act -> 1x1 conv -> gate -> scale."""
    ch = g.shape(x)[0]
    s = g.add(f"{prefix}_pool", GlobalAvgPool(), x)
    s = g.add(f"{prefix}_reduce", Conv2d(ch, squeeze, 1, bias=True), s)
    s = g.add(f"{prefix}_act", Activation(act), s)
    s = g.add(f"{prefix}_expand", Conv2d(squeeze, ch, 1, bias=True), s)
    s = g.add(f"{prefix}_gate", Activation(gate), s)
    return g.add(f"{prefix}_scale", Mul(), x, s)
