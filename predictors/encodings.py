"""Fixed-length encodings of architectures, all derived generically from the space or its `ArchGraph`.

Three encodings (`ENCODINGS`), none of them knowing any particular space:

- ``onehot``: `space.encode(arch)`, the one-hot of every choice (NASLib's "adjacency one-hot" for cell
  spaces is the same thing: one op per edge).
- ``adjacency``: a graph-derived op/adjacency encoding. Every node of the compact graph (below) gives the
  feature ``(anchor, op label)`` and every edge ``(anchor_u, label_u) -> (anchor_v, label_v)``; the
  anchor is the graph name of the node's first layer, i.e. its position in the network. Features are
  counted into `dim` buckets by a stable hash (CRC-32), so the vector has a fixed length for every
  space; collisions are rare at the default `dim` (2048) for graphs of a few hundred nodes.
- ``path``: BANANAS-style path encoding (White et al. 2021): the multiset of op-label sequences along
  paths, hashed into `dim` buckets. Deviation, for graphs of whole networks: the paths are taken inside
  each distinct group (from the group's entry nodes to its exit nodes; a cell, a block), not from the
  network's input to its output. For a cell space these are the paper's cell paths (the ops along each
  path through the cell, in our merged labels, `none` edges cutting paths); whole-network
  paths multiply across stacked cells (265 distinct ones for one NB201 cell, most of them seen once) and
  predict far worse (measured: `benchmarks/predictors.md`).
  Groups with more than `max_paths` paths contribute none. Labels carry no position, so identical cells
  count once. Labels of collapsed runs (below) carry their repeat count (``relu-conv3x3-bn*5``) in both
  hashed encodings.

The compact graph (`compact_graph`) keeps the encodings and the GNN small and informative:
1. `Zero` layers (NAS-Bench-201's `none`) are removed with their edges, and so is every layer that the
   input no longer reaches (it computes on zeros) or that no longer reaches the output: no signal.
2. Chains are merged: a layer with a single input, whose input feeds only it, in the same group, joins
   its input's node (ReLU -> Conv -> BN becomes one node labelled ``relu-conv3x3-bn``).
3. Repeated groups are collapsed: a run of consecutive groups with equal structure (same labels, same
   internal edges), each fed only by the one before it (a stack of identical cells), is kept once; its
   nodes carry the run length in `repeat`. Edges skipping over members of a run are dropped.
Numeric node features are the merged layers' parameters and multiply-adds (summed), output channels and
spatial size, and the repeat count.
"""
from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from math import log1p, log2, prod

import networkx as nx
import numpy as np

from nas.graph import INPUT, ArchGraph
from nas.ops import Zero
from nas.space import Architecture, SearchSpace

#: number of numeric features per compact-graph node (see `CompactGraph.feats`)
NUM_FEATS = 5


@dataclass(frozen=True)
class CompactGraph:
    """A small DAG derived from an `ArchGraph`: node 0 is the input, `output` the output node."""

    labels: tuple[str, ...]
    anchors: tuple[str, ...]
    groups: tuple[str, ...]
    feats: np.ndarray  # (nodes, NUM_FEATS): log1p params, log1p macs, log2 channels, log2 spatial, repeat
    edges: tuple[tuple[int, int], ...]
    output: int

    def __len__(self) -> int:
        return len(self.labels)

    def tag(self, i: int) -> str:
        """Node `i`'s label with its repeat count (``conv3x3*3``) when it stands for a run."""
        r = int(self.feats[i, 4])
        return self.labels[i] if r == 1 else f"{self.labels[i]}*{r}"


def _numeric(graph: ArchGraph, names: Sequence[str]) -> list[float]:
    last = graph.node(names[-1])
    nodes = [graph.node(n) for n in names]
    params = sum(node.op.params() for node in nodes if node.op is not None)
    macs = sum(node.op.macs(node.in_shapes(graph)) for node in nodes if node.op is not None)
    shape = last.shape
    spatial = prod(shape[1:]) if len(shape) > 1 else 1
    return [log1p(params), log1p(macs), log2(max(shape[0], 1)), log2(max(spatial, 1)), 1.0]


