"""LSNet (Wang et al., "LSNet: See Large, Focus Small", CVPR 2025; official code jameslahm/lsnet).

Four stages after a stride-8 stem (three 3x3 stride-2 conv-BN, ReLU between them). Each later stage starts with
a downsampling (3x3 stride-2 depthwise conv-BN, 1x1 conv-BN). Block d of a stage is a mixer, then a residual
FFN (1x1 conv-BN C -> 2C, ReLU, 1x1 conv-BN 2C -> C, last BN scale 0):
- even d: RepVGG-DW (3x3 dw conv-BN + 1x1 dw conv-BN + identity), then squeeze-excitation (timm
  `SqueezeExcite(C, 0.25)`: width rounded to a multiple of 8, at least 8; ReLU, sigmoid, biased convs);
- odd d: the LS conv in stages 1-3: y = BN(SKA(x, LKP(x))) + x, LKP = 1x1 conv-BN C -> C/2, ReLU, 7x7 dw
  conv-BN, 1x1 conv-BN, ReLU, biased 1x1 conv C/2 -> 9C/8, GroupNorm(C/8); in stage 4 residual multi-head
  self-attention (key_dim 16, value width C, q through a 3x3 dw conv-BN, per-head bias table; `LSNetAttention`).
Head: global average pool, BatchNorm1d, Linear. Built with the graph-building functions below, which another
space can reuse (`add_lsnet_block`, `add_lsnet_downsample`, `add_lsnet_stem`, `add_lsnet_head`).

Choices: each stage's width `s{i}_width` (slot "s{i}": a stage's layers are the candidate "{mixer}_w{width}" of
that slot, so a supernet shares a stage's weights across depths but not across widths) and depth `s{i}_depth`.

Presets:
- "paper": 224x224 RGB, 1000 classes, 4 attention heads; widths and depths around the published ones, with
  LSNet-T / S / B as named members (11,409,832 / 16,146,304 / 23,313,608 parameters, as the official code).
- "small" (default): for the built-in 8x8 digits or 28x28 Fashion-MNIST on a CPU. Widths 8-64, the stem's three
  convs at stride 1 (not 2), so the stages run at 16/8/4/2 for digits (inputs smaller than 16 are resized to
  16) and 28/14/7/4 for Fashion-MNIST; 2 attention heads, 10 classes.

Deviations, named: initialisation is torch's default except the zero-initialised BN scales (the official head
uses a truncated-normal Linear with std 0.02); drop-path is 0 as in the official configs; the distilled models'
second head is not built; the attention bias table is sized to the map the stage actually sees (the official
code ties it to 224 input), so other input sizes build, but their tables do not load the published weights.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from nas.graph import ArchGraph, GraphBuilder
from nas.layers import conv_bn_act, squeeze_excite
from nas.ops import Add, BatchNorm1d, BatchNorm2d, Conv2d, Flatten, GlobalAvgPool, Linear
from nas.ops.lsnet import GroupNorm, LSNetAttention, SmallKernelAggregation
from nas.registry import register_space
from nas.space import Architecture, Choice, NASError, PresetSpace, Value, one_of

NUM_STAGES = 4
KEY_DIM = 16  # attention key width per head
LKP_KERNEL = 7  # the large depthwise kernel of LKP
SKA_GROUPS = 8  # channels sharing one dynamic kernel in SKA
MIXERS = ("ls", "attention")
#: adds block `index` of a stage: (g, prefix, x, mixer, index, heads) -> output node
BlockAdder = Callable[[GraphBuilder, str, str, str, int, int], str]


def se_width(channels: int) -> int:
    """timm's `SqueezeExcite(channels, 0.25)` width: channels / 4 rounded to a multiple of 8, at least 8."""
    return max(8, int(channels * 0.25 + 4) // 8 * 8)


def add_lsnet_stem(g: GraphBuilder, x: str, width: int, strides: tuple[int, int, int] = (2, 2, 2)) -> str:
    """Three 3x3 conv-BN layers to width / 4, width / 2, width, ReLU between them (official `patch_embed`)."""
    if width % 4:
        raise NASError(f"the LSNet stem needs a width divisible by 4, got {width}")
    x = conv_bn_act(g, "stem1", x, width // 4, 3, strides[0])
    x = conv_bn_act(g, "stem2", x, width // 2, 3, strides[1])
    return conv_bn_act(g, "stem3", x, width, 3, strides[2], act=None)


def add_lsnet_downsample(g: GraphBuilder, prefix: str, x: str, out_ch: int) -> str:
    """3x3 stride-2 depthwise conv-BN, then 1x1 conv-BN to `out_ch`, no activation."""
    ch = g.shape(x)[0]
    x = conv_bn_act(g, f"{prefix}_dw", x, ch, 3, 2, act=None, groups=ch)
    return conv_bn_act(g, f"{prefix}_pw", x, out_ch, 1, act=None)


def add_repvgg_dw(g: GraphBuilder, prefix: str, x: str) -> str:
    """RepVGG-DW: 3x3 dw conv-BN + 1x1 dw conv-BN + identity (one 3x3 dw conv after `nas.fusion.fuse`)."""
    ch = g.shape(x)[0]
    a = conv_bn_act(g, f"{prefix}_conv3", x, ch, 3, act=None, groups=ch)
    b = conv_bn_act(g, f"{prefix}_conv1", x, ch, 1, act=None, groups=ch)
    return g.add(f"{prefix}_add", Add(), a, b, x)


def add_ls_conv(g: GraphBuilder, prefix: str, x: str) -> str:
    """LS conv: BN(SKA(x, LKP(x))) + x; LKP makes one 3x3 kernel per pixel for each of C/8 weight channels."""
    ch = g.shape(x)[0]
    if ch % SKA_GROUPS:
        raise NASError(f"an LS conv needs channels divisible by {SKA_GROUPS}, got {ch}")
    half, kernels = ch // 2, ch // SKA_GROUPS
    w = conv_bn_act(g, f"{prefix}_lkp1", x, half, 1)
    w = conv_bn_act(g, f"{prefix}_lkp2", w, half, LKP_KERNEL, act=None, groups=half)
    w = conv_bn_act(g, f"{prefix}_lkp3", w, half, 1)
    w = g.add(f"{prefix}_lkp4", Conv2d(half, 9 * kernels, 1, bias=True), w)
    w = g.add(f"{prefix}_lkp_norm", GroupNorm(kernels, 9 * kernels), w)
    y = g.add(f"{prefix}_ska", SmallKernelAggregation(ch, SKA_GROUPS), x, w)
    y = g.add(f"{prefix}_ska_bn", BatchNorm2d(ch), y)
    return g.add(f"{prefix}_add", Add(), y, x)


def add_lsnet_attention(g: GraphBuilder, prefix: str, x: str, heads: int) -> str:
    """Residual multi-head self-attention with LeViT-style bias table (`LSNetAttention`): x + attn(x)."""
    ch, h, w = g.shape(x)
    y = g.add(f"{prefix}_attn", LSNetAttention(ch, heads, KEY_DIM, h, w), x)
    return g.add(f"{prefix}_add", Add(), x, y)


def add_lsnet_ffn(g: GraphBuilder, prefix: str, x: str) -> str:
    """Residual FFN: 1x1 conv-BN C -> 2C, ReLU, 1x1 conv-BN 2C -> C (BN scale initialised to 0), + x."""
    ch = g.shape(x)[0]
    y = conv_bn_act(g, f"{prefix}1", x, 2 * ch, 1)
    y = conv_bn_act(g, f"{prefix}2", y, ch, 1, act=None, zero_gamma=True)
    return g.add(f"{prefix}_add", Add(), x, y)


def add_lsnet_block(g: GraphBuilder, prefix: str, x: str, index: int, mixer: str = "ls", heads: int = 4) -> str:
    """LSNet block `index` of its stage (official `Block`); returns the output node's name.

    Even index: RepVGG-DW then squeeze-excitation; odd index: LS conv (`mixer="ls"`) or residual self-attention
    (`mixer="attention"`, `heads` heads). Then the residual FFN. The caller sets `g.group` (one group per block).
    """
    if mixer not in MIXERS:
        raise NASError(f"LSNet mixer {mixer!r} is not one of {one_of(MIXERS)}")
    if index % 2 == 0:
        x = add_repvgg_dw(g, f"{prefix}_rep", x)
        x = squeeze_excite(g, f"{prefix}_se", x, se_width(g.shape(x)[0]), "relu", "sigmoid")
    elif mixer == "ls":
        x = add_ls_conv(g, f"{prefix}_ls", x)
    else:
        x = add_lsnet_attention(g, f"{prefix}_mhsa", x, heads)
    return add_lsnet_ffn(g, f"{prefix}_ffn", x)


def add_lsnet_head(g: GraphBuilder, x: str, num_classes: int) -> str:
    """Global average pool, BatchNorm1d, Linear (official `BN_Linear`)."""
    ch = g.shape(x)[0]
    x = g.add("flatten", Flatten(), g.add("pool", GlobalAvgPool(), x))
    x = g.add("head_bn", BatchNorm1d(ch), x)
    return g.add("classifier", Linear(ch, num_classes), x)


@dataclass(frozen=True)
class LSNetPreset:
    """Input, stem strides, per-stage width and depth values, stage-4 heads and named members (widths, depths).

    `resolution`: the input side of every model ("fixed", the paper's 224) or the least side, smaller data being
    resized up to it (not "fixed").
    """

    doc: str
    resolution: int
    fixed: bool
    channels: int
    classes: int
    stem_strides: tuple[int, int, int]
    widths: tuple[tuple[int, ...], ...]
    depths: tuple[tuple[int, ...], ...]
    heads: int
    references: Mapping[str, Mapping[str, Value]] = field(default_factory=dict)


def stage_values(widths: Sequence[int], depths: Sequence[int], mixers: Sequence[str] = ()) -> dict[str, Value]:
    """A named member's choices: each stage's width and depth (and token mixer, in the mixer space)."""
    return {**{f"s{i}_width": w for i, w in enumerate(widths, start=1)},
            **{f"s{i}_depth": d for i, d in enumerate(depths, start=1)},
            **{f"s{i}_mixer": m for i, m in enumerate(mixers, start=1)}}


PRESETS: dict[str, LSNetPreset] = {
    "paper": LSNetPreset(
        doc="LSNet at 224x224 (CVPR 2025): per-stage widths and depths around LSNet-T/S/B",
        resolution=224, fixed=True, channels=3, classes=1000, stem_strides=(2, 2, 2),
        widths=((64, 96, 128), (128, 192, 256), (256, 320, 384), (384, 448, 512)),
        depths=((0, 1, 2, 3, 4), (2, 4, 6), (6, 8, 10), (8, 10, 12)), heads=4,
        references={"lsnet_t": stage_values((64, 128, 256, 384), (0, 2, 8, 10)),
                    "lsnet_s": stage_values((96, 192, 320, 448), (1, 2, 8, 10)),
                    "lsnet_b": stage_values((128, 256, 384, 512), (4, 6, 8, 10))}),
    "small": LSNetPreset(
        doc="LSNet for 8x8 digits / 28x28 Fashion-MNIST on a CPU: widths 8-64, stride-1 stem, 2 heads",
        resolution=16, fixed=False, channels=1, classes=10, stem_strides=(1, 1, 1),
        widths=((8, 16), (16, 32), (32, 48), (48, 64)), depths=((0, 1, 2), (1, 2), (1, 2, 3), (1, 2)), heads=2,
        references={"small_t": stage_values((16, 32, 48, 64), (0, 2, 2, 2))}),
}


@register_space("lsnet")
class LSNetSpace(PresetSpace):
    """LSNet (CVPR 2025): RepVGG-DW / LS-conv blocks, attention in stage 4; per-stage width and depth."""

    name = "lsnet"
    PRESETS = PRESETS
    default_preset = "small"
    spec: LSNetPreset

    def __init__(self, preset: str | None = None) -> None:
        super().__init__(preset)
        self.default_input = (self.spec.channels, self.spec.resolution, self.spec.resolution)
        self.default_classes = self.spec.classes

    @cached_property
    def _choices(self) -> list[Choice]:
        out = []
        for i in range(1, NUM_STAGES + 1):
            out.append(Choice(f"s{i}_width", self.spec.widths[i - 1], "ordinal", doc=f"stage {i} width",
                              slot=f"s{i}"))
            out.append(Choice(f"s{i}_depth", self.spec.depths[i - 1], "ordinal", doc=f"blocks in stage {i}"))
        return out

    def choices(self) -> list[Choice]:
        return self._choices

    def reference_archs(self) -> dict[str, Architecture]:
        return {name: Architecture(values) for name, values in self.spec.references.items()}

    def input_shape_for(self, arch: Mapping[str, Value], data_shape: tuple[int, ...]) -> tuple[int, ...]:
        side = self.spec.resolution
        if self.spec.fixed:
            return (data_shape[0], side, side)
        return (data_shape[0], max(data_shape[1], side), max(data_shape[2], side))

    def graph(self, arch: Mapping[str, Value], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None) -> ArchGraph:
        stages = [("attention" if i == NUM_STAGES else "ls", arch[f"s{i}_width"], arch[f"s{i}_depth"])
                  for i in range(1, NUM_STAGES + 1)]
        return lsnet_graph(tuple(input_shape or self.default_input), num_classes or self.default_classes,
                           self.spec.stem_strides, self.spec.heads, stages, _lsnet_block)


def _lsnet_block(g: GraphBuilder, prefix: str, x: str, mixer: str, index: int, heads: int) -> str:
    return add_lsnet_block(g, prefix, x, index, mixer, heads)


def lsnet_graph(input_shape: tuple[int, ...], num_classes: int, stem_strides: tuple[int, int, int], heads: int,
                stages: Sequence[tuple[str, int, int]], add_block: BlockAdder) -> ArchGraph:
    """LSNet's skeleton: stem, then per stage (mixer, width, depth) a down-sampling (stages 2-4) and `depth` blocks
    `add_block(g, prefix, x, mixer, index, heads)`, then the head. A stage's layers are candidate
    "{mixer}_w{width}" of slot "s{i}": a supernet shares them across depths, never across mixers or widths."""
    g = GraphBuilder(input_shape)
    g.group = "stem"
    x = add_lsnet_stem(g, g.input, stages[0][1], stem_strides)
    for i, (mixer, width, depth) in enumerate(stages, start=1):
        with g.candidate(f"s{i}", f"{mixer}_w{width}"):
            if i > 1:
                g.group = f"stage{i}.down"
                x = add_lsnet_downsample(g, f"s{i}_down", x, width)
            for j in range(depth):
                g.group = f"stage{i}.block{j}"
                x = add_block(g, f"s{i}_b{j}", x, mixer, j, heads)
    g.group = "head"
    return g.finish(add_lsnet_head(g, x, num_classes))
