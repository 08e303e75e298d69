"""Graph transforms with weight inheritance, the actions of network-to-network compression.

N2N (Ashok et al., ICLR 2018) compresses a teacher network in two stages of policy-chosen actions:
stage 1 removes layers, stage 2 shrinks the remaining ones. Here both are transforms of an `ArchGraph`
that return a new, valid graph, and `inherit` carries the teacher's weights over to the result:

- `remove_group` drops one block (all layers of a `group` label) that reads one tensor and writes one of
  the same shape; its readers then read its input.
- `shrink_channels` narrows a layer's output channels together with every layer coupled to them
  (`channel_group`): channel-wise layers (BN, activations, depthwise convs, pooling, Identity, Zero,
  squeeze-excite `Mul`) and, through an `Add`, the other branches' convs. The layers that read the group
  (convs, linears, attention) take the new width; a `Concat` shifts their channel ranges.
- `inherit` copies unchanged layers, drops removed ones and slices narrowed ones to the channels that
  `kept_channels` chooses per coupled group ("first" or largest "l1" norm), the same indices for every
  coupled layer and for its readers' input channels.

Channels are dim 0 of every shape; linears act on flat vectors, as in every space here.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from math import prod
from typing import TypeGuard, cast

import networkx as nx
import torch

from nas.graph import INPUT, ArchGraph, Node
from nas.ops import (
    Activation,
    Add,
    AvgPool2d,
    BatchNorm2d,
    Concat,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool,
    Identity,
    Linear,
    MaxPool2d,
    Mul,
    Op,
    Shape,
    ShapeError,
    Zero,
)
from nas.ops.attention import SelfAttention2d
from nas.space import NASError, one_of

KEEP_RULES = ("first", "l1")
#: ops whose output channels are their inputs' channels, one for one (depthwise convs too, see `_carries`)
_CHANNELWISE = (Activation, Add, AvgPool2d, BatchNorm2d, Dropout, Flatten, GlobalAvgPool, Identity, MaxPool2d, Mul,
                Zero)


def _depthwise(op: Op | None) -> TypeGuard[Conv2d]:
    return isinstance(op, Conv2d) and op.groups == op.in_ch == op.out_ch > 1


def _carries(op: Op | None) -> bool:
    """Whether `op`'s output channels are its inputs' channels, one for one."""
    return isinstance(op, _CHANNELWISE) or _depthwise(op)


def _produces(op: Op | None) -> bool:
    """Whether `op` is a layer whose output width can be set: an ungrouped conv or a linear."""
    return isinstance(op, Linear) or isinstance(op, Conv2d) and op.groups == 1


def graph_of(nodes: Sequence[Node], output: str) -> ArchGraph:
    """An `ArchGraph` of `nodes` (the input node included) with `output` as its output."""
    dag = nx.DiGraph()
    for node in nodes:
        dag.add_node(node.name, node=node)
        dag.add_edges_from((i, node.name) for i in node.inputs)
    return ArchGraph(dag, output)


def _layer(graph: ArchGraph, name: str) -> Node:
    if name == INPUT or name not in graph.dag:
        example = next(graph.layers()).name
        raise NASError(f"graph has no layer {name!r}; accepted: the name of one of its layers, e.g. {example!r}")
    return graph.node(name)


# -- stage 1: removing a block ----------------------------------------------------------------------------
def _group_ends(graph: ArchGraph, group: str) -> tuple[str, str]:
    """The one node outside `group` that it reads and its one node read outside it (or the graph output)."""
    members = {n.name for n in graph.layers() if n.group == group}
    if not members:
        groups = list(dict.fromkeys(n.group for n in graph.layers()))
        raise NASError(f"graph has no group {group!r}; accepted: {one_of(groups)}")
    sources = sorted({i for m in members for i in graph.node(m).inputs if i not in members})
    exits = [n.name for n in graph.layers() if n.name in members and (
        n.name == graph.output or any(s not in members for s in graph.dag.successors(n.name)))]
    if len(sources) != 1 or len(exits) != 1:
        raise NASError(f"group {group!r} reads {sources} and is read at {exits}; remove_group accepts a group "
                       "with one input and one output")
    before, after = graph.node(sources[0]).shape, graph.node(exits[0]).shape
    if before != after:
        raise NASError(f"cannot remove group {group!r}: its input shape {before} differs from its output shape "
                       f"{after}; remove_group accepts shape-preserving groups")
    return sources[0], exits[0]


def removable_groups(graph: ArchGraph) -> list[str]:
    """The groups `remove_group` accepts (one input, one output of the input's shape), in graph order."""
    out = []
    for group in dict.fromkeys(n.group for n in graph.layers()):
        try:
            _group_ends(graph, group)
        except NASError:
            continue
        out.append(group)
    return out


def remove_group(graph: ArchGraph, group: str) -> ArchGraph:
    """`graph` without the layers of `group` (N2N stage 1); the group's readers read its input instead.

    A one-line `NASError` if the group does not exist, has several outside inputs or outputs, or changes
    the shape (e.g. a stride-2 first layer of a stage).
    """
    source, exit_ = _group_ends(graph, group)
    nodes = [replace(n, inputs=tuple(source if i == exit_ else i for i in n.inputs))
             for n in graph.nodes() if n.op is None or n.group != group]
    return graph_of(nodes, source if exit_ == graph.output else graph.output)


# -- stage 2: shrinking channels ----------------------------------------------------------------------------
def _coupled(graph: ArchGraph, name: str, kinds: ArchGraph | None = None) -> dict[str, str | None]:
    """The nodes whose output channels are `name`'s, each with the first Add it was reached through.

    Whether a layer carries its input's channels is read from `kinds` (default `graph`): inheritance reads
    it from the old graph, where a depthwise conv narrowed to one channel was still depthwise.
    """
    def carries(n: str) -> bool:
        return _carries((kinds or graph).node(n).op)

    via: dict[str, str | None] = {name: None}
    todo = [name]
    while todo:
        node = graph.node(todo.pop())
        near = [*(node.inputs if carries(node.name) else ()), *filter(carries, graph.dag.successors(node.name))]
        for other in near:
            if other not in via:
                via[other] = other if isinstance(graph.node(other).op, Add) else via[node.name]
                todo.append(other)
    return via


def _in_order(graph: ArchGraph, names: Iterable[str]) -> list[str]:
    keep = set(names)
    return [n.name for n in graph.nodes() if n.name in keep]


def channel_group(graph: ArchGraph, node: str) -> list[str]:
    """The nodes whose output channels must change together with `node`'s, in graph order.

    The group spreads through channel-wise layers in both directions and through an `Add` to all its
    branches; it ends at the layers that produce the channels (convs, linears; also "input" when the
    network input is tied to them) and before the layers that read them.
    """
    _layer(graph, node)
    return _in_order(graph, _coupled(graph, node))


def _fixed(graph: ArchGraph, node: Node) -> str | None:
    """Why the width of `node`'s output cannot change, or None if it can."""
    if node.name == INPUT:
        return "the network input"
    if node.name == graph.output:
        return "the network output"
    if _carries(node.op) or _produces(node.op):
        return None
    if isinstance(node.op, Conv2d):
        return f"a Conv2d with groups={node.op.groups}"
    return f"a {type(node.op).__name__} layer"


def refit_op(node: Node, shape: Shape, out: int | None = None) -> Op:
    """`node.op` refitted to an input of `shape` and, when `out` is given, to `out` output channels."""
    op, c = node.layer_op, shape[0]
    if _depthwise(op):
        return replace(op, in_ch=c, out_ch=c, groups=c)
    if isinstance(op, Conv2d):
        if op.groups > 1 and c != op.in_ch:
            raise NASError(f"layer {node.name!r} is a Conv2d with groups={op.groups} and cannot take {c} input "
                           "channels; only depthwise and ungrouped convs are narrowed")
        return replace(op, in_ch=c, out_ch=out or op.out_ch)
    if isinstance(op, BatchNorm2d):
        return replace(op, channels=c)
    if isinstance(op, Linear):
        return replace(op, in_features=shape[-1], out_features=out or op.out_features)
    if isinstance(op, SelfAttention2d):
        return replace(op, channels=c)
    return op


def shrink_channels(graph: ArchGraph, node: str, out_channels: int) -> ArchGraph:
    """`graph` with `node`'s output channels, and those of its `channel_group`, narrowed to `out_channels`
    (N2N stage 2); the layers that read the group take the new width.

    A one-line `NASError` if the group holds a width that cannot change (the network input or output, an
    attention output, a Concat, a grouped conv), naming the Add that ties it to `node` where one does.
    """
    width = _layer(graph, node).shape[0]
    if not isinstance(out_channels, int) or not 1 <= out_channels <= width:
        raise NASError(f"out_channels {out_channels!r} for {node!r} is not accepted; accepted: an integer "
                       f"1..{width}")
    via = _coupled(graph, node)
    for name in _in_order(graph, via):
        reason = _fixed(graph, graph.node(name))
        if reason:
            tie = (f"it is {reason}" if name == node else
                   f"{f'Add {via[name]!r} ties' if via[name] else 'it ties'} its channels to {name!r} ({reason})")
            raise NASError(f"cannot shrink {node!r}: {tie}, whose width is fixed; accepted: a layer whose "
                           "channel_group has no fixed width")
    out = {name: out_channels for name in via if _produces(graph.node(name).op)}
    nodes: dict[str, Node] = {}
    for n in graph.nodes():
        if n.op is not None:
            shapes = [nodes[i].shape for i in n.inputs]
            op = refit_op(n, shapes[0], out.get(n.name))
            try:
                n = replace(n, op=op, shape=op.out_shape(shapes))
            except ShapeError as err:
                raise NASError(f"cannot shrink {node!r} to {out_channels} channels: at {n.name!r}, {err}") from None
        nodes[n.name] = n
    return graph_of(list(nodes.values()), graph.output)


# -- weight inheritance --------------------------------------------------------------------------------------
def _choose(group: list[str], producers: list[str], width: int, was: int,
            state_dict: Mapping[str, torch.Tensor] | None, keep: str | Mapping[str, Sequence[int]]) -> list[int]:
    """The `width` of `was` old channels one coupled group keeps, ascending."""
    if keep == "first":
        return list(range(width))
    if keep == "l1":
        missing = [p for p in producers if f"{p}.weight" not in (state_dict or {})]
        if missing or state_dict is None:
            raise NASError(f"keep='l1' needs the old weights of {missing}; accepted: the old model's state dict")
        # a tensor: a coupled group has at least one producer
        norms = cast(torch.Tensor, sum(state_dict[f"{p}.weight"].abs().flatten(1).sum(1) for p in producers))
        return sorted(torch.argsort(norms, descending=True, stable=True)[:width].tolist())
    assert not isinstance(keep, str)  # kept_channels accepts no other rule than "first" and "l1"
    choices = {tuple(sorted(set(keep[m]))) for m in group if m in keep}
    idx = next(iter(choices)) if len(choices) == 1 else ()
    if len(idx) != width or idx[0] < 0 or idx[-1] >= was:
        raise NASError(f"keep gives {len(choices)} choice(s) of {sorted(map(len, choices))} channels for the group of "
                       f"{producers[0]!r}; accepted: one choice of {width} distinct indices in 0..{was - 1}")
    return list(idx)


def kept_channels(old_graph: ArchGraph, new_graph: ArchGraph, state_dict: Mapping[str, torch.Tensor] | None = None,
                  keep: str | Mapping[str, Sequence[int]] = "first") -> dict[str, list[int]]:
    """For each layer of `new_graph` whose output channels were narrowed, the old channels it keeps.

    `new_graph` is `old_graph` after any number of `remove_group` / `shrink_channels`. Each coupled group
    keeps, by `keep`: its "first" channels, those with the largest "l1" norm of the group's producing
    filters (summed over its convs / linears, read from `state_dict`), or the indices a mapping gives for
    one of its layers (e.g. an earlier result of this function). Layers behind a Concat or a Flatten get
    the matching shifted or spread indices.
    """
    if isinstance(keep, str) and keep not in KEEP_RULES:
        raise NASError(f"keep {keep!r} is not accepted; accepted: {one_of(KEEP_RULES)} or a mapping of layer "
                       "names to channel indices")
    if new_graph.input_shape != old_graph.input_shape:
        raise NASError(f"new graph input {new_graph.input_shape} differs from the old graph's {old_graph.input_shape}")
    kept: dict[str, list[int]] = {}
    for node in new_graph.layers():
        old = old_graph.node(node.name) if node.name in old_graph.dag else None
        if old is None or type(old.op) is not type(node.op):
            raise NASError(f"layer {node.name!r} of the new graph is no layer of the old graph; accepted: a graph "
                           "made from it by remove_group / shrink_channels")
        was, ins = old.shape[0], [kept.get(i) for i in node.inputs]
        if isinstance(old.op, Concat) and any(k is not None for k in ins):
            widths = [old_graph.node(i).shape[0] for i in node.inputs]
            kept[node.name] = [sum(widths[:j]) + c for j, k in enumerate(ins) for c in (k or range(widths[j]))]
        elif _carries(old.op) and ins[0] is not None:
            hw = prod(old_graph.node(node.inputs[0]).shape[1:]) if isinstance(old.op, Flatten) else 1
            kept[node.name] = [c * hw + j for c in ins[0] for j in range(hw)]
        elif node.name not in kept and node.shape[0] != was and _produces(old.op):
            group = _in_order(new_graph, _coupled(new_graph, node.name, old_graph))
            producers = [m for m in group if _produces(old_graph.node(m).op)]
            kept.update(dict.fromkeys(producers, _choose(group, producers, node.shape[0], was, state_dict, keep)))
        if len(kept.get(node.name, range(was))) != node.shape[0]:
            raise NASError(f"layer {node.name!r} has {node.shape[0]} output channels, {was} in the old graph, and "
                           "no narrowed layer explains it; accepted: a graph made by remove_group / shrink_channels")
    return kept


def inherit(old_graph: ArchGraph, new_graph: ArchGraph, state_dict: Mapping[str, torch.Tensor],
            keep: str | Mapping[str, Sequence[int]] = "first") -> dict[str, torch.Tensor]:
    """A state dict for `build_module(new_graph)` from `state_dict` of `build_module(old_graph)`.

    Unchanged layers are copied, removed ones dropped; a narrowed layer keeps the output channels
    `kept_channels` chooses (weights, biases, BatchNorm affine and running statistics), and a layer
    reading narrowed channels keeps the same input channels. N2N's compressed candidates start from the
    teacher's weights this way.
    """
    kept = kept_channels(old_graph, new_graph, state_dict, keep)
    out = {}
    for key, tensor in state_dict.items():
        name = key.partition(".")[0]
        if name not in old_graph.dag:
            raise NASError(f"state dict key {key!r} names no layer of the old graph; accepted: the state dict of "
                           "build_module(old_graph)")
        if name not in new_graph.dag:
            continue
        node = new_graph.node(name)
        rows = kept.get(name)
        cols = None if _carries(old_graph.node(name).op) else kept.get(node.inputs[0])
        t = tensor.detach().clone()
        if rows is not None and t.dim() >= 1:
            t = t[rows]
        if cols is not None and t.dim() >= 2:
            t = t[:, cols]
        out[key] = t
    return out
