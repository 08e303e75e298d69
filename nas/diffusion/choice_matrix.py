"""A generic node-operation matrix for spaces DiffusionNAG (An et al., ICLR 2024) has no layout for: ours, not the
paper's.

One node per choice of the space (in `choices()` order), one-hot over the choice's values (padded to the largest
choice), an all-zero row for a choice that is inactive in the architecture; the adjacency is the chain over the
choices (as the official MobileNetV3 layout), positions the choice index. A binary matrix is valid when its rows are
at most one-hot, it decodes to an architecture the space accepts, and encoding that architecture gives the matrix
back (so inactive choices have empty rows). Validity is checked per sample through the space (not vectorised).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nas.diffusion.encoding import OperationMatrix, _adjacency
from nas.space import Architecture, ArchitectureError, SearchSpace, Value


class ChoiceMatrix(OperationMatrix):
    """Choices x values one-hot matrix over a chain of the space's choices."""

    train_mask, sample_mask = "raw", "raw"

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.choices = list(space.choices())
        self.name = f"choices-{space.name}"
        self.n_nodes, self.n_types = len(self.choices), max(len(c.values) for c in self.choices)
        self.adjacency = _adjacency(self.n_nodes, [(i, i + 1) for i in range(self.n_nodes - 1)])
        self.positions = np.arange(self.n_nodes)

    def encode(self, arch: Mapping[str, Value]) -> np.ndarray:
        x = np.zeros((self.n_nodes, self.n_types), np.float32)
        for i, c in enumerate(self.choices):
            if c.name in arch:
                x[i, c.values.index(arch[c.name])] = 1
        return x

    def valid(self, x: np.ndarray) -> np.ndarray:
        return np.array([self._decode(m) is not None for m in np.asarray(x)], bool)

    def decode_valid(self, x: np.ndarray) -> Architecture:
        arch = self._decode(x)
        assert arch is not None, "decode_valid of an invalid matrix"
        return arch

    def _decode(self, x: np.ndarray) -> Architecture | None:
        if not ((x == 0) | (x == 1)).all() or (x.sum(-1) > 1).any():
            return None
        values: dict[str, Value] = {}
        for i, c in enumerate(self.choices):
            hot = np.flatnonzero(x[i])
            if len(hot):
                if hot[0] >= len(c.values):
                    return None
                values[c.name] = c.values[int(hot[0])]
        arch = Architecture(values)
        try:
            self.space.validate(arch)
        except ArchitectureError:
            return None
        return arch if np.array_equal(self.encode(arch), x) else None

    def describe(self) -> str:
        names = ",".join(f"{c.name}={len(c.values)}" for c in self.choices)
        return f"{super().describe()}:{names}"
