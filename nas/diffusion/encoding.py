"""Node-operation matrices: DiffusionNAG's representation of an architecture (An et al., ICLR 2024, Sec. 3).

Operations sit on the nodes of a DAG whose adjacency is fixed for the whole space, so an architecture is a binary
matrix X (nodes x operation types, one one-hot row per node, or an empty row for an absent node). Only X is
diffused; the adjacency serves as the score network's attention mask. Matrices are scaled to [-1, 1] for the
diffusion (`centre`, the official `data.centered=True`) and mapped back with `uncentre` and `quantize` (element-wise
threshold at 0.5, as the official `quantize`).

`OperationMatrix` is the per-space protocol; `NB201Matrix` and `MBConvMatrix` implement it, `operation_matrix(space)`
picks one for a space.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from itertools import product
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.space import Architecture, NASError, SearchSpace, Value

if TYPE_CHECKING:
    import torch

#: NAS-Bench-201's official 8x8 adjacency (`datasets_nas.py::get_adj`), rows in the decoder's edge order except that
#: it wires row 3 as the edge (3<-0) and row 4 as (2<-1), the reverse of the decoder (the "row-order quirk")
NB201_OFFICIAL_ADJ = ((0, 1), (0, 2), (0, 3), (1, 4), (1, 5), (2, 6), (3, 7), (4, 6), (5, 7), (6, 7))
#: the same DAG with rows read as the decoder reads them: rows 1..6 = edges (1<-0),(2<-0),(2<-1),(3<-0),(3<-1),(3<-2)
NB201_CONSISTENT_ADJ = ((0, 1), (0, 2), (0, 4), (1, 3), (1, 5), (2, 6), (3, 6), (4, 7), (5, 7), (6, 7))


def centre(x: np.ndarray | torch.Tensor) -> Any:
    """{0, 1} -> {-1, 1}: the scaling the prior is trained in."""
    return 2 * x - 1


def uncentre(x: np.ndarray | torch.Tensor) -> Any:
    """[-1, 1] -> [0, 1], the inverse of `centre`."""
    return (x + 1) / 2


def quantize(x: np.ndarray | torch.Tensor, threshold: float = 0.5) -> np.ndarray:
    """Binary matrices from [0, 1]-scaled samples: every entry >= `threshold` becomes 1 (the official rule, which
    may leave a row with several ones or none; validity then decides)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return (np.asarray(x) >= threshold).astype(np.float32)


def transitive_closure(adj: np.ndarray) -> np.ndarray:
    """Reachability of a DAG's adjacency, without self-loops (the official Floyd-Warshall `floyed`)."""
    reach = adj.astype(bool)
    for _ in range(len(adj)):
        reach = reach | ((reach.astype(np.int64) @ reach.astype(np.int64)) > 0)
    return reach.astype(np.float32)


class OperationMatrix(ABC):
    """How a space's architectures map to node-operation matrices over a fixed DAG.

    Subclasses set `n_nodes`, `n_types`, `adjacency` (n_nodes x n_nodes, edge i -> j at [i, j]) and `positions`
    (each node's index for the sinusoidal positional encoding), and implement `encode`, `valid` and `decode_valid`.
    `train_mask` / `sample_mask` are the attention masks ("raw" adjacency or its transitive "closure") the
    official code uses when training and when sampling.
    """

    name: str = "matrix"
    n_nodes: int
    n_types: int
    adjacency: np.ndarray
    positions: np.ndarray
    train_mask: str = "raw"
    sample_mask: str = "raw"

    @abstractmethod
    def encode(self, arch: Mapping[str, Value]) -> np.ndarray:
        """The binary (n_nodes, n_types) float32 matrix of `arch`."""

    @abstractmethod
    def valid(self, x: np.ndarray) -> np.ndarray:
        """Validity of binary matrices of shape (B, n_nodes, n_types): a bool array of shape (B,)."""

    @abstractmethod
    def decode_valid(self, x: np.ndarray) -> Architecture:
        """The architecture of one binary matrix that `valid` accepts."""

    def encode_many(self, archs: Sequence[Mapping[str, Value]]) -> np.ndarray:
        """Stacked `encode` of every architecture: (B, n_nodes, n_types)."""
        return np.stack([self.encode(a) for a in archs]) if archs else np.zeros((0, self.n_nodes, self.n_types),
                                                                                 np.float32)

    def is_valid(self, x: np.ndarray) -> bool:
        """Whether one binary matrix is a member of the space."""
        x = np.asarray(x)
        return x.shape == (self.n_nodes, self.n_types) and bool(self.valid(x[None])[0])

    def decode(self, x: np.ndarray) -> Architecture | None:
        """The architecture of one binary matrix, None when it is invalid (invalid samples are discarded, never
        repaired, as in the official code)."""
        return self.decode_valid(np.asarray(x)) if self.is_valid(x) else None

    def decode_many(self, x: np.ndarray) -> list[Architecture | None]:
        """`decode` of a batch of binary matrices, with one vectorised validity check."""
        x = np.asarray(x)
        ok = self.valid(x)
        return [self.decode_valid(m) if v else None for m, v in zip(x, ok)]

    def mask(self, kind: str) -> np.ndarray:
        """The attention mask: the "raw" adjacency or its transitive "closure"."""
        if kind == "raw":
            return self.adjacency.astype(np.float32)
        if kind == "closure":
            return transitive_closure(self.adjacency)
        raise NASError(f"attention mask {kind!r} is not one of 'raw', 'closure'")

    def describe(self) -> str:
        """A short string identifying the layout (for cache keys)."""
        return f"{self.name}:{self.n_nodes}x{self.n_types}:{self.adjacency.astype(int).tobytes().hex()}"


