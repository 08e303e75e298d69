"""How a space cuts into blocks of candidate paths, for block-wise supernets (BossNAS).

Li et al., "BossNAS: Exploring Hybrid CNN-transformers with Block-wisely Self-supervised Neural Architecture
Search" (ICCV 2021) train a supernet block by block. A space that supports this is a `BlockSpace`: given the
data's sample shape it gives a `BlockPaths`, which says how many blocks there are, which candidate paths
(hashable tuples of per-layer choices) a block offers when entered in a given state (HyTra: the resolution
the previous block ended at; MBConv: always None), the state a path leaves the next block in, how paths map
to architectures and back, and which layers of the architecture graph (by `Node.group`) belong to a block.
Everything else (the weights, running one block, the partition of the weights) comes from the graph
(`nas.supernet.BlockSupernet`).
"""
from __future__ import annotations

import json
import random
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from functools import cached_property

from nas.space import Architecture, NASError, SearchSpace

Path = tuple[Hashable, ...]
Paths = tuple[Path, ...]


def state_key(state: Hashable) -> str:
    """An entry state as JSON text (states are ints, strings, None or tuples of them)."""
    return json.dumps(state, separators=(",", ":"))


class BlockPaths(ABC):
    """The block-wise view of one space for one input shape (module docstring)."""

    num_blocks: int
    #: the (C, H, W) input the block-wise models take
    input_shape: tuple[int, ...]

    @abstractmethod
    def initial_state(self) -> Hashable:
        """The entry state of block 0."""

    @abstractmethod
    def candidates(self, block: int, entry: Hashable) -> list[Path]:
        """Every candidate path of `block` when entered in state `entry`."""

    @abstractmethod
    def exit_state(self, block: int, path: Path, entry: Hashable) -> Hashable:
        """The entry state of the next block after taking `path`."""

    @abstractmethod
    def arch_of(self, paths: Sequence[Path]) -> Architecture:
        """The architecture made of one path per block."""

    @abstractmethod
    def paths_of(self, arch: Architecture) -> list[Path]:
        """The per-block paths of an architecture (inverse of `arch_of`)."""

    @abstractmethod
    def block_of(self, group: str) -> int | None:
        """The block a graph group label belongs to; None for the stem and the head."""

    # -- derived ---------------------------------------------------------------------------------------
    @cached_property
    def entries(self) -> list[list[Hashable]]:
        """Every state each block can be entered in, in order of discovery."""
        return [[state for state, _ in block.values()] for block in self._prefixes]

    def state_after(self, paths: Sequence[Path]) -> Hashable:
        """The entry state of the block after `paths` (blocks 0..len(paths)-1)."""
        entry = self.initial_state()
        for block, path in enumerate(paths):
            entry = self.exit_state(block, path, entry)
        return entry

    def entries_of(self, paths: Sequence[Path]) -> list[Hashable]:
        """The state each block of `paths` is entered in."""
        out, entry = [], self.initial_state()
        for block, path in enumerate(paths):
            out.append(entry)
            entry = self.exit_state(block, path, entry)
        return out

    def check_path(self, block: int, path: Path, entry: Hashable) -> None:
        if not 0 <= block < self.num_blocks:
            raise NASError(f"block {block} does not exist; blocks are 0..{self.num_blocks - 1}")
        if tuple(path) not in self.candidates(block, entry):
            raise NASError(f"path {tuple(path)} is not a candidate of block {block} entered in state "
                           f"{state_key(entry)}")

    def prefix_to(self, block: int, entry: Hashable) -> Paths:
        """Some paths of blocks 0..block-1 that enter `block` in state `entry` (first found, depth first)."""
        found = self._prefixes[block].get(state_key(entry))
        if found is None:
            raise NASError(f"block {block} cannot be entered in state {state_key(entry)}")
        return found[1]

    @cached_property
    def _prefixes(self) -> list[dict[str, tuple[Hashable, Paths]]]:
        """Per block, entry state key -> (state, the first prefix found that enters the block in it)."""
        start = self.initial_state()
        found: list[dict[str, tuple[Hashable, Paths]]] = [{state_key(start): (start, ())}]
        for block in range(self.num_blocks - 1):
            nxt: dict[str, tuple[Hashable, Paths]] = {}
            for entry, prefix in found[-1].values():
                for path in self.candidates(block, entry):
                    state = self.exit_state(block, path, entry)
                    nxt.setdefault(state_key(state), (state, prefix + (path,)))
            found.append(nxt)
        return found

    def completion(self, block: int, entry: Hashable, path: Path) -> Paths:
        """Complete paths with `path` at `block` entered in `entry` (first candidates after it)."""
        paths = list(self.prefix_to(block, entry)) + [tuple(path)]
        state = self.exit_state(block, path, entry)
        for later in range(block + 1, self.num_blocks):
            paths.append(self.candidates(later, state)[0])
            state = self.exit_state(later, paths[-1], state)
        return tuple(paths)

    def cover(self) -> list[Architecture]:
        """Architectures holding every candidate of every block in every entry state (one per candidate);
        spaces with many candidates override it with a smaller set holding the same layers."""
        out = {self.arch_of(self.completion(b, e, p)): None for b in range(self.num_blocks)
               for e in self.entries[b] for p in self.candidates(b, e)}
        return list(out)

    def sample_paths(self, block: int, entry: Hashable, count: int, rng: random.Random) -> list[Path]:
        """`count` different candidates of `block` entered in `entry` for one training step, as the space's
        supernet trains: `uniform_paths` here; spaces whose paths are per-layer choices may draw them fairly
        instead (MBConv: FairNAS's `FairPathHook`)."""
        return self.uniform_paths(block, entry, count, rng)

    def uniform_paths(self, block: int, entry: Hashable, count: int, rng: random.Random) -> list[Path]:
        """`count` different candidates drawn uniformly without replacement (BossNAS's `RandomPathHook`)."""
        candidates = self.candidates(block, entry)
        return rng.sample(candidates, min(count, len(candidates)))

    def random_paths(self, rng: random.Random) -> Paths:
        """Uniform candidates block by block (uniform per block, not over whole architectures)."""
        paths, entry = [], self.initial_state()
        for block in range(self.num_blocks):
            paths.append(rng.choice(self.candidates(block, entry)))
            entry = self.exit_state(block, paths[-1], entry)
        return tuple(paths)


class BlockSpace(SearchSpace):
    """A space with a block-wise view (`block_paths`), so block-wise supernets (BossNAS) can search it."""

    @abstractmethod
    def block_paths(self, data_shape: tuple[int, ...]) -> BlockPaths:
        """The block-wise view for data samples of shape `data_shape`."""
