"""The block-wise HyTra supernet of BossNAS (`searching/bossnas/models/supernets/hytra_supernet.py`).

One set of weights per (layer, op, level): every layer position holds a ResConv at each level it can
reach and a ResAtt at the two lowest, all with the search-phase ops (ReLU, no SE, untransposed
attention). As in the official `ResConv`/`ResAtt`, each op owns two input variants that share the rest
of its weights: "same" (input at its own level; identity shortcut; stride-1 PEG) and "down" (input one
level up; 3x3 stride-2 conv + BN + ReLU shortcut, own 1x1 and stride-2 PEG + BN). Layer 0 is fed by a
stem adaptor per level (depthwise conv with kernel = stride, 1x1 to width / 4, BN; the "first" variant).

Blocks are the four blocks of four layers; a block's entry state is the level the previous block ended
at (0 after the stem) and its candidates are `hytra.candidates(entry)`, i.e. the official
`restricted_path` (51 / 99 / 80 / 16 paths entering at levels 0 / 1 / 2 / 3, in both presets). Paths are
tuples of the official op indices (0 = ResAtt@7 ... 5 = ResConv@56), so "5433" reads as in the
official path_rank files. A path computes exactly what the stand-alone model of the search-phase
variant (the "small" preset's graph) computes for those layers; `subnet_state_dict` gives that model's
weights.

Deviation: the official supernet is built with `stage_depths = [4, 3, 2, 2]`, so blocks 1-3 lack the
ops a path would need after block 0 ends at 56 (or block 1 above 14) and such paths would fail; here
every reachable (layer, op, level) has weights, so every candidate of every entry runs. The paper
preset's supernet is therefore large (the stride-2 3x3 shortcuts of the 7x7 ops alone are 19M
parameters each); it is meant for a GPU, the small preset for a CPU.
"""
from __future__ import annotations

from collections.abc import Sequence
import torch
import torch.nn.functional as F
from torch import nn

from nas.ops.attention_module import MultiHeadSelfAttention2d
from nas.space import Architecture, NASError
from nas.supernet import BlockSupernet, Path
from search_spaces.hytra import (ATT_LEVELS, BLOCK_LAYERS, NUM_BLOCKS, NUM_LAYERS, NUM_LEVELS, OP_OF_INDEX,
                                 HyTraSpace, op_index)
from search_spaces.hytra import candidate_set as _candidate_set
from search_spaces.hytra import candidates as _candidates


def _bn(channels: int, zero: bool = False) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels)
    if zero:
        nn.init.zeros_(bn.weight)
    return bn


