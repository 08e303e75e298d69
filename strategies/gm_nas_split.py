"""GM-NAS's split decision (Hu et al., "Generalizing Few-Shot NAS with Gradient Matching", ICLR 2022).

- `splittable_choices`: the edges a (sub-)supernet may still split: choices with a searchable slot whose values
  are all still allowed (the official code's "unsplit edges"), filtered by name patterns.
- `matched_parameters`: the shared weights whose gradients are compared, i.e. every weight the split keeps
  shared except the edge's own ops. Scope "inner" leaves out the fixed layers before the first and after the
  last searchable layer (the official NAS-Bench-201 code: stem and classifier out, reduction blocks in); "all"
  keeps them (the official Once-for-All code: first conv, final layers and classifier in).
- `gradient_matching_distances`: for each batch, one random single path of the other choices (RSPS), or the
  other edges mixed at softmax(alpha) (GM+DARTS/SNAS, `strategies.gm_nas_relaxed`); for each candidate op of the
  edge, that path (or mixture) with the op, cross-entropy, backward, the matched gradients flattened;
  the K x K matrix of 1 - cosine (eps 1e-6), averaged over batches (the paper: 100 batches). Ours: a path
  that leaves every matched gradient zero for every op (an NB201 cell whose output edges are all 'none') is
  redrawn instead of adding 1 to every distance; the diagonal is 0 by definition.
- `best_partition`: the partition of the K ops into B groups of sizes as equal as possible (NB201's 5 ops:
  2 + 3; OFA's 3 kernels: 1 + 2 or 1 + 1 + 1) with the least summed within-group distance, by enumeration as
  the official code does while the partitions number at most `EXHAUSTIVE_LIMIT`, else by spectral clustering
  of the similarity 1 - d/2 (ours: the paper speaks of a graph min-cut, unbalanced cuts are not offered).
- `pick_edge`: the edge whose partition cuts the most dissimilarity (the official NB201 and OFA rule,
  "max_cut") or whose groups keep the least (the DARTS-space and ProxylessNAS rule, "min_within").
"""
from __future__ import annotations

import fnmatch
import itertools
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nas.space import Architecture, ArchitectureError, Choice, NASError, SearchSpace, Value, one_of

EDGE_RULES = ("max_cut", "min_within")
SCOPES = ("auto", "inner", "all")
EXHAUSTIVE_LIMIT = 20000
TRIES = 200


@dataclass(frozen=True)
class EdgeScore:
    """One candidate edge's GM matrix over its ops and its best partition."""

    edge: str
    ops: tuple[Value, ...]
    distances: list[list[float]]
    groups: tuple[tuple[Value, ...], ...]
    within: float  # summed distance between ops that share a group
    cut: float  # summed distance between ops the partition separates

    def as_json(self) -> dict[str, Any]:
        return {"edge": self.edge, "ops": list(self.ops), "distances": self.distances,
                "groups": [list(g) for g in self.groups], "within": self.within, "cut": self.cut}


# -- which edges, which weights ---------------------------------------------------------------------------------
def valid_arch(space: SearchSpace, values: Mapping[str, Value]) -> Architecture:
    """`values` as an architecture of `space`; `ArchitectureError` when they are not one."""
    arch = Architecture(values)
    space.validate(arch)
    return arch


def choice_slot(space: SearchSpace, choice: Choice, rng: random.Random) -> str:
    """The searchable slot a choice picks the candidate of: its declared one, else the one slot of the graph
    whose candidate changes when only this choice changes ("" when none or several do)."""
    if choice.slot:
        return choice.slot
    for _ in range(TRIES):
        arch = space.sample(rng)
        if choice.name not in arch:
            continue
        variants = []
        for value in choice.values:
            try:
                graph = space.graph(valid_arch(space, {**arch, choice.name: value}))
            except ArchitectureError:
                break
            variants.append({n.slot: n.variant for n in graph.nodes() if n.slot})
        else:
            changed = {s for s in set().union(*variants) if len({v.get(s) for v in variants}) > 1}
            return changed.pop() if len(changed) == 1 and all(v.keys() == variants[0].keys() for v in variants) \
                else ""
    return ""


