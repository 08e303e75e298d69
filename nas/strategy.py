"""The strategy interface: ask for an architecture, tell its metrics.

Sample-based strategies implement `ask`/`tell`. The search loop (`nas.search`) calls them, records
every evaluation in the run directory and, on resume, calls `restore` with what was recorded so a
strategy reaches the state it had without re-evaluating anything.
"""
from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nas.objectives import Objective
from nas.space import Architecture, SearchSpace


@dataclass
class Record:
    """One evaluated architecture as stored in the run history."""

    index: int
    arch: Architecture
    metrics: dict[str, float] | None  # None: infeasible or failed
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        return self.metrics is not None


class Strategy(ABC):
    """Base class of sample-based strategies."""

    name = "strategy"

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], seed: int = 0) -> None:
        self.space = space
        self.objectives = list(objectives)
        self.seed = seed
        self.rng = random.Random(seed)

    @abstractmethod
    def ask(self) -> Architecture:
        """The next architecture to evaluate."""

    @abstractmethod
    def tell(self, arch: Architecture, metrics: Mapping[str, float] | None) -> None:
        """Report the metrics of an asked architecture (None when it was infeasible or failed)."""

    def restore(self, records: Sequence[Record]) -> None:
        """Replay recorded evaluations: ask (to advance the random state as the first run did), then tell."""
        for record in records:
            self.ask()
            self.tell(record.arch, record.metrics)

    def close(self) -> None:
        """Release resources (storages, workers)."""

    def fitness(self, metrics: Mapping[str, float]) -> tuple[float, ...]:
        """The objectives as a larger-is-better tuple."""
        return tuple(o.signed(metrics) for o in self.objectives)

    @classmethod
    def describe(cls) -> str:
        first = (cls.__doc__ or "").strip().splitlines()
        return first[0] if first else cls.name


@dataclass
class SearchContext:
    """What a supernet strategy gets from the search loop (`nas.search`).

    `record(arch, metrics, info)` adds an evaluated or rated architecture to the run history;
    `checkpoint_dir` is where the strategy saves and finds its checkpoints (resume after a kill);
    `budget` names the schedule preset ("quick", "standard", "paper").
    """

    space: SearchSpace
    data: Any  # nas.data.TensorData
    objectives: list[Objective]
    seed: int
    budget: str
    checkpoint_dir: Any  # pathlib.Path
    record: Any  # Callable[[Architecture, dict | None, dict], None]
    progress: bool = True
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchOutcome:
    """A supernet strategy's answer: the chosen architecture, its rating metrics and any plots written."""

    arch: Architecture
    metrics: dict[str, float]
    plots: list[str] = field(default_factory=list)


class SupernetStrategy(ABC):
    """Base class of strategies that train a weight-sharing supernet before choosing (BossNAS, GM-NAS)."""

    name = "supernet"

    def __init__(self, objectives: Sequence[Objective], seed: int = 0, **options: Any) -> None:
        self.objectives = list(objectives)
        self.seed = seed
        self.options = options

    @abstractmethod
    def search(self, context: SearchContext) -> SearchOutcome:
        """Train, rate and choose; resumable from `context.checkpoint_dir`."""

    @classmethod
    def describe(cls) -> str:
        first = (cls.__doc__ or "").strip().splitlines()
        return first[0] if first else cls.name