def compact(graph: ArchGraph) -> CompactGraph:
    """The compact graph of `graph` (see the module docstring)."""
    dag = graph.dag
    alive = dag.subgraph(n for n in dag.nodes if not isinstance(graph.node(n).op, Zero))
    live = nx.descendants(alive, INPUT) & nx.ancestors(alive, graph.output) if graph.output in alive else set()
    keep = [n for n in dag.nodes if n in live or n in (INPUT, graph.output)]
    keep_set = set(keep)
    preds = {n: [p for p in graph.node(n).inputs if p in keep_set] for n in keep}
    succs: dict[str, list[str]] = defaultdict(list)
    for n in keep:
        for src in dict.fromkeys(preds[n]):
            succs[src].append(n)
    # 1-2: merge chains, in topological order
    head: dict[str, str] = {}  # layer -> first layer of its merged node
    members: dict[str, list[str]] = {}
    order = [n for n in (x.name for x in graph.nodes()) if n in keep_set]
    for n in order:
        p = preds[n]
        node = graph.node(n)
        if len(p) == 1 and p[0] != INPUT and len(succs[p[0]]) == 1 and graph.node(p[0]).group == node.group:
            head[n] = head[p[0]]
            members[head[n]].append(n)
        else:
            head[n] = n
            members[n] = [n]
    heads = [n for n in order if head[n] == n]
    index = {h: i for i, h in enumerate(heads)}
    edges = {(index[head[p]], index[h]) for h in heads for p in preds[h]}
    out = index[head[graph.output]]
    labels = ["input" if h == INPUT else "-".join(graph.node(m).layer_op.label for m in members[h]) for h in heads]
    groups = [graph.node(h).group for h in heads]
    feats = [[0.0, 0.0, log2(max(graph.input_shape[0], 1)), log2(max(prod(graph.input_shape[1:]), 1)), 1.0]
             if h == INPUT else _numeric(graph, members[h]) for h in heads]
    return _collapse(labels, list(heads), groups, np.asarray(feats, dtype=np.float32), edges, out)


def _collapse(labels: list[str], anchors: list[str], groups: list[str], feats: np.ndarray,
              edges: set[tuple[int, int]], out: int) -> CompactGraph:
    """Step 3: keep one member of each run of identical consecutive groups fed one by another."""
    order: list[str] = list(dict.fromkeys(groups))
    nodes_of: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        nodes_of[g].append(i)
    local = {i: k for g in order for k, i in enumerate(nodes_of[g])}

    def signature(g: str) -> tuple:
        inner = sorted((local[a], local[b]) for a, b in edges if groups[a] == g and groups[b] == g)
        return tuple(labels[i] for i in nodes_of[g]), tuple(inner)

    def fed_only_by(g: str, prev: str) -> bool:
        ext_in = {groups[a] for a, b in edges if groups[b] == g and groups[a] != g}
        ext_out = {groups[b] for a, b in edges if groups[a] == prev and groups[b] != prev}
        return ext_in == {prev} and ext_out == {g}

    target = list(range(len(labels)))  # node -> node it is merged into
    repeat = np.ones(len(labels), dtype=np.float32)
    member_of: dict[int, int] = {}  # node -> index of its run member (0 for the representative)
    rep_group: dict[str, str] = {}
    run_len = 0
    for k, g in enumerate(order):
        prev = order[k - 1] if k else None
        if prev is not None and prev in rep_group and signature(g) == signature(prev) and fed_only_by(g, prev):
            rep = rep_group[prev]
            rep_group[g] = rep
            run_len += 1
            for i, j in zip(nodes_of[g], nodes_of[rep]):
                target[i] = j
                member_of[i] = run_len
            for j in nodes_of[rep]:
                repeat[j] += 1
        else:
            rep_group[g] = g
            run_len = 0
            for i in nodes_of[g]:
                member_of[i] = 0
    kept = [i for i in range(len(labels)) if target[i] == i]
    new = {i: n for n, i in enumerate(kept)}
    new_edges = set()
    for a, b in edges:
        ta, tb = target[a], target[b]
        same_run = rep_group[groups[a]] == rep_group[groups[b]]
        if same_run and member_of[a] != member_of[b]:
            continue  # between members of a run (or skipping over some)
        if ta != tb:
            new_edges.add((new[ta], new[tb]))
    feats = feats[kept].copy()
    feats[:, 4] = repeat[kept]
    return CompactGraph(tuple(labels[i] for i in kept), tuple(anchors[i] for i in kept),
                        tuple(groups[i] for i in kept), feats, tuple(sorted(new_edges)), new[target[out]])


