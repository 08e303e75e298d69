"""Predicting an architecture's latency from a lookup table, the FLOPs-linear baseline, and the `latency` cost
model searches use.

`LatencyModel` composes the table over the architecture graph: each block's measured latency, summed, then a
linear correction for what the sum misses,

    latency = scale * sum(block latencies) + per_block * (number of blocks) + overhead

fitted on the table's whole-model measurements by least squares on the relative error (the share within
+-10% is what users read). Why this model: a block measured alone pays the runtime's per-call cost (session
or module call, input copy, quantize/dequantize at its edges for INT8) that it does not pay inside a network
(`per_block`); the whole network pays one such cost once (`overhead`); cache effects
between blocks and fusions across block edges scale roughly with the work (`scale`). Three numbers need only
a few dozen whole-model measurements and cannot overfit the way a per-kernel regressor (nn-Meter's random
forests) can on that few. With fewer than `FULL_FIT_MIN` measurements three numbers would interpolate them and
extrapolate anywhere (three calibration models once gave a negative latency), so only `scale` is fitted
(`per_block` and `overhead` stay 0); with none the plain sum is used. A prediction the linear correction drives
to zero or below (far outside the calibration models) falls back to `ratio * sum`, `ratio` being the scale-only
fit, which is positive whenever the measurements are. `FlopsLinear` (latency = a * multiply-adds + b, fitted
the same way) is the baseline reported beside it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas.blocks import block_names
from nas.costs import CostModel
from nas.graph import ArchGraph
from nas.latency_table import LatencyTable
from nas.registry import register_cost_model
from nas.space import Architecture, NASError, SearchSpace
from nas.timing import Conditions, measure, measure_rounds, prepare


def fit_relative(features: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Least-squares coefficients minimising the squared relative error of `features @ coef` to `targets`."""
    weights = 1.0 / np.maximum(targets, 1e-9)
    coef, *_ = np.linalg.lstsq(features * weights[:, None], targets * weights, rcond=None)
    return coef


FULL_FIT_MIN = 6  # whole-model measurements needed to fit all three numbers (twice their count)


def models_of(table: LatencyTable, space: SearchSpace) -> list[dict[str, Any]]:
    """The table's whole-model measurements of architectures that belong to `space`."""
    out = []
    for record in table.models:
        if record["space"] == space.name and record.get("ms") is not None:
            try:
                space.validate(Architecture(record["arch"]))
            except NASError:
                continue
            out.append(record)
    return out


def model_graph(record: Mapping[str, Any], space: SearchSpace) -> ArchGraph:
    """The graph of one of a table's whole-model measurements."""
    return space.graph(Architecture(record["arch"]), tuple(record["input_shape"]), record["classes"])


@dataclass
class LatencyModel:
    """Table lookups composed over the graph, with a linear correction (module docstring)."""

    table: LatencyTable
    coef: tuple[float, float, float] = (1.0, 0.0, 0.0)  # scale, per_block, overhead
    measure_missing: bool = True
    ratio: float = 1.0  # the scale-only fit, the fallback for non-positive predictions

    @classmethod
    def fit(cls, table: LatencyTable, space: SearchSpace, measure_missing: bool = True) -> LatencyModel:
        """Fit the correction on the table's whole-model measurements of architectures of `space`."""
        model = cls(table, measure_missing=measure_missing)
        rows = [(model.features(model_graph(m, space)), m["ms"]) for m in models_of(table, space)]
        if not rows:
            return model
        features, targets = np.array([f for f, _ in rows]), np.array([y for _, y in rows])
        model.ratio = float(fit_relative(features[:, :1], targets)[0])
        model.coef = (model.ratio, 0.0, 0.0)
        if len(rows) >= FULL_FIT_MIN:
            model.coef = tuple(float(c) for c in fit_relative(features, targets))  # type: ignore[assignment]
        return model

    def features(self, graph: ArchGraph) -> list[float]:
        return [sum(self.table.block_ms(graph, self.measure_missing)), float(len(block_names(graph))), 1.0]

    def predict(self, graph: ArchGraph) -> float:
        return self.combine(self.features(graph))

    def combine(self, features: Sequence[float]) -> float:
        """The prediction from `features` (as `features` computes them); the scale-only fallback where the
        correction gives zero or less."""
        corrected = float(np.dot(self.coef, features))
        return corrected if corrected > 0 else self.ratio * float(features[0])

    def describe(self) -> dict[str, Any]:
        scale, per_block, overhead = self.coef
        return {"table": str(self.table.path), "scale": scale, "per_block_ms": per_block, "overhead_ms": overhead,
                "fallback_scale": self.ratio, "fitted_on": len(self.table.models)}


