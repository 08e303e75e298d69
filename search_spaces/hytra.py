"""HyTra: the hybrid CNN-transformer fabric space of BossNAS (Li et al., ICCV 2021).

Sixteen searchable layers in four blocks of four. Each layer keeps the previous layer's resolution or
halves it (the first layer relative to the stem), so the resolution never skips a level and never goes
back up; there are four levels (56/28/14/7 at 224 input) and each level has a fixed width (ResNet-50:
256/512/1024/2048, bottleneck width / 4). Every layer is a ResConv (bottleneck with a depthwise "PEG"
conv before the 3x3) or, at the two lowest levels only, a ResAtt (BoTNet-style all-to-all multi-head
self-attention, position encoded by the depthwise conv). Choices: `l{i}_res` ("keep"/"halve") for every
layer and `l{i}_op` ("conv"/"att") where attention is allowed (`check` names a layer that halves below
the lowest level; `validate` names one that asks for an op where only ResConv exists).

Two op variants, following the official code (changlin31/BossNAS):
- "search" (`searching/bossnas/models/operations/hytra_ops.py`): ReLU, no SE; a halving layer has a
  3x3 stride-2 conv + BN + ReLU shortcut and a stride-2 PEG; the first layer is fed by the stem adaptor
  (depthwise conv with kernel = stride = 1 or 2, 1x1 to width / 4, BN) and has a 1x1 + BN + ReLU
  shortcut; attention multiplies v by the un-transposed attention matrix, as that code does.
- "retrain" (`retraining_hytra/boss_models.py`, the published BossNets): `avg_down` shortcuts
  (2x2 average pool when halving, 1x1 conv, BN) wherever the shape changes, standard attention,
  activation `act` everywhere outside SE (stem included), SE 1/16 (ReLU, sigmoid) after ResConv's last BN
  when `se`, and `last_stride` 1 keeps the lowest level at the previous resolution (BossNet-T1).

Presets: "paper" (224 input, ResNet-50 widths, 1000 classes, "retrain" ops; adds the choices `act`,
`se`, `last_stride` so BossNet-T0, T0 w/o SE and T1 are members), "paper_search" (the same fabric with the
"search" ops: what BossNAS's supernet trains at paper scale; supernets are built from a preset's own graphs,
so `--preset paper` would train the retrained ops instead) and "small" (32x32 input, 3x3
stride-1 stem of 16 channels without max-pool, widths 32/64/128/256 at 32/16/8/4, heads 4/8 with
dim_head 8 as the paper's 4/8 heads, 10 classes, "search" ops: the stand-alone model is the supernet path).

Deviations, named: the first layer starts at the stem's level or one below, as the released
`restricted_path` does (1,703,991 architectures at 16 layers), not at any level as the paper's 2.8e6
count allows, so ViT-T / Random-T (which start at 14x14) are not members. An architecture that ends
above the lowest level gets boss_models' empty-stage transitions (3x3 stride-2 conv + BN + act per
missing level, with that level's stride) so the head always sees the last level's width; an empty
leading stage is not needed, as a halving first layer carries its own stride. Drop-path (0.1 on
ResConv in retraining) is a training regulariser and is not part of the graph. The stem output must be
divisible by 8 (input a multiple of 32 for "paper").
"""
from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property

from nas.blockwise import BlockPaths, BlockSpace, Path
from nas.graph import ArchGraph, GraphBuilder
from nas.layers import conv_bn_act, squeeze_excite
from nas.ops import Activation, Add, AvgPool2d, BatchNorm2d, Conv2d, Flatten, GlobalAvgPool, Linear, MaxPool2d
from nas.ops.attention import SelfAttention2d
from nas.registry import register_space
from nas.space import Architecture, ArchitectureError, Choice, NASError, Value, one_of
from search_spaces.mbconv import make_divisible

NUM_LAYERS = 16
BLOCK_LAYERS = 4
NUM_BLOCKS = NUM_LAYERS // BLOCK_LAYERS
NUM_LEVELS = 4
ATT_LEVELS = (2, 3)  # the two lowest resolutions


