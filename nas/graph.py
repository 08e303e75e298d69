"""The architecture graph: a networkx DAG of concrete layers with tensor shapes.

Every consumer reads this one graph: module building and export (`nas.build`), cost (`params`, `macs`),
latency tables, predictor features, weight-sharing supernets (`nas.supernet`). Nodes are named with Python
identifiers (they become attribute and state-dict names); each node holds its `op`, its ordered `inputs`,
its output `shape` and a `group` label (the block it belongs to, e.g. "stage2.layer1") for per-block
consumers such as latency tables.

A node that exists because of a searchable decision also names it: `slot` is the decision (an NB201 edge
"edge_2_1", an MBConv layer "s1_l0") and `variant` the candidate taken there ("nor_conv_3x3", "k5_e6").
Supernets read them: candidates of one slot never share weights unless they are the same variant (or the
supernet entangles them, as Once-for-All's elastic kernels), and a slot's weights can be addressed as a
whole (GM-NAS). Fixed nodes (stem, head) have empty labels.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

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
    slot: str = ""  # the searchable decision this node implements ("" for fixed layers)
    variant: str = ""  # the candidate of `slot` it belongs to

    def in_shapes(self, graph: ArchGraph) -> list[Shape]:
        return [graph.node(i).shape for i in self.inputs]

    @property
    def layer_op(self) -> Op:
        """`op` of a layer node (every node but the input has one)."""
        if self.op is None:
            raise ValueError(f"node {self.name!r} is the input node, not a layer: it has no op")
        return self.op


class ArchGraph:
    """An immutable DAG of layers from one input to one output."""

    def __init__(self, dag: nx.DiGraph, output: str, order: list[str] | None = None) -> None:
        """`order`: the node names in a topological order, when the caller knows one (else it is computed)."""
        self.dag = dag
        self.output = output
        self._order: list[str] = order if order is not None else list(nx.topological_sort(dag))

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
        return sum(n.layer_op.params() for n in self.layers())

    def macs(self) -> int:
        return sum(n.layer_op.macs(n.in_shapes(self)) for n in self.layers())

    def group_costs(self) -> dict[str, dict[str, int]]:
        """Parameters and multiply-adds per group, in order of first appearance."""
        out: dict[str, dict[str, int]] = {}
        for n in self.layers():
            cost = out.setdefault(n.group, {"params": 0, "macs": 0, "layers": 0})
            cost["params"] += n.layer_op.params()
            cost["macs"] += n.layer_op.macs(n.in_shapes(self))
            cost["layers"] += 1
        return out

    def __len__(self) -> int:
        return self.dag.number_of_nodes()

    def section(self, names: Iterable[str]) -> ArchGraph:
        """The layers `names` as a graph of their own: their one outside input becomes the input node and
        the last of them (in topological order) the output; names, ops and labels are kept, so the
        section's modules have the same state-dict keys as in the whole network."""
        keep = set(names)
        layers = [n for n in self.layers() if n.name in keep]
        if not layers or len(layers) != len(keep):
            missing = sorted(keep - {n.name for n in layers})
            raise ValueError(f"graph has no layers {missing[:3]}" if missing else "a section needs at least one layer")
        outside = {i for n in layers for i in n.inputs if i not in keep}
        if len(outside) != 1:
            raise ValueError(f"a section needs exactly one outside input, these layers read {sorted(outside)}")
        source = outside.pop()
        nodes = [Node(INPUT, None, (), self.node(source).shape, "input"),
                 *(replace(n, inputs=tuple(INPUT if i == source else i for i in n.inputs)) for n in layers)]
        dag = nx.DiGraph()
        dag.add_nodes_from((node.name, {"node": node}) for node in nodes)
        dag.add_edges_from((i, node.name) for node in nodes for i in node.inputs)
        return ArchGraph(dag, layers[-1].name, [node.name for node in nodes])


class GraphBuilder:
    """Appends layers one by one, checking shapes as it goes.

    >>> g = GraphBuilder((3, 32, 32)); x = g.add("conv", Conv2d(3, 8, 3), g.input); graph = g.finish(x)
    """

    def __init__(self, input_shape: Shape) -> None:
        self.input = INPUT
        self._nodes: dict[str, Node] = {INPUT: Node(INPUT, None, (), tuple(input_shape), "input")}
        self.group = "body"
        self.slot = ""
        self.variant = ""

    def shape(self, name: str) -> Shape:
        return self._nodes[name].shape

    def add(self, name: str, op: Op, *inputs: str, group: str | None = None) -> str:
        """Add `op` applied to `inputs`; return the new node's name."""
        if not name.isidentifier():
            name = re.sub(r"\W", "_", name)
        if name in self._nodes:
            raise ValueError(f"graph already has a node named {name!r}")
        if op.arity and len(inputs) != op.arity or not op.arity and len(inputs) < 2:
            raise ShapeError(f"{type(op).__name__} at {name!r} got {len(inputs)} inputs")
        shapes = [self.shape(i) for i in inputs]
        try:
            shape = op.out_shape(shapes)
        except ShapeError as err:
            raise ShapeError(f"at layer {name!r}: {err}") from None
        self._nodes[name] = Node(name, op, tuple(inputs), shape, group or self.group, self.slot, self.variant)
        return name

    @contextmanager
    def candidate(self, slot: str, variant: str) -> Iterator[None]:
        """Label the layers added inside as candidate `variant` of the searchable `slot` (module docstring)."""
        before = self.slot, self.variant
        self.slot, self.variant = slot, variant
        try:
            yield
        finally:
            self.slot, self.variant = before

    def finish(self, output: str) -> ArchGraph:
        dag = nx.DiGraph()
        dag.add_nodes_from((name, {"node": node}) for name, node in self._nodes.items())
        dag.add_edges_from((src, node.name) for node in self._nodes.values() for src in node.inputs)
        return ArchGraph(dag, output, list(self._nodes))
