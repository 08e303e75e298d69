"""The MBConv space: MobileNetV2/V3, MnasNet, EfficientNet, ProxylessNAS and Once-for-All families.

A preset (`MBConvFamily`) fixes a family's skeleton: stem, first block, stages (width, stride, activation,
squeeze-excitation), head, and how mid channels and SE widths are rounded. The searchable choices are the
input resolution, the width multiplier, each stage's depth and each layer's kernel and expand ratio; a
layer's choices exist only when the stage is deep enough to hold it.

Reference models rebuild torchvision's / the official releases' layers exactly (parameter counts are
tested to the parameter). Each preset's expand-ratio and depth values are the family's search values
plus whatever its reference models use (e.g. MobileNetV3-Large's 2.5 and 2.3), so the published models
are members of their preset.
"""
from __future__ import annotations

import itertools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import cast

from nas.blockwise import BlockPaths, BlockSpace, Path
from nas.graph import ArchGraph, GraphBuilder
from nas.layers import conv_bn_act, squeeze_excite
from nas.ops import Activation, Add, Conv2d, Dropout, Flatten, GlobalAvgPool, Linear
from nas.registry import register_space
from nas.space import Architecture, ArchitectureError, Choice, Value, one_of


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of `divisor`, never going below 90% of `value` (the MobileNet rule)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


@dataclass(frozen=True)
class Stage:
    width: int
    stride: int
    act: str
    se: bool
    depths: tuple[int, ...] = (2, 3, 4)


@dataclass(frozen=True)
class Reference:
    """A published model: per stage, a list of (kernel, expand) per layer."""

    layers: tuple[tuple[tuple[int, float], ...], ...]
    resolution: int = 224
    width_mult: float = 1.0


@dataclass(frozen=True)
class MBConvFamily:
    """The fixed skeleton of one family and its search values.

    `mid_rounding`: "exact" (round(in * e), MobileNetV2 / MnasNet / ProxylessNAS), "divisible" (the
    MobileNet 8-divisible rule, MobileNetV3 / EfficientNet / OFA). `se_style`: "mbv3" (squeeze =
    divisible(mid / 4), ReLU, hard-sigmoid) or "efficientnet" (squeeze = block input / 4, SiLU, sigmoid).
    `classifier`: "linear" (pool -> [dropout] -> FC), "linear_hidden" (torchvision MobileNetV3: FC(hidden)
    -> h-swish -> dropout -> FC) or "conv_hidden" (OFA: 1x1 conv without bias/BN -> h-swish -> dropout -> FC).
    The width multiplier scales every width 8-divisibly, but the head's final and hidden widths only when it
    exceeds 1 (MobileNetV2 and OFA's rule; torchvision's MobileNetV3 also shrinks them below 1: a deviation
    for multipliers < 1, none at 1.0, where every reference model is defined).
    """

    doc: str
    stem_width: int
    stem_act: str
    first_width: int
    first_stride: int
    first_act: str
    first_se: bool
    first_residual: bool
    stages: tuple[Stage, ...]
    final_width: int
    final_act: str
    classifier: str = "linear"
    hidden_width: int = 0
    dropout: float = 0.2
    mid_rounding: str = "divisible"
    se_style: str = "mbv3"
    bn_eps: float = 1e-5
    kernels: tuple[int, ...] = (3, 5, 7)
    expands: tuple[float, ...] = (3, 4, 6)
    resolutions: tuple[int, ...] = (128, 160, 192, 224)
    width_mults: tuple[float, ...] = (1.0,)
    references: Mapping[str, Reference] = field(default_factory=dict)

    def stage_expands(self, i: int) -> tuple[float, ...]:
        used = {e for ref in self.references.values() for _, e in ref.layers[i]}
        return tuple(sorted(set(self.expands) | used))

    def stage_depths(self, i: int) -> tuple[int, ...]:
        used = {len(ref.layers[i]) for ref in self.references.values()}
        return tuple(sorted(set(self.stages[i].depths) | used))


def _layers(*stages: Sequence[tuple[int, float]]) -> tuple[tuple[tuple[int, float], ...], ...]:
    return tuple(tuple(s) for s in stages)