class FabricOp(nn.Module):
    """One searchable op (ResConv or ResAtt) at one level of one layer, with its input variants."""

    def __init__(self, kind: str, in_widths: dict[str, int], width: int, heads: int) -> None:
        super().__init__()
        self.kind = kind
        b = width // 4
        entries = {}
        for entry, in_ch in in_widths.items():
            stride = 2 if entry == "down" else 1
            parts = nn.ModuleDict({"conv1": nn.Conv2d(in_ch, b, 1, bias=False),
                                   "peg": nn.Conv2d(b, b, 3, stride, 1, groups=b),
                                   "bn1": _bn(b)})
            if entry != "same":
                kernel = 3 if entry == "down" else 1
                parts["short_conv"] = nn.Conv2d(in_ch, width, kernel, stride, kernel // 2, bias=False)
                parts["short_bn"] = _bn(width)
            entries[entry] = parts
        self.entries = nn.ModuleDict(entries)
        mixing = nn.Conv2d(b, b, 3, 1, 1, bias=False) if kind == "conv" else \
            MultiHeadSelfAttention2d(b, heads, b // heads, untransposed=True)
        self.body = nn.ModuleDict({"conv2" if kind == "conv" else "att": mixing, "bn2": _bn(b),
                                   "conv3": nn.Conv2d(b, width, 1, bias=False), "bn3": _bn(width, zero=True)})

    def forward(self, x: torch.Tensor, entry: str) -> torch.Tensor:
        parts = self.entries[entry]
        short = F.relu(parts["short_bn"](parts["short_conv"](x))) if "short_conv" in parts else x
        h = F.relu(parts["bn1"](parts["peg"](parts["conv1"](x))))
        mixing = self.body["conv2"] if self.kind == "conv" else self.body["att"]
        h = F.relu(self.body["bn2"](mixing(h)))
        h = self.body["bn3"](self.body["conv3"](h))
        return F.relu(h + short)

    def parts(self, entry: str) -> dict[str, nn.Module]:
        """The modules one input variant uses, by their names in the stand-alone graph (`l{i}_<name>`)."""
        return {**dict(self.entries[entry].items()), **dict(self.body.items())}


class HyTraSupernet(BlockSupernet):
    """HyTra's weight-sharing fabric cut into four blocks of four layers (search-phase ops)."""

    num_blocks = NUM_BLOCKS

    def __init__(self, space: HyTraSpace, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.space = space
        spec = space.spec
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.sizes = space.level_sizes(self.input_shape)
        stem: dict[str, nn.Module] = {
            "stem_conv": nn.Conv2d(input_shape[0], spec.stem_width, 7 if spec.stem == "imagenet" else 3,
                                   2 if spec.stem == "imagenet" else 1, 3 if spec.stem == "imagenet" else 1,
                                   bias=False),
            "stem_bn": _bn(spec.stem_width)}
        if spec.stem == "imagenet":
            stem["stem_pool"] = nn.MaxPool2d(3, 2, 1)
        self.stem_parts = nn.ModuleDict(stem)
        self.adapt = nn.ModuleDict()
        for level in (0, 1):
            s, b = 2 ** level, spec.bottleneck(level)
            self.adapt[str(level)] = nn.ModuleDict({
                "adapt_dw": nn.Conv2d(spec.stem_width, spec.stem_width, s, s, groups=spec.stem_width, bias=False),
                "adapt_pw": nn.Conv2d(spec.stem_width, b, 1, bias=False),
                "adapt_bn": _bn(b)})
        self.layers = nn.ModuleList()
        for i in range(NUM_LAYERS):
            ops = nn.ModuleDict()
            for level in range(min(i + 1, NUM_LEVELS - 1) + 1):
                if i == 0:
                    in_widths = {"first": spec.bottleneck(level)}
                else:
                    in_widths = {e: spec.widths[lv] for e, lv in (("same", level), ("down", level - 1))
                                 if 0 <= lv <= min(i, NUM_LEVELS - 1)}
                for kind in ("conv", "att") if level in ATT_LEVELS else ("conv",):
                    ops[str(op_index(level, kind))] = FabricOp(kind, in_widths, spec.widths[level], spec.heads[level])
            self.layers.append(ops)

    # -- protocol ----------------------------------------------------------------------------
    def initial_state(self) -> int:
        return 0

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem_parts["stem_bn"](self.stem_parts["stem_conv"](x)))
        return self.stem_parts["stem_pool"](x) if "stem_pool" in self.stem_parts else x

    def stem_modules(self) -> list[nn.Module]:
        return [self.stem_parts]

    def block_modules(self, block: int) -> list[nn.Module]:
        self._check_block(block)
        layers = [self.layers[i] for i in range(block * BLOCK_LAYERS, (block + 1) * BLOCK_LAYERS)]
        return [self.adapt, *layers] if block == 0 else layers

    def candidates(self, block: int, entry: int) -> list[Path]:
        self._check_block(block)
        return list(_candidates(entry))

    def _check_block(self, block: int) -> None:
        if not 0 <= block < NUM_BLOCKS:
            raise NASError(f"hytra has blocks 0..{NUM_BLOCKS - 1}, not {block}")

    def _check_path(self, block: int, path: Path, entry: int) -> None:
        self._check_block(block)
        if tuple(path) not in _candidate_set(entry):
            raise NASError(f"path {tuple(path)} is not a candidate of block {block} entered at level {entry} "
                           f"(keep or halve per layer from the entry; op indices 0-5)")

    def forward_block(self, block: int, path: Path, x: torch.Tensor, entry: int) -> torch.Tensor:
        self._check_path(block, path, entry)
        level = entry
        for j, index in enumerate(path):
            i = block * BLOCK_LAYERS + j
            new_level = OP_OF_INDEX[index][0]
            if i == 0:
                adapt = self.adapt[str(new_level)]
                x = adapt["adapt_bn"](adapt["adapt_pw"](adapt["adapt_dw"](x)))
                variant = "first"
            else:
                variant = "down" if new_level > level else "same"
            x = self.layers[i][str(index)](x, variant)
            level = new_level
        return x

    def exit_state(self, block: int, path: Path, entry: int) -> int:
        self._check_path(block, path, entry)
        return OP_OF_INDEX[path[-1]][0]

    def output_shape(self, block: int, path: Path, entry: int) -> tuple[int, ...]:
        level = self.exit_state(block, path, entry)
        return (self.space.spec.widths[level], self.sizes[level], self.sizes[level])

    def arch_of(self, paths: Sequence[Path]) -> Architecture:
        return self.space.arch_of(paths)

    def paths_of(self, arch: Architecture) -> list[Path]:
        return self.space.paths_of(arch)

    # -- weights for stand-alone models --------------------------------------------------------
    def subnet_state_dict(self, paths: Sequence[Path]) -> dict[str, torch.Tensor]:
        """The weights `paths` use, keyed as in the stand-alone model of the search-phase variant.

        Covers the stem and the 16 layers; the head (and transitions of an arch ending above the lowest
        level) are not in the supernet, so load with `strict=False`.
        """
        modules: dict[str, nn.Module] = dict(self.stem_parts.items())
        entry = self.initial_state()
        for block, path in enumerate(paths):
            self._check_path(block, path, entry)
            for j, index in enumerate(path):
                i = block * BLOCK_LAYERS + j
                level = OP_OF_INDEX[index][0]
                if i == 0:
                    variant = "first"
                    modules.update({f"l0_{k}": m for k, m in self.adapt[str(level)].items()})
                else:
                    variant = "down" if level > entry else "same"
                modules.update({f"l{i}_{k}": m for k, m in self.layers[i][str(index)].parts(variant).items()})
                entry = level
        return {f"{name}.{key}": value for name, module in modules.items()
                for key, value in module.state_dict().items()}
