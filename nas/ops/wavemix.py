"""Ops for WaveMix / WaveMix-Lite (Jeevan & Sethi; official code github.com/pranavphoenix/WaveMix, `wavemix` 0.2.4).

- `HaarDWT`: the parameter-free one-level 2D Haar wavelet transform of a WaveMix block, one graph node whose
  output is [LL; highs] at half the resolution (module `HaarDWT2d` in `nas.ops.wavemix_module`). Its arithmetic
  is additions and scalings only, so it counts zero multiply-adds, as torch's FLOP counter sees it. (The official
  code runs it as strided 2-tap convolutions; a counter would see those, a deviation in MACs only.)
- `ChannelSlice`: channels [start, stop) of a map (a view); multi-level blocks take the LL band this way and
  transform it again.
- `ConvTranspose2d`: the transposed convolution that up-samples each level's MLP output (k4 s2 p1 in WaveMix).
"""
from __future__ import annotations

from dataclasses import dataclass

from nas.ops.core import Op, Shape, ShapeError


@dataclass(frozen=True)
class HaarDWT(Op):
    """One-level Haar DWT of a (C, H, W) map: (4C, H/2, W/2) = [LL (C); LH, HL, HH interleaved per channel (3C)]."""

    channels: int

    def out_shape(self, shapes: list[Shape]) -> Shape:
        c, h, w = shapes[0]
        if c != self.channels:
            raise ShapeError(f"HaarDWT expects {self.channels} channels, got {c}")
        if h % 2 or w % 2:
            raise ShapeError(f"HaarDWT needs an even height and width, got {h}x{w}")
        return (4 * c, h // 2, w // 2)

    def source(self) -> str:
        return "HaarDWT2d()"

    def needs(self) -> tuple[type, ...]:
        from nas.ops.wavemix_module import HaarDWT2d

        return (HaarDWT2d,)

    @property
    def label(self) -> str:
        return "dwt"


@dataclass(frozen=True)
class ChannelSlice(Op):
    """Channels [start, stop) of a (C, ...) tensor, as a view."""

    start: int
    stop: int
    view = True

    def out_shape(self, shapes: list[Shape]) -> Shape:
        c = shapes[0][0]
        if not 0 <= self.start < self.stop <= c:
            raise ShapeError(f"ChannelSlice [{self.start}:{self.stop}] does not fit {c} channels")
        return (self.stop - self.start,) + tuple(shapes[0][1:])

    def call(self, attr: str, inputs: list[str]) -> str:
        return f"{inputs[0]}[:, {self.start}:{self.stop}]"

    @property
    def label(self) -> str:
        return "slice"


@dataclass(frozen=True)
class ConvTranspose2d(Op):
    """`nn.ConvTranspose2d`; multiply-adds as torch's counter: input pixels x in_ch x out_ch / groups x kernel^2."""

    in_ch: int
    out_ch: int
    kernel: int
    stride: int = 1
    padding: int = 0
    output_padding: int = 0
    groups: int = 1
    bias: bool = True
    dilation: int = 1

    def __post_init__(self) -> None:
        if self.in_ch % self.groups or self.out_ch % self.groups:
            raise ShapeError(f"channels {self.in_ch}->{self.out_ch} are not divisible by groups {self.groups}")

    def _size(self, size: int) -> int:
        out = (size - 1) * self.stride - 2 * self.padding + self.dilation * (self.kernel - 1) + self.output_padding + 1
        if out < 1:
            raise ShapeError(f"spatial size {size} is too small for a transposed conv with padding {self.padding}")
        return out

    def out_shape(self, shapes: list[Shape]) -> Shape:
        c, h, w = shapes[0]
        if c != self.in_ch:
            raise ShapeError(f"ConvTranspose2d expects {self.in_ch} input channels, got {c}")
        return (self.out_ch, self._size(h), self._size(w))

    def params(self) -> int:
        return self.in_ch * (self.out_ch // self.groups) * self.kernel ** 2 + (self.out_ch if self.bias else 0)

    def macs(self, shapes: list[Shape]) -> int:
        _, h, w = shapes[0]
        return h * w * self.in_ch * (self.out_ch // self.groups) * self.kernel ** 2

    def source(self) -> str:
        extra = f", output_padding={self.output_padding}" if self.output_padding else ""
        extra += f", dilation={self.dilation}" if self.dilation != 1 else ""
        return (f"nn.ConvTranspose2d({self.in_ch}, {self.out_ch}, {self.kernel}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}, bias={self.bias}{extra})")

    @property
    def label(self) -> str:
        return f"convT{self.kernel}x{self.kernel}" + (f"/s{self.stride}" if self.stride != 1 else "")