# -- the fabric, shared by the space and its supernet ------------------------------------------------
#: the official supernet op indices (hytra_supernet.py), as (level, kind): 0 = ResAtt@7 ... 5 = ResConv@56
OP_OF_INDEX: tuple[tuple[int, str], ...] = ((3, "att"), (3, "conv"), (2, "att"), (2, "conv"), (1, "conv"), (0, "conv"))
INDEX_OF_OP = {op: i for i, op in enumerate(OP_OF_INDEX)}


def op_index(level: int, kind: str) -> int:
    return INDEX_OF_OP[(level, kind)]


def level_ops(level: int) -> tuple[str, ...]:
    return ("conv", "att") if level in ATT_LEVELS else ("conv",)


def block_paths(entry: int, layers: int = BLOCK_LAYERS) -> list[tuple[int, ...]]:
    """Every path of `layers` layers entered at level `entry` (keep or halve per layer), as op indices.

    For 4 layers this is the official `restricted_path[4 - entry]`: 51, 99, 80 and 16 paths for entries
    at levels 0..3.
    """
    if layers == 0:
        return [()]
    out = []
    for level in (entry, entry + 1):
        if level < NUM_LEVELS:
            for kind in level_ops(level):
                out += [(op_index(level, kind),) + rest for rest in block_paths(level, layers - 1)]
    return out


@cache
def candidates(entry: int) -> tuple[tuple[int, ...], ...]:
    """The candidate paths of a block entered at level `entry` (cached)."""
    if entry not in range(NUM_LEVELS):
        raise NASError(f"a hytra block is entered at a level 0..{NUM_LEVELS - 1}, not {entry!r}")
    return tuple(block_paths(entry))


@cache
def candidate_set(entry: int) -> frozenset[tuple[int, ...]]:
    return frozenset(candidates(entry))


@dataclass(frozen=True)
class HyTraPreset:
    """One preset: input, stem, per-level widths and attention heads, op variant, named members.

    `references` maps a name to (per-level encoding as in boss_models.py: 1 = ResConv, 0 = ResAtt;
    extra choice values such as act / se / last_stride).
    """

    doc: str
    resolution: int
    stem: str  # "imagenet": 7x7 stride-2 conv + 3x3 stride-2 max-pool; "cifar": 3x3 stride-1 conv
    stem_width: int
    widths: tuple[int, ...]
    heads: tuple[int, ...]
    variant: str  # "search" or "retrain"
    classes: int
    references: Mapping[str, tuple[tuple[tuple[int, ...], ...], dict[str, Value]]] = field(default_factory=dict)

    @property
    def stem_stride(self) -> int:
        return 4 if self.stem == "imagenet" else 1

    def bottleneck(self, level: int) -> int:
        return self.widths[level] // 4


T0 = ((1,), (1,), (1, 1, 1, 0, 1), (0, 0, 0, 1, 0, 0, 0, 0, 0))
SE_SILU = {"act": "silu", "se": True, "last_stride": 2}
PRESETS: dict[str, HyTraPreset] = {
    "paper": HyTraPreset(
        doc="HyTra at 224x224 with ResNet-50 widths, built as the retrained BossNets",
        resolution=224, stem="imagenet", stem_width=64, widths=(256, 512, 1024, 2048), heads=(1, 2, 4, 8),
        variant="retrain", classes=1000,
        references={
            "bossnet_t0": (T0, SE_SILU),
            "bossnet_t0_nose": (T0, {"act": "relu", "se": False, "last_stride": 2}),
            "bossnet_t1": (T0, {"act": "silu", "se": True, "last_stride": 1}),
            # same-space baselines whose encodings boss_madds.py lists (counted there with SE; act as T0)
            "r50_t": (((1,) * 3, (1,) * 4, (1,) * 6, (1,) * 3), SE_SILU),
            "bot50_t": (((1,) * 3, (1,) * 4, (1,) * 6, (0,) * 3), SE_SILU),
            "dna_t": (((1,), (1, 1, 1), (1, 0, 1, 1, 1, 1, 0, 1), (0, 1, 1, 1)), SE_SILU),
        }),
    "paper_search": HyTraPreset(
        doc="HyTra at 224x224 with ResNet-50 widths and the search-phase ops: BossNAS's supernet at paper scale",
        resolution=224, stem="imagenet", stem_width=64, widths=(256, 512, 1024, 2048), heads=(1, 2, 4, 8),
        variant="search", classes=1000,
        references={"bossnet_t0_search": (T0, {})}),
    "small": HyTraPreset(
        doc="HyTra for 32x32 data on a CPU: widths 32/64/128/256 at 32/16/8/4, search-phase ops",
        resolution=32, stem="cifar", stem_width=16, widths=(32, 64, 128, 256), heads=(1, 2, 4, 8),
        variant="search", classes=10,
        references={"small_t0": (T0, {}), "small_r50": (((1,) * 3, (1,) * 4, (1,) * 6, (1,) * 3), {})}),
}


