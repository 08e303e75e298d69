"""SpaceEvo's hyperspace and the search spaces in it (Wang et al., "SpaceEvo: Hardware-Friendly Search Space
Design for Efficient INT8 Inference", ICCV 2023).

A *superspace* is a macro architecture of elastic stages (first conv, stage 0, six searchable stages, a fixed
head) and a list of CNN block types. A *point* of it (a search space of its own) picks, for each searchable
stage, one block type and a *width window*: a contiguous slice of that stage's channel list. Inside a point an
architecture picks the input resolution, each stage's depth and each layer's kernel, width (from the window)
and expand ratio. Points are named as the official code names them: "onnxw-151122-023231" is superspace
`onnxw`, block types 1,5,1,1,2,2 and windows 0,2,3,2,3,1 of stages 1-6.

Two superspaces, as released: `onnxw` (the Intel VNNI CPU set: MBv1-dual, MBv2 and MBv3 with forced residual,
ResNet bottleneck with and without SE, FusedMBConv) and `mobilew` (the Pixel 4 set: MBv1-dual, MBv2, MBv3 with
swish, ResNet, FusedMBConv with SE, and the "K3" MBv3/MBv2 whose 5x5 / 7x7 depthwise convolution is 2 / 3
stacked 3x3 ones). Every block and the head rebuild the official static blocks' layers, widths rounded by
the official `make_divisible` rules (the released SEQnet models and random subnets of every block type count
the official code's parameters and multiply-adds, `tests/test_spaceevo.py`). Presets: the superspaces
themselves (`onnxw`, the default, and `mobilew`: an architecture also chooses its point), the released search
results (`vnni`, `vnni-large`, `pixel4`, `pixel4-medium`, `pixel4-tiny`, the ten SEQnet models as named
architectures), and any other point by its encoding. Any preset may end in `+r` and the input resolutions to
use instead of the published 160-224 (`spaceevo@vnni+r64`, `spaceevo@vnni+r48,64`): the architectures are the
same, only their input is smaller (for small images and a CPU; named architectures take the largest of them).
A point's preset may also end in `+align` (`spaceevo@vnni+align+r32`): every layer of a stage takes the stage's
one kernel, width and expand ratio, as the official `--align_sample` option samples the supernet for training
and search ("all blocks in a stage share the same kwe values"), so that no projection shortcut is needed
inside a stage; the SEQnet models are not aligned and are not named architectures of such a preset.
Deviation: the official code aligns only what it samples (the sandwich's random and smallest members, the
subnet search's first population); its mutation and crossover then change layers one at a time, so its search
leaves the aligned set, where here every member of an aligned preset, searched ones included, stays aligned.

As the official supernet training does (`zero_last_gamma`), the BatchNorm that ends a residual block's branch
(forced-residual MBv2/MBv3 and FusedMBConv, ResNet) starts with scale 0: each block starts as its shortcut
(identity or 1x1 projection). Stand-alone networks, which the official code never trains from scratch, start
the same way (our choice); the quality proxy's block-KD students start with every scale at 1, as the official
ones do (`strategies/spaceevo_proxy.py`). Deviation: the official code also zeroes MBv1-dual's last BatchNorm,
which a ReLU follows: with scale and shift 0 the branch outputs exactly 0 and gets no gradient, so it stays
off for the whole training; here MBv1-dual starts with scale 1.

Deviations: LSQ+ quantizers are not part of the graph (INT8 comes from `nas.quantize`, QAT from `nas.lsq`).
"""
from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from math import prod

from nas.graph import ArchGraph, GraphBuilder
from nas.layers import conv_bn_act, squeeze_excite
from nas.ops import Activation, Add, BatchNorm2d, Conv2d, Flatten, GlobalAvgPool, Linear
from nas.registry import register_space
from nas.space import Architecture, ArchitectureError, Choice, NASError, SearchSpace, Value, one_of
from search_spaces.mbconv import make_divisible

#: a block builder: (graph, prefix, input, out channels, kernel, expand, stride) -> output node
Builder = Callable[[GraphBuilder, str, str, int, int, float, int], str]


# -- blocks -------------------------------------------------------------------------------------------------
def _shortcut(g: GraphBuilder, prefix: str, x: str, out_ch: int, stride: int) -> str:
    """Identity when shape is kept, else a 1x1 projection (conv, BN) with the block's stride."""
    if stride == 1 and g.shape(x)[0] == out_ch:
        return x
    return conv_bn_act(g, f"{prefix}_down", x, out_ch, 1, stride, act=None)


