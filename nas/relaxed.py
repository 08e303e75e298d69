"""Continuous relaxation of a supernet's mixed ops: every allowed candidate of a choice runs and the outputs are
summed with weights theta, as DARTS (Liu et al., ICLR 2019: theta = softmax(alpha)) and SNAS (Xie et al., ICLR 2019:
theta drawn from the Gumbel-softmax of alpha at a temperature) do, and as GM-NAS pairs them (GM+DARTS, GM+SNAS).

A choice is *mixed* when it alone picks the candidate of a searchable slot (`Choice.slot`, the nodes' `Node.slot`
and `Node.variant`) and its candidates are interchangeable subgraphs: in the graph of every value, the slot's nodes
form the same instances (connected pieces), each reading the same outside inputs and feeding the same consumers
(NAS-Bench-201: every edge, one instance per cell). `MixedProgram(supernet, space)` compiles one program for
`space` (a `RestrictedSpace` in a GM-NAS sub-supernet: only the allowed candidates run) in which every instance of
every mixed choice runs all its candidates side by side and their weighted sum replaces its output; a choice left
with one allowed value runs that one. The layers are the supernet's own, so with one-hot weights the program
computes what `supernet(x, arch)` computes for that architecture (tested). Spaces with elastic weights (MBConv) or
with choices that are not mixed ops (depths, resolutions, slots that several choices share) are refused with a
one-line `NASError`: they have nothing to relax.

`ArchitectureWeights` holds alpha for the mixed choices over their full value lists, so a sub-supernet's
restriction renormalises the softmax over its allowed values (the official GM-NAS code) and children can inherit
their parent's alpha.
"""
from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import networkx as nx
import torch
from torch import nn

from nas.build import call_function
from nas.graph import INPUT, ArchGraph, Node
from nas.ops import Activation
from nas.space import Architecture, NASError, SearchSpace, Value

RELAXATIONS = ("darts", "snas")


def mixed_choices(space: SearchSpace) -> dict[str, tuple[Value, ...]]:
    """Choice name -> allowed values of the choices that pick a slot alone and still have two or more values."""
    choices = space.choices()
    slot_users: dict[str, int] = {}
    for c in choices:
        if c.slot:
            slot_users[c.slot] = slot_users.get(c.slot, 0) + 1
    return {c.name: tuple(c.values) for c in choices if c.slot and slot_users[c.slot] == 1 and len(c.values) > 1}


@dataclass(frozen=True)
class _Instance:
    nodes: tuple[Node, ...]  # in the graph's order
    output: str


def _instances(graph: ArchGraph, slot: str) -> dict[tuple[tuple[str, ...], tuple[str, ...]], _Instance]:
    """The connected pieces of `slot`'s nodes in `graph`, keyed by (outside inputs, outside consumers)."""
    members = [n for n in graph.nodes() if n.slot == slot]
    names = {n.name for n in members}
    consumers: dict[str, set[str]] = {}
    for node in graph.nodes():
        for src in node.inputs:
            consumers.setdefault(src, set()).add(node.name)
    pieces = nx.Graph()
    pieces.add_nodes_from(names)
    pieces.add_edges_from((src, n.name) for n in members for src in n.inputs if src in names)
    found = {}
    for piece in nx.connected_components(pieces):
        nodes = tuple(n for n in members if n.name in piece)
        outside_in = tuple(sorted({s for n in nodes for s in n.inputs if s not in piece}))
        outputs = [n.name for n in nodes if consumers.get(n.name, set()) - piece or n.name == graph.output]
        if len(outputs) != 1:
            raise NASError(f"slot {slot!r} is not a mixed op: a candidate has {len(outputs)} outputs")
        readers = tuple(sorted(consumers.get(outputs[0], set()) - piece)) or ("<output>",)
        found[(outside_in, readers)] = _Instance(nodes, outputs[0])
    return found


