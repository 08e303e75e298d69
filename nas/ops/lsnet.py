"""Ops of LSNet (Wang et al., "LSNet: See Large, Focus Small", CVPR 2025; official code jameslahm/lsnet) that are
not primitives of `nas.ops.core`: small-kernel aggregation, GroupNorm, the stage-4 attention and BatchNorm1d.

Multiply-adds are what `torch.utils.flop_counter` counts on the built modules (`nas.ops.core`). SKA counts 0:
its 9 * C * H * W multiply-adds are element-wise (shifted slices, `SmallKernelAggregation`), which torch's
counter does not count; the official `flops.py` counts them as a depthwise 3x3 conv (9 * C * H * W), so our
graph MACs of an LSNet are lower than the paper's FLOPs by that much per LS conv.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from nas.ops.core import Op, Shape, ShapeError

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class SmallKernelAggregation(Op):
    """SKA: inputs x (C, H, W) and dynamic weights (9 * C / groups, H, W); output (C, H, W). Channel c is
    aggregated with the per-pixel 3x3 kernel c mod (C / groups) (module `SmallKernelAggregation`). No parameters;
    multiply-adds 0, as torch's counter sees its element-wise products (module docstring)."""

    arity = 2
    channels: int
    groups: int = 8

    def __post_init__(self) -> None:
        if self.channels % self.groups:
            raise ShapeError(f"SKA channels {self.channels} are not divisible by groups {self.groups}")

    def out_shape(self, shapes: list[Shape]) -> Shape:
        (c, h, w), weights = shapes
        if c != self.channels:
            raise ShapeError(f"SKA expects {self.channels} input channels, got {c}")
        if weights != (9 * c // self.groups, h, w):
            raise ShapeError(f"SKA expects weights of shape {(9 * c // self.groups, h, w)}, got {weights}")
        return shapes[0]

    def source(self) -> str:
        return f"SmallKernelAggregation({self.groups})"

    def call(self, attr: str, inputs: list[str]) -> str:
        return f"self.{attr}({inputs[0]}, {inputs[1]})"

    def needs(self) -> tuple[type, ...]:
        from nas.ops.lsnet_module import SmallKernelAggregation as Module

        return (Module,)

    @property
    def label(self) -> str:
        return "ska3x3"


@dataclass(frozen=True)
class GroupNorm(Op):
    """`nn.GroupNorm(groups, channels)` with affine scale and shift."""

    groups: int
    channels: int
    eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.channels % self.groups:
            raise ShapeError(f"GroupNorm channels {self.channels} are not divisible by groups {self.groups}")

    def out_shape(self, shapes: list[Shape]) -> Shape:
        if shapes[0][0] != self.channels:
            raise ShapeError(f"GroupNorm expects {self.channels} channels, got {shapes[0][0]}")
        return shapes[0]

    def params(self) -> int:
        return 2 * self.channels

    def source(self) -> str:
        return f"nn.GroupNorm({self.groups}, {self.channels}, eps={self.eps})"

    @property
    def label(self) -> str:
        return "gn"


@dataclass(frozen=True)
class LSNetAttention(Op):
    """LSNet's stage-4 self-attention on a (C, height, width) map, without its residual (module `LSNetAttention`).

    qkv 1x1 conv-BN to 2 * heads * key_dim + dh channels (dh = C // heads * heads; the official
    attn_ratio = C / (key_dim * heads) makes dh = C when heads divides C), depthwise 3x3 conv-BN on q, a per-head
    bias table of height * width entries, ReLU, 1x1 conv-BN back to C. The map size is a field because the bias
    table's size depends on it. `fused`: the deploy form (conv-BNs folded into biased convs, `fuse_state`).
    Multiply-adds: the three convs plus q^T k (N^2 * heads * key_dim) and attn-times-v (N^2 * dh), N = H * W.
    """

    channels: int
    heads: int
    key_dim: int
    height: int
    width: int
    fused: bool = False

    @property
    def dh(self) -> int:
        return self.channels // self.heads * self.heads

    @property
    def nh_kd(self) -> int:
        return self.heads * self.key_dim

    def out_shape(self, shapes: list[Shape]) -> Shape:
        if shapes[0] != (self.channels, self.height, self.width):
            raise ShapeError(f"LSNetAttention expects {(self.channels, self.height, self.width)}, got {shapes[0]}")
        return shapes[0]

    def params(self) -> int:
        qkv = self.dh + 2 * self.nh_kd
        norm = 1 if self.fused else 2  # a fused conv's bias, or a BN's scale and shift
        return (self.channels * qkv + norm * qkv + 9 * self.nh_kd + norm * self.nh_kd + self.dh * self.channels
                + norm * self.channels + self.heads * self.height * self.width)

    def macs(self, shapes: list[Shape]) -> int:
        n = self.height * self.width
        return (n * self.channels * (self.dh + 2 * self.nh_kd) + n * 9 * self.nh_kd + n * n * (self.nh_kd + self.dh)
                + n * self.dh * self.channels)

    def source(self) -> str:
        return (f"LSNetAttention({self.channels}, {self.heads}, {self.key_dim}, {self.height}, {self.width}, "
                f"fused={self.fused})")

    def needs(self) -> tuple[type, ...]:
        from nas.ops.lsnet_module import LSNetAttention as Module

        return (Module,)

    @property
    def label(self) -> str:
        return f"lsattn{self.heads}"

    def fused_op(self) -> LSNetAttention:
        """The deploy form of this op (`nas.fusion`)."""
        return replace(self, fused=True)

    def fuse_state(self, params: dict[str, Tensor]) -> dict[str, Tensor]:
        """This op's state (keys relative to the module) folded into the deploy form's."""
        from nas.fusion import fold_conv_bn

        if self.fused:
            return dict(params)
        out = {"attention_biases": params["attention_biases"]}
        for part in ("qkv", "dw", "proj"):
            bn = {k: params[f"{part}.1.{k}"] for k in ("weight", "bias", "running_mean", "running_var")}
            out[f"{part}.0.weight"], out[f"{part}.0.bias"] = fold_conv_bn(params[f"{part}.0.weight"], None, bn,
                                                                          1e-5)  # the module's BNs: torch's eps
        return out