@lru_cache(maxsize=65536)
def compact_graph(space: SearchSpace, arch: Architecture) -> CompactGraph:
    """`compact(space.graph(arch))`, cached per (space, architecture)."""
    return compact(space.graph(arch))


def _hash(text: str, dim: int) -> int:
    return zlib.crc32(text.encode()) % dim


def _paths(succ: Mapping[int, Sequence[int]], starts: Sequence[int], ends: set[int], allowed: set[int],
           max_paths: int) -> list[tuple[int, ...]] | None:
    """All paths from `starts` to `ends` inside `allowed`, or None when there are more than `max_paths`."""
    out: list[tuple[int, ...]] = []
    stack: list[tuple[int, ...]] = [(s,) for s in starts]
    while stack:
        path = stack.pop()
        if path[-1] in ends:
            out.append(path)
            if len(out) > max_paths:
                return None
        for nxt in succ.get(path[-1], ()):
            if nxt in allowed:
                stack.append(path + (nxt,))
        if len(stack) > 64 * max_paths:
            return None
    return out


def path_counts(cg: CompactGraph, max_paths: int = 4096) -> Counter[str]:
    """Label sequences of the paths inside each distinct group, from its entry to its exit nodes."""
    succ: dict[int, list[int]] = defaultdict(list)
    for a, b in cg.edges:
        succ[a].append(b)
    counts: Counter[str] = Counter()
    seen_groups: set[tuple[str, ...]] = set()
    for g in dict.fromkeys(cg.groups):
        nodes = {i for i in range(len(cg)) if cg.groups[i] == g}
        entries = sorted({b for a, b in cg.edges if b in nodes and a not in nodes} | ({0} & nodes))
        exits = {a for a, b in cg.edges if a in nodes and b not in nodes} | ({cg.output} & nodes)
        paths = _paths(succ, entries, exits, nodes, max_paths) or []
        key = tuple(sorted(">".join(cg.tag(i) for i in p) for p in paths))
        if key not in seen_groups:
            seen_groups.add(key)
            counts.update(key)
    return counts


def path_encoding(space: SearchSpace, arch: Architecture, dim: int = 2048, max_paths: int = 4096) -> np.ndarray:
    """Hashed counts of op-label paths (see the module docstring)."""
    vec = np.zeros(dim, dtype=np.float32)
    for text, n in path_counts(compact_graph(space, arch), max_paths).items():
        vec[_hash(text, dim)] += n
    return vec


def adjacency_encoding(space: SearchSpace, arch: Architecture, dim: int = 2048) -> np.ndarray:
    """Hashed (position, op) node features and (position, op) -> (position, op) edge features."""
    cg = compact_graph(space, arch)
    vec = np.zeros(dim, dtype=np.float32)
    keys = [f"{a}:{cg.tag(i)}" for i, a in enumerate(cg.anchors)]
    for k in keys:
        vec[_hash("n:" + k, dim)] += 1
    for a, b in cg.edges:
        vec[_hash(f"e:{keys[a]}>{keys[b]}", dim)] += 1
    return vec


def onehot_encoding(space: SearchSpace, arch: Architecture) -> np.ndarray:
    """`space.encode(arch)`: the one-hot of every choice."""
    return np.asarray(space.encode(arch), dtype=np.float32)


ENCODINGS: dict[str, Callable[[SearchSpace, Architecture], np.ndarray]] = {
    "onehot": onehot_encoding, "adjacency": adjacency_encoding, "path": path_encoding}


def encode(space: SearchSpace, archs: Sequence[Mapping], kind: str = "onehot") -> np.ndarray:
    """A (len(archs), features) matrix of one encoding."""
    if kind not in ENCODINGS:
        from nas.space import NASError, one_of
        raise NASError(f"unknown encoding {kind!r}; accepted: {one_of(list(ENCODINGS))}")
    fn = ENCODINGS[kind]
    return np.stack([fn(space, Architecture(a)) for a in archs])
