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
from nas.space import NASError, SearchSpace, brief, one_of
from nas.strategy import Record
from nas.train import TrainConfig

DEFAULTS: dict[str, Any] = {"preset": None, "budget": 12, "budget_preset": "quick", "objectives": "accuracy",
                            "seed": 0, "constraints": {}, "dataset": "digits", "data_path": None,
                            "train_subset": None, "benchmark": None, "evaluator": None, "evaluator_options": {},
                            "predictor_data": None, "storage": None, "options": {}, "retrain": True, "export": True}
EXTRA_SETTINGS = ("latency", "latency_table")  # no default: the latency objective's table and conditions


@dataclass
class SearchReport:
    run: RunDir
    summary: str
    best: Record | None
    front: list[Record]


def search(space: SearchSpace | str, strategy: str | None = None, run_dir: str | Path | None = None,
           progress: bool = True, evaluator: Evaluator | str | None = None, **settings: Any) -> SearchReport:
    """Run a search (strategy default "evolution"; settings as the CLI flags: budget, objectives, dataset, epochs,
    ...) into `run_dir`; if `run_dir` already holds a run, resume it (pass the same space and evaluator instances
    again): the settings given that differ from the stored ones are taken (a larger budget) or refused, as with
    `nas search --resume` (`RunDir.resume_settings`), and a line says which. `evaluator` is a registered name
    (default: "tabular" with `benchmark=`, else "train") or an instance. The run folder is locked meanwhile."""
    from nas.objectives import parse_objectives
    from nas.session import execute

    instance = space if isinstance(space, SearchSpace) else None
    name = instance.name if instance else str(space)
    prepared = evaluator if isinstance(evaluator, Evaluator) else None
    train_keys = set(TrainConfig.__dataclass_fields__) - {"seed"}
    train = {k: settings.pop(k) for k in list(settings) if k in train_keys}
    unknown = sorted(set(settings) - set(DEFAULTS) - set(EXTRA_SETTINGS))
    if unknown:
        raise NASError(f"unknown setting {brief(unknown[0])}; accepted: "
                       f"{one_of(sorted({*DEFAULTS, *EXTRA_SETTINGS, *train_keys}), 200)}")
    given = {**settings, "space": name, **({"strategy": strategy} if strategy else {}),
             **({"evaluator": prepared.name if prepared else evaluator} if evaluator else {}),
             **{f"train.{k}": v for k, v in train.items()}}
    strategy = strategy or "evolution"
    full = dict(DEFAULTS, **settings, space=name, strategy=strategy, train=train,
                evaluator=prepared.name if prepared else evaluator)
    full["evaluator"] = evaluator_name(full)
    run = RunDir(run_dir or f"runs/{name}-{strategy}-{time.strftime('%Y%m%d-%H%M%S')}")
    created = False
    try:
        with run.locked():
            if run.config_file.exists():
                full, note = run.resume_settings(given)
                print(note)
            else:
                run.start({"space": name, "strategy": strategy, "seed": full["seed"], "settings": full})
                created = True
            summary = execute(run, full, progress=progress, space=instance, evaluator=prepared)
    except NASError:
        if created:  # a search that failed before recording anything leaves no folder behind
            run.discard_unstarted()
        raise
    best, front = best_of(run.history(), parse_objectives(full["objectives"]))
    return SearchReport(run, summary, best, front)
