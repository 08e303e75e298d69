"""A block-wise weight-sharing supernet over `MBConvSpace` (for BossNAS-style strategies).

Blocks are the preset's stages. Each layer slot of a stage holds one inverted-residual module per
candidate op (kernel, expand ratio) with its own weights, as in BossNAS's MBConv supernet (`MixOps`:
separate weights per candidate op, no weight entanglement). A block's path is the tuple of its layers' ops,
one (kernel, expand) pair per layer; its length is the stage depth, so depth is searched too (the official
BossNAS MBConv space has fixed depths [2, 4, 4, 4, 4]; a path of depth d uses the first d layer slots).
A block's candidates are every such tuple for every depth of the stage (the product of the per-layer
candidates); the entry state is always None.

Fixed by the supernet: the stem and first layer (never searched), the width multiplier (1.0) and the input
resolution (the smallest resolution choice at least the data's size, else the largest one), recorded in
every architecture it produces.
"""
from __future__ import annotations

import itertools
from collections.abc import Hashable, Sequence

import torch
from torch import nn

from nas.space import Architecture, ArchitectureError
from nas.supernet import BlockSupernet, Path
from search_spaces.mbconv import STEM_STRIDE, MBConvFamily, make_divisible

ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.Hardswish, "silu": nn.SiLU}


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeeze: int, act: str, gate: type[nn.Module]) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.act = ACTIVATIONS[act]()
        self.expand = nn.Conv2d(squeeze, channels, 1)
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(s))))


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: str | None = None,
            eps: float = 1e-5) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(out_ch, eps=eps)]
    if act:
        layers.append(ACTIVATIONS[act]())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MBConv as in `search_spaces.mbconv.inverted_residual` (same rounding, SE style and shortcut rule)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, expand: float, stride: int, act: str, se: bool,
                 family: MBConvFamily, residual: bool = True) -> None:
        super().__init__()
        mid = round(in_ch * expand) if family.mid_rounding == "exact" else make_divisible(in_ch * expand)
        eps = family.bn_eps
        layers: list[nn.Module] = []
        if mid != in_ch:
            layers.append(conv_bn(in_ch, mid, 1, act=act, eps=eps))
        layers.append(conv_bn(mid, mid, kernel, stride, groups=mid, act=act, eps=eps))
        if se:
            if family.se_style == "efficientnet":
                layers.append(SqueezeExcite(mid, max(1, in_ch // 4), "silu", nn.Sigmoid))
            else:
                layers.append(SqueezeExcite(mid, make_divisible(mid // 4), "relu", nn.Hardsigmoid))
        layers.append(conv_bn(mid, out_ch, 1, eps=eps))
        self.body = nn.Sequential(*layers)
        self.residual = residual and stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def op_key(op: tuple[int, float]) -> str:
    return f"k{op[0]}_e{op[1]}".replace(".", "p")


class MBConvBlockSupernet(BlockSupernet):
    """Stages of an MBConv preset as BossNAS blocks; one weight set per (layer slot, kernel, expand)."""

    def __init__(self, space, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        f: MBConvFamily = space.family
        self.space = space
        fitting = [r for r in f.resolutions if r >= input_shape[-1]]
        self.resolution = min(fitting) if fitting else max(f.resolutions)
        self.input_shape = (input_shape[0], self.resolution, self.resolution)
        self.num_classes = num_classes
        self.num_blocks = len(f.stages)
        stride = STEM_STRIDE.get(space.preset, 2)
        self.stem_layers = nn.Sequential(
            conv_bn(input_shape[0], f.stem_width, 3, stride, act=f.stem_act, eps=f.bn_eps),
            InvertedResidual(f.stem_width, f.first_width, 3, 1.0, f.first_stride, f.first_act, f.first_se, f,
                             residual=f.first_residual))
        size = -(-self.resolution // stride)
        size = -(-size // f.first_stride)
        in_ch = f.first_width
        self._ops: list[list[tuple[int, float]]] = []
        self._depths: list[tuple[int, ...]] = []
        self._shapes: list[tuple[int, int, int]] = []
        self.blocks = nn.ModuleList()
        for i, stage in enumerate(f.stages):
            ops = [(k, e) for k in f.kernels for e in f.stage_expands(i)]
            depths = f.stage_depths(i)
            slots = nn.ModuleList()
            for j in range(max(depths)):
                cin, s = (in_ch, stage.stride) if j == 0 else (stage.width, 1)
                slots.append(nn.ModuleDict({op_key(op): InvertedResidual(cin, stage.width, op[0], op[1], s, stage.act,
                                                                         stage.se, f) for op in ops}))
            self.blocks.append(slots)
            size = -(-size // stage.stride)
            self._ops.append(ops)
            self._depths.append(depths)
            self._shapes.append((stage.width, size, size))
            in_ch = stage.width

    def initial_state(self) -> Hashable:
        return None

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem_layers(x)

    def stem_modules(self) -> list[nn.Module]:
        return [self.stem_layers]

    def block_modules(self, block: int) -> list[nn.Module]:
        return [self.blocks[block]]

    def candidates(self, block: int, entry: Hashable) -> list[Path]:
        ops = self._ops[block]
        return [tuple(p) for d in self._depths[block] for p in itertools.product(ops, repeat=d)]

    def forward_block(self, block: int, path: Path, x: torch.Tensor, entry: Hashable) -> torch.Tensor:
        for slot, op in zip(self.blocks[block], path):
            x = slot[op_key(op)](x)
        return x

    def exit_state(self, block: int, path: Path, entry: Hashable) -> Hashable:
        return None

    def output_shape(self, block: int, path: Path, entry: Hashable) -> tuple[int, ...]:
        return self._shapes[block]

    def arch_of(self, paths: Sequence[Path]) -> Architecture:
        if len(paths) != self.num_blocks:
            raise ArchitectureError(f"an MBConv supernet architecture needs {self.num_blocks} paths, got {len(paths)}")
        values = {"resolution": self.resolution, "width_mult": 1.0}
        for i, path in enumerate(paths, start=1):
            values[f"s{i}_depth"] = len(path)
            for j, (k, e) in enumerate(path):
                values[f"s{i}_l{j}_k"], values[f"s{i}_l{j}_e"] = k, e
        arch = Architecture(values)
        self.space.validate(arch)
        return arch

    def paths_of(self, arch: Architecture) -> list[Path]:
        return [tuple((arch[f"s{i}_l{j}_k"], arch[f"s{i}_l{j}_e"]) for j in range(arch[f"s{i}_depth"]))
                for i in range(1, self.num_blocks + 1)]
