"""The Python API: search any space (a registered name or your own `SearchSpace` instance) with any evaluator
(a registered name or a prepared `Evaluator` instance) and export.

    from nas.api import search
    result = search(MySpace(), strategy="evolution", budget=8, dataset="digits", epochs=3)
    result.best.arch, result.best.metrics, result.run.model_dir
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.evaluate import Evaluator, evaluator_name
from nas.runs import RunDir
from nas.search import best_of
from nas.space import SearchSpace
from nas.strategy import Record
from nas.train import TrainConfig

DEFAULTS: dict[str, Any] = {"preset": None, "budget": 12, "budget_preset": "quick", "objectives": "accuracy",
                            "seed": 0, "constraints": {}, "dataset": "digits", "data_path": None,
                            "train_subset": None, "benchmark": None, "evaluator": None, "evaluator_options": {},
                            "predictor_data": None, "storage": None, "options": {}, "retrain": True, "export": True}


@dataclass
class SearchReport:
    run: RunDir
    summary: str
    best: Record | None
    front: list[Record]


def search(space: SearchSpace | str, strategy: str = "evolution", run_dir: str | Path | None = None,
           progress: bool = True, evaluator: Evaluator | str | None = None, **settings: Any) -> SearchReport:
    """Run a search (settings as the CLI flags: budget, objectives, dataset, epochs, ...) into `run_dir`;
    if `run_dir` already holds a run, resume it (pass the same space and evaluator instances again).
    `evaluator` is a registered name (default: "tabular" with `benchmark=`, else "train") or an instance."""
    from nas.objectives import parse_objectives
    from nas.session import execute

    instance = space if isinstance(space, SearchSpace) else None
    name = instance.name if instance else str(space)
    prepared = evaluator if isinstance(evaluator, Evaluator) else None
    train_keys = set(TrainConfig.__dataclass_fields__) - {"seed"}
    train = {k: settings.pop(k) for k in list(settings) if k in train_keys}
    full = dict(DEFAULTS, **settings, space=name, strategy=strategy, train=train,
                evaluator=prepared.name if prepared else evaluator)
    full["evaluator"] = evaluator_name(full)
    path = Path(run_dir or f"runs/{name}-{strategy}-{time.strftime('%Y%m%d-%H%M%S')}")
    if (path / "config.json").exists():
        run = RunDir.open(path)
        full = run.settings()
    else:
        run = RunDir.create(path, {"space": name, "strategy": strategy, "seed": full["seed"], "settings": full})
    summary = execute(run, full, progress=progress, space=instance, evaluator=prepared)
    best, front = best_of(run.history(), parse_objectives(full["objectives"]))
    return SearchReport(run, summary, best, front)
