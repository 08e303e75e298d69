"""1-D ops for sequence models: per-sample shapes are (C, L), channels by tokens (see `nas.ops.core`).

Multiply-adds follow `torch.utils.flop_counter` as in `nas.ops.core`: convolutions and linear layers count,
normalisation, spiking neurons and averaging count zero.
"""
from __future__ import annotations

from dataclasses import dataclass

from nas.ops.core import Op, Shape, ShapeError, _conv_out


def _sequence(op: Op, shapes: list[Shape]) -> tuple[int, int]:
    if len(shapes[0]) != 2:
        raise ShapeError(f"{type(op).__name__} takes a (channels, length) sequence, got shape {shapes[0]}")
    c, n = shapes[0]
    return c, n


@dataclass(frozen=True)
class Conv1d(Op):
    in_ch: int
    out_ch: int
    kernel: int
    stride: int = 1
    groups: int = 1
    bias: bool = False
    padding: int | None = None  # None: kernel // 2 ("same" for odd kernels at stride 1)

    def __post_init__(self) -> None:
        if self.in_ch % self.groups or self.out_ch % self.groups:
            raise ShapeError(f"channels {self.in_ch}->{self.out_ch} are not divisible by groups {self.groups}")

    @property
    def pad(self) -> int:
        return self.kernel // 2 if self.padding is None else self.padding

    def out_shape(self, shapes: list[Shape]) -> Shape:
        c, n = _sequence(self, shapes)
        if c != self.in_ch:
            raise ShapeError(f"Conv1d expects {self.in_ch} input channels, got {c}")
        return (self.out_ch, _conv_out(n, self.kernel, self.stride, self.pad))

    def params(self) -> int:
        return self.out_ch * (self.in_ch // self.groups) * self.kernel + (self.out_ch if self.bias else 0)

    def macs(self, shapes: list[Shape]) -> int:
        _, n = self.out_shape(shapes)
        return n * self.out_ch * (self.in_ch // self.groups) * self.kernel

    def source(self) -> str:
        return (f"nn.Conv1d({self.in_ch}, {self.out_ch}, {self.kernel}, stride={self.stride}, padding={self.pad}, "
                f"groups={self.groups}, bias={self.bias})")

    @property
    def label(self) -> str:
        return f"conv1d_k{self.kernel}" + (f"/s{self.stride}" if self.stride != 1 else "")


@dataclass(frozen=True)
class LIF(Op):
    """Multi-step leaky integrate-and-fire neurons with the token axis as time (`MultiStepLIF`); no weights."""

    v_threshold: float = 1.0
    tau: float = 2.0

    def out_shape(self, shapes: list[Shape]) -> Shape:
        _sequence(self, shapes)
        return shapes[0]

    def source(self) -> str:
        return f"MultiStepLIF({self.v_threshold}, {self.tau})"

    def needs(self) -> tuple[type, ...]:
        from nas.ops.lmu_module import MultiStepLIF, SigmoidSpike

        return (SigmoidSpike, MultiStepLIF)

    @property
    def label(self) -> str:
        return "lif"


@dataclass(frozen=True)
class TokenLinearMean(Op):
    """LMUFormer's head: a Linear applied to every token of a (C, L) sequence, then the mean over tokens -> (F,)."""

    in_features: int
    out_features: int
    bias: bool = True

    def out_shape(self, shapes: list[Shape]) -> Shape:
        c, _ = _sequence(self, shapes)
        if c != self.in_features:
            raise ShapeError(f"TokenLinearMean expects {self.in_features} channels, got {c}")
        return (self.out_features,)

    def params(self) -> int:
        return self.in_features * self.out_features + (self.out_features if self.bias else 0)

    def macs(self, shapes: list[Shape]) -> int:
        return shapes[0][1] * self.in_features * self.out_features

    def source(self) -> str:
        return f"nn.Linear({self.in_features}, {self.out_features}, bias={self.bias})"

    def call(self, attr: str, inputs: list[str]) -> str:
        return f"self.{attr}({inputs[0]}.transpose(1, 2)).mean(1)"

    @property
    def label(self) -> str:
        return "token_fc_mean"


@dataclass(frozen=True)
class TokenMean(Op):
    """The mean over tokens: (C, L) -> (C,)."""

    def out_shape(self, shapes: list[Shape]) -> Shape:
        c, _ = _sequence(self, shapes)
        return (c,)

    def call(self, attr: str, inputs: list[str]) -> str:
        return f"{inputs[0]}.mean(2)"

    @property
    def label(self) -> str:
        return "token_mean"


@dataclass(frozen=True)
class LastToken(Op):
    """The last token: (C, L) -> (C,) (an RNN's final hidden state h_n)."""

    view = True

    def out_shape(self, shapes: list[Shape]) -> Shape:
        c, _ = _sequence(self, shapes)
        return (c,)

    def call(self, attr: str, inputs: list[str]) -> str:
        return f"{inputs[0]}[:, :, -1]"

    @property
    def label(self) -> str:
        return "last_token"
