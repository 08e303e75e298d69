"""The strategy interface: ask for an architecture, tell its metrics.

Sample-based strategies implement `ask`/`tell`. The search loop (`nas.search`) calls `setup(context)` once
before the first ask (data, device, run and checkpoint folders, Optuna storage: `StrategyContext`), then
asks, evaluates and tells, recording every evaluation in the run directory. `ask` may be called several
times before the matching `tell`s (several workers, a batch): a strategy keeps its asked-but-not-told
architectures pending and does not propose them again. In a search shared with other workers (`--storage`,
`nas.shared`) the loop also tells a strategy the others' results (`observe`), and an ask that another worker
holds stays pending until its result arrives.

Resume: after each tell the search loop saves `state()` (a JSON-able dict; None, the default, means
"replay me") to the run directory; on resume it calls `load_state` with it when it reflects the recorded
history, and otherwise `restore(records)`, which replays every ask and tell. Strategies whose asks are
expensive (a fitted predictor, a sampler) save a state so that resume does not redo them. Pending asks are
not part of a state: what was asked but never told is asked again.
"""
from __future__ import annotations

import dataclasses
import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from nas.objectives import Constraint, Objective
from nas.space import Architecture, NASError, SearchSpace, Value, one_of


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

    @property
    def feasible_metrics(self) -> dict[str, float]:
        """`metrics` of a feasible record (a `ValueError` for an infeasible one)."""
        if self.metrics is None:
            raise ValueError(f"record {self.index} is infeasible: it has no metrics")
        return self.metrics


@dataclass
class StrategyContext:
    """What a sample-based strategy gets from the search loop in `Strategy.setup`.

    `budget` is the number of architectures to evaluate; `input_shape` and `num_classes` are what
    architectures are scored at; `data` the training data (`nas.data.TensorData`) or None when the
    evaluator needs none (tables, predictors); `device` the `--device` setting ("auto", "cpu", "cuda");
    `run_dir` and `checkpoint_dir` the run directory and the folder for the strategy's own checkpoints
    (None outside a run; the folder is not created until a strategy writes there); `storage` an Optuna
    storage URL to share (None: the strategy's default); with a storage the search loop shares the search with
    every worker on `study`, the claims study in it (`nas.shared`; None: named after the space).
    """

    space: SearchSpace
    objectives: list[Objective]
    seed: int
    budget: int
    input_shape: tuple[int, ...]
    num_classes: int
    data: Any = None
    device: str = "auto"
    run_dir: Path | None = None
    checkpoint_dir: Path | None = None
    storage: str | None = None
    progress: bool = True
    study: str | None = None


def check_count(name: str, value: Any, least: int = 1) -> int:
    """`value` when it is a whole number of at least `least` (not a bool); else a one-line ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} {value!r} must be a whole number of at least {least}")
    return value


def rng_state(rng: random.Random) -> list:
    """`rng`'s state as JSON-able lists."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def set_rng_state(rng: random.Random, state: Sequence) -> None:
    """Restore a state `rng_state` returned."""
    rng.setstate((state[0], tuple(state[1]), state[2]))


class Proposals:
    """What a strategy that never proposes an architecture twice has asked (`pending` until told) and been told
    (`seen`; also as JSON in the order told, so a saved state stays cheap as it grows)."""

    def __init__(self) -> None:
        self.seen: set[Architecture] = set()
        self.seen_json: list[str] = []
        self.pending: list[Architecture] = []

    def __contains__(self, arch: object) -> bool:
        return arch in self.seen or arch in self.pending

    def asked(self, arch: Architecture) -> None:
        self.pending.append(arch)

    def told(self, arch: Mapping[str, Value]) -> Architecture:
        """Move `arch` from pending to seen; returns it as an `Architecture`."""
        arch = Architecture(arch)
        if arch in self.pending:
            self.pending.remove(arch)
        if arch not in self.seen:
            self.seen.add(arch)
            self.seen_json.append(arch.to_json())
        return arch

    def state(self) -> list[str]:
        return list(self.seen_json)

    def load_state(self, seen_json: Sequence[str]) -> None:
        self.seen_json = list(seen_json)
        self.seen = {Architecture.from_json(text) for text in self.seen_json}


