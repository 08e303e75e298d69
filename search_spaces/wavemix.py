"""WaveMix / WaveMix-Lite (Jeevan & Sethi 2022; official code github.com/pranavphoenix/WaveMix, `wavemix` 0.2.4).

A WaveMix network is a stem, `depth` identical resolution-preserving blocks with a residual add each, and a head
(average pool, linear). A block of width C and `level` L (`add_wavemix_block`): 1x1 conv C -> C/4; a one-level
Haar DWT of that ([LL; LH, HL, HH] = C channels at half size), then of each LL again down to level L; from the
coarsest level up, an MLP (1x1 conv to C * mult, GELU, dropout, 1x1 conv to ff_channel), a 4x4 stride-2
transposed conv and BN, each finer level taking its own DWT bands concatenated with the up-sampled output of the
level below (C + C/2 channels), every level but the finest producing C/2 channels, the finest C. WaveMix-Lite-C/N
is N level-1 blocks behind the stride-1 'strided' stem.

Presets:
- "small" (default): WaveMix-Lite-style for 8x8 `digits` and 28x28 Fashion-MNIST on a CPU: levels 1-2, 1-4 blocks
  of width 16 or 32, mult 1 or 2, the stride-1 'strided' stem or a 2x2 'patchify' stem. The input is the data's
  size rounded up to a multiple of (stem reduction x 2^level) (`input_shape_for`), so every member runs on both.
  Named: `wavemix_lite_small` (WaveMix-Lite-16/2) and `wavemix_lite_32_2` (WaveMix-Lite-32/2), in the paper's
  WaveMix-Lite-C/N naming (C channels, N level-1 blocks, stride-1 'strided' stem, mult 2).
- "paper": the published checkpoints (Saved_weights/*.py) rebuilt to the parameter: levels 1-4, their depths and
  widths, mult 1/2/4 (every release uses 2), both stems with the strides and patches they use. The published
  models differ in input size and label count, so both are choices of this preset: `resolution` (the input side
  `input_shape_for` gives, as MBConv's resolution choice) and `classes` (the classifier's width). `graph` uses
  `num_classes` when given (a search on real data passes the data's) and the arch's `classes` otherwise; this
  preset's `default_classes` is None, so `nas inspect` / `nas export` without --classes build a named model with
  its own head. A search over this preset should restrict `classes` to one value: with data it changes nothing.

Input sizes of the named models: CIFAR 32 and TinyImageNet 64 (their datasets; example_cifar10.py and
tinyimagenet.py summarise at those sizes), ImageNet 224 (the models' timm config, Image_Classification/timm.py),
Galaxy10 256 (Galaxy10 DECals images are 256x256, fed unresized by Image_Classification/galaxy10.py, whose summary
uses 1x3x256x256). Places365 256: the repo states no size; 256x256 is the size Places365-Standard is distributed
at (an assumption). The level-4 ImageNet model at 256: at 224 its stride-4 stem leaves 56x56, which four halvings
cannot divide, and the official reshape fails there, so 256 (the next multiple of 64) is an assumption too.
Parameter counts do not depend on the input size.

Every member uses the official defaults dropout 0.5 and ff_channel = C (all releases do); `add_wavemix_block` takes
both. With equal weights, the built models give the official `wavemix` 0.2.4 models' logits (tests/test_wavemix.py,
when that package is installed).

Deviations, named: the stem takes the data's channels (the official code hard-codes 3); each DWT level transforms
the previous level's LL once (the official code recomputes levels 1..j for each j: the same values); the DWT is
slicing arithmetic, so it counts zero multiply-adds (the official strided filter convolutions would be counted by a
FLOP counter) and its module has no buffers, so it moves with `.to()` (the official DWT objects are globals on
cuda:0). The tiny README models that up-sample instead of using the transposed conv are not published and not here.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from nas.graph import ArchGraph, GraphBuilder
from nas.ops.core import Activation, Add, BatchNorm2d, Concat, Conv2d, Dropout, Flatten, GlobalAvgPool, Linear
from nas.ops.wavemix import ChannelSlice, ConvTranspose2d, HaarDWT
from nas.registry import register_space
from nas.space import Architecture, ArchitectureError, Choice, NASError, PresetSpace, Value, one_of

STEMS = ("strided", "patchify")  # the official `initial_conv` 'strided' and 'pachify' (sic)


def _mlp(g: GraphBuilder, p: str, x: str, width: int, mult: int, ff_channel: int, out_ch: int,
         dropout: float) -> str:
    """One level's MLP and up-sampling: 1x1 conv -> GELU -> dropout -> 1x1 conv -> 4x4/2 transposed conv -> BN."""
    h = g.add(f"{p}_fc1", Conv2d(g.shape(x)[0], width * mult, 1, bias=True), x)
    h = g.add(f"{p}_act", Activation("gelu"), h)
    h = g.add(f"{p}_drop", Dropout(dropout), h)
    h = g.add(f"{p}_fc2", Conv2d(width * mult, ff_channel, 1, bias=True), h)
    h = g.add(f"{p}_up", ConvTranspose2d(ff_channel, out_ch, 4, 2, 1), h)
    return g.add(f"{p}_bn", BatchNorm2d(out_ch), h)


