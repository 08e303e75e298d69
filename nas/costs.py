"""Cost models: metrics computed from an architecture's graph, before anything is built or trained.

A cost model names the metric it computes (`metric`), whether smaller or larger is better (`direction`,
which `nas.objectives` reads for objectives on it) and computes `cost(graph)` from the `ArchGraph` the
space builds for the search's input shape. Built-ins: `params` and `macs` (multiply-adds). A new one is
one class registered with `@register_cost_model("metric")` (or the `nas.cost_models` entry-point group);
objectives (`--objectives accuracy,metric`) and constraints (`--constraint metric<=LIMIT`) can then name
it, and the search loop computes it for every proposal and rejects those that break a constraint on it
before evaluating them.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nas import registry
from nas.registry import register_cost_model
from nas.space import Architecture, SearchSpace

if TYPE_CHECKING:
    from nas.graph import ArchGraph

#: cost metrics every search records, whatever its objectives and constraints
ALWAYS = ("params", "macs")


class CostModel(ABC):
    """One metric of an architecture's graph."""

    metric: str = "cost"
    direction: str = "minimize"

    @classmethod
    def from_settings(cls, space: SearchSpace, settings: Mapping[str, Any]) -> CostModel:
        """The cost model a run's settings ask for (latency tables read their table's path here)."""
        return cls()

    @abstractmethod
    def cost(self, graph: ArchGraph) -> float:
        """The metric of the architecture whose graph this is."""

    def describe(self) -> dict[str, Any]:
        """What this cost model is, for the run's evaluator.json."""
        return {"metric": self.metric, "direction": self.direction}


@register_cost_model("params")
class ParamsCost(CostModel):
    """Trainable parameters of the built network."""

    metric = "params"

    def cost(self, graph: ArchGraph) -> float:
        return float(graph.params())


@register_cost_model("macs")
class MacsCost(CostModel):
    """Multiply-adds of one forward pass of one sample."""

    metric = "macs"

    def cost(self, graph: ArchGraph) -> float:
        return float(graph.macs())


def cost_models_for(metrics: Iterable[str], space: SearchSpace,
                    settings: Mapping[str, Any] | None = None) -> list[CostModel]:
    """`params`, `macs` and every registered cost model among `metrics`, built from `settings`."""
    known = registry.names("cost_models")
    wanted = list(dict.fromkeys([*ALWAYS, *(m for m in metrics if m in known)]))
    return [registry.get("cost_models", m).from_settings(space, settings or {}) for m in wanted]


def cost_metrics(space: SearchSpace, arch: Architecture, data_shape: tuple[int, ...], num_classes: int,
                 models: Sequence[CostModel] | None = None) -> dict[str, float]:
    """The cost metrics of `arch` (default: params and multiply-adds) from one graph; no model is built."""
    graph = space.graph(arch, space.input_shape_for(arch, data_shape), num_classes)
    return {m.metric: float(m.cost(graph)) for m in (models if models is not None else (ParamsCost(), MacsCost()))}
