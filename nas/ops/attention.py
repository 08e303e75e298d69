"""Attention ops for hybrid CNN-transformer spaces (HyTra).

`SelfAttention2d` is one graph node holding the qkv projection and both attention matrix products, so
its multiply-adds are what torch's FLOP counter measures on the module: the 1x1 qkv conv
(N * C_in * 3 * inner) plus q^T k and attn-times-v (N^2 * inner each), with N = H * W positions and
inner = heads * dim_head. Softmax and scaling count zero, as elsewhere.
"""
from __future__ import annotations

from dataclasses import dataclass

from nas.ops.core import Op, Shape, ShapeError


@dataclass(frozen=True)
class SelfAttention2d(Op):
    """Multi-head all-to-all self-attention on a (C, H, W) map; output (heads * dim_head, H, W)."""

    channels: int
    heads: int
    dim_head: int
    untransposed: bool = False  # the BossNAS search-phase quirk (v @ attn instead of v @ attn^T)

    @property
    def inner(self) -> int:
        return self.heads * self.dim_head

    def out_shape(self, shapes: list[Shape]) -> Shape:
        c, h, w = shapes[0]
        if c != self.channels:
            raise ShapeError(f"SelfAttention2d expects {self.channels} channels, got {c}")
        return (self.inner, h, w)

    def params(self) -> int:
        return self.channels * 3 * self.inner

    def macs(self, shapes: list[Shape]) -> int:
        _, h, w = shapes[0]
        n = h * w
        return n * self.channels * 3 * self.inner + 2 * n * n * self.inner

    def source(self) -> str:
        return (f"MultiHeadSelfAttention2d({self.channels}, {self.heads}, {self.dim_head}, "
                f"untransposed={self.untransposed})")

    def needs(self) -> tuple[type, ...]:
        from nas.ops.attention_module import MultiHeadSelfAttention2d

        return (MultiHeadSelfAttention2d,)

    @property
    def label(self) -> str:
        return f"mhsa{self.heads}"
