"""BANANAS on the NAS-Bench-201 table and on another space: better than random, never repeats, seeded."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nas import registry
from nas.objectives import Objective
from nas.space import NASError
from nas.strategy import Record
from strategies.bananas import Bananas
from strategies.random_search import RandomSearch

TABLE = (Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "nasbench201"
         / "nats_tss_test_accuracy_200ep.csv")
ACC = [Objective("accuracy", "maximize")]
FAST = {"predictor": "rf", "ensemble": 2, "predictor_options": {"n_estimators": 30}}


@pytest.fixture(scope="module")
def evaluator():
    if not TABLE.is_file():
        pytest.skip(f"shared NAS-Bench-201 table not found at {TABLE}")
    from nas.tabular import TabularEvaluator

    return TabularEvaluator(registry.make_space("nb201"), TABLE, "cifar10")


def search(strategy, evaluator, budget: int, fail_every: int = 0) -> tuple[float, list]:
    best, asked = -np.inf, []
    for i in range(budget):
        arch = strategy.ask()
        asked.append(arch)
        metrics = evaluator.evaluate(arch).metrics
        if fail_every and i % fail_every == 1:
            metrics = None
        else:
            best = max(best, metrics["accuracy"])
        strategy.tell(arch, metrics)
    return best, asked


def _regrets(evaluator, seeds, budget, **options) -> tuple[list[float], list[float]]:
    space, optimum = evaluator.space, evaluator.best()[1]
    bananas = [optimum - search(Bananas(space, ACC, seed=s, **options), evaluator, budget)[0] for s in seeds]
    random_ = [optimum - search(RandomSearch(space, ACC, seed=s), evaluator, budget)[0] for s in seeds]
    return bananas, random_


def test_bananas_beats_random_search(evaluator):
    """A random-forest ensemble (fast) at 40 queries, 4 seeds."""
    bananas, random_ = _regrets(evaluator, range(4), 40, **FAST)
    assert np.mean(bananas) < np.mean(random_)
    assert np.mean(bananas) < 0.6


@pytest.mark.slow
def test_default_bananas_beats_random_search(evaluator):
    """The default GNN ensemble at 60 queries, 3 seeds."""
    bananas, random_ = _regrets(evaluator, range(3), 60)
    assert np.mean(bananas) < np.mean(random_)
    assert np.mean(bananas) < 0.3


def test_never_repeats_and_survives_failures(evaluator):
    strategy = Bananas(evaluator.space, ACC, seed=1, num_init=5, batch_size=5, **FAST)
    _, asked = search(strategy, evaluator, 30, fail_every=3)
    assert len(set(asked)) == len(asked)
    assert strategy.rounds >= 4 and len(strategy.history) == 20


def test_same_seed_same_search_and_restore(evaluator):
    runs = [search(Bananas(evaluator.space, ACC, seed=3, num_init=5, batch_size=5, **FAST), evaluator, 15)[1]
            for _ in range(2)]
    assert runs[0] == runs[1]
    resumed = Bananas(evaluator.space, ACC, seed=3, num_init=5, batch_size=5, **FAST)
    resumed.restore([Record(i, a, evaluator.evaluate(a).metrics) for i, a in enumerate(runs[0][:12])])
    assert [resumed.ask() for _ in range(3)] == runs[0][12:15]


def test_any_space_with_a_graph_objective():
    """On the MBConv space, minimising multiply-adds read from the graph: the search finds small models."""
    space = registry.make_space("mbconv", "small")
    strategy = Bananas(space, [Objective("macs", "minimize")], seed=0, num_init=6, batch_size=4,
                       predictor="mlp", ensemble=2, predictor_options={"encoding": "adjacency", "max_iter": 100})
    found = []
    for _ in range(18):
        arch = strategy.ask()
        macs = float(space.graph(arch, space.input_shape_for(arch, (3, 32, 32)), 10).macs())
        found.append(macs)
        strategy.tell(arch, {"macs": macs})
    assert min(found[6:]) < np.median(found[:6])
    with pytest.raises(NASError, match="acquisition"):
        Bananas(space, ACC, acquisition="ei")


def neighbours(space, arch) -> set:
    """Every architecture one edit away (NB201: 6 edges x 4 other ops)."""
    out = set()
    for choice in space.active_choices(arch):
        for value in choice.values:
            if value != arch[choice.name]:
                out.add(space.complete({**arch, choice.name: value}, None))
    return out


def test_space_neighbours_are_every_one_edit_change():
    import random

    nb201 = registry.make_space("nb201")
    arch = nb201.sample(random.Random(1))
    found = nb201.neighbours(arch, random.Random(0))
    assert len(found) == 24 and set(found) == neighbours(nb201, arch)
    sizes = registry.make_space("nats_sss")
    assert len(sizes.neighbours(sizes.sample(random.Random(1)), random.Random(0))) == 5 * 7  # 5 widths, 7 others


def _primed(rule: str, **options) -> tuple:
    import random

    space = registry.make_space("nb201")
    strategy = Bananas(space, ACC, seed=0, candidates=rule, **options)
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(4)]
    for arch, fitness in zip(archs, (90, 80, 70, 60)):
        strategy.tell(arch, {"accuracy": float(fitness)})
    return space, strategy, archs


def keys(space, archs) -> set:
    return {space.canonical(a) for a in archs}


def test_neighbourhood_candidates_are_every_unseen_neighbour_of_the_best_two():
    space, strategy, archs = _primed("neighbourhood")
    near = [neighbours(space, a) for a in archs]
    first = strategy._candidates()
    best_two = keys(space, near[0] | near[1]) - keys(space, archs)
    assert keys(space, first) == best_two and len(first) == len(best_two)  # all of them, isomorphs once
    strategy.seen_keys |= best_two  # both neighbourhoods used up: the next best ones fill a batch
    refilled = strategy._candidates()
    assert len(refilled) >= strategy.batch_size and not keys(space, refilled) & strategy.seen_keys
    assert keys(space, refilled) <= keys(space, near[2] | near[3])
    capped = _primed("neighbourhood", num_candidates=20)[1]._candidates()
    assert len(capped) == 20


def test_mutation_candidates_are_unseen_mutations_of_the_best_and_refilled_when_used_up():
    space, strategy, archs = _primed("mutation", num_candidates=30)
    near = [neighbours(space, a) for a in archs]
    first = strategy._candidates()
    assert set(first) <= set().union(*near) and len(set(first) & (near[0] | near[1])) >= 15
    strategy.seen_keys |= keys(space, near[0] | near[1])
    refilled = strategy._candidates()
    assert len(refilled) >= strategy.batch_size and not keys(space, refilled) & strategy.seen_keys
    assert set(refilled) <= near[2] | near[3]
    with pytest.raises(NASError, match="candidates"):
        Bananas(space, ACC, candidates="all")


def test_isomorphs_of_told_cells_are_not_proposed(evaluator):
    from search_spaces.nb201 import parse_arch_string

    strategy = Bananas(evaluator.space, ACC, seed=0, num_init=2, **FAST)
    dead = parse_arch_string("|none~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|")
    best = parse_arch_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
                             "+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    strategy.tell(best, {"accuracy": 94.0})
    strategy.tell(dead, {"accuracy": 80.0})  # node 1 is dead: changing its edge gives an isomorph
    proposed = keys(evaluator.space, strategy._candidates())
    assert evaluator.space.canonical(dead.replace(edge_3_1="avg_pool_3x3")) == evaluator.space.canonical(dead)
    assert not proposed & strategy.seen_keys


def test_rank_targets_are_normal_scores_of_the_order():
    from strategies.bananas import normal_scores

    scores = normal_scores(np.array([10.0, 94.0, 93.9, 93.9, 50.0]))
    assert list(np.argsort(scores, kind="stable")) == [0, 4, 2, 3, 1]
    assert scores[2] == scores[3] and abs(scores.mean()) < 0.01 and scores[1] < 1.5  # the outlier is tamed
    with pytest.raises(NASError, match="target_transform"):
        Bananas(registry.make_space("nb201"), ACC, target_transform="log")


def test_climb_proposes_the_centres_neighbours_moves_to_better_ones_and_restarts_at_a_local_optimum():
    space, strategy, archs = _primed("climb", restart_pool=50)
    first = strategy._climb_candidates()  # the centre: the best told so far
    assert strategy.centre == archs[0] and not strategy.restarting
    assert keys(space, first) == keys(space, neighbours(space, archs[0])) - keys(space, archs)
    worse, better = first[:2]
    strategy.tell(worse, {"accuracy": 85.0})
    strategy.tell(better, {"accuracy": 95.0})
    second = strategy._climb_candidates()  # moved to the batch's best, which beats the centre
    assert strategy.centre == better and keys(space, second) <= keys(space, neighbours(space, better))
    strategy.tell(second[0], {"accuracy": 91.0})
    strategy.seen_keys |= keys(space, second)  # every neighbour evaluated, none better: a local optimum
    restart = strategy._climb_candidates()
    assert strategy.centre == better and strategy.restarting
    assert len(restart) == 50 and not keys(space, restart) & strategy.seen_keys
    strategy.tell(restart[0], {"accuracy": 70.0})  # a restart's best becomes the centre, worse or not
    strategy._climb_candidates()
    assert strategy.centre == restart[0] and not strategy.restarting
    with pytest.raises(ValueError, match="restart_pool 0"):
        Bananas(space, ACC, candidates="climb", restart_pool=0)


def test_climb_resumes_from_its_saved_state(evaluator):
    options = dict(candidates="climb", restart_pool=40, num_init=5, batch_size=3, **FAST)
    first = Bananas(evaluator.space, ACC, seed=4, **options)
    search(first, evaluator, 24)
    resumed = Bananas(evaluator.space, ACC, seed=4, **options)
    resumed.load_state(first.state())
    assert resumed.centre == first.centre and resumed.restarting == first.restarting
    assert [resumed.ask() for _ in range(6)] == [first.ask() for _ in range(6)]
