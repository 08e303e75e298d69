"""The NATS-Bench size search space "sss" (Dong et al. 2021): one fixed cell, five searchable widths.

The cell is fixed to NATS-Bench's choice (the best cell of the topology space on CIFAR-100),
`|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|`, and the
network is the official `DynamicShapeTinyNet` with one cell per stage, five layers in all. Choices `c1`..`c5`,
each in {8, 16, ..., 64}, are the output widths of those layers in order, as the official channel string
`c1:c2:c3:c4:c5` lists them (8 ** 5 = 32,768 networks):

| choice | layer | also sets |
| --- | --- | --- |
| c1 | the stage-1 cell | the stem conv3x3 -> BN |
| c2 | the first residual reduction block (stride 2) | |
| c3 | the stage-2 cell | |
| c4 | the second residual reduction block (stride 2) | |
| c5 | the stage-3 cell | the last BN and the classifier's input |

A cell whose input width differs from its own (c3 != c2, c5 != c4) maps the input channels on the edges
leaving node 0 as the official `InferCell` does: its 3x3 convs take the input width, and its skip edge
becomes a 1x1 conv -> BN (`FactorizedReduce` at stride 1). The NATS-Bench README names the five widths
differently (first conv, first cell stage, first residual block, second cell stage, second residual block);
this follows the code, which the published parameter counts confirm: 8:8:8:8:8 has 11,714 parameters on
CIFAR-10, 8:8:8:16:32 49,202 and 8:8:40:32:40 144,834 (NATS-Bench's own cost records, tested exactly).
Widths are declared categorical, not ordinal, so that a mutation redraws one width from all the others,
as NATS-Bench's regularized evolution does (`mutate_size_func`; the official draw may also return the same
width, ours never does).

The largest network 64:64:64:64:64 (713,674 parameters on CIFAR-10) is not the topology space's network at
C=64 (20,529,354 with this cell): it has one cell per stage and constant width, where the topology space has
five cells per stage and doubles the width at each reduction.
"""
from __future__ import annotations

from collections.abc import Mapping

from nas.graph import ArchGraph
from nas.registry import register_space
from nas.space import Architecture, ArchitectureError, Choice, Value
from nas.tabular import TabularSpace
from search_spaces.nb201 import benchmark_input, parse_arch_string, tiny_network

CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
WIDTHS = (8, 16, 24, 32, 40, 48, 56, 64)
LAYERS = ("c1", "c2", "c3", "c4", "c5")


def parse_channels(text: str) -> Architecture:
    """The architecture of a channel string `c1:c2:c3:c4:c5`; a one-line `ArchitectureError` otherwise."""
    parts = text.strip().split(":")
    if len(parts) != len(LAYERS) or not all(p.isdigit() for p in parts):
        raise ArchitectureError(f"channel string {text[:60]!r} must be five widths like 64:40:48:64:56")
    bad = [p for p in parts if int(p) not in WIDTHS]
    if bad:
        raise ArchitectureError(f"width {bad[0]} in {text!r} is not accepted; accepted: "
                                f"{', '.join(map(str, WIDTHS))}")
    return Architecture({name: int(p) for name, p in zip(LAYERS, parts)})


@register_space("nats_sss")
class NATSSizeSpace(TabularSpace):
    """NATS-Bench size space: the fixed best cell, five layer widths in {8, ..., 64}."""

    name = "nats_sss"
    default_input = (3, 32, 32)
    default_classes = 10
    supernet_sharing = "elastic"  # one tensor per layer, narrower widths its leading channels (as TuNAS / NATS)
    REFERENCES = {
        "nats_sss_largest": "64:64:64:64:64",
        "nats_sss_smallest": "8:8:8:8:8",
        # BossNAS' searched architecture on this space (93.29% in the shared table)
        "bossnas_nats_sss": "64:40:48:64:56",
        # the best of the shared CIFAR-10 table (93.65%; 64:64:56:64:24 ties it)
        "nats_sss_best_cifar10": "64:64:56:64:64",
    }

    def choices(self) -> list[Choice]:
        docs = ("stem and stage-1 cell", "first reduction block", "stage-2 cell", "second reduction block",
                "stage-3 cell and head")
        return [Choice(name, WIDTHS, doc=f"output width of the {doc}", slot=name)
                for name, doc in zip(LAYERS, docs)]

    def reference_archs(self) -> dict[str, Architecture]:
        return {name: parse_channels(text) for name, text in self.REFERENCES.items()}

    def resolve(self, arch: str | Mapping[str, Value]) -> Architecture:
        """Also accepts the channel string `c1:c2:c3:c4:c5`."""
        if isinstance(arch, str) and arch.strip()[:1].isdigit():
            return parse_channels(arch)
        return super().resolve(arch)

    def benchmark_key(self, arch: Mapping[str, Value]) -> str:
        """The key of `arch` in a NATS-Bench size table: `c1:c2:c3:c4:c5`."""
        return ":".join(str(arch[name]) for name in LAYERS)

    def benchmark_input(self, dataset: str) -> tuple[tuple[int, ...], int]:
        """(input shape, classes) NATS-Bench trains on for a table's dataset column."""
        return benchmark_input(dataset)

    def size(self) -> int:
        return len(WIDTHS) ** len(LAYERS)

    def graph(self, arch: Mapping[str, Value], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None) -> ArchGraph:
        return tiny_network(parse_arch_string(CELL), [arch[name] for name in LAYERS],
                            tuple(input_shape or self.default_input), num_classes or self.default_classes)
