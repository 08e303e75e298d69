"""Weight-sharing primitives: block-partitioned supernets (BossNAS) and subnet extraction.

A `BlockSupernet` is a supernet cut into blocks trained one after another. Each block offers candidate
paths (hashable tuples of per-layer choices) that may depend on the block's *entry state* (for HyTra, the
resolution level the previous block ended at; for MBConv, nothing). A space that supports block-wise
strategies implements `space.block_supernet(input_shape, num_classes) -> BlockSupernet`.
"""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Hashable, Sequence

import torch
from torch import nn

from nas.space import Architecture

Path = tuple[Hashable, ...]


class BlockSupernet(nn.Module):
    """A supernet of `num_blocks` blocks with candidate paths per block."""

    num_blocks: int

    @abstractmethod
    def initial_state(self) -> Hashable:
        """The entry state of block 0."""

    @abstractmethod
    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """The fixed layers before block 0."""

    @abstractmethod
    def stem_modules(self) -> list[nn.Module]:
        """The modules holding the stem's weights."""

    @abstractmethod
    def block_modules(self, block: int) -> list[nn.Module]:
        """The modules holding the weights `forward_block(block, ...)` may use; with the stem's, a partition."""

    @abstractmethod
    def candidates(self, block: int, entry: Hashable) -> list[Path]:
        """Every candidate path of `block` when entered in state `entry`."""

    @abstractmethod
    def forward_block(self, block: int, path: Path, x: torch.Tensor, entry: Hashable) -> torch.Tensor:
        """Run one block along `path` (its weights are shared with every path using the same layer op)."""

    @abstractmethod
    def exit_state(self, block: int, path: Path, entry: Hashable) -> Hashable:
        """The entry state of the next block after taking `path`."""

    @abstractmethod
    def output_shape(self, block: int, path: Path, entry: Hashable) -> tuple[int, ...]:
        """(C, H, W) of the block's output along `path`."""

    @abstractmethod
    def arch_of(self, paths: Sequence[Path]) -> Architecture:
        """The architecture made of one path per block."""

    @abstractmethod
    def paths_of(self, arch: Architecture) -> list[Path]:
        """The per-block paths of an architecture (inverse of `arch_of`)."""

    def forward_paths(self, x: torch.Tensor, paths: Sequence[Path]) -> torch.Tensor:
        """Run the stem and blocks 0..len(paths)-1 along `paths`; returns the last block's output."""
        entry = self.initial_state()
        x = self.stem(x)
        for block, path in enumerate(paths):
            x = self.forward_block(block, path, x, entry)
            entry = self.exit_state(block, path, entry)
        return x