def splittable_choices(space: SearchSpace, patterns: Sequence[str] = ("*",), seed: int = 0) -> dict[str, str]:
    """Choice name -> slot of the choices GM-NAS may split in `space` (a `RestrictedSpace` after splits):
    a slot, every value still allowed, a name matching one of `patterns` (fnmatch)."""
    rng = random.Random(seed)
    restriction: Mapping[str, Any] = getattr(space, "restriction", {})
    found = {}
    for choice in space.choices():
        if len(choice.values) < 2 or choice.name in restriction or \
                not any(fnmatch.fnmatchcase(choice.name, p) for p in patterns):
            continue
        slot = choice_slot(space, choice, rng)
        if slot:
            found[choice.name] = slot
    return found


def matched_parameters(supernet: Any, slot: str, scope: str = "inner") -> list[nn.Parameter]:
    """The supernet's weights whose gradients GM-NAS compares for an edge of `slot` (module docstring)."""
    if scope not in ("inner", "all"):
        raise NASError(f"gradient scope {scope!r} is not one of 'inner', 'all'")
    skipped = {id(p) for p in supernet.slot_parameters(slot)}
    if scope == "inner":
        skipped |= {id(p) for p in outer_parameters(supernet)}
    return [p for p in supernet.weights.parameters() if id(p) not in skipped]


def outer_parameters(supernet: Any) -> list[nn.Parameter]:
    """Weights of the fixed layers before the first and after the last searchable layer (stem, classifier),
    read from the graph of one architecture of the supernet's space."""
    nodes = list(supernet.graph(supernet.space.sample(random.Random(0))).nodes())
    searchable = [i for i, n in enumerate(nodes) if n.slot]
    if not searchable:
        return []
    outer = {n.name for i, n in enumerate(nodes) if not n.slot and (i < searchable[0] or i > searchable[-1])}
    found: dict[int, nn.Parameter] = {}
    for node in nodes:
        key = supernet.store_key(node) if node.name in outer and node.op is not None else None
        if key is not None:
            found.update({id(p): p for p in supernet.weights[key].parameters()})
    return list(found.values())


# -- the gradient-matching matrix --------------------------------------------------------------------------------
def paths_through(space: SearchSpace, edge: str, rng: random.Random) -> list[Architecture]:
    """One random single path of the other choices and every allowed op of `edge` on it (all valid)."""
    values = next(c.values for c in space.choices() if c.name == edge)
    for _ in range(TRIES):
        arch = space.sample(rng)
        if edge not in arch:
            continue
        try:
            return [valid_arch(space, {**arch, edge: v}) for v in values]
        except ArchitectureError:
            continue
    raise NASError(f"no sampled architecture of space {space.name!r} takes every value of choice {edge!r}; "
                   f"it cannot be split by gradient matching")


def cosine_distances(grads: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """1 - cos between the rows of `grads` (K x P), eps in the norm as the official code has it; 0 from a
    row to itself, even a zero one."""
    norms = grads.norm(dim=1, keepdim=True).clamp_min(eps)
    unit = grads / norms
    return (1.0 - unit @ unit.T).fill_diagonal_(0.0)


def gradient_matching_distances(supernet: Any, space: SearchSpace, edge: str, slot: str,
                                batches: Iterator[tuple[torch.Tensor, torch.Tensor]], count: int,
                                rng: random.Random, scope: str = "inner",
                                resize: Callable[[torch.Tensor, Architecture], torch.Tensor] | None = None,
                                relaxed: Callable[[torch.Tensor, Value], torch.Tensor] | None = None,
                                ) -> torch.Tensor:
    """The K x K GM distance matrix of `edge` (module docstring), averaged over `count` batches. `relaxed(x, op)`,
    when given, is the forward with the edge at one op and the other edges mixed (GM+DARTS/SNAS) instead of a
    random single path."""
    values = next(c.values for c in space.choices() if c.name == edge)
    params = matched_parameters(supernet, slot, scope)
    if not params:
        raise NASError(f"edge {edge!r} leaves no shared weights to match gradients on")
    was_training = supernet.training
    supernet.train()
    total, done = None, 0
    for _ in range(count * TRIES):
        x, y = next(batches)
        rows: list[torch.Tensor] = []
        for arch in ([None] * len(values) if relaxed else paths_through(space, edge, rng)):
            supernet.zero_grad(set_to_none=True)
            if arch is None:
                assert relaxed is not None
                logits = relaxed(x, values[len(rows)])
            else:
                logits = supernet(resize(x, arch) if resize is not None else x, arch)
            nn.functional.cross_entropy(logits, y).backward()
            rows.append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                                   for p in params]).float())
        grads = torch.stack(rows)
        if not grads.any():  # the path cuts the matched weights off the loss (NB201: 'none' edges): redrawn
            continue
        matrix = cosine_distances(grads)
        total = matrix if total is None else total + matrix
        done += 1
        if done == count:
            break
    supernet.zero_grad(set_to_none=True)
    supernet.train(was_training)
    if total is None:
        raise NASError(f"no sampled path gives the weights matched for edge {edge!r} a gradient")
    return (total / done).cpu()