class Strategy(ABC):
    """Base class of sample-based strategies."""

    name = "strategy"
    #: the strategy shares its work with other processes through `StrategyContext.storage` (`--storage`): the
    #: search loop claims its asks there and tells it other workers' results (`observe`)
    shares_storage = True

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

    def observe(self, arch: Architecture, metrics: Mapping[str, float] | None) -> None:
        """Another worker's result in a shared search (an architecture this strategy did not ask); by default
        told like one it asked."""
        self.tell(arch, metrics)

    def setup(self, context: StrategyContext) -> None:
        """Prepare for a search (open storages, read data, find checkpoints); called once, before resuming
        (`load_state` or `restore`) and before the first ask."""

    def state(self) -> dict[str, Any] | None:
        """Everything told so far and the random state, JSON-able, for resume; None: replay instead."""
        return None

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Continue from a `state()` (on resume, in place of `restore`)."""
        raise NotImplementedError(f"strategy {self.name!r} saves no state to load")

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
class SupernetContext:
    """What a supernet strategy gets to train its supernet (`SupernetStrategy.prepare`).

    `data` is the training data (`nas.data.TensorData`); `budget` names the schedule preset ("quick",
    "standard", "paper"); `checkpoint_dir` is where the strategy saves and finds its checkpoints (resume after
    a kill); `options` are the run's `--option` values (overriding the preset's); `constraints` the run's
    (`nas.objectives.Constraint`; the search over ratings checks them anyway, a strategy may also aim its
    training at them, as SpaceEvo aims its space search at a latency limit).
    """

    space: SearchSpace
    data: Any
    objectives: list[Objective]
    seed: int
    budget: str
    checkpoint_dir: Path
    progress: bool = True
    options: dict[str, Any] = field(default_factory=dict)
    constraints: list[Constraint] = field(default_factory=list)


@dataclass
class SupernetPlan:
    """A trained supernet strategy's search: `evaluator` rates architectures with the supernet (metric
    `rating`), `search` is the ask/tell strategy over those ratings, run by the ordinary search loop for
    `budget` ratings within the run's constraints and the strategy's own `constraints` (on the same metrics);
    `plots` are files the training wrote."""

    evaluator: Any  # nas.evaluate.Evaluator
    search: Strategy
    budget: int
    plots: list[str] = field(default_factory=list)
    constraints: list[Constraint] = field(default_factory=list)  # the strategy's own, beside the run's


def rating_objectives(objectives: Sequence[Objective]) -> list[Objective]:
    """The objectives of a search over supernet ratings: `accuracy` becomes `rating` (larger is better),
    cost objectives stay."""
    return [Objective("rating", "maximize") if o.metric == "accuracy" else o for o in objectives] or \
        [Objective("rating", "maximize")]


C = TypeVar("C")


def budget_config(strategy: str, presets: Mapping[str, C], budget: str, overrides: Mapping[str, Any]) -> C:
    """A supernet strategy's configuration (a dataclass): the preset `budget` with `overrides` (its options)
    replacing fields; one-line errors naming an unknown budget or option and what is accepted."""
    if budget not in presets:
        raise NASError(f"unknown {strategy} budget {budget!r}; accepted: {one_of(list(presets))}")
    preset = presets[budget]
    fields = {f.name for f in dataclasses.fields(preset)}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise NASError(f"unknown {strategy} option {unknown[0]!r}; accepted: {one_of(sorted(fields))}")
    return dataclasses.replace(preset, **overrides)  # type: ignore[type-var]


class SupernetStrategy(ABC):
    """Base class of strategies that train a weight-sharing supernet, then search over its ratings (SPOS,
    BossNAS, GM-NAS). The search over ratings is an ordinary ask/tell search (`SupernetPlan`); the session
    then trains the best-rated architecture stand-alone."""

    name = "supernet"

    def __init__(self, objectives: Sequence[Objective], seed: int = 0, **options: Any) -> None:
        self.objectives = list(objectives)
        self.seed = seed
        self.options = options

    @abstractmethod
    def prepare(self, context: SupernetContext) -> SupernetPlan:
        """Train the supernet (resumable from `context.checkpoint_dir`) and plan the search over its ratings."""

    def folder_and_data(self, context: SupernetContext, train_images: int) -> tuple[Path, Any]:
        """The checkpoint folder (created) and the training data, cut to `train_images` drawn with the
        strategy's seed (0: all of it)."""
        folder = Path(context.checkpoint_dir)
        folder.mkdir(parents=True, exist_ok=True)
        data = context.data
        if train_images and train_images < len(data.x_train):
            data = data.subset(train=train_images, seed=self.seed)
        return folder, data

    def finish(self, context: SupernetContext, best: Record | None = None) -> None:
        """Called once the search over the ratings is complete, with the best-rated record: drop checkpoints
        only that search needed, write what the strategy makes of the best architecture (QFA's INT8 models)."""

    @classmethod
    def describe(cls) -> str:
        first = (cls.__doc__ or "").strip().splitlines()
        return first[0] if first else cls.name


class Seeded(Strategy):
    """Asks the given architectures first (e.g. a supernet's greedy choice), then `inner`'s; every tell goes
    to `inner`, so its population starts with them."""

    def __init__(self, inner: Strategy, initial: Sequence[Architecture]) -> None:
        super().__init__(inner.space, inner.objectives, inner.seed)
        self.inner = inner
        self.name = inner.name
        self.initial = list(dict.fromkeys(Architecture(a) for a in initial))
        self.asked = 0

    def ask(self) -> Architecture:
        self.asked += 1
        return self.initial[self.asked - 1] if self.asked <= len(self.initial) else self.inner.ask()

    def tell(self, arch: Architecture, metrics: Mapping[str, float] | None) -> None:
        self.inner.tell(arch, metrics)

    def setup(self, context: StrategyContext) -> None:
        self.inner.setup(context)

    def state(self) -> dict[str, Any] | None:
        inner = self.inner.state()
        return None if inner is None else {"asked": self.asked, "inner": inner}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.asked = state["asked"]
        self.inner.load_state(state["inner"])

    def close(self) -> None:
        self.inner.close()
