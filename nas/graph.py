"""The architecture graph: a networkx DAG of concrete layers with tensor shapes.

Every consumer reads this one graph: module building and export (`nas.build`), cost (`params`, `macs`),
latency tables, predictor features. Nodes are named with Python identifiers (they become attribute
and state-dict names); each node holds its `op`, its ordered `inputs`, its output `shape` and a `group`
label (the block it belongs to, e.g. "stage2.layer1") for per-block consumers such as latency tables.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import networkx as nx

from nas.ops import Op, Shape, ShapeError

INPUT = "input"


@dataclass(frozen=True)
class Node:
    name: str
    op: Op | None  # None for the input node
    inputs: tuple[str, ...]
    shape: Shape
    group: str

    def in_shapes(self, graph: ArchGraph) -> list[Shape]:
        return [graph.node(i).shape for i in self.inputs]


class ArchGraph:
    """An immutable DAG of layers from one input to one output."""

    def __init__(self, dag: nx.DiGraph, output: str) -> None:
        self.dag = dag
        self.output = output
        self._order: list[str] = list(nx.topological_sort(dag))

    def node(self, name: str) -> Node:
        return self.dag.nodes[name]["node"]

    def nodes(self) -> Iterator[Node]:
        """Nodes in topological order, input first."""
        return (self.node(n) for n in self._order)

    def layers(self) -> Iterator[Node]:
        return (n for n in self.nodes() if n.op is not None)

    @property
    def input_shape(self) -> Shape:
        return self.node(INPUT).shape

    @property
    def output_shape(self) -> Shape:
        return self.node(self.output).shape

    def params(self) -> int:
        return sum(n.op.params() for n in self.layers())

    def macs(self) -> int:
        return sum(n.op.macs(n.in_shapes(self)) for n in self.layers())

    def group_costs(self) -> dict[str, dict[str, int]]:
        """Parameters and multiply-adds per group, in order of first appearance."""
        out: dict[str, dict[str, int]] = {}
        for n in self.layers():
            cost = out.setdefault(n.group, {"params": 0, "macs": 0, "layers": 0})
            cost["params"] += n.op.params()
            cost["macs"] += n.op.macs(n.in_shapes(self))
            cost["layers"] += 1
        return out

    def __len__(self) -> int:
        return self.dag.number_of_nodes()


class GraphBuilder:
    """Appends layers one by one, checking shapes as it goes.

    >>> g = GraphBuilder((3, 32, 32)); x = g.add("conv", Conv2d(3, 8, 3), g.input); graph = g.finish(x)
    """

    def __init__(self, input_shape: Shape) -> None:
        self.dag = nx.DiGraph()
        self.input = INPUT
        self._add_node(Node(INPUT, None, (), tuple(input_shape), "input"))
        self.group = "body"

    def _add_node(self, node: Node) -> None:
        self.dag.add_node(node.name, node=node)
        for src in node.inputs:
            self.dag.add_edge(src, node.name)

    def shape(self, name: str) -> Shape:
        return self.dag.nodes[name]["node"].shape

    def add(self, name: str, op: Op, *inputs: str, group: str | None = None) -> str:
        """Add `op` applied to `inputs`; return the new node's name."""
        name = re.sub(r"\W", "_", name)
        if name in self.dag:
            raise ValueError(f"graph already has a node named {name!r}")
        if op.arity and len(inputs) != op.arity or not op.arity and len(inputs) < 2:
            raise ShapeError(f"{type(op).__name__} at {name!r} got {len(inputs)} inputs")
        shapes = [self.shape(i) for i in inputs]
        try:
            shape = op.out_shape(shapes)
        except ShapeError as err:
            raise ShapeError(f"at layer {name!r}: {err}") from None
        self._add_node(Node(name, op, tuple(inputs), shape, group or self.group))
        return name

    def finish(self, output: str) -> ArchGraph:
        return ArchGraph(self.dag, output)
