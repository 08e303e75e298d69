"""Evaluators: one source of metrics per architecture, registered plug-ins.

`evaluate(arch)` returns an `Evaluation`: its metrics and, when the evaluator trained a model, that
model (the search loop keeps the best one's weights for export). Cost metrics (params, multiply-adds and
any registered cost model, `nas.costs`) are added by the search loop from the architecture graph before
evaluating, so every evaluator gets them for free.

Evaluators register with `@register_evaluator("name")` (or the `nas.evaluators` entry-point group) and are
built from a run's settings by `from_settings(space, settings, data)`; `data` is the loaded training data
when the class sets `needs_data`, else None. Built-ins: `train` (stand-alone training, below), `tabular`
(`nas.tabular`), `predictor` (`nas.predictor_evaluator`). The Python API also takes a prepared instance.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nas.registry import register_evaluator
from nas.space import Architecture, NASError, SearchSpace, one_of

if TYPE_CHECKING:
    from torch import nn

    from nas.data import TensorData
    from nas.train import TrainConfig


@dataclass
class Evaluation:
    metrics: dict[str, float]
    model: nn.Module | None = None


class Evaluator(ABC):
    """Turns an architecture into metrics.

    Class attributes: `metrics`, the metrics `evaluate` reports (constraints and objectives may name them);
    `needs_data`, whether `from_settings` wants the run's training data; `options`, the keys it accepts in
    `settings["evaluator_options"]` (`--evaluator-option KEY=VALUE`). Instance attributes `data`,
    `input_shape` and `num_classes`: the training data (or None) and the sample shape and number of
    classes architectures are scored at (None: the space's defaults); cost metrics are computed there.
    """

    name = "evaluator"
    metrics: tuple[str, ...] = ("accuracy",)
    needs_data = False
    options: tuple[str, ...] = ()
    data: TensorData | None = None
    input_shape: tuple[int, ...] | None = None
    num_classes: int | None = None

    @classmethod
    def from_settings(cls, space: SearchSpace, settings: Mapping[str, Any], data: TensorData | None) -> Evaluator:
        """The evaluator a run's settings describe (`--evaluator NAME` and the flags it reads)."""
        raise NASError(f"evaluator {cls.name!r} cannot be built from settings; pass an instance to nas.api.search")

    @classmethod
    def check_options(cls, settings: Mapping[str, Any]) -> None:
        """A one-line `NASError` for an evaluator option this class does not accept."""
        unknown = sorted(set(settings.get("evaluator_options") or {}) - set(cls.options))
        if unknown:
            raise NASError(f"evaluator {cls.name!r} has no option {unknown[0]!r}; "
                           f"accepted: {one_of(cls.options) or 'none'}")

    @abstractmethod
    def evaluate(self, arch: Architecture) -> Evaluation:
        ...

    def describe(self) -> dict[str, Any]:
        """What this evaluator is, for the run's evaluator.json."""
        return {"evaluator": self.name}


def evaluator_name(settings: Mapping[str, Any]) -> str:
    """The evaluator a run uses: `settings["evaluator"]`, else "tabular" with a benchmark table, else "train"."""
    return settings.get("evaluator") or ("tabular" if settings.get("benchmark") else "train")


@register_evaluator("train")
class TrainEvaluator(Evaluator):
    """Stand-alone training of each architecture from scratch on a dataset, then top-1 accuracy on its
    validation split (in percent)."""

    name = "train"
    metrics = ("accuracy", "train_loss", "train_seconds")
    needs_data = True
    data: TensorData

    def __init__(self, space: SearchSpace, data: TensorData, config: TrainConfig) -> None:
        self.space = space
        self.data = data
        self.config = config
        self.input_shape, self.num_classes = data.sample_shape, data.num_classes

    @classmethod
    def from_settings(cls, space: SearchSpace, settings: Mapping[str, Any], data: TensorData | None) -> TrainEvaluator:
        from nas.train import TrainConfig

        if data is None:
            raise NASError(f"evaluator {cls.name!r} trains on data; from_settings was given none")
        return cls(space, data, TrainConfig(seed=settings["seed"], **settings.get("train", {})))

    def evaluate(self, arch: Architecture) -> Evaluation:
        import torch

        from nas.train import train_and_evaluate

        start = time.perf_counter()
        torch.manual_seed(self.config.seed)  # same initial weights for the same architecture and seed
        shape = self.space.input_shape_for(arch, self.data.sample_shape)
        model = self.space.build(arch, shape, self.data.num_classes)
        result = train_and_evaluate(model, self.data, self.config, input_shape=shape)
        metrics = {"accuracy": result.accuracy, "train_loss": result.train_loss,
                   "train_seconds": time.perf_counter() - start}
        return Evaluation(metrics, model)

    def describe(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"evaluator": self.name, "dataset": self.data.name, "train": asdict(self.config)}
