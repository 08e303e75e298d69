"""The search loop: ask, cost, check constraints, evaluate, record, tell, save the strategy's state; resume.

Budget counts evaluated architectures. The cost metrics of every proposal (params, multiply-adds and each
registered cost model an objective or constraint names, `nas.costs`) are computed from its graph first,
and a proposal that breaks a constraint on them is rejected before it is evaluated (trained); constraints
on what the evaluator reports are checked after it. Infeasible proposals and proposals already evaluated
are recorded and told to the strategy but not counted, so a resumed strategy replays exactly the sequence
the first run saw.

After each tell the strategy's `state()`, when it has one, is written atomically to `strategy_state.json`
in the run directory with the number of history records it reflects; resume loads it when it matches the
history and otherwise replays the history (`Strategy.restore`).

With a shared storage (`context.storage`, `--storage`) the search is one of several workers' (`nas.shared`): each
ask is claimed there before it is evaluated, other workers' results are told to the strategy, and the budget
counts the evaluations of all workers.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from tqdm.auto import tqdm

from nas import registry
from nas.costs import CostModel, cost_metrics, cost_models_for
from nas.evaluate import Evaluator
from nas.objectives import Constraint, Objective, pareto_front
from nas.runs import RunDir
from nas.shared import SharedSearch
from nas.space import Architecture, ArchitectureError, NASError, SearchSpace, one_of
from nas.strategy import Record, Strategy, StrategyContext

MAX_WASTED_PROPOSALS = 1000
STATE_FILE = "strategy_state.json"


@dataclass
class SearchResult:
    records: list[Record]
    best: Record | None
    front: list[Record]


def evaluated(records: Sequence[Record], objectives: Sequence[Objective]) -> list[Record]:
    """Records of evaluations with every objective's metric (not infeasible, repeated or rating-only ones)."""
    return [r for r in records if r.metrics is not None and not r.info.get("cached")
            and all(o.metric in r.metrics for o in objectives)]


def best_of(records: Sequence[Record], objectives: Sequence[Objective]) -> tuple[Record | None, list[Record]]:
    """The best record by the first objective, and the Pareto front over all objectives."""
    done = evaluated(records, objectives)
    if not done:
        return None, []
    signed = [tuple(o.signed(r.feasible_metrics) for o in objectives) for r in done]
    best = done[max(range(len(done)), key=lambda i: signed[i])]
    front = [done[i] for i in pareto_front(signed)] if len(objectives) > 1 else [best]
    return best, front


def plan_costs(objectives: Sequence[Objective], constraints: Sequence[Constraint], evaluator: Evaluator,
               space: SearchSpace, settings: Mapping[str, Any] | None = None) -> list[CostModel]:
    """The cost models a search computes for every proposal (`nas.costs.cost_models_for`); a one-line
    `NASError` for an objective or constraint on a metric neither a cost model nor the evaluator gives."""
    known = {*registry.names("cost_models"), *evaluator.metrics}
    for what, metric in [("objective", o.metric) for o in objectives] + [("constraint", c.metric) for c in constraints]:
        if metric not in known:
            raise NASError(f"{what} on unknown metric {metric!r}; known: {one_of(sorted(known))} (cost models and "
                           f"what evaluator {evaluator.name!r} reports)")
    return cost_models_for([o.metric for o in objectives] + [c.metric for c in constraints], space, settings)


