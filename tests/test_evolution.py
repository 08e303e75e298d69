"""Regularized evolution: random founders, tournament selection of the fittest, aging, and what the
tournament size does on the NAS-Bench-201 table."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nas import registry
from nas.objectives import Objective
from nas.space import Architecture
from nas.tabular import TabularEvaluator
from search_spaces.nb201 import OPS
from strategies.evolution import RegularizedEvolution

NB201 = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "nasbench201" / \
    "nats_tss_test_accuracy_200ep.csv"


@pytest.fixture(scope="module")
def space():
    return registry.make_space("nb201")


def score(arch: Architecture) -> float:
    """A stand-in metric, different for every cell: the cell's ops read as a base-5 number."""
    return float(sum(OPS.index(arch[name]) * 5 ** i for i, name in enumerate(sorted(arch))))


def distance(a: Architecture, b: Architecture) -> int:
    return sum(a[k] != b[k] for k in a)


def test_founders_count_in_the_budget_and_every_child_is_one_edit_from_a_member(space):
    strategy = RegularizedEvolution(space, [Objective("score", "maximize")], seed=1)
    for step in range(40):
        members = [arch for arch, _ in strategy.population]
        arch = strategy.ask()
        if step >= 10:
            assert min(distance(arch, m) for m in members) == 1
        strategy.tell(arch, {"score": score(arch)})
    assert strategy.asked == 40 and len(strategy.proposals.seen) == 40  # no repeats, founders included


def test_the_oldest_dies(space):
    strategy = RegularizedEvolution(space, [Objective("score", "maximize")], seed=2)
    told = []
    for _ in range(25):
        arch = strategy.ask()
        strategy.tell(arch, {"score": score(arch)})
        told.append(arch)
    assert [arch for arch, _ in strategy.population] == told[-10:]


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_the_parent_is_the_fittest_of_a_sample_drawn_with_replacement(space, direction):
    strategy = RegularizedEvolution(space, [Objective("score", direction)], seed=3, population_size=6, sample_size=6)
    for _ in range(6):
        arch = strategy.ask()
        strategy.tell(arch, {"score": score(arch)})
    pick = max if direction == "maximize" else min
    drawn: list[tuple[Architecture, tuple[float, ...]]] = []
    choice = strategy.rng.choice

    def recording_choice(seq):
        drawn.append(choice(seq))
        return drawn[-1]

    strategy.rng.choice = recording_choice  # type: ignore[method-assign]
    best = pick(strategy.population, key=lambda member: score(member[0]))[0]
    wins = 0
    for _ in range(2000):
        drawn.clear()
        parent = strategy._parent()
        assert len(drawn) == 6 and parent == pick(drawn, key=lambda member: score(member[0]))[0]
        wins += parent == best
    assert abs(wins / 2000 - (1 - (5 / 6) ** 6)) < 0.04  # with replacement: the best is missed in (5/6)^6 of draws


def _regret_at_100(evaluator: TabularEvaluator, seeds: int, **options: int) -> tuple[float, float]:
    optimum = evaluator.best()[1]
    regrets = []
    for seed in range(seeds):
        strategy = RegularizedEvolution(evaluator.space, [Objective("accuracy", "maximize")], seed=seed, **options)
        top = -np.inf
        for _ in range(100):
            arch = strategy.ask()
            metrics = evaluator.evaluate(arch).metrics
            strategy.tell(arch, metrics)
            top = max(top, metrics["accuracy"])
        regrets.append(optimum - top)
    return float(np.mean(regrets)), float(np.mean(np.array(regrets) <= 1e-9))


def test_tournament_size_sets_the_regret_on_nas_bench_201(space):
    """The measured cause of the gap to the earlier figure (0.12, 42% at the optimum): NAS-Bench-201's
    P=10, S=3 gives about 0.27 (19%) at 100 queries, NASLib's P=30, S=10 about 0.11 (44%)."""
    if not NB201.is_file():
        pytest.skip(f"shared benchmark table not found at {NB201}")
    evaluator = TabularEvaluator(space, NB201, "cifar10")
    small, small_hits = _regret_at_100(evaluator, 150)
    large, large_hits = _regret_at_100(evaluator, 150, population_size=30, sample_size=10)
    assert 0.20 < small < 0.34 and 0.10 < small_hits < 0.30
    assert large < 0.16 and large_hits > 0.33
