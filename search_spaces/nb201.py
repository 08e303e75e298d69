"""The NAS-Bench-201 cell space (Dong & Yang 2020), the topology space "tss" of NATS-Bench.

A cell is a DAG of 4 nodes; node 0 is the cell input, node 3 its output, and each of the 6 edges j <- i
(i < j) carries one of 5 ops: `none` (zeros), `skip_connect` (identity), `nor_conv_1x1`, `nor_conv_3x3`
(ReLU -> conv without bias -> affine BatchNorm) and `avg_pool_3x3` (stride 1, padding 1, padding not
counted). A node is the sum of its incoming edges. Choices are named `edge_<j>_<i>`: the edge into node j
from node i, in the order of the standard arch string
`|op~0|+|op~0|op~1|+|op~0|op~1|op~2|` (node 1's edge, node 2's two, node 3's three), so
5 ** 6 = 15,625 cells.

`graph(arch)` builds the network NAS-Bench-201 trains (AutoDL-Projects `TinyNetwork`, C=16, N=5): stem
conv3x3 -> BN; N cells of width C; a residual reduction block (ReLU-conv3x3/2-BN -> ReLU-conv3x3-BN,
shortcut avg-pool 2x2/2 -> conv1x1, summed); N cells of 2C; another reduction; N cells of 4C; BN -> ReLU
("lastact") -> global pool -> linear classifier. Every edge op is in the graph, `none` edges included, as
the official module keeps them, so parameter counts and multiply-adds equal NATS-Bench's published
figures (1,531,546 parameters for the all-3x3 cell with 10 classes on 3x32x32; NATS-Bench's "flops" are
our multiply-adds plus the classifier's bias additions, one per class). Loaded with the same weights, the
built modules gave outputs bit-identical to the official AutoDL `TinyNetwork` / `DynamicShapeTinyNet` for 11
cells on two datasets and 4 size-space networks (a one-off check against the official code, which the tests
cannot import). Datasets:
CIFAR-10 / CIFAR-100 on 3x32x32, ImageNet16-120 on 3x16x16 with 120 classes (`DATASETS`); this project's own
table `benchmarks/fashion_nb201/table.csv` has Fashion-MNIST on 1x16x16 (`PROJECT_DATASETS`; its networks are
a smaller skeleton, the `small` preset; with the default preset the costs are the C=16, N=5 network's).

`mutate` is NAS-Bench-201's REA mutation (a node uniformly, then one of its edges, then another op), not
the base class's uniform choice of an edge.

`canonical(arch)` is NAS-Bench-201's isomorphism key: the string the official
`to_unique_str(consider_zero=True)` renders, re-implemented. Node 0 is "0"; an edge's term is "#" (zero)
for a `none` edge or an edge leaving a node whose key is "#", the source's key for a skip edge, and
"(<source key>)@<op>" otherwise; a node's key is its terms sorted and joined by "+". Cells with equal keys
compute the same function up to isomorphism (an op on a zero input counted as zero, as the official code
does). The published count of 6,466 classes depends on this exact rendering (sums are joined without
brackets, zero terms are kept), so the key keeps it: an equivalent rendering with other brackets splits the
table into 6,325 classes, and full functional equivalence (zero terms dropped, nested sums flattened) into
4,930; such cells may still get different keys here.
"""
from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from nas.graph import ArchGraph, GraphBuilder
from nas.ops import (
    Activation,
    Add,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Flatten,
    GlobalAvgPool,
    Identity,
    Linear,
    Zero,
)
from nas.registry import register_space
from nas.space import (
    Architecture,
    ArchitectureError,
    Choice,
    NASError,
    Value,
    one_of,
)
from nas.tabular import TabularSpace

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: the cell's edges (into node j, from node i), in arch-string order
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
NODES = 4
#: dataset -> (input shape, classes) as NAS-Bench-201 trains them
DATASETS = {"cifar10": ((3, 32, 32), 10), "cifar100": ((3, 32, 32), 100), "imagenet16_120": ((3, 16, 16), 120)}
#: tables trained in this project, at their recipe's input: `benchmarks/fashion_nb201/table.csv`
#: (`scripts/build_fashion_nb201_truth.py`: Fashion-MNIST resized to 16x16, a C=8, N=1 skeleton)
PROJECT_DATASETS = {"fashion_mnist": ((1, 16, 16), 10)}
#: preset -> (C, N): the benchmark's network (C=16, N=5), and the skeleton of this project's Fashion-MNIST table
#: (C=8, N=1: cell 8 -> reduction 16 -> cell 16 -> reduction 32 -> cell 32), minutes on a CPU
SIZES = {"nb201": (16, 5), "small": (8, 1)}