def _adjacency(n: int, edges: Sequence[tuple[int, int]]) -> np.ndarray:
    adj = np.zeros((n, n), np.float32)
    for i, j in edges:
        adj[i, j] = 1
    return adj


class NB201Matrix(OperationMatrix):
    """NAS-Bench-201 as 8 nodes x 7 types (`input, output, none, skip_connect, nor_conv_1x1, nor_conv_3x3,
    avg_pool_3x3`): node 0 the input, nodes 1..6 the cell's edges in arch-string order, node 7 the output.

    `official_adjacency=True` (default) copies the official adjacency verbatim, including its row-order quirk (it
    wires row 3 as the edge (3<-0) and row 4 as (2<-1), the reverse of the decoder); False uses the DAG consistent
    with the decoder. Either way the rows are read as the decoder reads them. Masks as the official code: the raw
    adjacency for training (its `'floyd'` setting never matches the `'floyed'` it tests for) and the transitive
    closure for sampling.
    """

    name = "nb201"
    n_nodes, n_types = 8, 7
    train_mask, sample_mask = "raw", "closure"
    INPUT, OUTPUT = 0, 1

    def __init__(self, official_adjacency: bool = True) -> None:
        from search_spaces.nb201 import EDGES, OPS, edge_name

        self.official_adjacency = official_adjacency
        self.adjacency = _adjacency(8, NB201_OFFICIAL_ADJ if official_adjacency else NB201_CONSISTENT_ADJ)
        self.positions = np.arange(8)
        self.ops = OPS
        self.names = [edge_name(j, i) for j, i in EDGES]
        self.name = "nb201" if official_adjacency else "nb201-consistent"

    def encode(self, arch: Mapping[str, Value]) -> np.ndarray:
        x = np.zeros((8, 7), np.float32)
        x[0, self.INPUT] = x[7, self.OUTPUT] = 1
        x[np.arange(1, 7), [2 + self.ops.index(arch[n]) for n in self.names]] = 1
        return x

    def valid(self, x: np.ndarray) -> np.ndarray:
        """The official `is_valid_NAS201_x`: every row one-hot, row 0 the input, row 7 the output, no input or
        output type in rows 1..6."""
        x = np.asarray(x)
        one_hot = (x.sum(-1) == 1).all(-1) & ((x == 0) | (x == 1)).all((-1, -2))
        ends = (x[:, 0, self.INPUT] == 1) & (x[:, 7, self.OUTPUT] == 1)
        inner = x[:, 1:7, :2].sum((-1, -2)) == 0
        return np.asarray(one_hot & ends & inner)

    def decode_valid(self, x: np.ndarray) -> Architecture:
        return Architecture({n: self.ops[int(k) - 2] for n, k in zip(self.names, np.argmax(x[1:7], -1))})


