"""Local search (White et al.): first improvement over one-edit neighbours, restarts at a local optimum, never
repeats, resumes exactly, and beats random search on the NAS-Bench-201 table."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SHARED

from nas import registry
from nas.evaluate import Evaluation, Evaluator
from nas.objectives import Objective
from nas.runs import RunDir
from nas.search import STATE_FILE, run_search
from nas.space import Architecture, Choice, SearchSpace
from nas.strategy import StrategyContext
from strategies.local_search import LocalSearch
from strategies.random_search import RandomSearch

TABLE = SHARED / "benchmarks" / "nasbench201" / "nats_tss_test_accuracy_200ep.csv"
ACC = [Objective("accuracy", "maximize")]


class Grid(SearchSpace):
    """Two ordinal choices 0-4 (a one-edit neighbour moves one of them by one) and a categorical one."""

    name = "grid"

    def choices(self) -> list[Choice]:
        return [Choice("x", (0, 1, 2, 3, 4), "ordinal"), Choice("y", (0, 1, 2, 3, 4), "ordinal"),
                Choice("z", ("a", "b"))]

    def graph(self, arch, input_shape=None, num_classes=None):
        raise NotImplementedError


def one_edit(a: Architecture, b: Architecture) -> bool:
    diff = [k for k in a if a[k] != b[k]]
    return len(diff) == 1 and (diff[0] == "z" or abs(a[diff[0]] - b[diff[0]]) == 1)


def peak(arch: Architecture) -> dict[str, float]:
    """One peak at x=3, y=1, z=b: every other cell has a better neighbour."""
    return {"accuracy": 50 - (arch["x"] - 3) ** 2 - (arch["y"] - 1) ** 2 - (arch["z"] == "a")}


@pytest.fixture(scope="module")
def table():
    if not TABLE.is_file():
        pytest.skip(f"shared benchmark table not found at {TABLE}")
    from nas.tabular import TabularEvaluator

    return TabularEvaluator(registry.make_space("nb201"), TABLE, "cifar10")


def test_starts_from_the_best_of_num_init_and_moves_to_the_first_better_neighbour():
    space = Grid()
    strategy = LocalSearch(space, ACC, seed=3, num_init=3)
    start = [strategy.ask() for _ in range(3)]
    assert len(set(start)) == 3 and strategy.centre is None
    for arch, value in zip(start, (1.0, 3.0, 2.0)):
        strategy.tell(arch, {"accuracy": value})
    assert strategy.centre == start[1]  # the best of the three
    first = strategy.ask()
    assert one_edit(first, start[1])
    strategy.tell(first, {"accuracy": 2.5})  # worse: stay
    second = strategy.ask()
    assert one_edit(second, start[1]) and second != first
    strategy.tell(second, {"accuracy": 4.0})  # better: move there at once
    assert strategy.centre == second and strategy.moves == 1
    third = strategy.ask()
    assert one_edit(third, second) and third not in (*start, first)


def test_restarts_at_a_local_optimum():
    space = Grid()
    strategy = LocalSearch(space, ACC, seed=0, num_init=2, num_restart=3)
    start = [strategy.ask() for _ in range(2)]
    strategy.tell(start[0], {"accuracy": 5.0})
    strategy.tell(start[1], {"accuracy": 1.0})
    centre = strategy.centre
    neighbours = [a for a in space.neighbours(centre, strategy.rng) if a not in start]
    asked = []
    for _ in neighbours:  # none better: all of them are evaluated
        asked.append(strategy.ask())
        strategy.tell(asked[-1], {"accuracy": 0.0})
    assert sorted(map(Architecture.to_json, asked)) == sorted(map(Architecture.to_json, neighbours))
    assert strategy.restarts == 0 and strategy.centre == centre
    restart = [strategy.ask() for _ in range(3)]  # a local optimum: num_restart new random ones
    assert strategy.restarts == 1 and strategy.centre is None
    assert not set(restart) & {*start, *asked}
    for arch, value in zip(restart, (2.0, 7.0, 1.0)):
        strategy.tell(arch, {"accuracy": value})
    assert strategy.centre == restart[1] and strategy.centre_fit == 7.0  # a fresh climb, not the old centre


def test_climbs_to_the_peak_and_never_repeats():
    space = Grid()
    strategy = LocalSearch(space, ACC, seed=1, num_init=1)
    asked, best = [], []
    for _ in range(40):  # of 50 cells
        arch = strategy.ask()
        if strategy.centre is not None and best:
            assert one_edit(arch, strategy.centre)
        asked.append(arch)
        strategy.tell(arch, peak(arch))
        best.append(max(peak(a)["accuracy"] for a in asked))
    assert len(set(asked)) == 40
    first_peak = best.index(50)
    assert first_peak < 20  # the climb reaches the peak, then evaluates its neighbours and restarts
    assert strategy.restarts >= 1


def test_several_asks_before_tells(table):
    strategy = LocalSearch(table.space, ACC, seed=0)
    start = [strategy.ask() for _ in range(12)]  # more than num_init: the start takes all twelve
    assert len(set(start)) == 12
    for arch in reversed(start[:11]):
        strategy.tell(arch, table.evaluate(arch).metrics)
    assert strategy.centre is None  # one still pending
    strategy.tell(start[11], table.evaluate(start[11]).metrics)
    best = max(start, key=lambda a: table.lookup(a))
    assert strategy.centre == best
    asked = [strategy.ask() for _ in range(5)]
    assert len(set(asked)) == 5 and not set(asked) & set(start)
    assert all(one_edit_nb201(a, best) for a in asked)
    for arch in reversed(asked):
        strategy.tell(arch, table.evaluate(arch).metrics)
    assert not strategy.proposals.pending


def one_edit_nb201(a: Architecture, b: Architecture) -> bool:
    return sum(a[k] != b[k] for k in a) == 1


def test_never_repeats_on_the_table(table):
    strategy = LocalSearch(table.space, ACC, seed=2)
    asked = []
    for _ in range(400):
        arch = strategy.ask()
        asked.append(arch)
        strategy.tell(arch, table.evaluate(arch).metrics)
    assert len(set(asked)) == 400 and strategy.restarts >= 2


class Killed(Exception):
    pass


class Dying(Evaluator):
    def __init__(self, inner: Evaluator, lives: int) -> None:
        self.inner, self.lives = inner, lives

    def evaluate(self, arch) -> Evaluation:
        if self.lives == 0:
            raise Killed
        self.lives -= 1
        return self.inner.evaluate(arch)


def search(path, evaluator: Evaluator, budget: int = 90):
    run = RunDir(path) if path.exists() else RunDir.create(path, {"space": "nb201", "strategy": "local_search",
                                                                   "settings": {}})
    strategy = LocalSearch(registry.make_space("nb201"), ACC, seed=5, num_init=3)
    context = StrategyContext(strategy.space, ACC, 5, budget, (3, 32, 32), 10, run_dir=run.path, progress=False)
    run_search(run, strategy, evaluator, context)
    return strategy, [(r.arch, r.metrics, r.info) for r in run.history()]


@pytest.mark.parametrize("saved", [True, False], ids=["restored", "replayed"])
def test_a_killed_and_resumed_search_equals_an_uninterrupted_one(tmp_path, table, saved):
    whole_strategy, whole = search(tmp_path / "whole", table)
    assert whole_strategy.moves >= 5 and whole_strategy.restarts == 1  # a climb, a restart at the 69th query
    with pytest.raises(Killed):
        search(tmp_path / "split", Dying(table, 70))  # killed while the restart's random cells are evaluated
    state = json.loads((tmp_path / "split" / STATE_FILE).read_text())
    assert state["strategy"] == "local_search" and state["records"] == 70
    assert state["state"]["centre"] is None and len(state["state"]["starts"]) == 2
    if not saved:  # a state that does not match the history is not used: the history is replayed
        state["records"] = 69
        (tmp_path / "split" / STATE_FILE).write_text(json.dumps(state))
    resumed_strategy, resumed = search(tmp_path / "split", table)
    assert resumed == whole
    assert resumed_strategy.state() == whole_strategy.state()


def test_state_round_trip_mid_restart(table):
    """A state saved while a restart is being evaluated continues the same way."""
    space = table.space
    first = LocalSearch(space, ACC, seed=5, num_init=4)
    for _ in range(70):
        arch = first.ask()
        first.tell(arch, table.evaluate(arch).metrics)
        if first.restarts and first.centre is None and first.starts:
            break
    assert first.centre is None and first.starts
    second = LocalSearch(space, ACC, seed=99, num_init=4)
    second.load_state(json.loads(json.dumps(first.state())))
    for _ in range(40):
        a, b = first.ask(), second.ask()
        assert a == b
        metrics = table.evaluate(a).metrics
        first.tell(a, metrics)
        second.tell(b, metrics)


def test_infeasible_evaluations_are_not_better():
    space = Grid()
    strategy = LocalSearch(space, ACC, seed=0, num_init=2)
    start = [strategy.ask() for _ in range(2)]
    strategy.tell(start[0], None)
    strategy.tell(start[1], {"accuracy": 1.0})
    assert strategy.centre == start[1]
    arch = strategy.ask()
    strategy.tell(arch, None)
    assert strategy.centre == start[1]


def test_beats_random_search_on_nb201(table):
    optimum = table.best()[1]

    def regret(strategy, budget=100) -> float:
        best = -np.inf
        for _ in range(budget):
            arch = strategy.ask()
            metrics = table.evaluate(arch).metrics
            strategy.tell(arch, metrics)
            best = max(best, metrics["accuracy"])
        return optimum - best

    local = [regret(LocalSearch(table.space, ACC, seed=s)) for s in range(6)]
    random_ = [regret(RandomSearch(table.space, ACC, seed=s)) for s in range(6)]
    assert np.mean(local) < np.mean(random_) - 0.2
    assert np.mean(local) < 0.2