# -- partitions ----------------------------------------------------------------------------------------------------
def balanced_sizes(k: int, groups: int) -> list[int]:
    """Group sizes as equal as possible, smallest first (5 ops in 2 groups: [2, 3])."""
    if not 2 <= groups <= k:
        raise NASError(f"cannot split {k} ops into {groups} groups; groups must be in 2..{k}")
    return sorted([k // groups + (1 if i < k % groups else 0) for i in range(groups)])


def balanced_partitions(k: int, groups: int) -> Iterator[tuple[tuple[int, ...], ...]]:
    """Every partition of range(k) into groups of `balanced_sizes`, each once (groups ordered by their
    smallest member)."""
    sizes = balanced_sizes(k, groups)

    def fill(rest: tuple[int, ...], sizes_left: list[int]) -> Iterator[tuple[tuple[int, ...], ...]]:
        if not sizes_left:
            yield ()
            return
        first, others = rest[0], rest[1:]
        for size in sorted(set(sizes_left)):
            left = list(sizes_left)
            left.remove(size)
            for mates in itertools.combinations(others, size - 1):
                group = (first, *mates)
                remaining = tuple(i for i in others if i not in mates)
                for tail in fill(remaining, left):
                    yield (group, *tail)

    yield from fill(tuple(range(k)), sizes)


def count_partitions(k: int, groups: int) -> int:
    """How many balanced partitions there are (stops counting past the enumeration limit)."""
    return sum(1 for _ in itertools.islice(balanced_partitions(k, groups), EXHAUSTIVE_LIMIT + 1))


def within_distance(distances: torch.Tensor, partition: Sequence[Sequence[int]]) -> float:
    return float(sum(distances[i, j] for group in partition for i, j in itertools.combinations(group, 2)))


def best_partition(distances: torch.Tensor, groups: int, seed: int = 0) -> tuple[tuple[int, ...], ...]:
    """The balanced partition of the ops (indices) with the least summed within-group distance."""
    k = distances.shape[0]
    if count_partitions(k, groups) <= EXHAUSTIVE_LIMIT:
        return min(balanced_partitions(k, groups), key=lambda p: within_distance(distances, p))
    from sklearn.cluster import SpectralClustering

    similarity = (1.0 - distances / 2.0).clamp(0.0, 1.0).numpy()
    labels = SpectralClustering(groups, affinity="precomputed", random_state=seed).fit_predict(similarity)
    found = [tuple(i for i in range(k) if labels[i] == label) for label in sorted(set(labels))]
    return tuple(sorted((g for g in found if g), key=lambda g: g[0]))


def score_edge(edge: str, ops: Sequence[Value], distances: torch.Tensor, groups: int, seed: int = 0) -> EdgeScore:
    """The edge's best partition, its within-group and its cut dissimilarity."""
    partition = best_partition(distances, groups, seed)
    within = within_distance(distances, partition)
    total = float(distances.triu(1).sum())
    return EdgeScore(edge, tuple(ops), distances.tolist(), tuple(tuple(ops[i] for i in g) for g in partition),
                     within, total - within)


def pick_edge(scores: Sequence[EdgeScore], rule: str = "max_cut") -> EdgeScore:
    """The edge to split by `rule` (module docstring); ties go to the first in the space's order."""
    if rule not in EDGE_RULES:
        raise NASError(f"edge rule {rule!r} is not one of {one_of(EDGE_RULES)}")
    if not scores:
        raise NASError("no edge left to split: every searchable choice is already split")
    if rule == "max_cut":
        return max(scores, key=lambda s: s.cut)
    return min(scores, key=lambda s: s.within)