K3E6 = (3, 6)
FAMILIES: dict[str, MBConvFamily] = {
    "ofa_mbv3": MBConvFamily(
        doc="Once-for-All MobileNetV3 space (ofa_mbv3_d234_e346_k357_w1.0)",
        stem_width=16, stem_act="hswish", first_width=16, first_stride=1, first_act="relu", first_se=False,
        first_residual=True,
        stages=(Stage(24, 2, "relu", False), Stage(40, 2, "relu", True), Stage(80, 2, "hswish", False),
                Stage(112, 1, "hswish", True), Stage(160, 2, "hswish", True)),
        final_width=960, final_act="hswish", classifier="conv_hidden", hidden_width=1280, dropout=0.1,
        resolutions=(128, 160, 192, 224), width_mults=(1.0, 1.2),
        references={
            "ofa_mbv3_max": Reference(_layers(*[[(7, 6)] * 4] * 5)),
            "ofa_mbv3_min": Reference(_layers(*[[(3, 3)] * 2] * 5), resolution=128),
        }),
    "proxyless": MBConvFamily(
        doc="ProxylessNAS space (mobile), as searched in the paper; zero layers are removed layers",
        stem_width=32, stem_act="relu6", first_width=16, first_stride=1, first_act="relu6", first_se=False,
        first_residual=False,
        stages=(Stage(32, 2, "relu6", False, (1, 2, 3, 4)), Stage(40, 2, "relu6", False, (1, 2, 3, 4)),
                Stage(80, 2, "relu6", False, (1, 2, 3, 4)), Stage(96, 1, "relu6", False, (1, 2, 3, 4)),
                Stage(192, 2, "relu6", False, (1, 2, 3, 4)), Stage(320, 1, "relu6", False, (1,))),
        final_width=1280, final_act="relu6", dropout=0.0, mid_rounding="exact", bn_eps=1e-3,
        expands=(3, 6), resolutions=(224,),
        references={
            "proxylessnas_mobile": Reference(_layers(
                [(5, 3), (3, 3)], [(7, 3), (3, 3), (5, 3), (5, 3)], [(7, 6), (5, 3), (5, 3), (5, 3)],
                [(5, 6), (5, 3), (5, 3), (5, 3)], [(7, 6), (7, 6), (7, 3), (7, 3)], [(7, 6)])),
        }),
    "mobilenet_v2": MBConvFamily(
        doc="MobileNetV2 skeleton (Sandler et al. 2018), torchvision layout",
        stem_width=32, stem_act="relu6", first_width=16, first_stride=1, first_act="relu6", first_se=False,
        first_residual=False,
        stages=(Stage(24, 2, "relu6", False, (1, 2, 3, 4)), Stage(32, 2, "relu6", False, (1, 2, 3, 4)),
                Stage(64, 2, "relu6", False, (1, 2, 3, 4)), Stage(96, 1, "relu6", False, (1, 2, 3, 4)),
                Stage(160, 2, "relu6", False, (1, 2, 3, 4)), Stage(320, 1, "relu6", False, (1,))),
        final_width=1280, final_act="relu6", mid_rounding="exact", width_mults=(0.35, 0.5, 0.75, 1.0),
        resolutions=(96, 128, 160, 192, 224),
        references={"mobilenet_v2": Reference(_layers(
            [K3E6] * 2, [K3E6] * 3, [K3E6] * 4, [K3E6] * 3, [K3E6] * 3, [K3E6]))}),
    "mobilenet_v3_large": MBConvFamily(
        doc="MobileNetV3-Large skeleton (Howard et al. 2019), torchvision layout",
        stem_width=16, stem_act="hswish", first_width=16, first_stride=1, first_act="relu", first_se=False,
        first_residual=True,
        stages=(Stage(24, 2, "relu", False), Stage(40, 2, "relu", True), Stage(80, 2, "hswish", False),
                Stage(112, 1, "hswish", True), Stage(160, 2, "hswish", True)),
        final_width=960, final_act="hswish", classifier="linear_hidden", hidden_width=1280, bn_eps=1e-3,
        references={"mobilenet_v3_large": Reference(_layers(
            [(3, 4), (3, 3)], [(5, 3), (5, 3), (5, 3)], [(3, 6), (3, 2.5), (3, 2.3), (3, 2.3)],
            [(3, 6), (3, 6)], [(5, 6), (5, 6), (5, 6)]))}),
    "mobilenet_v3_small": MBConvFamily(
        doc="MobileNetV3-Small skeleton (Howard et al. 2019), torchvision layout",
        stem_width=16, stem_act="hswish", first_width=16, first_stride=2, first_act="relu", first_se=True,
        first_residual=False,
        stages=(Stage(24, 2, "relu", False), Stage(40, 2, "hswish", True), Stage(48, 1, "hswish", True),
                Stage(96, 2, "hswish", True)),
        final_width=576, final_act="hswish", classifier="linear_hidden", hidden_width=1024, bn_eps=1e-3,
        references={"mobilenet_v3_small": Reference(_layers(
            [(3, 4.5), (3, 3.67)], [(5, 4), (5, 6), (5, 6)], [(5, 3), (5, 3)], [(5, 6), (5, 6), (5, 6)]))}),
    "efficientnet_b0": MBConvFamily(
        doc="EfficientNet-B0 skeleton (Tan & Le 2019), torchvision layout",
        stem_width=32, stem_act="silu", first_width=16, first_stride=1, first_act="silu", first_se=True,
        first_residual=False,
        stages=(Stage(24, 2, "silu", True), Stage(40, 2, "silu", True), Stage(80, 2, "silu", True),
                Stage(112, 1, "silu", True), Stage(192, 2, "silu", True), Stage(320, 1, "silu", True, (1,))),
        final_width=1280, final_act="silu", se_style="efficientnet",
        references={"efficientnet_b0": Reference(_layers(
            [(3, 6)] * 2, [(5, 6)] * 2, [(3, 6)] * 3, [(5, 6)] * 3, [(5, 6)] * 4, [(3, 6)]))}),
    "mnasnet": MBConvFamily(
        doc="MnasNet-A1 skeleton without SE, as torchvision's mnasnet1_0 (Tan et al. 2019)",
        stem_width=32, stem_act="relu", first_width=16, first_stride=1, first_act="relu", first_se=False,
        first_residual=False,
        stages=(Stage(24, 2, "relu", False), Stage(40, 2, "relu", False), Stage(80, 2, "relu", False),
                Stage(96, 1, "relu", False), Stage(192, 2, "relu", False), Stage(320, 1, "relu", False, (1,))),
        final_width=1280, final_act="relu", mid_rounding="exact",
        references={"mnasnet1_0": Reference(_layers(
            [(3, 3)] * 3, [(5, 3)] * 3, [(5, 6)] * 3, [(3, 6)] * 2, [(5, 6)] * 4, [(3, 6)]))}),
    "small": MBConvFamily(
        doc="A small OFA-MobileNetV3-style space for 32x32 data on a CPU (stride-1 stem)",
        stem_width=16, stem_act="hswish", first_width=16, first_stride=1, first_act="relu", first_se=False,
        first_residual=True,
        stages=(Stage(24, 2, "relu", False, (1, 2)), Stage(32, 2, "relu", True, (1, 2)),
                Stage(48, 2, "hswish", True, (1, 2, 3)), Stage(64, 1, "hswish", True, (1, 2))),
        final_width=192, final_act="hswish", dropout=0.1, resolutions=(24, 32), width_mults=(0.75, 1.0),
        references={"small_max": Reference(_layers([(7, 6)] * 2, [(7, 6)] * 2, [(7, 6)] * 3, [(7, 6)] * 2),
                                           resolution=32)}),
}
#: first stride of each stem: 2 on ImageNet-sized presets, 1 for the small CPU preset
STEM_STRIDE: dict[str | None, int] = {"small": 1}