class MBConvMatrix(OperationMatrix):
    """An MBConv space as (stages x max depth) layers x (kernel, expand) types, one-hot per present layer and an
    all-zero row for a skipped one; for the `ofa_mbv3` preset this is the official 20 x 9 OFA matrix (types
    `'3-3', '3-4', '3-6', '5-3', ..., '7-6'`, kernel-major). The adjacency is the official chain i -> i+1 over all
    rows (no input/output nodes). Both masks are the raw chain, as the official MobileNetV3 code.

    Positions (`positions`): "stage" is the layer index within its stage, tiled over stages (the official
    stage-wise positional encoding); "layer" is the row index. With the chain mask a node sees only its successor,
    so tiled positions cannot tell stages apart: where stages differ in depths or expand values (e.g. the `small`
    preset, where only stage 3 may hold a third layer) a prior trained with them leaves most samples invalid.
    "auto" (default) takes "stage" when all stages allow the same depths and expand values (OFA) and "layer"
    otherwise (ours).

    Deviations (our space has more than the matrix): resolution and width multiplier are not in the matrix; `decode`
    sets them to `resolution` / `width_mult` (default: the largest resolution and 1.0, else the smallest multiplier).
    Expand values are the union over stages (presets whose reference models add per-stage values, e.g. 2.5, get more
    types); a type a stage does not allow is invalid there. Validity generalises the official `is_valid_OFA_x`
    (at most one op per row, layers 1 and 2 present, no present layer after a skipped one) to each stage's depths:
    rows present form a prefix whose length is an allowed depth.
    """

    name = "mbconv"
    train_mask, sample_mask = "raw", "raw"

    def __init__(self, space: SearchSpace, resolution: int | None = None, width_mult: float | None = None,
                 positions: str = "auto") -> None:
        family = getattr(space, "family", None)
        if family is None:
            raise NASError(f"space {space.name!r} has no MBConv family; MBConvMatrix needs an mbconv space")
        self.space = space
        self.name = f"mbconv-{space.preset}"
        n_stages = len(family.stages)
        self.depths = [family.stage_depths(i) for i in range(n_stages)]
        self.max_depth = max(max(d) for d in self.depths)
        expands = sorted({e for i in range(n_stages) for e in family.stage_expands(i)})
        self.types = list(product(family.kernels, expands))
        self.n_nodes, self.n_types = n_stages * self.max_depth, len(self.types)
        self.adjacency = _adjacency(self.n_nodes, [(i, i + 1) for i in range(self.n_nodes - 1)])
        uniform = all(family.stage_depths(i) == self.depths[0] and family.stage_expands(i) == family.stage_expands(0)
                      for i in range(n_stages))
        if positions not in ("auto", "stage", "layer"):
            raise NASError(f"MBConv matrix positions {positions!r} is not one of 'auto', 'stage', 'layer'")
        self.position_kind = ("stage" if uniform else "layer") if positions == "auto" else positions
        self.positions = (np.tile(np.arange(self.max_depth), n_stages) if self.position_kind == "stage"
                          else np.arange(self.n_nodes))
        allowed = np.zeros((n_stages, self.n_types), bool)
        for s in range(n_stages):
            allowed[s] = [e in family.stage_expands(s) for _, e in self.types]
        self.allowed = np.repeat(allowed, self.max_depth, axis=0)  # (n_nodes, n_types)
        depth_ok = np.zeros((n_stages, self.max_depth + 1), bool)
        for s, ds in enumerate(self.depths):
            depth_ok[s, list(ds)] = True
        self.depth_ok = depth_ok
        self.resolution = resolution if resolution is not None else max(family.resolutions)
        self.width_mult = width_mult if width_mult is not None else (
            1.0 if 1.0 in family.width_mults else min(family.width_mults))

    def encode(self, arch: Mapping[str, Value]) -> np.ndarray:
        x = np.zeros((self.n_nodes, self.n_types), np.float32)
        for s in range(len(self.depths)):
            for j in range(arch[f"s{s + 1}_depth"]):
                k, e = arch[f"s{s + 1}_l{j}_k"], arch[f"s{s + 1}_l{j}_e"]
                x[s * self.max_depth + j, self.types.index((k, e))] = 1
        return x

    def valid(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        binary = ((x == 0) | (x == 1)).all((-1, -2))
        rows = x.sum(-1)  # (B, n_nodes)
        single = (rows <= 1).all(-1)
        allowed = ((x * ~self.allowed) == 0).all((-1, -2))
        present = (rows == 1).reshape(len(x), len(self.depths), self.max_depth)
        prefix = (present[..., 1:] <= present[..., :-1]).all((-1, -2))
        depth = present.sum(-1)  # (B, stages)
        depth_ok = self.depth_ok[np.arange(len(self.depths)), depth.clip(0, self.max_depth)].all(-1)
        return np.asarray(binary & single & allowed & prefix & depth_ok)

    def decode_valid(self, x: np.ndarray) -> Architecture:
        values: dict[str, Value] = {"resolution": self.resolution, "width_mult": self.width_mult}
        for s in range(len(self.depths)):
            rows = x[s * self.max_depth:(s + 1) * self.max_depth]
            depth = int((rows.sum(-1) == 1).sum())
            values[f"s{s + 1}_depth"] = depth
            for j in range(depth):
                values[f"s{s + 1}_l{j}_k"], values[f"s{s + 1}_l{j}_e"] = self.types[int(np.argmax(rows[j]))]
        return Architecture(values)

    def describe(self) -> str:
        return f"{super().describe()}:{self.resolution}:{self.width_mult}:{self.position_kind}"


def operation_matrix(space: SearchSpace, **options: Any) -> OperationMatrix:
    """The node-operation matrix layout of `space` (nb201 or an mbconv preset); `options` go to its constructor."""
    if space.name == "nb201":
        return NB201Matrix(**options)
    if getattr(space, "family", None) is not None:
        return MBConvMatrix(space, **options)
    raise NASError(f"DiffusionNAG has no node-operation matrix for space {space.name!r}; accepted: nb201, mbconv")
