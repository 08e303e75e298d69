"""What `nas search`, `nas export` and `nas show` do, from a run directory's settings.

`execute` turns the settings stored in config.json into a space, an evaluator (the registered one
`settings["evaluator"]` names, with the data it needs), cost models and a strategy, runs (or resumes) the
search, then writes best.json, the plot, the exported model and the summary.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from nas import registry
from nas.evaluate import Evaluator, evaluator_name
from nas.objectives import Constraint, Objective, parse_objectives
from nas.runs import RunDir, write_atomic
from nas.search import SearchResult, best_of, evaluated, plan_costs, run_search
from nas.settings import check_settings
from nas.shared import study_name
from nas.space import Architecture, NASError, SearchSpace, one_of
from nas.strategy import (
    Record,
    Strategy,
    StrategyContext,
    SupernetContext,
    SupernetStrategy,
    rating_objectives,
)
from nas.threads import set_threads


def _space(settings: dict[str, Any]) -> SearchSpace:
    return registry.make_space(settings["space"], settings.get("preset"))


def load_data(settings: dict[str, Any]) -> Any:
    """The training data the settings name (`nas.data.TensorData`), subset when asked."""
    from nas.data import load_dataset

    data = load_dataset(settings["dataset"], settings.get("data_path"), seed=settings["seed"])
    if settings.get("train_subset"):
        data = data.subset(train=settings["train_subset"], seed=settings["seed"])
    return data


def make_evaluator(space: SearchSpace, settings: dict[str, Any]) -> Evaluator:
    """The registered evaluator the settings name, given the training data when it needs it."""
    cls = registry.get("evaluators", evaluator_name(settings))
    cls.check_options(settings)
    return cls.from_settings(space, settings, load_data(settings) if cls.needs_data else None)


def _strategy(cls: type[Strategy], space: SearchSpace, objectives: list[Objective],
              settings: dict[str, Any]) -> Strategy:
    """The ask/tell strategy the settings name, with its options; a one-line error for options it rejects."""
    return registry.construct(f"strategy {settings['strategy']!r}", cls, dict(settings.get("options", {})), space,
                              objectives, seed=settings["seed"])


def execute(run: RunDir, settings: dict[str, Any], progress: bool = True, space: SearchSpace | None = None,
            evaluator: Evaluator | None = None) -> str:
    """Run or resume the search `settings` describe, holding the run folder's lock (`RunDir.locked`); `space` and
    `evaluator` override the registry lookups (Python API)."""
    with run.locked():
        return _execute(run, settings, progress, space, evaluator)


def _execute(run: RunDir, settings: dict[str, Any], progress: bool, space: SearchSpace | None,
             evaluator: Evaluator | None) -> str:
    start = time.perf_counter()
    check_settings(settings)
    cls = registry.get("strategies", settings["strategy"])
    if settings.get("storage") and not getattr(cls, "shares_storage", False):
        sharing = [n for n in registry.names("strategies") if getattr(registry.get("strategies", n), "shares_storage",
                                                                       False)]
        raise NASError(f"strategy {settings['strategy']!r} does not share work through --storage; "
                       f"strategies that do: {one_of(sharing)}")
    threads = set_threads(settings.get("train", {}).get("num_threads", 0))
    space = space or _space(settings)
    objectives = parse_objectives(settings["objectives"])
    constraints = [Constraint(m, float(v)) for m, v in settings.get("constraints", {}).items()]
    evaluator = evaluator or make_evaluator(space, settings)
    data = evaluator.data
    shape = tuple(evaluator.input_shape or space.default_input)
    classes = evaluator.num_classes or space.default_classes
    described = {**evaluator.describe(), "input_shape": list(shape), "num_classes": classes,
                 "preprocessing": _preprocessing_json(data)}
    if issubclass(cls, SupernetStrategy):
        if data is None:
            raise NASError(f"strategy {settings['strategy']!r} trains a supernet on training data, which evaluator "
                           f"{evaluator.name!r} does not use; drop --benchmark or use --evaluator train")
        result = _run_supernet(run, space, _supernet_strategy(cls, objectives, settings), evaluator, objectives,
                               constraints, settings, progress)
    else:
        cost_models = plan_costs(objectives, constraints, evaluator, space, settings)
        strategy = _strategy(cls, space, objectives, settings)
        run.write_json("evaluator.json", {**described, "cost_models": [m.describe() for m in cost_models]})
        context = StrategyContext(space, objectives, settings["seed"], settings["budget"], shape, classes, data,
                                  settings.get("train", {}).get("device", "auto"), run.path, run.checkpoint_dir,
                                  settings.get("storage"), progress, study_name(settings))
        result = run_search(run, strategy, evaluator, context, constraints, cost_models)
    return finish(run, space, result, objectives, shape, classes, settings, start, threads)


def _preprocessing_json(data: Any) -> dict[str, Any] | None:
    """The standardisation of the training data (`nas.preprocess.Preprocessing`) for evaluator.json, which the
    export puts in front of the network; None without data or when the data do not know their statistics."""
    from nas.preprocess import Preprocessing

    prep = Preprocessing.of(data) if data is not None else None
    return prep.to_json() if prep is not None else None


def run_preprocessing(run: RunDir, settings: dict[str, Any]) -> Any:
    """The preprocessing a run's models were trained with (`nas.preprocess.Preprocessing`, or None): from its
    evaluator.json, or, for a run recorded before it was kept there, from its training data."""
    from nas.preprocess import Preprocessing

    described = run.read_json("evaluator.json")
    if isinstance(described, dict) and "preprocessing" in described:
        value = described["preprocessing"]
        return None if value is None else Preprocessing.from_json(value, f"{run.path / 'evaluator.json'}")
    if settings.get("dataset") and getattr(registry.get("evaluators", evaluator_name(settings)), "needs_data", False):
        return Preprocessing.of(load_data(settings))
    return None


def _supernet_strategy(cls: type[SupernetStrategy], objectives: list[Objective],
                       settings: dict[str, Any]) -> SupernetStrategy:
    return registry.construct(f"strategy {settings['strategy']!r}", cls, dict(settings.get("options", {})),
                              objectives, seed=settings["seed"])


def _run_supernet(run: RunDir, space: SearchSpace, strategy: SupernetStrategy, evaluator: Evaluator,
                  objectives: list[Objective], constraints: list[Constraint], settings: dict[str, Any],
                  progress: bool) -> SearchResult:
    """Train the supernet (resumable), search over its ratings with the ordinary loop (every rating recorded),
    then train the best-rated architecture stand-alone with `evaluator` (unless `--no-retrain`)."""
    data = evaluator.data
    assert data is not None  # execute() checked it
    run.checkpoint_dir.mkdir(exist_ok=True)
    supernet_context = SupernetContext(space, data, objectives, settings["seed"], settings["budget_preset"],
                                       run.checkpoint_dir, progress, settings.get("options", {}), list(constraints))
    plan = strategy.prepare(supernet_context)
    rating = rating_objectives(objectives)
    cost_models = plan_costs(rating, [*constraints, *plan.constraints], plan.evaluator, space, settings)
    run.write_json("evaluator.json", {**evaluator.describe(), "rating": plan.evaluator.describe(),
                                      "input_shape": list(data.sample_shape), "num_classes": data.num_classes,
                                      "preprocessing": _preprocessing_json(data),
                                      "cost_models": [m.describe() for m in cost_models]})
    context = StrategyContext(space, rating, settings["seed"], plan.budget, data.sample_shape, data.num_classes, data,
                              settings.get("train", {}).get("device", "auto"), run.path, run.checkpoint_dir, None,
                              progress)
    searched = run_search(run, plan.search, plan.evaluator, context, [*constraints, *plan.constraints],
                          cost_models)
    if searched.best is None:
        raise NASError("the search over supernet ratings rated no architecture (all were infeasible)")
    strategy.finish(supernet_context, searched.best)
    run.write_json("searched.json", {"arch": dict(searched.best.arch), "metrics": searched.best.metrics,
                                     "plots": plan.plots})
    if not settings.get("retrain", True):
        return searched
    records = searched.records
    retrained = [r for r in records if r.info.get("retrained") and r.arch == searched.best.arch]
    if not retrained:
        evaluation = evaluator.evaluate(searched.best.arch)
        record = Record(len(records), searched.best.arch, {**searched.best.feasible_metrics, **evaluation.metrics},
                        info={"retrained": True})
        # an evaluator that trains no model (e.g. 'supernet') leaves no weights to save
        run.append(record, evaluation.model.state_dict() if evaluation.model is not None else None)
        records.append(record)
        retrained = [record]
    return SearchResult(records, retrained[-1], [retrained[-1]])


def finish(run: RunDir, space: SearchSpace, result: SearchResult, objectives: list[Objective], shape: tuple,
           classes: int, settings: dict[str, Any], start: float, threads: int = 0) -> str:
    """best.json, the search plot, the export and summary.txt; the summary's wall time counts from `start`
    (`time.perf_counter()`) to the end of the export."""
    from nas.plots import plot_search

    if result.best is None:
        raise NASError("the search evaluated no architecture (all were infeasible)")
    best = result.best
    input_shape = list(space.input_shape_for(best.arch, shape))
    latency = _check_latency(space, result, objectives, settings, shape, classes)
    run.write_json("best.json", {"arch": dict(best.arch), "metrics": best.metrics, "index": best.index,
                                 "input_shape": input_shape, "num_classes": classes,
                                 "front": [{"arch": dict(r.arch), "metrics": r.metrics} for r in result.front],
                                 **({"latency_check": latency} if latency else {})})
    if len(evaluated(result.records, objectives)) > 1:
        plot_search(result.records, objectives, run.path / ".search.tmp.png",
                    title=f"{settings['strategy']} on {settings['space']}")
        (run.path / ".search.tmp.png").replace(run.path / "search.png")
    if settings.get("export", True) and run.weights_file.exists():
        export_run(run.path, space=space)
    seconds = time.perf_counter() - start
    summary = summarize(run, result.records, objectives) + "".join(
        f"\nlatency of {'the best' if i == 0 else f'front model {i}'}: predicted {c['predicted_ms']:.4g} ms, "
        f"measured now {c['measured_ms']:.4g} ms" for i, c in enumerate(latency)) + \
        f"\nwall time {seconds:.1f} s" + (f" ({threads} CPU threads at the start)" if threads else "")
    write_atomic(run.path / "summary.txt", (summary + "\n").encode())
    return summary


def _check_latency(space: SearchSpace, result: SearchResult, objectives: list[Objective], settings: dict[str, Any],
                   shape: tuple, classes: int, most: int = 8) -> list[dict[str, Any]]:
    """When the search used latency (an objective or a constraint): the best and the Pareto front's models'
    predicted latency beside the latency measured end to end now."""
    if "latency" not in [o.metric for o in objectives] and "latency" not in settings.get("constraints", {}):
        return []
    from nas.latency_model import check_chosen

    assert result.best is not None
    chosen = [result.best, *(r for r in result.front if r.arch != result.best.arch)][:most]
    return check_chosen(space, chosen, settings, shape, classes)


def record_counts(records: list[Record], done: list[Record]) -> str:
    """How many architectures were evaluated and, when there are any, how many were rated on a supernet, were
    infeasible or were repeats (e.g. 'rated 64 architectures on the supernet, 2 infeasible')."""
    infeasible = sum(r.metrics is None for r in records)
    repeated = sum(r.metrics is not None and bool(r.info.get("cached")) for r in records)
    rated = len(records) - len(done) - infeasible - repeated

    def archs(n: int) -> str:
        return f"{n} architecture{'' if n == 1 else 's'}"

    parts = [f"evaluated {archs(len(done))}"] if done or not rated else []
    if rated:
        parts.append(f"rated {rated} on the supernet" if parts else f"rated {archs(rated)} on the supernet")
    parts += [f"{n} {what}" for n, what in ((infeasible, "infeasible"), (repeated, "repeated")) if n]
    return ", ".join(parts)


def summarize(run: RunDir, records: list[Record], objectives: list[Objective], top: int = 5) -> str:
    config = run.config()
    best, front = best_of(records, objectives)
    done = evaluated(records, objectives)
    lines = [f"run {run.path}: {config['strategy']} on {config['space']}"
             + (f" (preset {config['settings'].get('preset')})" if config.get("settings", {}).get("preset") else ""),
             record_counts(records, done)]
    if best is None:
        chosen = run.best()  # a supernet search without stand-alone training
        if chosen is None:
            return "\n".join(lines + ["no architecture finished yet"])
        metrics = ", ".join(f"{k} {v:.6g}" for k, v in chosen["metrics"].items())
        return "\n".join(lines + [f"searched (not trained): {Architecture(chosen['arch']).to_json()}", metrics])
    first = objectives[0]
    ranked = sorted(done, key=lambda r: first.signed(r.feasible_metrics), reverse=True)[:top]
    metric_names = [o.metric for o in objectives] + [m for m in ("params", "macs") if m not in
                                                    [o.metric for o in objectives]]
    lines.append(f"{'#':>4} " + " ".join(f"{m:>14}" for m in metric_names))
    for r in ranked:
        lines.append(f"{r.index:>4} " + " ".join(f"{r.feasible_metrics.get(m, float('nan')):>14.6g}"
                                                 for m in metric_names))
    lines.append(f"best: {best.arch.to_json()}")
    if len(objectives) > 1:
        lines.append(f"Pareto front: {len(front)} architectures (best.json)")
    if (run.model_dir / "net.py").exists():
        lines.append(f"exported model: {run.model_dir}")
    if (run.path / "search.png").exists():
        lines.append(f"plot: {run.path / 'search.png'}")
    return "\n".join(lines)


def show_run(path: str) -> str:
    run = RunDir.open(path)
    settings = run.config().get("settings", {})
    objectives = parse_objectives(settings.get("objectives", "accuracy"))
    records = run.history()
    budget = settings.get("budget")
    done = sum(1 for r in records if r.feasible and not r.info.get("cached"))
    status = "finished" if run.best() is not None and (budget is None or done >= budget) else "unfinished"
    return summarize(run, records, objectives) + f"\nstatus: {status}"


def export_run(path: str | Path, out: str | None = None, formats: tuple[str, ...] | None = None,
               space: SearchSpace | None = None) -> dict[str, Path]:
    """Export a run's best architecture with its trained weights and the preprocessing it was trained with
    (`run_preprocessing`), so the exported model takes the dataset's raw samples. The default formats add "int8"
    when the run measured INT8 latency; an INT8 export is calibrated on the run's training images and its accuracy
    and latency beside FP32 go to int8.json (`nas.int8`)."""
    from nas.export import DEFAULT_FORMATS, export_model

    run = RunDir.open(path)
    best = run.best()
    if best is None:
        raise NASError(f"run directory {str(run.path)!r} has no best.json yet: the search has not finished")
    if not run.weights_file.exists():
        raise NASError(f"run directory {str(run.path)!r} has no trained weights (best_weights.pt) to export")
    owner = run.weights_index()
    if owner is not None and owner != best.get("index"):
        raise NASError(f"run directory {str(run.path)!r} is unfinished: best_weights.pt holds record {owner}'s "
                       f"weights but best.json names record {best.get('index')}; finish it with nas search --resume")
    space = space or _space(run.config()["settings"])
    arch = space.resolve(dict(best["arch"]))
    if "input_shape" not in best or "num_classes" not in best:
        raise NASError(f"run directory {str(run.path)!r}: best.json holds no input shape and class count to export")
    graph = space.graph(arch, tuple(best["input_shape"]), best["num_classes"])
    state = run.weights()
    weights_name = f"the weights in {str(run.weights_file)!r}"
    settings = run.config()["settings"]
    formats = formats or DEFAULT_FORMATS + (("int8",) if _latency_precision(settings) == "int8" else ())
    preprocessing = run_preprocessing(run, settings)
    if "int8" not in formats:
        return export_model(graph, arch, out or run.model_dir, state, space.name, formats,
                            preprocessing=preprocessing, weights_name=weights_name)
    from nas import int8

    data = load_data(settings)
    shape = tuple(graph.input_shape)
    written = export_model(graph, arch, out or run.model_dir, state, space.name, formats,
                           int8.calibration_batches(data, shape, preprocessing), preprocessing, weights_name)
    report = int8.compare(written, data, shape, preprocessing)
    written["int8_report"] = written["int8"].parent / "int8.json"
    written["int8_report"].write_text(json.dumps(report, indent=2))
    return written


def _latency_precision(settings: dict[str, Any]) -> str:
    """The precision a run's latency was predicted or measured at ("" when it used no latency)."""
    if settings.get("latency_table"):
        from nas.latency_table import LatencyTable

        return LatencyTable.load(settings["latency_table"]).conditions.precision
    return str((settings.get("latency") or {}).get("precision", ""))


def export_architecture(space_name: str, preset: str | None, arch_text: str, classes: int | None, out: str,
                        formats: tuple[str, ...]) -> dict[str, Path]:
    """Export any architecture of a space, with freshly initialised weights."""
    from nas.export import export_model

    named = None if arch_text.lstrip().startswith("{") else arch_text
    space = registry.make_space(space_name, preset, named)
    arch = space.resolve(arch_text)
    graph = space.graph(arch, space.input_shape_for(arch, space.default_input), classes or space.default_classes)
    return export_model(graph, arch, out, None, space.name, formats)