def _depthwise(g: GraphBuilder, prefix: str, x: str, kernel: int, stride: int, act: str, stacked: bool) -> str:
    """A kxk depthwise conv -> BN -> act; `stacked`: k // 2 stacked 3x3 depthwise convs before the BN (K3)."""
    ch = g.shape(x)[0]
    if not stacked:
        return conv_bn_act(g, f"{prefix}_dw", x, ch, kernel, stride, act, groups=ch)
    for i in range(kernel // 2):
        x = g.add(f"{prefix}_dw{i}", Conv2d(ch, ch, 3, stride if i == 0 else 1, groups=ch), x)
    x = g.add(f"{prefix}_dw_bn", BatchNorm2d(ch), x)
    return g.add(f"{prefix}_dw_act", Activation(act), x)


def inverted_residual(act: str, se: bool, forced: bool = True, stacked: bool = False) -> Builder:
    """MBv2/MBv3 block: [1x1 expand] -> depthwise -> [SE] -> 1x1 project, mid = divisible(in x e); with
    `forced` residual a 1x1 projection shortcut where the shape changes (SpaceEvo's "Res" blocks)."""
    def build(g: GraphBuilder, p: str, x: str, out_ch: int, kernel: int, expand: float, stride: int) -> str:
        in_ch = g.shape(x)[0]
        mid = make_divisible(in_ch * expand)
        short = _shortcut(g, p, x, out_ch, stride) if forced or (stride == 1 and in_ch == out_ch) else None
        h = conv_bn_act(g, f"{p}_expand", x, mid, 1, act=act) if mid != in_ch else x
        h = _depthwise(g, p, h, kernel, stride, act, stacked)
        if se:
            h = squeeze_excite(g, f"{p}_se", h, make_divisible(mid // 4), "relu", "hsigmoid")
        h = conv_bn_act(g, f"{p}_project", h, out_ch, 1, act=None, zero_gamma=forced)
        return h if short is None else g.add(f"{p}_add", Add(), short, h)
    return build


def mbv1_dual(g: GraphBuilder, p: str, x: str, out_ch: int, kernel: int, expand: float, stride: int) -> str:
    """Two depthwise-separable convs (dw -> BN -> ReLU -> 1x1 -> BN -> ReLU, twice) and a residual."""
    short = _shortcut(g, p, x, out_ch, stride)
    h = conv_bn_act(g, f"{p}_dw1", x, g.shape(x)[0], kernel, stride, "relu", groups=g.shape(x)[0])
    h = conv_bn_act(g, f"{p}_pw1", h, out_ch, 1, act="relu")
    h = conv_bn_act(g, f"{p}_dw2", h, out_ch, kernel, 1, "relu", groups=out_ch)
    h = conv_bn_act(g, f"{p}_pw2", h, out_ch, 1, act="relu")
    return g.add(f"{p}_add", Add(), short, h)


def resnet_bottleneck(se: bool, act: str = "relu") -> Builder:
    """ResNet bottleneck: 1x1 -> kxk (stride) -> [SE] -> 1x1, hidden = divisible(out x e), residual, then act;
    the SE squeezes to divisible(in / 4) (as RegNet)."""
    def build(g: GraphBuilder, p: str, x: str, out_ch: int, kernel: int, expand: float, stride: int) -> str:
        in_ch, hidden = g.shape(x)[0], make_divisible(out_ch * expand)
        short = _shortcut(g, p, x, out_ch, stride)
        h = conv_bn_act(g, f"{p}_conv1", x, hidden, 1, act=act)
        h = conv_bn_act(g, f"{p}_conv2", h, hidden, kernel, stride, act)
        if se:
            h = squeeze_excite(g, f"{p}_se", h, make_divisible(in_ch // 4), "relu", "hsigmoid")
        h = conv_bn_act(g, f"{p}_conv3", h, out_ch, 1, act=None, zero_gamma=True)
        return g.add(f"{p}_out", Activation(act), g.add(f"{p}_add", Add(), short, h))
    return build


def fused_mbconv(se: bool, act: str = "silu") -> Builder:
    """FusedMBConv (EfficientNetV2): kxk conv (stride) to divisible(in x e) -> [SE] -> 1x1, forced residual."""
    def build(g: GraphBuilder, p: str, x: str, out_ch: int, kernel: int, expand: float, stride: int) -> str:
        in_ch = g.shape(x)[0]
        short = _shortcut(g, p, x, out_ch, stride)
        h = conv_bn_act(g, f"{p}_fused", x, make_divisible(in_ch * expand), kernel, stride, act)
        if se:
            h = squeeze_excite(g, f"{p}_se", h, make_divisible(in_ch // 4), "relu", "hsigmoid")
        h = conv_bn_act(g, f"{p}_project", h, out_ch, 1, act=None, zero_gamma=True)
        return g.add(f"{p}_add", Add(), short, h)
    return build


@dataclass(frozen=True)
class BlockType:
    """A block type of a superspace: its builder and its kernel and expand-ratio lists (() when it has none)."""

    name: str
    build: Builder
    kernels: tuple[int, ...]
    expands: tuple[float, ...] = ()


# -- superspaces ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StageSpec:
    """An elastic stage: channel list, depths, stride of its first layer, and its width-window size (0: the
    whole list, for the stages whose block type is fixed)."""

    name: str
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    stride: int
    window: int = 0

    @property
    def windows(self) -> int:
        """How many width windows the stage offers."""
        return len(self.widths) - self.window + 1 if self.window else 1

    def window_widths(self, index: int) -> tuple[int, ...]:
        return self.widths[index:index + self.window] if self.window else self.widths


def _channels(first: int, last: int, step: int = 8) -> tuple[int, ...]:
    return tuple(range(first, last + 1, step))


@dataclass(frozen=True)
class Superspace:
    """A macro architecture (first conv, stage 0, the searchable stages) with its block types and head."""

    name: str
    doc: str
    stages: tuple[StageSpec, ...]
    blocks: tuple[BlockType, ...]
    stage0: BlockType
    head_act: str
    final_width: int = 1280
    mix_width: int = 1920
    resolutions: tuple[int, ...] = (160, 176, 192, 208, 224)

    @property
    def searchable(self) -> tuple[StageSpec, ...]:
        return self.stages[2:]

    def size(self) -> int:
        """The number of points (search spaces): block types ^ stages x the product of window counts."""
        return len(self.blocks) ** len(self.searchable) * prod(s.windows for s in self.searchable)


SUPERSPACES: dict[str, Superspace] = {
    "onnxw": Superspace(
        name="onnxw", doc="SpaceEvo's Intel VNNI CPU hyperspace (ONNX Runtime INT8)",
        stages=(StageSpec("first_conv", (16, 32), (1,), 2), StageSpec("stage0", (16, 32), (1, 2), 1),
                StageSpec("stage1", _channels(32, 64, 16), (2, 3, 4), 2, 2),
                StageSpec("stage2", _channels(32, 96, 16), (2, 3, 4), 2, 2),
                StageSpec("stage3", _channels(64, 144, 16), (2, 3, 4, 5, 6), 2, 3),
                StageSpec("stage4", _channels(112, 192, 16), (2, 3, 4, 5, 6), 1, 3),
                StageSpec("stage5", _channels(192, 304, 16), (2, 3, 4, 5, 6), 2, 5),
                StageSpec("stage6", _channels(304, 448, 16), (1, 2), 1, 7)),
        blocks=(BlockType("mbv1_dual", mbv1_dual, (3, 5)),
                BlockType("mbv2_res", inverted_residual("relu6", se=False), (3, 5), (4, 6, 8)),
                BlockType("mbv3_res", inverted_residual("hswish", se=True), (3, 5), (4, 6, 8)),
                BlockType("resnet", resnet_bottleneck(se=False), (3, 5, 7), (0.5, 1.0, 1.5)),
                BlockType("resnet_se", resnet_bottleneck(se=True), (3, 5, 7), (0.5, 1.0, 1.5)),
                BlockType("fused_mbconv", fused_mbconv(se=False), (3, 5, 7), (1, 2, 3, 4))),
        stage0=BlockType("resnet", resnet_bottleneck(se=False), (3,), (0.5,)), head_act="hswish"),
    "mobilew": Superspace(
        name="mobilew", doc="SpaceEvo's Pixel 4 CPU hyperspace (TFLite INT8)",
        stages=(StageSpec("first_conv", _channels(16, 32), (1,), 2), StageSpec("stage0", _channels(16, 32), (1, 2), 1),
                StageSpec("stage1", _channels(24, 40), (2, 3, 4), 2, 2),
                StageSpec("stage2", _channels(24, 72), (2, 3, 4), 2, 2),
                StageSpec("stage3", _channels(56, 112), (2, 3, 4, 5, 6), 2, 3),
                StageSpec("stage4", _channels(112, 176), (2, 3, 4, 5, 6, 7, 8), 1, 3),
                StageSpec("stage5", (192, 200, 208, 216, 224, 240, 256, 272, 288), (2, 3, 4, 5, 6, 7, 8), 2, 5),
                StageSpec("stage6", _channels(216, 360, 16), (1, 2), 1, 7)),
        blocks=(BlockType("mbv1_dual", mbv1_dual, (3, 5, 7)),
                BlockType("mbv2_res", inverted_residual("relu6", se=False), (3, 5, 7), (3, 6, 8)),
                BlockType("mbv3_res", inverted_residual("silu", se=True), (3, 5, 7), (3, 6, 8)),
                BlockType("resnet", resnet_bottleneck(se=False), (3, 5), (0.5, 1.0, 1.5)),
                BlockType("fused_mbconv_se", fused_mbconv(se=True), (3, 5, 7), (1, 2, 3, 4)),
                BlockType("mbv3_k3_res", inverted_residual("silu", se=True, stacked=True), (3, 5, 7), (3, 6, 8)),
                BlockType("mbv2_k3_res", inverted_residual("relu6", se=False, stacked=True), (3, 5, 7), (3, 6, 8))),
        stage0=BlockType("mbv2", inverted_residual("relu", se=False, forced=False), (3,), (1.0,)), head_act="silu"),
}


# -- points of a superspace ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpacePoint:
    """A search space in a superspace: a block type and a width window for each searchable stage."""

    superspace: str
    blocks: tuple[int, ...]
    windows: tuple[int, ...]

    def __post_init__(self) -> None:
        sup = SUPERSPACES.get(self.superspace)
        if sup is None:
            raise NASError(f"SpaceEvo space {self.encoding!r}: unknown superspace {self.superspace!r}; accepted: "
                           f"{one_of(list(SUPERSPACES))}")
        n = len(sup.searchable)
        if len(self.blocks) != n or len(self.windows) != n:
            raise NASError(f"SpaceEvo space {self.encoding!r}: {self.superspace} takes {n} block and {n} window "
                           f"digits, got {len(self.blocks)} and {len(self.windows)}")
        for i, (b, w, stage) in enumerate(zip(self.blocks, self.windows, sup.searchable), start=1):
            if not 0 <= b < len(sup.blocks):
                raise NASError(f"SpaceEvo space {self.encoding!r}: block type {b} of stage {i} is not in "
                               f"0..{len(sup.blocks) - 1}")
            if not 0 <= w < stage.windows:
                raise NASError(f"SpaceEvo space {self.encoding!r}: width window {w} of stage {i} is not in "
                               f"0..{stage.windows - 1}")

    @property
    def encoding(self) -> str:
        return f"{self.superspace}-{''.join(map(str, self.blocks))}-{''.join(map(str, self.windows))}"

    @classmethod
    def parse(cls, text: str) -> SpacePoint:
        """A point from its encoding "superspace-blocks-windows" (one digit per searchable stage)."""
        parts = text.split("-")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            raise NASError(f"SpaceEvo space {text!r} is not a preset ({one_of(list(SUPERSPACES) + list(NAMED_SPACES))})"
                           " nor an encoding 'superspace-blocks-windows' such as 'onnxw-151122-023231'")
        return cls(parts[0], tuple(map(int, parts[1])), tuple(map(int, parts[2])))

    def describe(self) -> str:
        sup = SUPERSPACES[self.superspace]
        stages = ", ".join(f"{sup.blocks[b].name} {list(s.window_widths(w))}"
                           for b, w, s in zip(self.blocks, self.windows, sup.searchable))
        return f"{self.encoding}: {stages}"


#: the released search results (the official data/search_result.yaml)
NAMED_SPACES = {"vnni": "onnxw-151122-023231", "vnni-large": "onnxw-121122-133333",
                "pixel4": "mobilew-122222-155400", "pixel4-medium": "mobilew-112220-154410",
                "pixel4-tiny": "mobilew-332160-134200"}
#: the released SEQnet models: preset and the official subnet encoding (depths per stage; kernel, width and
#: expand per layer; resolution), the fields joined by "_"
SEQNETS = {name: (preset, "_".join(fields)) for name, (preset, fields) in {
    "SEQnet@pixel4-A0": ("pixel4", (
        "d1#1#2#2#2#2#2#1",
        "k3#3#3#3#3#3#3#3#3#3#3#3#3",
        "w16#16#32#32#64#64#96#96#144#144#192#192#216",
        "e0#1.0#3.0#3.0#3.0#3.0#3.0#3.0#3.0#3.0#3.0#3.0#3.0",
        "r160",
    )),
    "SEQnet@pixel4-A1": ("pixel4", (
        "d1#1#2#2#2#2#4#1",
        "k3#3#3#3#3#3#7#3#3#3#3#3#5#3#3",
        "w16#16#32#32#64#64#96#96#144#144#224#192#208#192#232",
        "e0#1.0#3.0#3.0#3.0#3.0#3.0#3.0#3.0#3.0#6.0#6.0#6.0#3.0#3.0",
        "r208",
    )),
    "SEQnet@pixel4-A2": ("pixel4", (
        "d1#1#2#2#2#3#4#1",
        "k3#3#3#3#3#3#3#3#5#3#3#7#5#7#5#5",
        "w16#16#40#32#64#72#96#96#152#160#152#200#224#200#200#248",
        "e0#1.0#3.0#3.0#3.0#3.0#3.0#6.0#3.0#6.0#3.0#6.0#3.0#3.0#6.0#3.0",
        "r224",
    )),
    "SEQnet@pixel4-A3": ("pixel4", (
        "d1#1#2#3#3#4#4#1",
        "k3#3#3#3#3#3#5#7#3#3#3#3#3#5#3#3#3#5#3",
        "w16#16#32#32#64#72#64#112#96#104#152#144#152#152#200#192#208#192#280",
        "e0#1.0#8.0#3.0#3.0#6.0#3.0#8.0#3.0#6.0#6.0#6.0#3.0#3.0#6.0#8.0#6.0#6.0#6.0",
        "r224",
    )),
    "SEQnet@pixel4-A4": ("pixel4", (
        "d1#2#2#3#4#4#5#1",
        "k3#3#3#3#3#3#3#5#3#5#5#3#3#3#3#5#7#5#3#5#3#3",
        "w24#16#24#32#32#72#64#64#112#96#104#104#152#144#144#152#224#216#208#224#208#296",
        "e0#1.0#1.0#6.0#8.0#6.0#3.0#3.0#6.0#6.0#3.0#3.0#8.0#8.0#6.0#3.0#8.0#6.0#6.0#3.0#3.0#6.0",
        "r224",
    )),
    "SEQnet@vnni-A0": ("vnni", (
        "d1#1#2#2#2#2#2#1",
        "k3#3#3#3#3#3#3#3#3#3#3#3#3",
        "w16#16#32#32#64#64#112#112#144#144#240#240#320",
        "e0#0.5#4.0#4.0#1.0#1.0#4.0#4.0#4.0#4.0#4.0#4.0#4.0",
        "r160",
    )),
    "SEQnet@vnni-A1": ("vnni", (
        "d1#1#2#2#3#2#3#1",
        "k3#3#3#3#3#3#3#5#3#3#3#3#3#3#5",
        "w16#16#32#32#64#80#128#112#112#144#176#304#304#256#368",
        "e0#0.5#4.0#4.0#2.0#1.0#4.0#6.0#4.0#4.0#4.0#4.0#6.0#4.0#4.0",
        "r192",
    )),
    "SEQnet@vnni-A2": ("vnni", (
        "d1#1#2#2#4#4#4#1",
        "k3#3#3#3#3#3#3#3#5#5#3#5#5#3#3#3#3#3#5",
        "w16#16#32#32#64#64#112#112#112#128#144#144#160#160#288#272#288#256#320",
        "e0#0.5#4.0#6.0#3.0#2.0#4.0#4.0#6.0#8.0#8.0#4.0#4.0#4.0#4.0#6.0#6.0#4.0#4.0",
        "r208",
    )),
    "SEQnet@vnni-A3": ("vnni", (
        "d1#1#2#2#3#4#4#1",
        "k3#3#3#3#3#3#5#5#5#3#3#5#3#3#5#3#3#3",
        "w16#32#32#48#80#80#144#128#112#144#176#144#144#272#288#272#240#320",
        "e0#0.5#4.0#8.0#4.0#2.0#6.0#6.0#6.0#6.0#8.0#4.0#4.0#8.0#6.0#4.0#6.0#6.0",
        "r224",
    )),
    "SEQnet@vnni-A4": ("vnni", (
        "d1#1#3#3#4#5#4#2",
        "k3#3#3#5#3#3#3#3#5#5#5#5#5#3#3#3#5#3#5#5#3#3#3",
        "w16#32#32#48#32#64#80#80#128#128#144#128#160#144#144#144#176#256#272#272#272#336#320",
        "e0#0.5#4.0#8.0#6.0#4.0#2.0#2.0#6.0#8.0#6.0#6.0#8.0#8.0#6.0#4.0#6.0#8.0#8.0#6.0#4.0#8.0#6.0",
        "r224",
    )),
}.items()}


#: a layer of a stage: (kernel, width, expand ratio; 0.0 for blocks without one)
Layer = tuple[int, int, float]


def _pick(widths: tuple[int, ...], layer: int, mode: str) -> int:
    """The cover's width of consecutive layer `layer`: the window's largest ("largest"), or alternately its
    largest and second largest ("alternate" starts with the second at odd layers, "alternate-shifted" at even)."""
    second = mode != "largest" and (layer + (mode == "alternate")) % 2 == 1
    return widths[-2] if second and len(widths) > 1 else widths[-1]


def _label(values: tuple[float, ...]) -> str:
    return "_".join(f"{v:g}" for v in values)


@register_space("spaceevo")
class SpaceEvoSpace(SearchSpace):
    """SpaceEvo: a whole hyperspace (presets onnxw, mobilew) or one search space in it (a released or encoded
    point), with per-layer kernel, width and expand ratio."""

    name = "spaceevo"
    presets = tuple(SUPERSPACES) + tuple(NAMED_SPACES)
    default_preset = "onnxw"
    default_input = (3, 224, 224)
    default_classes = 1000
    supernet_sharing = "elastic"  # SpaceEvo's quantized-for-all supernet shares weights as Once-for-All

    def __init__(self, preset: str | None = None) -> None:
        """`preset`: "onnxw" / "mobilew" (the whole superspace: each searchable stage's block type and width
        window are choices `s<i>_block` and `s<i>_window` of the architecture, a layer's width is its index `wi`
        in the window and its kernel / expand choices are named by the value list of the block types that have
        them, e.g. `s1_l0_k35`, `s1_l0_e4_6_8`), a released search result (`vnni`, ...) or a point's encoding
        (`onnxw-151122-023231`; layer choices `k`, `w`, `e` with the block's own values); `+rR1,R2..` at the
        end replaces the input resolutions."""
        self.preset = preset or self.default_preset
        base, *suffixes = self.preset.split("+")
        if base in SUPERSPACES:
            self.point: SpacePoint | None = None
            self.superspace = SUPERSPACES[base]
        else:
            self.point = SpacePoint.parse(NAMED_SPACES.get(base, base))
            self.superspace = SUPERSPACES[self.point.superspace]
        self.resolutions = self.superspace.resolutions
        self.align = False
        for suffix in suffixes:
            if suffix == "align" and self.point is not None:
                self.align = True
            elif suffix.startswith("r"):
                self.resolutions = _resolutions(suffix[1:], self.preset)
            else:
                raise NASError(f"spaceevo preset {self.preset!r}: unknown suffix {'+' + suffix!r}; accepted: "
                               "'+rR1,R2..' (input resolutions) and, after a search space (not a superspace), "
                               "'+align' (one kernel, width and expand ratio per stage)")

    def describe(self) -> str:
        if self.point is None:
            return f"{self.superspace.doc}: {self.superspace.size():.3g} spaces"
        return self.point.describe() + ("; one kernel, width and expand ratio per stage" if self.align else "")

    @classmethod
    def preset_of(cls, arch_name: str) -> str | None:
        return SEQNETS[arch_name][0] if arch_name in SEQNETS else None

    # -- the stages of an architecture --------------------------------------------------------------------
    def point_of(self, arch: Mapping[str, Value]) -> SpacePoint:
        """The search space `arch` lies in (this preset's point, or the one `arch` chooses in a superspace)."""
        if self.point is not None:
            return self.point
        sup = self.superspace
        names = [b.name for b in sup.blocks]
        n = len(sup.searchable)
        return SpacePoint(sup.name, tuple(names.index(arch[f"s{i}_block"]) for i in range(1, n + 1)),
                          tuple(arch[f"s{i}_window"] for i in range(1, n + 1)))

    def stage_blocks(self, point: SpacePoint) -> list[tuple[StageSpec, BlockType, tuple[int, ...]]]:
        """Stage 0 and the searchable stages of `point`: spec, block type and the widths of the chosen window."""
        sup = self.superspace
        out = [(sup.stages[1], sup.stage0, sup.stages[1].widths)]
        for stage, b, w in zip(sup.searchable, point.blocks, point.windows):
            out.append((stage, sup.blocks[b], stage.window_widths(w)))
        return out

    def _layer_names(self, i: int, j: int, block: BlockType) -> tuple[str | None, str, str | None]:
        """The choice names of layer j of stage i given its block type: kernel, width, expand (None: fixed)."""
        slot = f"s{i}" if self.align else f"s{i}_l{j}"
        if self.point is not None or i == 0:
            return (f"{slot}_k" if len(block.kernels) > 1 else None, f"{slot}_w",
                    f"{slot}_e" if len(block.expands) > 1 else None)
        return (f"{slot}_k{_label(block.kernels)}" if len(block.kernels) > 1 else None, f"{slot}_wi",
                f"{slot}_e{_label(block.expands)}" if len(block.expands) > 1 else None)

    def layer(self, arch: Mapping[str, Value], i: int, j: int) -> Layer:
        """Layer j of stage i of `arch`: (kernel, width, expand), fixed values filled in."""
        _, block, widths = self.stage_blocks(self.point_of(arch))[i]
        k, w, e = self._layer_names(i, j, block)
        width = arch[w] if w.endswith("_w") else widths[arch[w]]
        return (arch[k] if k else block.kernels[0], width,
                arch[e] if e else (block.expands[0] if block.expands else 0.0))

    # -- declaration -----------------------------------------------------------------------------------------
    @cached_property
    def _choices(self) -> list[Choice]:
        sup = self.superspace
        out = [Choice("resolution", self.resolutions, "ordinal", doc="input resolution"),
               Choice("stem_w", sup.stages[0].widths, "ordinal", doc="first conv width")]
        for i, stage in enumerate(sup.stages[1:]):
            if self.point is None and i > 0:
                out.append(Choice(f"s{i}_block", tuple(b.name for b in sup.blocks), doc=f"block type of {stage.name}"))
                out.append(Choice(f"s{i}_window", tuple(range(stage.windows)), "ordinal", doc="width window"))
                options = list(sup.blocks)
            else:
                options = [self.stage_blocks(self.point)[i][1] if self.point is not None and i > 0 else sup.stage0]
            out.append(Choice(f"s{i}_depth", stage.depths, "ordinal", doc=f"layers in {stage.name}"))
            declared: set[str] = set()  # aligned: every layer's choices are the first layer's
            for j in range(max(stage.depths)):
                for block in options:
                    for name, values, doc in zip(self._layer_names(i, j, block),
                                                 (block.kernels, self._widths(i, stage), block.expands),
                                                 ("kernel", "output width", "expand ratio")):
                        if name is None or name in declared:
                            continue
                        declared.add(name)
                        users = tuple(b.name for b in options if name in self._layer_names(i, j, b))
                        out.append(Choice(name, tuple(values), "ordinal", self._when(i, j, stage, users, options),
                                          doc, "" if self.align else f"s{i}_l{j}"))
        return out

    def _widths(self, i: int, stage: StageSpec) -> tuple[int, ...]:
        if self.point is None and i > 0:
            return tuple(range(stage.window))
        return self.stage_blocks(self.point)[i][2] if self.point is not None else stage.widths

    @staticmethod
    def _when(i: int, j: int, stage: StageSpec, users: tuple[str, ...],
              options: list[BlockType]) -> Callable[[Mapping[str, Value]], bool] | None:
        """The predicate of a layer choice: the layer exists (depth) and its block type has the choice."""
        deep = j >= min(stage.depths)
        if len(users) == len(options):
            return (lambda a: a[f"s{i}_depth"] > j) if deep else None
        return lambda a: (not deep or a[f"s{i}_depth"] > j) and a[f"s{i}_block"] in users

    def choices(self) -> list[Choice]:
        return self._choices

    def input_shape_for(self, arch: Mapping[str, Value], data_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (data_shape[0], arch["resolution"], arch["resolution"])

    def graph(self, arch: Mapping[str, Value], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None) -> ArchGraph:
        sup = self.superspace
        g = GraphBuilder(input_shape or (self.default_input[0], arch["resolution"], arch["resolution"]))
        g.group = "stem"
        x = conv_bn_act(g, "stem", g.input, arch["stem_w"], 3, sup.stages[0].stride, "relu")
        for i, (stage, block, _) in enumerate(self.stage_blocks(self.point_of(arch))):
            for j in range(arch[f"s{i}_depth"]):
                g.group = f"stage{i}.layer{j}"
                kernel, width, expand = self.layer(arch, i, j)
                with g.candidate(f"s{i}_l{j}", f"{block.name}_k{kernel}_w{width}_e{expand}"):
                    x = block.build(g, f"s{i}_l{j}", x, width, kernel, expand, stage.stride if j == 0 else 1)
        g.group = "head"
        x = conv_bn_act(g, "final_expand", x, sup.final_width, 1, act=sup.head_act)
        x = g.add("pool", GlobalAvgPool(), x)
        x = conv_bn_act(g, "feature_mix", x, sup.mix_width, 1, act=sup.head_act)
        x = g.add("flatten", Flatten(), x)
        x = g.add("classifier", Linear(sup.mix_width, num_classes or self.default_classes), x)
        return g.finish(x)

    # -- architectures from layer lists ---------------------------------------------------------------------
    def compose(self, point: SpacePoint, resolution: int, stem_width: int,
                stages: list[list[Layer]]) -> Architecture:
        """The architecture of `point` with these layers per stage (stage 0 first), validated."""
        if self.point is not None and point != self.point:
            raise ArchitectureError(f"space {point.encoding} is not this preset's {self.point.encoding}")
        values: dict[str, Value] = {"resolution": resolution, "stem_w": stem_width}
        specs = self.stage_blocks(point)
        if len(stages) != len(specs):
            raise ArchitectureError(f"{point.encoding} has {len(specs)} stages (stage 0 first), got {len(stages)}")
        for i, ((_, block, widths), layers) in enumerate(zip(specs, stages)):
            if self.point is None and i > 0:
                values[f"s{i}_block"], values[f"s{i}_window"] = block.name, point.windows[i - 1]
            values[f"s{i}_depth"] = len(layers)
            for j, (k, w, e) in enumerate(layers):
                names = self._layer_names(i, j, block)
                if w not in widths:
                    raise ArchitectureError(f"width {w} of layer {j} of stage {i} is not in its window {list(widths)}")
                for name, value, fixed in zip(names, (k, w, e), (block.kernels, widths, block.expands)):
                    if name is None:
                        if fixed and value != fixed[0]:
                            raise ArchitectureError(f"layer {j} of stage {i} has {value}; {block.name} takes "
                                                    f"{fixed[0]} only")
                    else:
                        stored = widths.index(value) if name.endswith("_wi") else value
                        if values.setdefault(name, stored) != stored:  # aligned: one value per stage
                            raise ArchitectureError(f"layer {j} of stage {i} differs from the stage's first "
                                                    f"layer; {self.preset} takes one kernel, width and expand "
                                                    "ratio per stage")
        arch = self.declared_values(values)
        self.validate(arch)
        return arch

    def from_subnet_encoding(self, code: str, point: SpacePoint | None = None) -> Architecture:
        """An architecture of `point` (default: this preset's) from the official subnet string
        "d.._k.._w.._e.._r.." (depths per stage: first conv, stage 0, stages 1-6; per layer: kernel, width,
        expand)."""
        point = point or self.point
        if point is None:
            raise ArchitectureError("a subnet encoding of a superspace preset needs its point (search space)")
        try:
            fields = {part[0]: part[1:].split("#") for part in code.split("_")}
            depths = [int(v) for v in fields["d"]]
            layers = list(zip((int(v) for v in fields["k"]), (int(v) for v in fields["w"]),
                              (float(v) for v in fields["e"])))
            resolution = int(fields["r"][0])
            resolution = resolution if resolution in self.resolutions else self.resolutions[-1]
        except (KeyError, ValueError, IndexError):
            raise ArchitectureError(f"subnet encoding {code[:60]!r} is not 'd.._k.._w.._e.._r..'") from None
        if sum(depths) != len(layers) or not depths or depths[0] != 1:
            raise ArchitectureError(f"subnet encoding {code[:60]!r} does not fit the stages of {point.encoding}")
        stages, at = [], 1
        for depth in depths[1:]:
            stages.append(layers[at:at + depth])
            at += depth
        return self.compose(point, resolution, layers[0][1], stages)

    def reference_archs(self) -> dict[str, Architecture]:
        out = {}
        for name, (preset, code) in SEQNETS.items():
            point = SpacePoint.parse(NAMED_SPACES[preset])
            if not self.align and (point == self.point or (self.point is None
                                                           and point.superspace == self.superspace.name)):
                out[name] = self.from_subnet_encoding(code, point)
        return out

    def supernet_cover(self) -> list[Architecture]:
        """For each point (this preset's; in a superspace, each block type in every stage at the widest
        windows): every layer at its deepest with every kernel index, once with every width at its window's
        largest and twice with consecutive layers alternating between their window's largest two widths (so
        each projection shortcut meets its largest input and its largest output; aligned, consecutive stages
        alternate), expand ratios at their largest: 3 x (most kernels) architectures per point hold every
        weight the elastic supernet needs."""
        sup = self.superspace
        points = [self.point] if self.point is not None else [
            SpacePoint(sup.name, (b,) * len(sup.searchable), tuple(s.windows - 1 for s in sup.searchable))
            for b in range(len(sup.blocks))]
        out = []
        for point in points:
            specs = self.stage_blocks(point)
            for kernel_index in range(max(len(block.kernels) for _, block, _ in specs)):
                for mode in ("largest", "alternate", "alternate-shifted"):
                    stages, layer = [], 1  # consecutive layers (the stem is layer 0) across stage boundaries
                    for i, (stage, block, widths) in enumerate(specs):
                        layers = []
                        for _ in range(max(stage.depths)):
                            layers.append((block.kernels[min(kernel_index, len(block.kernels) - 1)],
                                           _pick(widths, i + 1 if self.align else layer, mode),  # aligned: per stage
                                           block.expands[-1] if block.expands else 0.0))
                            layer += 1
                        stages.append(layers)
                    out.append(self.compose(point, self.resolutions[-1], _pick(sup.stages[0].widths, 0, mode), stages))
        return out


def _resolutions(text: str, preset: str) -> tuple[int, ...]:
    """The resolutions of a preset's `+r` suffix ("48,64"): ascending, each 16-1024."""
    try:
        values = tuple(sorted({int(v) for v in text.split(",")}))
    except ValueError:
        values = ()
    if not values or not all(16 <= v <= 1024 for v in values):
        raise NASError(f"spaceevo preset {preset!r}: the resolutions after '+r' must be integers 16..1024 separated "
                       "by commas, e.g. vnni+r64 or vnni+r48,64")
    return values


# -- the hyperspace: sampling and mutation of points (SpaceEvo's evolution over spaces) ------------------------
def sample_point(superspace: str, rng: random.Random) -> SpacePoint:
    """A uniformly random point (the released code's `random_sample` fixes the block types to [1,2,1,2,2,2], a
    debugging leftover not reproduced here)."""
    sup = SUPERSPACES[superspace]
    return SpacePoint(superspace, tuple(rng.randrange(len(sup.blocks)) for _ in sup.searchable),
                      tuple(rng.randrange(s.windows) for s in sup.searchable))


def uniform_points(superspace: str) -> list[SpacePoint]:
    """SpaceEvo's initial population: every block type used in all stages, with every window index (clipped to
    each stage's last window)."""
    sup = SUPERSPACES[superspace]
    most = max(s.windows for s in sup.searchable)
    return [SpacePoint(superspace, (b,) * len(sup.searchable), tuple(min(w, s.windows - 1) for s in sup.searchable))
            for b in range(len(sup.blocks)) for w in range(most)]


def mutate_block(point: SpacePoint, rng: random.Random) -> SpacePoint:
    """One random stage takes another block type."""
    sup = SUPERSPACES[point.superspace]
    stage = rng.randrange(len(point.blocks))
    new = rng.choice([b for b in range(len(sup.blocks)) if b != point.blocks[stage]])
    return SpacePoint(point.superspace, point.blocks[:stage] + (new,) + point.blocks[stage + 1:], point.windows)


def mutate_window(point: SpacePoint, rng: random.Random) -> SpacePoint:
    """One random stage with more than one window takes another of its windows."""
    sup = SUPERSPACES[point.superspace]
    stage = rng.choice([i for i, s in enumerate(sup.searchable) if s.windows > 1])
    new = rng.choice([w for w in range(sup.searchable[stage].windows) if w != point.windows[stage]])
    return SpacePoint(point.superspace, point.blocks, point.windows[:stage] + (new,) + point.windows[stage + 1:])