def levels_of(arch: Mapping[str, Value]) -> list[int]:
    """The level of each layer given its `l{i}_res` values (stops at a missing or bad one)."""
    out, level = [], 0
    for i in range(NUM_LAYERS):
        res = arch.get(f"l{i}_res")
        if res not in ("keep", "halve"):
            break
        level += res == "halve"
        out.append(level)
    return out


def _level_at(arch: Mapping[str, Value], i: int) -> int:
    return sum(arch.get(f"l{j}_res") == "halve" for j in range(i + 1))


def _at_att_level(i: int) -> Callable[[Mapping[str, Value]], bool]:
    """The `active` rule of layer `i`'s op choice: the layer runs at one of the two lowest resolutions."""
    return lambda arch: _level_at(arch, i) in ATT_LEVELS


@register_space("hytra")
class HyTraSpace(BlockSpace):
    """HyTra hybrid CNN-transformer fabric (BossNAS): 16 layers, ResConv / ResAtt, searchable down-sampling."""

    name = "hytra"
    presets = tuple(PRESETS)
    default_preset = "small"

    def __init__(self, preset: str | None = None) -> None:
        preset = preset or self.default_preset
        if preset not in PRESETS:
            raise ArchitectureError(f"unknown hytra preset {preset!r}; accepted: {one_of(list(PRESETS))}")
        self.preset = preset
        self.spec = PRESETS[preset]
        self.default_input = (3, self.spec.resolution, self.spec.resolution)
        self.default_classes = self.spec.classes

    def describe(self) -> str:
        return self.spec.doc

    @classmethod
    def preset_of(cls, arch_name: str) -> str | None:
        """The preset whose named architectures include `arch_name`."""
        return next((p for p, s in PRESETS.items() if arch_name in s.references), None)

    # -- choices -----------------------------------------------------------------------------
    @cached_property
    def _choices(self) -> list[Choice]:
        out = []
        for i in range(NUM_LAYERS):
            out.append(Choice(f"l{i}_res", ("keep", "halve"), doc=f"layer {i}: keep or halve the resolution"))
            out.append(Choice(f"l{i}_op", ("conv", "att"), active=_at_att_level(i),
                              doc=f"layer {i}: ResConv or ResAtt (only at the two lowest resolutions)"))
        if self.spec.variant == "retrain":
            out += [Choice("act", ("silu", "relu"), doc="activation outside SE (T0: silu, T0 w/o SE: relu)"),
                    Choice("se", (True, False), doc="squeeze-excitation 1/16 in ResConv"),
                    Choice("last_stride", (2, 1), "ordinal", doc="1 keeps the lowest level at the previous size (T1)")]
        return out

    def choices(self) -> list[Choice]:
        return self._choices

    def level_sizes(self, input_shape: tuple[int, ...] | None = None) -> list[int]:
        size = (input_shape or self.default_input)[-1]
        stem = -(-size // 2) if self.spec.stem == "imagenet" else size
        stem = -(-stem // 2) if self.spec.stem == "imagenet" else stem
        if stem % 2 ** (NUM_LEVELS - 1):
            raise ArchitectureError(f"input {size}x{size} gives a {stem}x{stem} map after the stem; hytra needs it "
                                    f"divisible by {2 ** (NUM_LEVELS - 1)} (input a multiple of "
                                    f"{2 ** (NUM_LEVELS - 1) * self.spec.stem_stride})")
        return [stem >> level for level in range(NUM_LEVELS)]

    def _res(self, level: int) -> str:
        size = self.spec.resolution // self.spec.stem_stride >> level
        return f"{size}x{size}"

    def check(self, arch: Mapping[str, Value]) -> None:
        """Fabric rules the choices cannot express: no halving below the lowest level; ops only where allowed."""
        for i, level in enumerate(levels_of(arch)):
            if level >= NUM_LEVELS:
                raise ArchitectureError(f"layer l{i} halves the resolution below the lowest level "
                                        f"({self._res(NUM_LEVELS - 1)}); l{i}_res must be 'keep'")
            if level not in ATT_LEVELS and f"l{i}_op" in arch:
                raise ArchitectureError(f"layer l{i} runs at {self._res(level)}, where only ResConv exists (ResAtt "
                                        f"only at {self._res(ATT_LEVELS[0])} and {self._res(ATT_LEVELS[1])}); "
                                        f"drop l{i}_op")

    def validate(self, arch: Mapping[str, Value]) -> None:
        self.check(arch)  # fabric errors first: they name the layer and the rule
        super().validate(arch)

    # -- sampling ------------------------------------------------------------------------------
    @cached_property
    def _completions(self) -> list[list[int]]:
        """n[i][l]: the number of choices for layers i.. when layer i-1 is at level l."""
        n = [[0] * NUM_LEVELS for _ in range(NUM_LAYERS)] + [[1] * NUM_LEVELS]
        for i in reversed(range(NUM_LAYERS)):
            for level in range(NUM_LEVELS):
                n[i][level] = sum(len(level_ops(nxt)) * n[i + 1][nxt] for nxt in (level, level + 1) if nxt < NUM_LEVELS)
        return n

    def _global_choices(self) -> list[Choice]:
        return [c for c in self.choices() if not re.fullmatch(r"l\d+_(res|op)", c.name)]

    def sample(self, rng: random.Random) -> Architecture:
        """Uniform over the space: levels drawn with the exact completion counts, then ops and style choices."""
        n, values, level = self._completions, {}, 0
        for i in range(NUM_LAYERS):
            options = [nxt for nxt in (level, level + 1) if nxt < NUM_LEVELS]
            weights = [len(level_ops(nxt)) * n[i + 1][nxt] for nxt in options]
            nxt = rng.choices(options, weights)[0]
            values[f"l{i}_res"] = "halve" if nxt > level else "keep"
            level = nxt
            if level in ATT_LEVELS:
                values[f"l{i}_op"] = rng.choice(level_ops(level))
        for choice in self._global_choices():
            values[choice.name] = rng.choice(choice.values)
        return Architecture(values)

    def size(self) -> int:
        styles = 1
        for choice in self._global_choices():
            styles *= len(choice.values)
        return self._completions[0][0] * styles

    # -- named members -------------------------------------------------------------------------
    def from_encoding(self, encoding: Sequence[Sequence[int]], **style: Value) -> Architecture:
        """An architecture from a boss_models.py encoding: per level, the layers (1 = ResConv, 0 = ResAtt)."""
        values: dict[str, Value] = {}
        i, prev = 0, 0
        for level, layers in enumerate(encoding):
            for code in layers:
                if level > prev + 1:
                    raise ArchitectureError(f"encoding {encoding} starts layer l{i} at level {level} after level "
                                            f"{prev}; the fabric keeps or halves the resolution per layer")
                values[f"l{i}_res"] = "halve" if level > prev else "keep"
                if level in ATT_LEVELS:
                    values[f"l{i}_op"] = "conv" if code else "att"
                prev, i = level, i + 1
        arch = Architecture(dict(values, **style))
        self.validate(arch)
        return arch

    def reference_archs(self) -> dict[str, Architecture]:
        return {name: self.from_encoding(enc, **style) for name, (enc, style) in self.spec.references.items()}

    # -- block paths (the supernet's view) ------------------------------------------------------
    def paths_of(self, arch: Mapping[str, Value]) -> list[tuple[int, ...]]:
        """Per block, the official op indices of its four layers."""
        self.validate(arch)
        ops = [op_index(level, arch.get(f"l{i}_op", "conv")) for i, level in enumerate(levels_of(arch))]
        return [tuple(ops[b * BLOCK_LAYERS:(b + 1) * BLOCK_LAYERS]) for b in range(NUM_BLOCKS)]

    def arch_of(self, paths: Sequence[Sequence[int]]) -> Architecture:
        """The architecture of one path per block; the "paper" preset gets the published T0 style (SE, SiLU)."""
        if len(paths) != NUM_BLOCKS:
            raise NASError(f"a hytra architecture needs one path per block ({NUM_BLOCKS}), got {len(paths)}")
        values: dict[str, Value] = {}
        entry = 0
        for block, path in enumerate(paths):
            if tuple(path) not in candidate_set(entry):
                raise NASError(f"path {tuple(path)} is not a candidate of block {block} entered at level {entry} "
                               "(keep or halve per layer; op indices 0-5)")
            for j, index in enumerate(path):
                level, kind = OP_OF_INDEX[index]
                values[f"l{block * BLOCK_LAYERS + j}_res"] = "halve" if level > entry else "keep"
                if level in ATT_LEVELS:
                    values[f"l{block * BLOCK_LAYERS + j}_op"] = kind
                entry = level
        if self.spec.variant == "retrain":
            values.update(SE_SILU)
        return Architecture(values)

    def input_shape_for(self, arch: Mapping[str, Value], data_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (data_shape[0], self.spec.resolution, self.spec.resolution)

    def block_paths(self, data_shape: tuple[int, ...]) -> HyTraBlocks:
        """The four blocks of four layers (`HyTraBlocks`), at the input side of `data_shape`."""
        return HyTraBlocks(self, data_shape)

    def supernet_cover(self) -> list[Architecture]:
        """Architectures that together take every (layer, entry level, level, op) of the fabric: for each layer
        i, each level the layer before can be at and each op the layer can take from there, the layers before
        reach that level as early as they can and the layers after keep the level (ResConv). That is 102
        graphs in every preset, far fewer than one per block candidate."""
        archs: dict[Architecture, None] = {}
        for i in range(NUM_LAYERS):
            for prev in range(min(i, NUM_LEVELS - 1) + 1):
                for level in (prev, prev + 1) if i else (0, 1):
                    for kind in level_ops(level) if level < NUM_LEVELS else ():
                        levels = [min(j + 1, prev) for j in range(i)] + [level] * (NUM_LAYERS - i)
                        ops = [op_index(lv, "conv") for lv in levels]
                        ops[i] = op_index(level, kind)
                        archs[self.arch_of([tuple(ops[b * BLOCK_LAYERS:(b + 1) * BLOCK_LAYERS])
                                            for b in range(NUM_BLOCKS)])] = None
        return list(archs)

    # -- graph ---------------------------------------------------------------------------------
    def graph(self, arch: Mapping[str, Value], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None) -> ArchGraph:
        spec = self.spec
        input_shape = tuple(input_shape or self.default_input)
        self.level_sizes(input_shape)
        retrain = spec.variant == "retrain"
        act = arch["act"] if retrain else "relu"
        g = GraphBuilder(input_shape)
        g.group = "stem"
        x = build_stem(g, spec, input_shape[0], act)
        level = 0
        for i, lvl in enumerate(levels_of(arch)):
            g.group = f"block{i // BLOCK_LAYERS}.layer{i % BLOCK_LAYERS}"
            kind = arch.get(f"l{i}_op", "conv")
            entry = "first" if i == 0 and not retrain else ("down" if lvl > level else "same")
            if retrain:
                x = retrain_layer(g, f"l{i}", x, kind, lvl, entry, spec, act, arch["se"], arch["last_stride"])
            else:
                x = search_layer(g, f"l{i}", x, kind, lvl, entry, spec)
            level = lvl
        g.group = "head"
        for lvl in range(level + 1, NUM_LEVELS):
            stride = arch["last_stride"] if retrain and lvl == NUM_LEVELS - 1 else 2
            x = conv_bn_act(g, f"tail{lvl}", x, spec.widths[lvl], 3, stride, act)
        x = g.add("pool", GlobalAvgPool(), x)
        x = g.add("flatten", Flatten(), x)
        x = g.add("classifier", Linear(spec.widths[-1], num_classes or self.default_classes), x)
        return g.finish(x)


def build_stem(g: GraphBuilder, spec: HyTraPreset, in_ch: int, act: str) -> str:
    """ImageNet: 7x7 stride-2 conv, BN, act, 3x3 stride-2 max-pool. Small: 3x3 stride-1 conv, BN, act."""
    if spec.stem == "imagenet":
        x = conv_bn_act(g, "stem", g.input, spec.stem_width, 7, 2, act)
        return g.add("stem_pool", MaxPool2d(3, 2, 1), x)
    return conv_bn_act(g, "stem", g.input, spec.stem_width, 3, 1, act)


def _mixing(g: GraphBuilder, p: str, h: str, kind: str, spec: HyTraPreset, level: int, act: str,
            untransposed: bool) -> str:
    """The spatial mixing after the PEG: 3x3 conv (ResConv) or all-to-all attention (ResAtt), then BN, act."""
    b = spec.bottleneck(level)
    if kind == "conv":
        h = g.add(f"{p}_conv2", Conv2d(b, b, 3), h)
    else:
        heads = spec.heads[level]
        h = g.add(f"{p}_att", SelfAttention2d(b, heads, b // heads, untransposed), h)
    h = g.add(f"{p}_bn2", BatchNorm2d(b), h)
    return g.add(f"{p}_act2", Activation(act), h)


def search_layer(g: GraphBuilder, p: str, x: str, kind: str, level: int, entry: str, spec: HyTraPreset) -> str:
    """A search-phase ResConv / ResAtt (hytra_ops.py). `entry`: "first" (after the stem adaptor), "same" or "down".

    Slot labels (supernets): the layers that depend on where the input comes from (adaptor, shortcut, 1x1,
    PEG, BN) are candidate "{kind}@{level}/{entry}" of slot `p`, the rest "{kind}@{level}", so in a supernet
    with separate weights the input variants of one op share its body, as the official `ResConv`/`ResAtt`.
    """
    width, b = spec.widths[level], spec.bottleneck(level)
    stride = 1
    with g.candidate(p, f"{kind}@{level}/{entry}"):
        if entry == "first":
            s = 2 ** level
            stem_w = g.shape(x)[0]
            x = g.add(f"{p}_adapt_dw", Conv2d(stem_w, stem_w, s, s, groups=stem_w, padding=0), x)
            x = g.add(f"{p}_adapt_pw", Conv2d(stem_w, b, 1), x)
            x = g.add(f"{p}_adapt_bn", BatchNorm2d(b), x)
            short = conv_bn_act(g, f"{p}_short", x, width, 1)
        elif entry == "down":
            short = conv_bn_act(g, f"{p}_short", x, width, 3, 2)
            stride = 2
        else:
            short = x
        h = g.add(f"{p}_conv1", Conv2d(g.shape(x)[0], b, 1), x)
        h = g.add(f"{p}_peg", Conv2d(b, b, 3, stride, groups=b, bias=True), h)
        h = g.add(f"{p}_bn1", BatchNorm2d(b), h)
        h = g.add(f"{p}_act1", Activation("relu"), h)
    with g.candidate(p, f"{kind}@{level}"):
        h = _mixing(g, p, h, kind, spec, level, "relu", untransposed=True)
        h = g.add(f"{p}_conv3", Conv2d(b, width, 1), h)
        h = g.add(f"{p}_bn3", BatchNorm2d(width, zero_init=True), h)
        h = g.add(f"{p}_add", Add(), h, short)
        return g.add(f"{p}_out_act", Activation("relu"), h)


def retrain_layer(g: GraphBuilder, p: str, x: str, kind: str, level: int, entry: str, spec: HyTraPreset,
                  act: str, se: bool, last_stride: int) -> str:
    """A retrained BossNet ResConv / ResAtt (boss_candidates/*.py with avg_down=True); slot labels as
    `search_layer`."""
    width, b = spec.widths[level], spec.bottleneck(level)
    in_ch, _, size = g.shape(x)
    stride = (last_stride if level == NUM_LEVELS - 1 else 2) if entry == "down" else 1
    if stride == 2 and size % 2:
        raise NASError(f"layer {p} halves an odd {size}x{size} map; use an input size that is a multiple of 32")
    with g.candidate(p, f"{kind}@{level}/{entry}"):
        short = x
        if stride == 2 or in_ch != width:
            if stride == 2:
                short = g.add(f"{p}_short_pool", AvgPool2d(2, 2, count_include_pad=False), short)
            short = g.add(f"{p}_short_conv", Conv2d(in_ch, width, 1), short)
            short = g.add(f"{p}_short_bn", BatchNorm2d(width), short)
        h = g.add(f"{p}_conv1", Conv2d(in_ch, b, 1), x)
        h = g.add(f"{p}_peg", Conv2d(b, b, 3, stride, groups=b, bias=True), h)
        h = g.add(f"{p}_bn1", BatchNorm2d(b), h)
        h = g.add(f"{p}_act1", Activation(act), h)
    with g.candidate(p, f"{kind}@{level}"):
        h = _mixing(g, p, h, kind, spec, level, act, untransposed=False)
        h = g.add(f"{p}_conv3", Conv2d(b, width, 1), h)
        h = g.add(f"{p}_bn3", BatchNorm2d(width, zero_init=True), h)
        if se and kind == "conv":
            h = squeeze_excite(g, f"{p}_se", h, make_divisible(width / 16), "relu", "sigmoid")
        h = g.add(f"{p}_add", Add(), h, short)
        return g.add(f"{p}_out_act", Activation(act), h)


class HyTraBlocks(BlockPaths):
    """HyTra's four blocks of four layers, as the official block-wise supernet cuts them.

    A block's entry state is the level the previous block ended at (0 after the stem) and its candidates are
    `candidates(entry)`, the official `restricted_path` (51 / 99 / 80 / 16 paths entering at levels 0 / 1 / 2 /
    3, in both presets). Paths are tuples of the official op indices (0 = ResAtt@7 ... 5 = ResConv@56), so
    "5433" reads as in the official path_rank files. The input side is the data's (any multiple of 8 for the
    small preset), so a supernet can run on smaller images than the stand-alone models.

    Deviation: the official supernet is built with `stage_depths = [4, 3, 2, 2]`, so blocks 1-3 lack the ops
    a path needs after block 0 ends at 56 (or block 1 above 14) and such paths fail; here every reachable
    (layer, op, level) has weights, so every candidate of every entry runs. The paper preset's supernet is
    therefore large (the stride-2 3x3 shortcuts of the 7x7 ops alone are 19M parameters each): meant for a
    GPU, the small preset for a CPU.
    """

    num_blocks = NUM_BLOCKS

    def __init__(self, space: HyTraSpace, data_shape: tuple[int, ...]) -> None:
        self.space = space
        self.input_shape = tuple(data_shape)
        space.level_sizes(self.input_shape)  # a one-line error for a side the fabric cannot halve 3 times

    def initial_state(self) -> int:
        return 0

    def candidates(self, block: int, entry: object) -> list[Path]:
        return list(candidates(entry))  # type: ignore[arg-type]

    def exit_state(self, block: int, path: Path, entry: object) -> int:
        return OP_OF_INDEX[path[-1]][0]  # type: ignore[call-overload]  # HyTra paths hold op indices (ints)

    def block_of(self, group: str) -> int | None:
        return int(group[5:group.index(".")]) if group.startswith("block") else None

    def arch_of(self, paths: Sequence[Path]) -> Architecture:
        return self.space.arch_of(paths)  # type: ignore[arg-type]

    def paths_of(self, arch: Architecture) -> list[Path]:
        return self.space.paths_of(arch)  # type: ignore[return-value]

    def cover(self) -> list[Architecture]:
        return self.space.supernet_cover()
