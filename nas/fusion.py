"""Deploy-time fusion of an architecture graph and its weights, as the official `fuse()` methods of RepVGG,
LeViT and LSNet (jameslahm/lsnet `Conv2d_BN.fuse`, `RepVGGDW.fuse`, `BN_Linear.fuse`) do module by module.

`fuse(graph, state_dict)` returns a graph that computes the same function in eval mode (BatchNorm with its
running statistics) with fewer layers, and the weights for it; `fuse_graph(graph)` the graph alone (no torch,
for counting the deployed parameters of large models). The rewrites, in this order, wherever they apply:

1. Conv2d -> BatchNorm2d, where the BN is the conv's only reader: one biased conv (named as the conv).
2. BatchNorm1d -> Linear, where the Linear is the BN's only reader: one biased Linear (named as the Linear).
3. Add of parallel convs of one input (each read only by the Add; same channels, groups, stride; odd kernels
   with "same" padding) and optionally that input itself (the identity, when channels and resolution match):
   one conv with the largest kernel, the smaller kernels zero-padded to it and the identity a centred one
   (RepVGG; LSNet's RepVGG-DW: 3x3 dw conv-BN + 1x1 dw conv-BN + identity). Named as its largest-kernel conv.
4. A composite op that knows its deploy form (`Fusible`: `fused_op()` and `fuse_state(params)`, e.g.
   `nas.ops.lsnet.LSNetAttention`): replaced by it.

A BN that follows something other than a conv (LSNet's BN after SKA) stays. Folding runs in float64 and is
cast back to each weight's dtype.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import networkx as nx

from nas.graph import ArchGraph, Node
from nas.ops import Add, BatchNorm1d, BatchNorm2d, Conv2d, Linear, Op

if TYPE_CHECKING:
    from torch import Tensor


@runtime_checkable
class Fusible(Protocol):
    """A composite op with a deploy form: `fused_op()` (equal to the op when already fused) and
    `fuse_state(params)`, its module's state dict (keys relative to the module) in the deploy form's keys."""

    def fused_op(self) -> Op: ...

    def fuse_state(self, params: dict[str, Tensor]) -> dict[str, Tensor]: ...


def fold_conv_bn(weight: Tensor, bias: Tensor | None, bn: Mapping[str, Tensor], eps: float) -> tuple[Tensor, Tensor]:
    """(weight, bias) of the conv equal to conv -> BN in eval mode (weight's first axis: output channels)."""
    import torch

    scale = bn["weight"].double() / torch.sqrt(bn["running_var"].double() + eps)
    shift = bn["bias"].double() - bn["running_mean"].double() * scale
    if bias is not None:
        shift = shift + bias.double() * scale
    w = weight.double() * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    return w.to(weight.dtype), shift.to(weight.dtype)


@dataclass(frozen=True)
class _ConvBN:
    conv: str
    bn: str
    eps: float


@dataclass(frozen=True)
class _BNLinear:
    bn: str
    linear: str
    eps: float


@dataclass(frozen=True)
class _Branches:
    target: str
    convs: tuple[str, ...]
    kernel: int
    identity: bool


@dataclass(frozen=True)
class _Composite:
    name: str
    op: Fusible


Step = _ConvBN | _BNLinear | _Branches | _Composite


class _Plan:
    """The graph's nodes being rewritten (in topological order) and the weight steps taken so far."""

    def __init__(self, graph: ArchGraph) -> None:
        self.nodes: dict[str, Node] = {n.name: n for n in graph.nodes()}
        self.output = graph.output
        self.steps: list[Step] = []

    def names(self, op_type: type) -> list[str]:
        """The names of the nodes whose op is an `op_type` (read each node afresh: rewrites rename inputs)."""
        return [n.name for n in self.nodes.values() if isinstance(n.op, op_type)]

    def only_reader(self, name: str, reader: str) -> bool:
        """Whether `reader` is the one node reading `name` (and `name` is not the output)."""
        return name != self.output and all(n.name == reader for n in self.nodes.values() if name in n.inputs)

    def remove(self, name: str, alias: str) -> None:
        """Drop node `name`; its readers (and the output) read `alias` instead."""
        del self.nodes[name]
        for key, node in self.nodes.items():
            if name in node.inputs:
                self.nodes[key] = replace(node, inputs=tuple(alias if i == name else i for i in node.inputs))
        if self.output == name:
            self.output = alias

    def graph(self) -> ArchGraph:
        dag = nx.DiGraph()
        dag.add_nodes_from((name, {"node": node}) for name, node in self.nodes.items())
        dag.add_edges_from((src, node.name) for node in self.nodes.values() for src in node.inputs)
        return ArchGraph(dag, self.output, list(self.nodes))


def _fold_conv_bn(plan: _Plan) -> None:
    for name in plan.names(BatchNorm2d):
        bn = plan.nodes[name]
        conv = plan.nodes[bn.inputs[0]]
        if isinstance(bn.op, BatchNorm2d) and isinstance(conv.op, Conv2d) and plan.only_reader(conv.name, name):
            plan.nodes[conv.name] = replace(conv, op=replace(conv.op, bias=True))
            plan.remove(name, conv.name)
            plan.steps.append(_ConvBN(conv.name, name, bn.op.eps))


def _fold_bn_linear(plan: _Plan) -> None:
    for name in plan.names(Linear):
        linear = plan.nodes[name]
        bn = plan.nodes[linear.inputs[0]]
        if isinstance(linear.op, Linear) and isinstance(bn.op, BatchNorm1d) and plan.only_reader(bn.name, name):
            plan.nodes[name] = replace(linear, op=replace(linear.op, bias=True), inputs=bn.inputs)
            plan.remove(bn.name, name)
            plan.steps.append(_BNLinear(bn.name, name, bn.op.eps))


def _conv(node: Node) -> Conv2d:
    assert isinstance(node.op, Conv2d)
    return node.op


def _branch_convs(plan: _Plan, add: Node) -> tuple[list[Node], bool] | None:
    """The parallel convs an Add sums and whether it adds their input too; None when it is not such an Add."""
    def branch(name: str) -> bool:
        return isinstance(plan.nodes[name].op, Conv2d) and plan.only_reader(name, add.name)

    convs = [plan.nodes[i] for i in add.inputs if branch(i)]
    if not convs or len(set(add.inputs)) != len(add.inputs):
        return None
    source = convs[0].inputs[0]
    rest = [i for i in add.inputs if not branch(i)]
    if rest not in ([], [source]):
        return None
    first = _conv(convs[0])
    for conv in convs:
        op = _conv(conv)
        same = (op.in_ch, op.out_ch, op.stride, op.groups) == (first.in_ch, first.out_ch, first.stride, first.groups)
        centred = op.kernel % 2 == 1 and op.dilation == 1 and op.pad == op.kernel // 2
        if not (same and centred and conv.inputs == (source,)):
            return None
    identity = bool(rest)
    if identity and (first.in_ch != first.out_ch or first.stride != 1):
        return None
    return (convs, identity) if len(convs) + identity >= 2 else None


def _merge_branches(plan: _Plan) -> None:
    for name in plan.names(Add):
        found = _branch_convs(plan, plan.nodes[name])
        if found is None:
            continue
        convs, identity = found
        target = max(convs, key=lambda n: _conv(n).kernel)
        op = replace(_conv(target), bias=True)
        plan.nodes[target.name] = replace(target, op=op)
        for conv in convs:
            if conv.name != target.name:
                del plan.nodes[conv.name]
        plan.remove(name, target.name)
        plan.steps.append(_Branches(target.name, tuple(c.name for c in convs), op.kernel, identity))


def _fuse_composites(plan: _Plan) -> None:
    for name in plan.names(Op):
        node = plan.nodes[name]
        op = node.op
        if isinstance(op, Fusible) and op.fused_op() != op:
            plan.nodes[node.name] = replace(node, op=op.fused_op())
            plan.steps.append(_Composite(node.name, op))


def _plan(graph: ArchGraph) -> _Plan:
    plan = _Plan(graph)
    for rewrite in (_fold_conv_bn, _fold_bn_linear, _merge_branches, _fuse_composites):
        rewrite(plan)
    return plan


def fuse_graph(graph: ArchGraph) -> ArchGraph:
    """The fused graph alone (see the module docstring); needs no torch."""
    return _plan(graph).graph()


def fuse(graph: ArchGraph, state_dict: Mapping[str, Tensor]) -> tuple[ArchGraph, dict[str, Tensor]]:
    """The fused graph and its state dict, computing what `graph` with `state_dict` computes in eval mode."""
    import torch
    import torch.nn.functional as F

    plan = _plan(graph)
    params: dict[str, dict[str, Tensor]] = {}
    for key, value in state_dict.items():
        name, rest = key.split(".", 1)
        params.setdefault(name, {})[rest] = value.detach()
    for step in plan.steps:
        if isinstance(step, _ConvBN):
            conv = params[step.conv]
            w, b = fold_conv_bn(conv["weight"], conv.get("bias"), params.pop(step.bn), step.eps)
            params[step.conv] = {"weight": w, "bias": b}
        elif isinstance(step, _BNLinear):
            linear, bn = params[step.linear], params.pop(step.bn)
            scale = bn["weight"].double() / torch.sqrt(bn["running_var"].double() + step.eps)
            shift = bn["bias"].double() - bn["running_mean"].double() * scale
            weight = linear["weight"].double()
            bias = weight @ shift + (linear["bias"].double() if "bias" in linear else 0.0)
            dtype = linear["weight"].dtype
            params[step.linear] = {"weight": (weight * scale).to(dtype), "bias": bias.to(dtype)}
        elif isinstance(step, _Branches):
            parts = [params.pop(name) for name in step.convs]
            first = parts[0]["weight"]
            weight = torch.stack([F.pad(p["weight"].double(), [(step.kernel - p["weight"].shape[-1]) // 2] * 4)
                                  for p in parts]).sum(0)
            bias = torch.stack([p["bias"].double() if "bias" in p else torch.zeros(first.shape[0], dtype=torch.float64)
                                for p in parts]).sum(0)
            if step.identity:
                out, per_group = first.shape[0], first.shape[1]
                channels = torch.arange(out)
                weight[channels, channels % per_group, step.kernel // 2, step.kernel // 2] += 1.0
            params[step.target] = {"weight": weight.to(first.dtype), "bias": bias.to(first.dtype)}
        else:
            params[step.name] = step.op.fuse_state(params[step.name])
    return plan.graph(), {f"{name}.{k}": v for name, p in params.items() for k, v in p.items()}