def run_search(run: RunDir, strategy: Strategy, evaluator: Evaluator, context: StrategyContext,
               constraints: Sequence[Constraint] = (), cost_models: Sequence[CostModel] | None = None) -> SearchResult:
    """Search until `context.budget` architectures are evaluated, resuming what `run` recorded; `cost_models`
    default to `plan_costs` with no settings."""
    space, objectives = context.space, context.objectives
    models = list(cost_models) if cost_models is not None else plan_costs(objectives, constraints, evaluator, space)
    for note in run.repair():
        tqdm.write(f"resuming {run.path}: {note}")
    records = run.history()
    strategy.setup(context)
    observed = _resume(run, strategy, records)
    done = {r.arch: r for r in records if r.feasible and not r.info.get("cached")}
    best, _ = best_of(records, objectives)
    wasted = 0
    target = _target(space, context.budget)
    shared = SharedSearch(context, strategy, records, target, observed) if context.storage else None
    with tqdm(total=context.budget, initial=len(done), desc=f"{strategy.name} on {space.name}", unit="arch",
              disable=not context.progress) as bar:
        while shared.more() if shared else len(done) < target:
            arch = shared.ask() if shared else strategy.ask()
            try:
                space.validate(arch)
            except ArchitectureError as err:  # a strategy's bug: say whose, before anything is built
                raise NASError(f"strategy {strategy.name!r} proposed an architecture outside space "
                               f"{space.name!r}: {err}") from None
            start = time.perf_counter()
            evaluate = partial(_evaluate, arch, evaluator, done, constraints, models, context, len(records))
            record = shared.evaluate(arch, evaluate) if shared else evaluate()
            if record is None:  # another worker evaluated it (told) or evaluates it now (told when it finishes)
                continue
            record.seconds = time.perf_counter() - start
            model = record.info.pop("_model", None)
            fresh = record.feasible and not record.info.get("cached")
            new_best = fresh and best_of([*records, record], objectives)[0] is record
            run.append(record, model.state_dict() if new_best and model is not None else None)  # weights first
            records.append(record)
            if shared:
                shared.finish(record)
            strategy.tell(arch, record.metrics)
            _save_state(run, strategy, records, shared.observed if shared else ())
            if not record.feasible or record.info.get("cached"):
                wasted += 1
                if wasted > MAX_WASTED_PROPOSALS:
                    if not done:
                        raise NASError(f"{MAX_WASTED_PROPOSALS} proposals in a row were infeasible or repeated: "
                                       "the constraints are too tight or the space is exhausted")
                    tqdm.write(f"stopping after {len(done)} of {context.budget} evaluations: {MAX_WASTED_PROPOSALS} "
                               "proposals in a row were infeasible or repeated (the space, or the part of it the "
                               "constraints allow, looks exhausted)")
                    break
                continue
            wasted = 0
            done[arch] = record
            if new_best:
                best = record
            bar.update(1)
            bar.set_postfix({o.metric: f"{best.feasible_metrics[o.metric]:.4g}" for o in objectives[:2]}
                            if best else {})
    if shared:
        shared.close(len(done))
    strategy.close()
    best, front = best_of(records, objectives)
    return SearchResult(records, best, front)


def _target(space: SearchSpace, budget: int) -> int:
    """The evaluations to run: the budget, or every architecture of a space that counts fewer (said once)."""
    size = space.size()
    if size is None or size >= budget:
        return budget
    tqdm.write(f"space {space.name!r} has only {size} architectures, fewer than the budget {budget}: the search "
               "stops when it has evaluated them all")
    return size


def _save_state(run: RunDir, strategy: Strategy, records: Sequence[Record], observed: Iterable[int] = ()) -> None:
    """Write the strategy's state atomically, compact (it is rewritten after every tell), with the claims
    whose results it was told in a shared search (`observed`)."""
    state = strategy.state()
    if state is not None:
        tmp = run.path / f".{STATE_FILE}.tmp"
        shared = {"observed": sorted(observed)} if observed else {}
        tmp.write_text(json.dumps({"strategy": strategy.name, "records": len(records), "last": dict(records[-1].arch),
                                   "state": state, **shared}, separators=(",", ":")))
        tmp.replace(run.path / STATE_FILE)


def _resume(run: RunDir, strategy: Strategy, records: Sequence[Record]) -> list[int]:
    """Load the saved strategy state when it reflects exactly `records`, else replay them; the claims of a
    shared search whose results the strategy holds (none after a replay)."""
    saved = run.read_json(STATE_FILE) if records else None
    if (isinstance(saved, dict) and saved.get("strategy") == strategy.name and saved.get("records") == len(records)
            and saved.get("last") == dict(records[-1].arch)):
        strategy.load_state(saved["state"])
        return list(saved.get("observed", []))
    strategy.restore(records)
    return []


def _evaluate(arch: Architecture, evaluator: Evaluator, done: dict[Architecture, Record],
              constraints: Sequence[Constraint], models: Sequence[CostModel], context: StrategyContext,
              index: int) -> Record:
    if arch in done:
        return Record(index, arch, dict(done[arch].feasible_metrics), info={"cached": True})
    cost = cost_metrics(context.space, arch, context.input_shape, context.num_classes, models)
    broken = [c for c in constraints if c.metric in cost and not c.satisfied(cost)]
    if broken:
        return Record(index, arch, None, info={"infeasible": {c.metric: cost[c.metric] for c in broken}})
    evaluation = evaluator.evaluate(arch)
    metrics = {**cost, **evaluation.metrics}
    late = [c for c in constraints if c.metric not in cost and not c.satisfied(metrics)]
    if late:
        return Record(index, arch, None, info={"infeasible": {c.metric: metrics[c.metric] for c in late}})
    return Record(index, arch, metrics, info={"_model": evaluation.model})