def benchmark_input(dataset: str, datasets: Mapping[str, tuple[tuple[int, ...], int]] = DATASETS
                    ) -> tuple[tuple[int, ...], int]:
    """(input shape, classes) of a benchmark dataset among `datasets`, e.g. ((3, 16, 16), 120) for
    `ImageNet16-120`."""
    key = dataset.strip().lower().replace("-", "_")
    if key not in datasets:
        raise NASError(f"benchmark dataset {dataset!r} is not one of {one_of(list(datasets))}")
    return datasets[key]


def edge_name(j: int, i: int) -> str:
    return f"edge_{j}_{i}"


def arch_string(arch: Mapping[str, Value]) -> str:
    """The standard NAS-Bench-201 string, e.g. `|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|...|`."""
    nodes = []
    for j in range(1, NODES):
        nodes.append("|" + "|".join(f"{arch[edge_name(j, i)]}~{i}" for i in range(j)) + "|")
    return "+".join(nodes)


def parse_arch_string(text: str) -> Architecture:
    """The architecture of a standard arch string; a one-line `ArchitectureError` if it is malformed."""
    parts = text.strip().split("+")
    if len(parts) != NODES - 1:
        raise ArchitectureError(f"arch string {text[:80]!r} has {len(parts)} nodes separated by '+'; "
                                f"NAS-Bench-201 cells have {NODES - 1}")
    values: dict[str, Value] = {}
    for j, part in enumerate(parts, start=1):
        if len(part) < 2 or part[0] != "|" or part[-1] != "|":
            raise ArchitectureError(f"node {j} of arch string {text[:80]!r} must look like |op~i|...|, got {part!r}")
        edges = part[1:-1].split("|")
        for edge in edges:
            op, sep, src = edge.partition("~")
            if not sep or not src.isdigit():
                raise ArchitectureError(f"edge {edge!r} of node {j} must look like op~i (e.g. nor_conv_3x3~0)")
            if op not in OPS:
                raise ArchitectureError(f"op {op!r} on edge {edge!r} is not accepted; accepted: {one_of(OPS)}")
            i = int(src)
            if i >= j or edge_name(j, i) in values:
                raise ArchitectureError(f"node {j} of arch string {text[:80]!r} must have one edge from each "
                                        f"of nodes {', '.join(map(str, range(j)))}")
            values[edge_name(j, i)] = op
        if len(edges) != j:
            raise ArchitectureError(f"node {j} of arch string {text[:80]!r} has {len(edges)} edges, needs {j}")
    return Architecture(values)


def canonical(arch: Mapping[str, Value]) -> str:
    """NAS-Bench-201's isomorphism key of a cell (see the module docstring)."""
    zero = "#"
    nodes = ["0"]
    for j in range(1, NODES):
        terms = []
        for i in range(j):
            op, src = arch[edge_name(j, i)], nodes[i]
            if op == "none" or src == zero:
                terms.append(zero)
            elif op == "skip_connect":
                terms.append(src)
            else:
                terms.append(f"({src})@{op}")
        nodes.append("+".join(sorted(terms)))
    return nodes[-1]


# -- building ------------------------------------------------------------------------------------------------
def relu_conv_bn(g: GraphBuilder, prefix: str, x: str, out_ch: int, kernel: int, stride: int = 1) -> str:
    """NAS-Bench-201's ReLUConvBN: ReLU (not in place, as the official) -> conv (no bias, padding k // 2) ->
    affine BN."""
    x = g.add(f"{prefix}_relu", Activation("relu", inplace=False), x)
    x = g.add(f"{prefix}_conv", Conv2d(g.shape(x)[0], out_ch, kernel, stride), x)
    return g.add(f"{prefix}_bn", BatchNorm2d(out_ch), x)