@dataclass
class FlopsLinear:
    """latency = a * multiply-adds + b: the baseline every latency predictor is judged against."""

    coef: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def fit(cls, macs: Sequence[float], ms: Sequence[float]) -> FlopsLinear:
        """Fitted to latencies `ms` of networks with `macs` multiply-adds."""
        coef = fit_relative(np.array([[m, 1.0] for m in macs], dtype=float), np.array(ms, dtype=float))
        return cls((float(coef[0]), float(coef[1])))

    def predict(self, macs: float) -> float:
        return self.coef[0] * macs + self.coef[1]


def measure_graph(graph: ArchGraph, conditions: Conditions, seed: int = 0) -> float:
    """Measured milliseconds of the whole network of `graph`."""
    from nas.build import build_module

    return measure(build_module(graph), tuple(graph.input_shape), conditions, seed)


def conditions_from(settings: Mapping[str, Any]) -> Conditions:
    """A run's on-the-fly latency conditions (`settings["latency"]`: Conditions fields; default: 1 CPU thread,
    ONNX Runtime, FP32, batch 1)."""
    given = dict(settings.get("latency") or {})
    try:
        return Conditions.make(**given)
    except TypeError as err:
        raise NASError(f"latency settings {given} are not accepted: {err}") from None


@register_cost_model("latency")
class LatencyCost(CostModel):
    """Latency in milliseconds: predicted from the run's latency table (`--latency-table`), or measured end to
    end on this machine for every proposal when no table is given."""

    metric = "latency"

    def __init__(self, space: SearchSpace, model: LatencyModel | None = None,
                 conditions: Conditions | None = None) -> None:
        self.space = space
        self.model = model
        self.conditions = model.table.conditions if model else (conditions or Conditions.make())
        self._checked = False

    @classmethod
    def from_settings(cls, space: SearchSpace, settings: Mapping[str, Any]) -> LatencyCost:
        path = settings.get("latency_table")
        if not path:
            return cls(space, conditions=conditions_from(settings))
        table = LatencyTable.load(path)
        return cls(space, LatencyModel.fit(table, space))

    def cost(self, graph: ArchGraph) -> float:
        if self.model is None:
            return measure_graph(graph, self.conditions)
        if not self._checked:
            self._check_input(graph)
        return self.model.predict(graph)

    def _check_input(self, graph: ArchGraph) -> None:
        """A one-line error when the table was built for another input than the search's."""
        assert self.model is not None
        table = self.model.table
        built_for = {m["input_shape"][0] for m in table.models}
        if built_for and graph.input_shape[0] not in built_for:
            raise NASError(f"latency table {str(table.path)!r} was built for inputs with {sorted(built_for)} "
                           f"channels, this search's have {graph.input_shape[0]}: build it with the search's --dataset")
        self._checked = True

    def describe(self) -> dict[str, Any]:
        how = self.model.describe() if self.model else {"measured": "end to end, every proposal"}
        return {**super().describe(), "unit": "ms", "conditions": self.conditions.as_dict(), **how}


def check_chosen(space: SearchSpace, records: Sequence[Any], settings: Mapping[str, Any],
                 input_shape: tuple[int, ...], classes: int) -> list[dict[str, Any]]:
    """The predicted latency (as the search saw it) beside the latency measured end to end now, for each of
    `records` (the chosen architectures), measured round-robin together (`nas.timing.measure_rounds`)."""
    import tempfile

    from nas.build import build_module

    model = LatencyCost.from_settings(space, settings)
    graphs = [space.graph(r.arch, space.input_shape_for(r.arch, input_shape), classes) for r in records]
    predicted = [r.feasible_metrics.get("latency", model.cost(g)) for r, g in zip(records, graphs)]
    with tempfile.TemporaryDirectory() as tmp:
        runners = [prepare(build_module(g), tuple(g.input_shape), model.conditions, Path(tmp) / str(i))
                   for i, g in enumerate(graphs)]
        measured = measure_rounds(runners, model.conditions.rounds)
    return [{"arch": dict(r.arch), "predicted_ms": float(p), "measured_ms": m}
            for r, p, m in zip(records, predicted, measured)]