class MixedProgram:
    """`space`'s architectures all at once on `supernet`'s weights, mixed ops weighted by theta (module docstring).

    Call as `program(x, theta)` with theta[choice] a 1-D tensor over `self.choices[choice]` (the allowed values).
    """

    def __init__(self, supernet: Any, space: SearchSpace) -> None:
        if supernet.sharing != "separate":
            raise NASError(f"a continuous relaxation needs separate candidate weights (mixed ops); this supernet's "
                           f"sharing is {supernet.sharing!r}: use single-path training (relaxation 'rsps')")
        self.choices = mixed_choices(space)
        slots = {c.name: c.slot for c in space.choices()}
        others = [c.name for c in space.choices() if len(c.values) > 1 and c.name not in self.choices]
        if others or not self.choices:
            raise NASError(f"space {space.name!r} has choices that are not mixed ops ({', '.join(others) or 'none'}"
                           " left to relax): a continuous relaxation runs on spaces like nb201 whose choices each pick"
                           " one candidate op; use single-path training (relaxation 'rsps')")
        base = space.sample(random.Random(0))
        graph = supernet.graph(base)
        rename: dict[str, str] = {}
        removed: set[str] = set()
        steps: list[tuple[str, Node, list[str]]] = []
        self._mixes: dict[str, tuple[str, list[str]]] = {}  # mix step -> (choice, candidate output steps)
        for choice, values in self.choices.items():
            slot = slots[choice]
            reference = _instances(graph, slot)
            removed |= {n.name for inst in reference.values() for n in inst.nodes}
            variants = {v: _instances(supernet.graph(Architecture({**base, choice: v})), slot) for v in values}
            for v, found in variants.items():
                if found.keys() != reference.keys() or any(
                        _shape(inst) != _shape(reference[key]) for key, inst in found.items()):
                    raise NASError(f"choice {choice!r} is not a mixed op: its value {v!r} attaches differently or "
                                   "changes the output shape")
            for key, inst in reference.items():
                mix = f"{inst.output}~mix"
                rename[inst.output] = mix
                outputs = []
                for v in values:
                    variant = variants[v][key]
                    local = {n.name for n in variant.nodes}
                    tag = _tag(v)
                    for node in variant.nodes:
                        steps.append((f"{node.name}~{tag}", node,
                                      [f"{s}~{tag}" if s in local else s for s in node.inputs]))
                    outputs.append(f"{variant.output}~{tag}")
                self._mixes[mix] = (choice, outputs)
        steps += [(n.name, n, list(n.inputs)) for n in graph.layers() if n.name not in removed]
        self._compile(supernet, steps, rename, rename.get(graph.output, graph.output))

    def _compile(self, supernet: Any, steps: list[tuple[str, Node, list[str]]], rename: Mapping[str, str],
                 output: str) -> None:
        inputs_of = {name: [rename.get(s, s) for s in inputs] for name, _, inputs in steps}
        inputs_of.update({mix: outs for mix, (_, outs) in self._mixes.items()})
        dag = nx.DiGraph()
        dag.add_nodes_from(inputs_of)
        dag.add_edges_from((s, name) for name, ins in inputs_of.items() for s in ins if s != INPUT)
        node_of = {name: node for name, node, _ in steps}
        last_use = {s: name for name in nx.topological_sort(dag) for s in inputs_of[name]}
        self.output = output
        self.steps: list[tuple[str, Any, Any, list[str], tuple[str, ...]]] = []
        for name in nx.topological_sort(dag):
            dead = tuple(dict.fromkeys(s for s in inputs_of[name] if last_use[s] == name and s != output))
            if name in self._mixes:
                self.steps.append((name, None, self._mixes[name][0], inputs_of[name], dead))
                continue
            node = node_of[name]
            op = node.layer_op
            if isinstance(op, Activation) and op.inplace:  # a mixed op's input has several readers
                op = dataclasses.replace(op, inplace=False)
            holder = SimpleNamespace(m=supernet._callable(node, op))
            self.steps.append((name, call_function(op, len(node.inputs)), holder, inputs_of[name], dead))

    def __call__(self, x: torch.Tensor, theta: Mapping[str, torch.Tensor]) -> torch.Tensor:
        values = {INPUT: x}
        for name, fn, holder, inputs, dead in self.steps:
            if fn is None:  # a mixed op: holder is its choice
                weights = theta[holder]
                mixed = weights[0] * values[inputs[0]]
                for i in range(1, len(inputs)):
                    mixed = mixed + weights[i] * values[inputs[i]]
                values[name] = mixed
            else:
                values[name] = fn(holder, *[values[s] for s in inputs])
            for key in dead:
                del values[key]
        return values[self.output]


def _shape(instance: _Instance) -> tuple[int, ...]:
    return tuple(next(n.shape for n in instance.nodes if n.name == instance.output))


def _tag(value: Value) -> str:
    return re.sub(r"\W", "_", str(value))


class ArchitectureWeights(nn.Module):
    """alpha for each mixed choice over its full value list (init N(0, 1e-3), as DARTS); `theta` renormalises
    over a (restricted) space's allowed values, `derive` takes the argmax there."""

    def __init__(self, choices: Mapping[str, Sequence[Value]], seed: int = 0) -> None:
        super().__init__()
        self.values = {c: list(v) for c, v in choices.items()}
        self.keys = {c: f"a{i}" for i, c in enumerate(choices)}
        generator = torch.Generator().manual_seed(seed)
        self.alpha = nn.ParameterDict({self.keys[c]: nn.Parameter(1e-3 * torch.randn(len(v), generator=generator))
                                       for c, v in choices.items()})

    def logits(self, choice: str, allowed: Sequence[Value]) -> torch.Tensor:
        index = torch.tensor([self.values[choice].index(v) for v in allowed])
        alpha = self.alpha[self.keys[choice]]
        return alpha[index.to(alpha.device)]

    def theta(self, allowed: Mapping[str, Sequence[Value]], relaxation: str = "darts",
              tau: float = 1.0) -> dict[str, torch.Tensor]:
        """Mixing weights over the allowed values: softmax (DARTS) or a Gumbel-softmax draw at `tau` (SNAS)."""
        if relaxation not in RELAXATIONS:
            raise NASError(f"relaxation {relaxation!r} is not one of 'darts', 'snas'")
        out = {}
        for choice, values in allowed.items():
            logits = self.logits(choice, values)
            out[choice] = torch.softmax(logits, 0) if relaxation == "darts" else \
                nn.functional.gumbel_softmax(logits, tau=tau)
        return out

    def derive(self, space: SearchSpace) -> Architecture:
        """The architecture of `space` taking each mixed choice's highest alpha among its allowed values."""
        arch = dict(space.sample(random.Random(0)))
        for choice, values in mixed_choices(space).items():
            arch[choice] = values[int(self.logits(choice, values).argmax())]
        return Architecture(arch)

    def as_json(self) -> dict[str, dict[str, float]]:
        return {c: {str(v): float(a) for v, a in zip(self.values[c], self.alpha[self.keys[c]].detach().cpu())}
                for c in self.values}