@register_space("mbconv")
class MBConvSpace(BlockSpace):
    """MobileNet-family MBConv space (MobileNetV2/V3, MnasNet, EfficientNet, ProxylessNAS, OFA presets)."""

    name = "mbconv"
    presets = tuple(FAMILIES)
    default_preset = "small"
    supernet_sharing = "elastic"  # Once-for-All's weight entanglement (BossNAS's block supernet: separate)

    def __init__(self, preset: str | None = None) -> None:
        preset = preset or self.default_preset
        if preset not in FAMILIES:
            raise ArchitectureError(f"unknown mbconv preset {preset!r}; accepted: {one_of(list(FAMILIES))}")
        self.preset = preset
        self.family = FAMILIES[preset]
        self.default_input = (3, 224, 224) if preset != "small" else (3, 32, 32)
        self.default_classes = 1000 if preset != "small" else 10

    def describe(self) -> str:
        return self.family.doc

    @classmethod
    def preset_of(cls, arch_name: str) -> str | None:
        """The preset whose reference models include `arch_name`."""
        return next((p for p, f in FAMILIES.items() if arch_name in f.references), None)

    @cached_property
    def _choices(self) -> list[Choice]:
        f = self.family
        out = [Choice("resolution", f.resolutions, "ordinal", doc="input resolution"),
               Choice("width_mult", f.width_mults, "ordinal", doc="width multiplier")]
        for i in range(1, len(f.stages) + 1):
            depths = f.stage_depths(i - 1)
            out.append(Choice(f"s{i}_depth", depths, "ordinal", doc=f"layers in stage {i}"))
            for j in range(max(depths)):
                when = None if j < min(depths) else (lambda a, i=i, j=j: a[f"s{i}_depth"] > j)
                out.append(Choice(f"s{i}_l{j}_k", f.kernels, "ordinal", when, doc="depthwise kernel",
                                  slot=f"s{i}_l{j}"))
                out.append(Choice(f"s{i}_l{j}_e", f.stage_expands(i - 1), "ordinal", when, doc="expand ratio",
                                  slot=f"s{i}_l{j}"))
        return out

    def choices(self) -> list[Choice]:
        return self._choices

    def block_paths(self, data_shape: tuple[int, ...]) -> MBConvBlocks:
        """The stages as BossNAS blocks (`MBConvBlocks`)."""
        return MBConvBlocks(self, data_shape)

    def reference_archs(self) -> dict[str, Architecture]:
        refs = {}
        for name, ref in self.family.references.items():
            values: dict[str, Value] = {"resolution": ref.resolution, "width_mult": ref.width_mult}
            for i, layers in enumerate(ref.layers, start=1):
                values[f"s{i}_depth"] = len(layers)
                for j, (k, e) in enumerate(layers):
                    values[f"s{i}_l{j}_k"], values[f"s{i}_l{j}_e"] = k, e
            refs[name] = Architecture(values)
        return refs

    def input_shape_for(self, arch: Mapping[str, Value], data_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (data_shape[0], arch["resolution"], arch["resolution"])

    def graph(self, arch: Mapping[str, Value], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None) -> ArchGraph:
        f = self.family
        shape = input_shape or (self.default_input[0], arch["resolution"], arch["resolution"])
        num_classes = num_classes or self.default_classes
        mult = arch["width_mult"]
        scale = (lambda c: make_divisible(c * mult)) if mult != 1.0 else (lambda c: c)
        g = GraphBuilder(shape)
        g.group = "stem"
        x = conv_bn_act(g, "stem", g.input, scale(f.stem_width), 3, STEM_STRIDE.get(self.preset, 2), f.stem_act,
                        bn_eps=f.bn_eps)
        g.group = "first"
        x = inverted_residual(g, "first", x, scale(f.first_width), 3, 1.0, f.first_stride, f.first_act, f.first_se,
                              f, residual=f.first_residual)
        for i, stage in enumerate(f.stages, start=1):
            for j in range(arch[f"s{i}_depth"]):
                g.group = f"stage{i}.layer{j}"
                kernel, expand = arch[f"s{i}_l{j}_k"], arch[f"s{i}_l{j}_e"]
                with g.candidate(f"s{i}_l{j}", f"k{kernel}_e{expand}"):
                    x = inverted_residual(g, f"s{i}_l{j}", x, scale(stage.width), kernel, expand,
                                          stage.stride if j == 0 else 1, stage.act, stage.se, f)
        g.group = "head"
        final = make_divisible(f.final_width * mult) if mult > 1.0 else f.final_width
        x = conv_bn_act(g, "final", x, final, 1, act=f.final_act, bn_eps=f.bn_eps)
        x = g.add("pool", GlobalAvgPool(), x)
        width = final
        if f.classifier == "conv_hidden":
            hidden = make_divisible(f.hidden_width * mult) if mult > 1.0 else f.hidden_width
            x = g.add("mix_conv", Conv2d(final, hidden, 1), x)
            x = g.add("mix_act", Activation("hswish"), x)
            width = hidden
        x = g.add("flatten", Flatten(), x)
        if f.classifier == "linear_hidden":
            hidden = make_divisible(f.hidden_width * mult) if mult > 1.0 else f.hidden_width
            x = g.add("hidden_fc", Linear(final, hidden), x)
            x = g.add("hidden_act", Activation("hswish"), x)
            width = hidden
        if f.dropout:
            x = g.add("dropout", Dropout(f.dropout), x)
        x = g.add("classifier", Linear(width, num_classes), x)
        return g.finish(x)


def inverted_residual(g: GraphBuilder, prefix: str, x: str, out_ch: int, kernel: int, expand: float, stride: int,
                      act: str, se: bool, family: MBConvFamily, residual: bool = True) -> str:
    """MBConv (Sandler et al.): [1x1 expand -> BN -> act] -> kxk depthwise -> BN -> act -> [SE] -> 1x1 -> BN.

    The identity shortcut is added when `residual`, stride 1 and equal channels (all families).
    """
    in_ch = g.shape(x)[0]
    mid = round(in_ch * expand) if family.mid_rounding == "exact" else make_divisible(in_ch * expand)
    h = x
    if mid != in_ch:
        h = conv_bn_act(g, f"{prefix}_expand", h, mid, 1, act=act, bn_eps=family.bn_eps)
    h = conv_bn_act(g, f"{prefix}_dw", h, mid, kernel, stride, act, groups=mid, bn_eps=family.bn_eps)
    if se:
        if family.se_style == "efficientnet":
            h = squeeze_excite(g, f"{prefix}_se", h, max(1, in_ch // 4), "silu", "sigmoid")
        else:
            h = squeeze_excite(g, f"{prefix}_se", h, make_divisible(mid // 4), "relu", "hsigmoid")
    h = conv_bn_act(g, f"{prefix}_project", h, out_ch, 1, act=None, bn_eps=family.bn_eps)
    if residual and stride == 1 and in_ch == out_ch:
        h = g.add(f"{prefix}_add", Add(), x, h)
    return h


class MBConvBlocks(BlockPaths):
    """The stages of an MBConv preset as BossNAS blocks.

    A block's path is the tuple of its layers' (kernel, expand) pairs, its length the stage depth, so depth is
    searched too (the official BossNAS MBConv space has fixed depths [2, 4, 4, 4, 4]): the candidates are every
    such tuple for every depth of the stage, the entry state is always None. The stem, the first layer, the
    width multiplier (1.0) and the resolution (the smallest resolution choice at least the data's size, else
    the largest) are fixed and recorded in every architecture.
    """

    def __init__(self, space: MBConvSpace, data_shape: tuple[int, ...]) -> None:
        f = space.family
        self.space = space
        self.num_blocks = len(f.stages)
        fitting = [r for r in f.resolutions if r >= data_shape[-1]]
        self.resolution = min(fitting) if fitting else max(f.resolutions)
        self.input_shape = (data_shape[0], self.resolution, self.resolution)
        self._ops = [[(k, e) for k in f.kernels for e in f.stage_expands(i)] for i in range(len(f.stages))]

    def initial_state(self) -> None:
        return None

    def candidates(self, block: int, entry: object) -> list[Path]:
        ops = self._ops[block]
        return [p for d in self.space.family.stage_depths(block) for p in itertools.product(ops, repeat=d)]

    def exit_state(self, block: int, path: Path, entry: object) -> None:
        return None

    def sample_paths(self, block: int, entry: object, count: int, rng: random.Random) -> list[Path]:
        """Fair paths (FairNAS, as BossNAS's MBConv configs sample with `FairPathHook`): every layer slot takes a
        random permutation of its (kernel, expand) ops, path i the i-th op of each, so the `count` paths of a step
        train `count` different ops in every slot (all of them once when `count` equals the number of ops, as the
        official code trains). Each path's depth is drawn uniformly (the official MBConv space fixes depths)."""
        ops, depths = self._ops[block], self.space.family.stage_depths(block)
        count = min(count, len(ops))
        columns = [rng.sample(ops, len(ops)) for _ in range(max(depths))]
        return [tuple(columns[j][i] for j in range(rng.choice(depths))) for i in range(count)]

    def block_of(self, group: str) -> int | None:
        return int(group[5:group.index(".")]) - 1 if group.startswith("stage") else None

    def arch_of(self, paths: Sequence[Path]) -> Architecture:
        if len(paths) != self.num_blocks:
            raise ArchitectureError(f"an MBConv block architecture needs {self.num_blocks} paths, got {len(paths)}")
        values: dict[str, Value] = {"resolution": self.resolution, "width_mult": 1.0}
        for i, path in enumerate(paths, start=1):
            values[f"s{i}_depth"] = len(path)
            for j, (k, e) in enumerate(cast("tuple[tuple[int, float], ...]", path)):  # (kernel, expand) per layer
                values[f"s{i}_l{j}_k"], values[f"s{i}_l{j}_e"] = k, e
        arch = Architecture(values)
        self.space.validate(arch)
        return arch

    def paths_of(self, arch: Architecture) -> list[Path]:
        return [tuple((arch[f"s{i}_l{j}_k"], arch[f"s{i}_l{j}_e"]) for j in range(arch[f"s{i}_depth"]))
                for i in range(1, self.num_blocks + 1)]

    def cover(self) -> list[Architecture]:
        """Every (kernel, expand) of every layer, at width 1.0 and the chosen resolution (the space's cover,
        restricted): far fewer graphs than one per candidate path."""
        return self.space.restrict({"width_mult": [1.0], "resolution": [self.resolution]}).supernet_cover()
