"""A tiny block-wise space for strategy tests: three blocks of one or two conv layers on 1x8x8 inputs.

Each layer is op "a" or "b" (3x3 conv, BN, ReLU; own weights each) or "c" (the same with stride 2); "c" halves
the map and can be taken once in the whole network, so blocks after it are entered at 4x4 instead of 8x8
(two entry states, as HyTra's resolutions).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from nas.blockwise import BlockPaths, BlockSpace, Path
from nas.graph import ArchGraph, GraphBuilder
from nas.layers import conv_bn_act
from nas.ops import Conv2d, Flatten, GlobalAvgPool, Linear
from nas.space import Architecture, ArchitectureError, Choice, Value

OPS = "abc"
PATHS = tuple(p for p in (*OPS, *(a + b for a in OPS for b in OPS)) if p.count("c") <= 1)


class ToyBlocks(BlockPaths):
    num_blocks = 3
    input_shape = (1, 8, 8)

    def initial_state(self) -> int:
        return 8

    def candidates(self, block: int, entry: object) -> list[Path]:
        return [tuple(p) for p in PATHS if entry == 8 or "c" not in p]

    def exit_state(self, block: int, path: Path, entry: object) -> int:
        return entry // 2 if "c" in path else entry  # type: ignore[operator]

    def arch_of(self, paths: Sequence[Path]) -> Architecture:
        return Architecture({f"b{k}": "".join(p) for k, p in enumerate(paths)})

    def paths_of(self, arch: Architecture) -> list[Path]:
        return [tuple(arch[f"b{k}"]) for k in range(self.num_blocks)]

    def block_of(self, group: str) -> int | None:
        return int(group[5]) if group.startswith("block") else None


class ToyBlockSpace(BlockSpace):
    """Three blocks of 1-2 conv layers; op "c" halves the map, once in the network."""

    name = "toy_blocks"
    default_input = (1, 8, 8)
    default_classes = 3

    def choices(self) -> list[Choice]:
        return [Choice(f"b{k}", PATHS) for k in range(3)]

    def check(self, arch: Mapping[str, Value]) -> None:
        if sum(arch.get(f"b{k}", "").count("c") for k in range(3)) > 1:
            raise ArchitectureError("op 'c' halves the map and may appear once")

    def graph(self, arch: Mapping[str, Value], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None) -> ArchGraph:
        g = GraphBuilder(input_shape or self.default_input)
        g.group = "stem"
        x = g.add("stem_conv", Conv2d(1, 4, 3, bias=True), g.input)
        for k in range(3):
            for j, op in enumerate(arch[f"b{k}"]):
                g.group = f"block{k}.layer{j}"
                with g.candidate(f"b{k}_l{j}", op):
                    x = conv_bn_act(g, f"b{k}_l{j}", x, 4, 3, 2 if op == "c" else 1)
        g.group = "head"
        x = g.add("flatten", Flatten(), g.add("pool", GlobalAvgPool(), x))
        return g.finish(g.add("fc", Linear(4, num_classes or self.default_classes), x))

    def block_paths(self, data_shape: tuple[int, ...]) -> ToyBlocks:
        return ToyBlocks()
