"""Objectives (a metric and a direction), constraints, Pareto dominance and scalar fitness."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nas.space import NASError, one_of

#: metrics the workbench knows and whether larger is better; registered cost models add theirs (`directions`)
DIRECTIONS = {"accuracy": "maximize", "params": "minimize", "macs": "minimize", "latency": "minimize",
              "latency_ms": "minimize", "loss": "minimize", "rating": "maximize", "score": "maximize"}


def directions() -> dict[str, str]:
    """`DIRECTIONS` plus the metric and direction of every registered cost model (`nas.costs`)."""
    from nas import registry

    models = {name: registry.get("cost_models", name).direction for name in registry.names("cost_models")}
    return {**models, **DIRECTIONS}


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str = "maximize"

    @classmethod
    def parse(cls, text: str) -> Objective:
        """`accuracy`, `macs`, or `metric:maximize|minimize`."""
        name, _, direction = text.partition(":")
        if not direction:
            direction = DIRECTIONS.get(name) or directions().get(name, "")
        if direction not in ("maximize", "minimize"):
            metric = repr(name)[1:-1][:80]  # escaped: the message stays one line
            raise NASError(f"objective {text[:200]!r}: give a direction as {metric}:maximize or {metric}:minimize "
                           f"(known metrics: {one_of(sorted(directions()))})")
        return cls(name, direction)

    def signed(self, metrics: Mapping[str, float]) -> float:
        """The metric with the sign that makes larger better."""
        value = float(metrics[self.metric])
        return value if self.direction == "maximize" else -value


def parse_objectives(text: str | Sequence[str]) -> list[Objective]:
    """Objectives from `accuracy,macs` text or a list of names (a one-line error for anything else)."""
    items = text.split(",") if isinstance(text, str) else list(text) if isinstance(text, (list, tuple)) else [None]
    names = [t for t in items if isinstance(t, str)]
    if len(names) != len(items):
        raise NASError(f"objectives {str(text)[:200]!r} are not metric names, e.g. accuracy or accuracy,macs")
    return [Objective.parse(t.strip()) for t in names if t.strip()]


@dataclass(frozen=True)
class Constraint:
    """metric <= limit; metric >= limit when `lower` (a strategy's own floor, e.g. SpaceEvo's latency window)."""

    metric: str
    limit: float
    lower: bool = False

    @classmethod
    def parse(cls, text: str) -> Constraint:
        """`METRIC<=LIMIT`, e.g. `macs<=3e8`."""
        metric, sep, limit = text.partition("<=")
        try:
            value = float(limit)
        except ValueError:
            value = math.nan
        if not sep or not metric.strip() or math.isnan(value):
            raise NASError(f"constraint {text!r} is not METRIC<=LIMIT (e.g. macs<=3e8)")
        return cls(metric.strip(), value)

    def satisfied(self, metrics: Mapping[str, float]) -> bool:
        value = float(metrics[self.metric])
        return value >= self.limit if self.lower else value <= self.limit


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """a Pareto-dominates b, both as larger-is-better vectors."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated points (larger is better in every coordinate)."""
    return [i for i, p in enumerate(points) if not any(dominates(q, p) for j, q in enumerate(points) if j != i)]


def pareto_ranks(points: Sequence[Sequence[float]]) -> list[int]:
    """Non-dominated sorting rank of each point (0 = on the front)."""
    ranks = [-1] * len(points)
    remaining = list(range(len(points)))
    rank = 0
    while remaining:
        front = [i for i in remaining if not any(dominates(points[j], points[i]) for j in remaining if j != i)]
        for i in front:
            ranks[i] = rank
        remaining = [i for i in remaining if ranks[i] < 0]
        rank += 1
    return ranks
