"""Evaluators: one source of metrics per architecture.

`evaluate(arch)` returns an `Evaluation`: its metrics and, when the evaluator trained a model, that
model (the search loop keeps the best one's weights for export). Cost metrics (params, multiply-adds)
are added by the search loop from the architecture graph, so every evaluator gets them for free.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nas.space import Architecture, SearchSpace

if TYPE_CHECKING:
    import torch.nn as nn

    from nas.data import TensorData
    from nas.train import TrainConfig


@dataclass
class Evaluation:
    metrics: dict[str, float]
    model: nn.Module | None = None


class Evaluator(ABC):
    """Turns an architecture into metrics."""

    name = "evaluator"

    @abstractmethod
    def evaluate(self, arch: Architecture) -> Evaluation:
        ...

    def describe(self) -> dict[str, Any]:
        """What this evaluator is, for the run's config.json."""
        return {"evaluator": self.name}


def cost_metrics(space: SearchSpace, arch: Architecture, data_shape: tuple[int, ...],
                 num_classes: int) -> dict[str, float]:
    """Parameters and multiply-adds of `arch`, from its graph (no model is built)."""
    graph = space.graph(arch, space.input_shape_for(arch, data_shape), num_classes)
    return {"params": float(graph.params()), "macs": float(graph.macs())}


class TrainEvaluator(Evaluator):
    """Stand-alone training of each architecture from scratch on a dataset, then top-1 accuracy on its
    validation split (in percent)."""

    name = "train"

    def __init__(self, space: SearchSpace, data: TensorData, config: TrainConfig) -> None:
        self.space = space
        self.data = data
        self.config = config

    def evaluate(self, arch: Architecture) -> Evaluation:
        from nas.train import train_and_evaluate

        import torch

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