def edge_op(g: GraphBuilder, prefix: str, op: str, x: str, out_ch: int) -> str:
    """One cell edge (stride 1) from `x` to `out_ch` channels, as the official OPS table builds it."""
    in_ch = g.shape(x)[0]
    if op == "none":
        if in_ch != out_ch:
            raise ArchitectureError(f"a 'none' edge cannot change channels ({in_ch} -> {out_ch})")
        return g.add(f"{prefix}_zero", Zero(), x)
    if op == "skip_connect":
        if in_ch == out_ch:
            return g.add(f"{prefix}_skip", Identity(), x)
        # FactorizedReduce at stride 1: conv 1x1 -> BN, without the ReLU of its stride-2 branch
        x = g.add(f"{prefix}_skip_conv", Conv2d(in_ch, out_ch, 1), x)
        return g.add(f"{prefix}_skip_bn", BatchNorm2d(out_ch), x)
    if op in ("nor_conv_1x1", "nor_conv_3x3"):
        return relu_conv_bn(g, prefix, x, out_ch, 1 if op == "nor_conv_1x1" else 3)
    if op == "avg_pool_3x3":
        if in_ch != out_ch:
            x = relu_conv_bn(g, f"{prefix}_pre", x, out_ch, 1)
        return g.add(f"{prefix}_pool", AvgPool2d(3, 1, 1, count_include_pad=False), x)
    raise ArchitectureError(f"op {op!r} is not accepted; accepted: {one_of(OPS)}")


def add_cell(g: GraphBuilder, prefix: str, x: str, arch: Mapping[str, Value], out_ch: int) -> str:
    """An inference cell (AutoDL `InferCell`): edges from node 0 map the input's channels to `out_ch`."""
    nodes = [x]
    for j in range(1, NODES):
        terms = []
        for i in range(j):
            with g.candidate(edge_name(j, i), arch[edge_name(j, i)]):  # the edge's op in every cell (supernets)
                terms.append(edge_op(g, f"{prefix}_e{j}{i}", arch[edge_name(j, i)], nodes[i], out_ch))
        nodes.append(terms[0] if len(terms) == 1 else g.add(f"{prefix}_n{j}", Add(), *terms))
    return nodes[-1]


def add_reduction(g: GraphBuilder, prefix: str, x: str, out_ch: int) -> str:
    """The residual reduction block (AutoDL `ResNetBasicblock`, stride 2)."""
    h = relu_conv_bn(g, f"{prefix}_a", x, out_ch, 3, 2)
    h = relu_conv_bn(g, f"{prefix}_b", h, out_ch, 3)
    s = g.add(f"{prefix}_short_pool", AvgPool2d(2, 2), x)
    s = g.add(f"{prefix}_short_conv", Conv2d(g.shape(x)[0], out_ch, 1), s)
    return g.add(f"{prefix}_add", Add(), s, h)


def tiny_network(cell: Mapping[str, Value], channels: Sequence[int], input_shape: tuple[int, ...],
                 num_classes: int) -> ArchGraph:
    """The NAS-Bench-201 / NATS-Bench macro skeleton (AutoDL `DynamicShapeTinyNet`).

    `channels` has 3N + 2 entries, one per layer: N cells, a reduction, N cells, a reduction, N cells; the
    stem has the first layer's width. Layer k's nodes are named `cell<k>_...` as the official `cells.<k>`.
    """
    if len(channels) % 3 != 2:
        raise ValueError(f"{len(channels)} layer widths given; the skeleton needs 3N + 2")
    n = len(channels) // 3
    g = GraphBuilder(input_shape)
    g.group = "stem"
    x = g.add("stem_conv", Conv2d(input_shape[0], channels[0], 3), g.input)
    x = g.add("stem_bn", BatchNorm2d(channels[0]), x)
    for k, width in enumerate(channels):
        g.group = f"cells.{k}"
        x = add_reduction(g, f"cell{k}", x, width) if k % (n + 1) == n else add_cell(g, f"cell{k}", x, cell, width)
    g.group = "head"
    x = g.add("lastact_bn", BatchNorm2d(channels[-1]), x)
    x = g.add("lastact_relu", Activation("relu"), x)
    x = g.add("pool", GlobalAvgPool(), x)
    x = g.add("flatten", Flatten(), x)
    x = g.add("classifier", Linear(channels[-1], num_classes), x)
    return g.finish(x)


