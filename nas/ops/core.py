"""The primitive layers an architecture graph is made of.

Each op is a frozen dataclass that knows, without importing torch: its output shape, its parameter
count, its multiply-adds, and the PyTorch source that constructs it (`source`) and applies it
(`call`). Building a module and exporting standalone source both render those same strings, so the
built model and the exported one cannot diverge.

Shapes exclude the batch dimension: (C, H, W) for images, (C, L) for sequences, (F,) for vectors.
Multiply-adds count what `torch.utils.flop_counter` counts (convolutions and matrix products, FLOPs =
2 x MACs); normalisation, activations, pooling and element-wise ops count zero, as in the papers.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod

Shape = tuple[int, ...]


class ShapeError(ValueError):
    """An op received inputs whose shapes it cannot take."""


def _conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    out = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    if out < 1:
        raise ShapeError(f"spatial size {size} is too small for kernel {kernel}, stride {stride}")
    return out


@dataclass(frozen=True)
class Op:
    """Base class: a layer with one input unless `arity` says otherwise."""

    arity = 1  # number of inputs; 0 means any number >= 2
    view = False  # the output may share memory with the input (an alias or a view of it)

    def out_shape(self, shapes: list[Shape]) -> Shape:
        return shapes[0]

    def params(self) -> int:
        return 0

    def macs(self, shapes: list[Shape]) -> int:
        return 0

    def source(self) -> str | None:
        """Constructor expression (torch as `torch`, `nn`, `F`), or None for a functional op."""
        return None

    def call(self, attr: str, inputs: list[str]) -> str:
        """Forward expression applying this op (held as `self.<attr>`) to the named inputs."""
        return f"self.{attr}({inputs[0]})"

    @property
    def label(self) -> str:
        return type(self).__name__

    def needs(self) -> tuple[type, ...]:
        """Module classes (defined with torch only) that `source` refers to, for standalone export."""
        return ()


@dataclass(frozen=True)
class Conv2d(Op):
    in_ch: int
    out_ch: int
    kernel: int
    stride: int = 1
    groups: int = 1
    bias: bool = False
    padding: int | None = None  # None: "same"-style kernel // 2 * dilation
    dilation: int = 1

    def __post_init__(self) -> None:
        if self.in_ch % self.groups or self.out_ch % self.groups:
            raise ShapeError(f"channels {self.in_ch}->{self.out_ch} are not divisible by groups {self.groups}")

    @property
    def pad(self) -> int:
        return self.kernel // 2 * self.dilation if self.padding is None else self.padding

    def out_shape(self, shapes: list[Shape]) -> Shape:
        c, h, w = shapes[0]
        if c != self.in_ch:
            raise ShapeError(f"Conv2d expects {self.in_ch} input channels, got {c}")
        return (self.out_ch, _conv_out(h, self.kernel, self.stride, self.pad, self.dilation),
                _conv_out(w, self.kernel, self.stride, self.pad, self.dilation))

    def params(self) -> int:
        return self.out_ch * (self.in_ch // self.groups) * self.kernel ** 2 + (self.out_ch if self.bias else 0)

    def macs(self, shapes: list[Shape]) -> int:
        _, ho, wo = self.out_shape(shapes)
        return ho * wo * self.out_ch * (self.in_ch // self.groups) * self.kernel ** 2

    def source(self) -> str:
        extra = f", dilation={self.dilation}" if self.dilation != 1 else ""
        return (f"nn.Conv2d({self.in_ch}, {self.out_ch}, {self.kernel}, stride={self.stride}, padding={self.pad}, "
                f"groups={self.groups}, bias={self.bias}{extra})")

    @property
    def label(self) -> str:
        dw = "dw" if self.groups == self.in_ch == self.out_ch and self.groups > 1 else ""
        return f"{dw}conv{self.kernel}x{self.kernel}" + (f"/s{self.stride}" if self.stride != 1 else "")


@dataclass(frozen=True)
class BatchNorm2d(Op):
    channels: int
    eps: float = 1e-5
    momentum: float = 0.1
    zero_init: bool = False  # gamma initialised to 0 (residual branches, as in BoTNet / BossNAS)

    def out_shape(self, shapes: list[Shape]) -> Shape:
        if shapes[0][0] != self.channels:
            raise ShapeError(f"BatchNorm2d expects {self.channels} channels, got {shapes[0][0]}")
        return shapes[0]

    def params(self) -> int:
        return 2 * self.channels

    def source(self) -> str:
        return f"nn.BatchNorm2d({self.channels}, eps={self.eps}, momentum={self.momentum})"

    @property
    def label(self) -> str:
        return "bn"


@dataclass(frozen=True)
class BatchNorm1d(Op):
    """`nn.BatchNorm1d` on (C,) feature vectors (LSNet's head) or (C, L) sequences (LMUFormer), per channel."""

    channels: int
    eps: float = 1e-5
    momentum: float = 0.1

    def out_shape(self, shapes: list[Shape]) -> Shape:
        if len(shapes[0]) not in (1, 2) or shapes[0][0] != self.channels:
            raise ShapeError(f"BatchNorm1d expects ({self.channels},) or ({self.channels}, L), got {shapes[0]}")
        return shapes[0]

    def params(self) -> int:
        return 2 * self.channels

    def source(self) -> str:
        return f"nn.BatchNorm1d({self.channels}, eps={self.eps}, momentum={self.momentum})"

    @property
    def label(self) -> str:
        return "bn1d"


ACTIVATIONS = {
    "relu": "nn.ReLU",
    "relu6": "nn.ReLU6",
    "hswish": "nn.Hardswish",
    "hsigmoid": "nn.Hardsigmoid",
    "silu": "nn.SiLU",
    "sigmoid": "nn.Sigmoid",
    "gelu": "nn.GELU",
    "tanh": "nn.Tanh",
}
INPLACE = {"relu", "relu6"}


@dataclass(frozen=True)
class Activation(Op):
    """An activation; ReLU/ReLU6 run in place unless `inplace` is off. The renderer (`nas.build`) turns
    in-place off where the input tensor has other readers, so no space has to think about it."""

    kind: str
    inplace: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ACTIVATIONS:
            raise ValueError(f"activation {self.kind!r} is not one of {', '.join(ACTIVATIONS)}")

    def source(self) -> str:
        return f"{ACTIVATIONS[self.kind]}({'inplace=True' if self.inplace and self.kind in INPLACE else ''})"

    @property
    def label(self) -> str:
        return self.kind


@dataclass(frozen=True)
class MaxPool2d(Op):
    kernel: int
    stride: int
    padding: int = 0

    def out_shape(self, shapes: list[Shape]) -> Shape:
        c, h, w = shapes[0]
        return (c, _conv_out(h, self.kernel, self.stride, self.padding),
                _conv_out(w, self.kernel, self.stride, self.padding))

    def source(self) -> str:
        return f"nn.MaxPool2d({self.kernel}, stride={self.stride}, padding={self.padding})"


@dataclass(frozen=True)
class AvgPool2d(Op):
    kernel: int
    stride: int
    padding: int = 0
    count_include_pad: bool = True

    def out_shape(self, shapes: list[Shape]) -> Shape:
        c, h, w = shapes[0]
        return (c, _conv_out(h, self.kernel, self.stride, self.padding),
                _conv_out(w, self.kernel, self.stride, self.padding))

    def source(self) -> str:
        return (f"nn.AvgPool2d({self.kernel}, stride={self.stride}, padding={self.padding}, "
                f"count_include_pad={self.count_include_pad})")


@dataclass(frozen=True)
class GlobalAvgPool(Op):
    """Adaptive average pooling to 1x1, keeping the (C, 1, 1) shape."""

    def out_shape(self, shapes: list[Shape]) -> Shape:
        return (shapes[0][0], 1, 1)

    def source(self) -> str:
        return "nn.AdaptiveAvgPool2d(1)"

    @property
    def label(self) -> str:
        return "gap"


@dataclass(frozen=True)
class Flatten(Op):
    view = True
    def out_shape(self, shapes: list[Shape]) -> Shape:
        return (prod(shapes[0]),)

    def call(self, attr: str, inputs: list[str]) -> str:
        return f"torch.flatten({inputs[0]}, 1)"


@dataclass(frozen=True)
class Linear(Op):
    in_features: int
    out_features: int
    bias: bool = True

    def out_shape(self, shapes: list[Shape]) -> Shape:
        if shapes[0][-1] != self.in_features:
            raise ShapeError(f"Linear expects {self.in_features} features, got {shapes[0][-1]}")
        return shapes[0][:-1] + (self.out_features,)

    def params(self) -> int:
        return self.in_features * self.out_features + (self.out_features if self.bias else 0)

    def macs(self, shapes: list[Shape]) -> int:
        return prod(shapes[0][:-1]) * self.in_features * self.out_features

    def source(self) -> str:
        return f"nn.Linear({self.in_features}, {self.out_features}, bias={self.bias})"

    @property
    def label(self) -> str:
        return "fc"


@dataclass(frozen=True)
class Dropout(Op):
    p: float

    def source(self) -> str:
        return f"nn.Dropout(p={self.p})"


@dataclass(frozen=True)
class Identity(Op):
    view = True
    def call(self, attr: str, inputs: list[str]) -> str:
        return inputs[0]


@dataclass(frozen=True)
class Zero(Op):
    """Outputs zeros of the input's shape (NAS-Bench-201's `none`), optionally strided."""

    stride: int = 1

    def out_shape(self, shapes: list[Shape]) -> Shape:
        c, h, w = shapes[0]
        return (c, (h - 1) // self.stride + 1, (w - 1) // self.stride + 1)

    def call(self, attr: str, inputs: list[str]) -> str:
        x = inputs[0]
        return f"{x}[:, :, ::{self.stride}, ::{self.stride}].mul(0.0)" if self.stride > 1 else f"{x}.mul(0.0)"


def _same_shapes(op: Op, shapes: list[Shape]) -> Shape:
    if any(s != shapes[0] for s in shapes):
        raise ShapeError(f"{type(op).__name__} needs equal input shapes, got {shapes}")
    return shapes[0]


@dataclass(frozen=True)
class Add(Op):
    arity = 0

    def out_shape(self, shapes: list[Shape]) -> Shape:
        return _same_shapes(self, shapes)

    def call(self, attr: str, inputs: list[str]) -> str:
        return " + ".join(inputs)

    @property
    def label(self) -> str:
        return "add"


@dataclass(frozen=True)
class Mul(Op):
    """x * gate, the gate broadcast over the spatial dimensions (squeeze-and-excitation)."""

    arity = 2

    def out_shape(self, shapes: list[Shape]) -> Shape:
        x, gate = shapes
        if gate[0] != x[0]:
            raise ShapeError(f"Mul gate has {gate[0]} channels, input has {x[0]}")
        return x

    def call(self, attr: str, inputs: list[str]) -> str:
        return f"{inputs[0]} * {inputs[1]}"

    @property
    def label(self) -> str:
        return "mul"


@dataclass(frozen=True)
class Concat(Op):
    arity = 0

    def out_shape(self, shapes: list[Shape]) -> Shape:
        rest = {s[1:] for s in shapes}
        if len(rest) != 1:
            raise ShapeError(f"Concat needs equal non-channel dimensions, got {shapes}")
        return (sum(s[0] for s in shapes),) + shapes[0][1:]

    def call(self, attr: str, inputs: list[str]) -> str:
        return f"torch.cat([{', '.join(inputs)}], 1)"
