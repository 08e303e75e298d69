"""The `predictor` evaluator: predicted accuracy from an accuracy predictor fitted on measured architectures.

`--evaluator predictor --predictor-data SOURCE` fits a predictor of the `predictors` registry once, at the
start of the search, on measured (architecture, accuracy) pairs, then answers its prediction for every
architecture (measured ones included). SOURCE is

- a run directory of an earlier search of the same space: every architecture it evaluated with an
  accuracy (stand-alone training, a table); cost metrics are then computed at that run's input shape
  (its evaluator.json). Runs of the predictor evaluator hold predictions and are refused.
- a tabular benchmark CSV (as `--benchmark`; nb201 / nats_sss): the `--dataset` column's accuracies,
  cost metrics at the table's input shape.

Options (`--evaluator-option KEY=VALUE`): `samples` (default 100): at most this many pairs, a sample drawn
with the run's seed when the source has more; `predictor` (default `gnn`, or `rf`, `gbm`, `mlp`, ...);
`predictor_options`, a JSON object of the predictor's own options (e.g. `{"steps": 300}`).
Measured on NAS-Bench-201 CIFAR-10 (`BENCHMARKS.md`, 1000 held-out cells after 100 training cells): the
GNN ranks with Kendall tau 0.71 (44 s per fit on a 2-core CPU), the random forest 0.48 (1.5 s).
"""
from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nas import registry
from nas.evaluate import Evaluation, Evaluator
from nas.registry import register_evaluator
from nas.space import Architecture, NASError, SearchSpace

Pairs = list[tuple[Architecture, float]]


def _sample(items: list, samples: int, seed: int) -> list:
    return random.Random(seed).sample(items, samples) if len(items) > samples else items


def measured_in_run(space: SearchSpace, path: Path, samples: int,
                    seed: int) -> tuple[Pairs, tuple[int, ...] | None, int | None]:
    """(architecture, accuracy) pairs a run directory measured, and the input shape and classes it used."""
    from nas.runs import RunDir

    run = RunDir.open(path)
    config = run.config()
    if config["space"] != space.name:
        raise NASError(f"predictor data {str(path)!r} is a run of space {config['space']!r}, not {space.name!r}")
    described = run.read_json("evaluator.json") or {}
    if described.get("evaluator") == "predictor":
        raise NASError(f"predictor data {str(path)!r} holds predicted accuracies, not measured ones")
    pairs: Pairs = []
    for record in run.history():
        if record.metrics is not None and not record.info.get("cached") and "accuracy" in record.metrics:
            try:
                arch = space.resolve(dict(record.arch))
            except NASError as err:
                raise NASError(f"predictor data {str(path)!r}: record {record.index} does not fit this "
                               f"{space.name!r} space ({err})") from None
            pairs.append((arch, float(record.metrics["accuracy"])))
    shape = described.get("input_shape")
    return _sample(pairs, samples, seed), tuple(shape) if shape else None, described.get("num_classes")


def measured_in_table(space: SearchSpace, path: Path, dataset: str, samples: int,
                      seed: int) -> tuple[Pairs, tuple[int, ...] | None, int | None]:
    """(architecture, accuracy) pairs of a benchmark table's rows, and the input shape and classes of its nets
    (None: the space's defaults)."""
    from nas.tabular import TabularEvaluator

    table = TabularEvaluator(space, path, dataset)
    rows = _sample(table.items(), samples, seed)
    return [(space.resolve(key), accuracy) for key, accuracy in rows], table.input_shape, table.num_classes


@register_evaluator("predictor")
class PredictorEvaluator(Evaluator):
    """Predicted accuracy (%) from an accuracy predictor fitted on measured architectures."""

    name = "predictor"
    options = ("samples", "predictor", "predictor_options")

    def __init__(self, space: SearchSpace, archs: Sequence[Architecture], accuracies: Sequence[float],
                 predictor: str = "gnn", seed: int = 0, predictor_options: Mapping[str, Any] | None = None,
                 source: str = "", input_shape: tuple[int, ...] | None = None, num_classes: int | None = None) -> None:
        if len(archs) < 2:
            raise NASError(f"the predictor evaluator needs at least 2 measured architectures, "
                           f"{source or 'its data'} gives {len(archs)}")
        cls = registry.get("predictors", predictor)
        options = dict(predictor_options or {})
        self.predictor = registry.construct(f"predictor {predictor!r}", cls, options, seed=seed)
        self.predictor.fit(space, archs, accuracies)
        self.space, self.predictor_name, self.seed, self.source = space, predictor, seed, source
        self.samples = len(archs)
        self.input_shape, self.num_classes = input_shape, num_classes

    @classmethod
    def from_settings(cls, space: SearchSpace, settings: Mapping[str, Any], data: Any) -> PredictorEvaluator:
        options = dict(settings.get("evaluator_options") or {})
        source = settings.get("predictor_data")
        if not source:
            raise NASError("evaluator 'predictor' needs --predictor-data RUN_DIR|CSV (measured accuracies to fit on)")
        samples = options.get("samples", 100)
        if not isinstance(samples, int) or samples < 2:
            raise NASError(f"evaluator option samples={samples!r} must be an integer of at least 2")
        if not isinstance(options.get("predictor_options", {}), Mapping):
            raise NASError(f"evaluator option predictor_options={options['predictor_options']!r} must be a JSON object")
        path, seed = Path(source), settings["seed"]
        if path.is_dir():
            pairs, shape, classes = measured_in_run(space, path, samples, seed)
        elif path.is_file():
            pairs, shape, classes = measured_in_table(space, path, settings["dataset"], samples, seed)
        else:
            raise NASError(f"predictor data {source!r} does not exist (give a run directory or a benchmark CSV)")
        return cls(space, [a for a, _ in pairs], [y for _, y in pairs], options.get("predictor", "gnn"), seed,
                   options.get("predictor_options"), str(path), shape, classes)

    def evaluate(self, arch: Architecture) -> Evaluation:
        return Evaluation({"accuracy": float(self.predictor.predict(self.space, [arch])[0])})

    def describe(self) -> dict[str, Any]:
        return {"evaluator": self.name, "predictor": self.predictor_name, "predictor_data": self.source,
                "samples": self.samples, "seed": self.seed}