def add_wavemix_block(g: GraphBuilder, prefix: str, x: str, level: int = 1, mult: int = 2,
                      ff_channel: int | None = None, dropout: float = 0.5) -> str:
    """A WaveMix block on `x` (width C = its channels) with the residual add; returns the output node.

    As the official `Level{L}Waveblock` plus `x = block(x) + x`: reduction 1x1 conv C -> C/4 (bias), then per level
    j = 1..L the Haar DWT of the previous LL ([LL; highs] = C channels at H / 2^j); MLP `ff{L}` on the coarsest
    bands; each finer level j concatenates its bands with the level below's up-sampled output and runs MLP `ff{j}`;
    every MLP outputs C/2 channels except the finest (C). `ff_channel` defaults to C, as every published model.
    The layers join the builder's current group (set `g.group` per block). C must be divisible by 4 and H, W by 2^L.
    """
    width, h, w = g.shape(x)
    if width % 4:
        raise NASError(f"a WaveMix block needs a width divisible by 4, got {width}")
    if level < 1 or h % 2 ** level or w % 2 ** level:
        raise NASError(f"a level-{level} WaveMix block needs a map divisible by {2 ** level}, got {h}x{w}")
    ff_channel = ff_channel or width
    quarter = width // 4
    r = g.add(f"{prefix}_reduce", Conv2d(width, quarter, 1, bias=True), x)
    bands = [g.add(f"{prefix}_dwt1", HaarDWT(quarter), r)]
    for j in range(2, level + 1):
        ll = g.add(f"{prefix}_ll{j - 1}", ChannelSlice(0, quarter), bands[-1])
        bands.append(g.add(f"{prefix}_dwt{j}", HaarDWT(quarter), ll))
    y = _mlp(g, f"{prefix}_ff{level}", bands[-1], width, mult, ff_channel, width if level == 1 else width // 2,
             dropout)
    for j in range(level - 1, 0, -1):
        cat = g.add(f"{prefix}_cat{j}", Concat(), bands[j - 1], y)
        y = _mlp(g, f"{prefix}_ff{j}", cat, width, mult, ff_channel, width if j == 1 else width // 2, dropout)
    return g.add(f"{prefix}_add", Add(), y, x)


def add_wavemix_stem(g: GraphBuilder, x: str, width: int, stem: str, stride: int = 1, patch: int = 4) -> str:
    """The official stems (biased convs). 'strided': 3x3 conv to C/2, 3x3 conv to C, both with `stride`, no
    activation. 'patchify': 3x3 to C/4, 3x3 to C/2, conv with kernel = stride = `patch` to C, GELU, BN."""
    in_ch = g.shape(x)[0]
    if stem == "strided":
        x = g.add("stem_conv1", Conv2d(in_ch, width // 2, 3, stride, bias=True), x)
        return g.add("stem_conv2", Conv2d(width // 2, width, 3, stride, bias=True), x)
    if stem != "patchify":
        raise NASError(f"WaveMix stem {stem!r} is not one of {one_of(STEMS)}")
    x = g.add("stem_conv1", Conv2d(in_ch, width // 4, 3, bias=True), x)
    x = g.add("stem_conv2", Conv2d(width // 4, width // 2, 3, bias=True), x)
    x = g.add("stem_patch", Conv2d(width // 2, width, patch, patch, bias=True, padding=0), x)
    x = g.add("stem_act", Activation("gelu"), x)
    return g.add("stem_bn", BatchNorm2d(width), x)


def add_wavemix_head(g: GraphBuilder, x: str, num_classes: int) -> str:
    """Global average pool -> flatten -> linear (the official `pool`)."""
    x = g.add("flatten", Flatten(), g.add("pool", GlobalAvgPool(), x))
    return g.add("classifier", Linear(g.shape(x)[0], num_classes), x)


@dataclass(frozen=True)
class WaveMixPreset:
    """One preset's choice values; `resolutions` empty means the data's size; `references` name published members."""

    doc: str
    levels: tuple[int, ...]
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    mults: tuple[int, ...]
    stem_strides: tuple[int, ...]
    patches: tuple[int, ...]
    default_input: tuple[int, int, int]
    default_classes: int | None
    resolutions: tuple[int, ...] = ()
    classes: tuple[int, ...] = ()
    references: Mapping[str, dict[str, Value]] = field(default_factory=dict)


def _published(resolution: int, classes: int, level: int, depth: int, width: int, stem: str, n: int) -> dict:
    """A published model: `n` is its stem's stride ('strided') or patch ('patchify'); mult 2 in every release."""
    key = "stem_stride" if stem == "strided" else "patch"
    return {"resolution": resolution, "classes": classes, "level": level, "depth": depth, "width": width, "mult": 2,
            "stem": stem, key: n}


PRESETS: dict[str, WaveMixPreset] = {
    "small": WaveMixPreset(
        doc="WaveMix-Lite-style space for 8x8 digits / 28x28 Fashion-MNIST on a CPU (levels 1-2, widths 16-32)",
        levels=(1, 2), depths=(1, 2, 3, 4), widths=(16, 32), mults=(1, 2), stem_strides=(1,), patches=(2,),
        default_input=(1, 8, 8), default_classes=10,
        references={"wavemix_lite_small": {"level": 1, "depth": 2, "width": 16, "mult": 2, "stem": "strided",
                                           "stem_stride": 1},
                    "wavemix_lite_32_2": {"level": 1, "depth": 2, "width": 32, "mult": 2, "stem": "strided",
                                          "stem_stride": 1}}),
    "paper": WaveMixPreset(
        doc="WaveMix at paper scale: the published CIFAR/TinyImageNet/ImageNet/Places365/Galaxy10 checkpoints",
        levels=(1, 2, 3, 4), depths=(7, 8, 10, 12, 16), widths=(144, 192, 256, 320), mults=(1, 2, 4),
        stem_strides=(1, 2), patches=(4, 8), default_input=(3, 224, 224), default_classes=None,
        resolutions=(32, 64, 224, 256), classes=(10, 100, 200, 365, 1000),
        references={
            "wavemix_cifar10_94_58": _published(32, 10, 1, 7, 144, "strided", 1),
            "wavemix_cifar10_95_37": _published(32, 10, 1, 8, 320, "strided", 1),
            "wavemix_cifar100_77_82": _published(32, 100, 1, 8, 256, "strided", 1),
            "wavemix_cifar100_78_81": _published(32, 100, 1, 10, 256, "strided", 1),
            "wavemix_tinyimagenet_62_51": _published(64, 200, 1, 12, 256, "strided", 1),
            "wavemix_imagenet_71_18": _published(224, 1000, 1, 16, 192, "patchify", 4),
            "wavemix_imagenet_75_06": _published(224, 1000, 3, 16, 192, "patchify", 4),
            "wavemix_imagenet_73_0": _published(224, 1000, 3, 16, 256, "patchify", 4),
            "wavemix_imagenet_70_42": _published(256, 1000, 4, 16, 256, "strided", 2),
            "wavemix_places365_54_94": _published(256, 365, 2, 12, 256, "patchify", 8),
            "wavemix_galaxy10_95_42": _published(256, 10, 3, 16, 192, "patchify", 4),
        }),
}


def stem_reduction(arch: Mapping[str, Value]) -> int:
    """How many times the stem shrinks the input side: stride^2 ('strided') or the patch ('patchify')."""
    return arch["stem_stride"] ** 2 if arch["stem"] == "strided" else arch["patch"]


@register_space("wavemix")
class WaveMixSpace(PresetSpace):
    """WaveMix / WaveMix-Lite: DWT token-mixing blocks (levels, depth, width, mult, stem); published models."""

    name = "wavemix"
    PRESETS = PRESETS
    default_preset = "small"
    spec: WaveMixPreset
    default_classes: int | None  # type: ignore[assignment]  # None in "paper": each named model has its own head

    def __init__(self, preset: str | None = None) -> None:
        super().__init__(preset)
        self.default_input = self.spec.default_input
        self.default_classes = self.spec.default_classes

    @cached_property
    def _choices(self) -> list[Choice]:
        s = self.spec
        out = []
        if s.resolutions:
            out += [Choice("resolution", s.resolutions, "ordinal", doc="input side (fixed per published model)"),
                    Choice("classes", s.classes, doc="classifier width of the published task (num_classes wins)")]
        return out + [
            Choice("level", s.levels, "ordinal", doc="DWT levels per block"),
            Choice("depth", s.depths, "ordinal", doc="number of blocks"),
            Choice("width", s.widths, "ordinal", doc="channels C (final_dim; ff_channel = C)"),
            Choice("mult", s.mults, "ordinal", doc="MLP expansion"),
            Choice("stem", STEMS, doc="'strided' (two 3x3 convs) or 'patchify' (the official 'pachify')"),
            Choice("stem_stride", s.stem_strides, "ordinal", lambda a: a["stem"] == "strided",
                   doc="stride of both strided-stem convs"),
            Choice("patch", s.patches, "ordinal", lambda a: a["stem"] == "patchify", doc="patchify kernel = stride"),
        ]

    def choices(self) -> list[Choice]:
        return self._choices

    def reference_archs(self) -> dict[str, Architecture]:
        return {name: Architecture(values) for name, values in self.spec.references.items()}

    def check(self, arch: Mapping[str, Value]) -> None:
        """With a resolution choice: the stem must divide it and leave a side divisible by 2^level."""
        if "resolution" not in arch or "stem" not in arch or "level" not in arch:
            return
        side, shrink, level = arch["resolution"], stem_reduction(arch), arch["level"]
        if side % shrink or side // shrink % 2 ** level:
            raise ArchitectureError(f"resolution {side} with a stem shrinking it {shrink}x leaves {side / shrink:g}, "
                                    f"not divisible by 2^level = {2 ** level}; change the resolution, stem or level")

    def input_shape_for(self, arch: Mapping[str, Value], data_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The arch's resolution ("paper"), else the data's side rounded up to a multiple of stem x 2^level."""
        if "resolution" in arch:
            return (data_shape[0], arch["resolution"], arch["resolution"])
        unit = stem_reduction(arch) * 2 ** arch["level"]
        return (data_shape[0], *(-(-side // unit) * unit for side in data_shape[1:]))

    def graph(self, arch: Mapping[str, Value], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None) -> ArchGraph:
        shape = input_shape or self.input_shape_for(arch, self.default_input)
        classes = num_classes or arch.get("classes") or self.default_classes
        if classes is None:
            raise NASError("a wavemix 'paper' architecture needs a 'classes' choice or num_classes")
        width = arch["width"]
        g = GraphBuilder(shape)
        g.group = "stem"
        x = add_wavemix_stem(g, g.input, width, arch["stem"], arch.get("stem_stride", 1), arch.get("patch", 4))
        for i in range(arch["depth"]):
            g.group = f"block{i}"
            x = add_wavemix_block(g, f"b{i}", x, arch["level"], arch["mult"])
        g.group = "head"
        return g.finish(add_wavemix_head(g, x, classes))
