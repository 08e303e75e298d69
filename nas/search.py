"""The search loop: ask, check constraints, evaluate, record, tell; resume from the run directory.

Budget counts evaluated architectures. Proposals that break a constraint (checked on the graph's cost,
before any training) and proposals already evaluated are recorded and told to the strategy but not
counted, so a resumed strategy replays exactly the sequence the first run saw.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from tqdm.auto import tqdm

from nas.evaluate import Evaluator, cost_metrics
from nas.objectives import Constraint, Objective, pareto_front
from nas.runs import RunDir
from nas.space import Architecture, NASError, SearchSpace
from nas.strategy import Record, Strategy

MAX_WASTED_PROPOSALS = 1000


@dataclass
class SearchResult:
    records: list[Record]
    best: Record | None
    front: list[Record]


def evaluated(records: Sequence[Record], objectives: Sequence[Objective]) -> list[Record]:
    """Records of evaluations with every objective's metric (not infeasible, repeated or rating-only ones)."""
    return [r for r in records if r.feasible and not r.info.get("cached")
            and all(o.metric in r.metrics for o in objectives)]


def best_of(records: Sequence[Record], objectives: Sequence[Objective]) -> tuple[Record | None, list[Record]]:
    """The best record by the first objective, and the Pareto front over all objectives."""
    done = evaluated(records, objectives)
    if not done:
        return None, []
    signed = [tuple(o.signed(r.metrics) for o in objectives) for r in done]
    best = done[max(range(len(done)), key=lambda i: signed[i])]
    front = [done[i] for i in pareto_front(signed)] if len(objectives) > 1 else [best]
    return best, front


def run_search(run: RunDir, space: SearchSpace, strategy: Strategy, evaluator: Evaluator, budget: int,
               data_shape: tuple[int, ...], num_classes: int, objectives: Sequence[Objective],
               constraints: Sequence[Constraint] = (), progress: bool = True) -> SearchResult:
    records = run.history()
    strategy.restore(records)
    done = {r.arch: r for r in records if r.feasible and not r.info.get("cached")}
    best, _ = best_of(records, objectives)
    wasted = 0
    with tqdm(total=budget, initial=len(done), desc=f"{strategy.name} on {space.name}", unit="arch",
              disable=not progress) as bar:
        while len(done) < budget:
            arch = strategy.ask()
            start = time.perf_counter()
            record = _evaluate(space, arch, evaluator, done, constraints, data_shape, num_classes, len(records))
            record.seconds = time.perf_counter() - start
            model = record.info.pop("_model", None)
            run.append(record)
            records.append(record)
            strategy.tell(arch, record.metrics)
            if not record.feasible or record.info.get("cached"):
                wasted += 1
                if wasted > MAX_WASTED_PROPOSALS:
                    raise NASError(f"{MAX_WASTED_PROPOSALS} proposals in a row were infeasible or repeated: the "
                                   "constraints are too tight or the space is exhausted")
                continue
            wasted = 0
            done[arch] = record
            new_best, _ = best_of(records, objectives)
            if new_best is record:
                best = record
                if model is not None:
                    run.save_weights(model.state_dict())
            bar.update(1)
            bar.set_postfix({o.metric: f"{best.metrics[o.metric]:.4g}" for o in objectives[:2]} if best else {})
    strategy.close()
    best, front = best_of(records, objectives)
    return SearchResult(records, best, front)


def _evaluate(space: SearchSpace, arch: Architecture, evaluator: Evaluator, done: dict[Architecture, Record],
              constraints: Sequence[Constraint], data_shape: tuple[int, ...], num_classes: int, index: int) -> Record:
    if arch in done:
        return Record(index, arch, dict(done[arch].metrics), info={"cached": True})
    cost = cost_metrics(space, arch, data_shape, num_classes)
    broken = [c for c in constraints if c.metric in cost and not c.satisfied(cost)]
    if broken:
        return Record(index, arch, None, info={"infeasible": {c.metric: cost[c.metric] for c in broken}})
    evaluation = evaluator.evaluate(arch)
    metrics = {**cost, **evaluation.metrics}
    late = [c for c in constraints if c.metric not in cost and not c.satisfied(metrics)]
    if late:
        return Record(index, arch, None, info={"infeasible": {c.metric: metrics[c.metric] for c in late}})
    return Record(index, arch, metrics, info={"_model": evaluation.model})