@register_space("nb201")
class NB201Space(TabularSpace):
    """NAS-Bench-201 cell space (6 edges x 5 ops), built as the real C=16, N=5 network (preset "nb201") or the
    Fashion-MNIST table's C=8, N=1 skeleton (preset "small"); `channels`/`cells` override a preset's size."""

    name = "nb201"
    default_input = (3, 32, 32)
    default_classes = 10
    REFERENCES = {
        # the best cifar10 cell of the 200-epoch table (94.37%; another cell ties it to two decimals)
        "nb201_best_cifar10":
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
        # the best cell on cifar100 (73.51%), also NATS-Bench's size-space cell
        "nb201_best_cifar100":
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        "nb201_best_imagenet16_120":
            "|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        "nb201_all_conv3x3":
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        # the official ResNet cell (AutoDL genotypes.ResNet_CODE): two 3x3 convs in series plus a skip
        "nb201_resnet": "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",
    }

    presets = tuple(SIZES)

    def __init__(self, preset: str | None = None, *, channels: int | None = None, cells: int | None = None) -> None:
        preset = preset or "nb201"
        if preset not in SIZES:
            raise ArchitectureError(f"unknown nb201 preset {preset!r}; accepted: {one_of(list(SIZES))}")
        self.channels = SIZES[preset][0] if channels is None else channels
        self.cells = SIZES[preset][1] if cells is None else cells
        self.preset = next((name for name, size in SIZES.items() if size == (self.channels, self.cells)), None)

    @classmethod
    def preset_of(cls, arch_name: str) -> str | None:
        """Every cell (named or an arch string) is a cell of every preset; the benchmark's network by default
        (an unknown name is `resolve`'s one-line error)."""
        return "nb201"

    def describe(self) -> str:
        return f"NAS-Bench-201 cells (6 edges x 5 ops) in a C={self.channels}, N={self.cells} network"

    def choices(self) -> list[Choice]:
        return [Choice(edge_name(j, i), OPS, doc=f"op on the edge into node {j} from node {i}", slot=edge_name(j, i))
                for j, i in EDGES]

    def reference_archs(self) -> dict[str, Architecture]:
        return {name: parse_arch_string(text) for name, text in self.REFERENCES.items()}

    def mutate(self, arch: Mapping[str, Value], rng: random.Random) -> Architecture:
        """NAS-Bench-201's REA mutation: a node uniformly, one of its incoming edges uniformly, another op
        (so node 1's single edge changes in a third of mutations, each of node 3's in a ninth)."""
        j = rng.randint(1, NODES - 1)
        name = edge_name(j, rng.randrange(j))
        return Architecture(dict(arch, **{name: rng.choice([op for op in OPS if op != arch[name]])}))

    def resolve(self, arch: str | Mapping[str, Value]) -> Architecture:
        """Also accepts the standard arch string."""
        if isinstance(arch, str) and arch.lstrip().startswith("|"):
            return parse_arch_string(arch)
        return super().resolve(arch)

    def arch_string(self, arch: Mapping[str, Value]) -> str:
        return arch_string(arch)

    def benchmark_key(self, arch: Mapping[str, Value]) -> str:
        """The key of `arch` in a NAS-Bench-201 table: its arch string."""
        return arch_string(arch)

    def canonical(self, arch: Mapping[str, Value]) -> str:
        return canonical(arch)

    def benchmark_input(self, dataset: str) -> tuple[tuple[int, ...], int]:
        """(input shape, classes) NAS-Bench-201 trains on for a table's dataset column (and this project's
        Fashion-MNIST table, `PROJECT_DATASETS`)."""
        return benchmark_input(dataset, {**DATASETS, **PROJECT_DATASETS})

    def size(self) -> int:
        return len(OPS) ** len(EDGES)

    def graph(self, arch: Mapping[str, Value], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None) -> ArchGraph:
        c, n = self.channels, self.cells
        widths = [c] * n + [2 * c] * (n + 1) + [4 * c] * (n + 1)
        return tiny_network(arch, widths, tuple(input_shape or self.default_input), num_classes or self.default_classes)
