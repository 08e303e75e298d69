"""The tabular evaluator: lookups on the shared tables, query counting, errors, strategies running on it."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from nas import registry
from nas.evaluate import Evaluator
from nas.objectives import Objective
from nas.space import NASError
from nas.tabular import TabularEvaluator

SHARED = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
NB201 = SHARED / "nasbench201" / "nats_tss_test_accuracy_200ep.csv"
SSS = SHARED / "nats_sss" / "nats_sss_cifar10_accuracy.csv"
SHIPPED = Path(__file__).resolve().parents[1] / "benchmarks"  # the ground truths this repository ships
ROW = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"shared benchmark table not found at {path}")
    return path


@pytest.fixture(scope="module")
def nb201():
    return registry.make_space("nb201")


@pytest.fixture(scope="module")
def sss():
    return registry.make_space("nats_sss")


@pytest.mark.parametrize("dataset, best", [("cifar10", 94.37), ("cifar100", 73.51), ("imagenet16_120", 47.31)])
def test_nb201_optimum_matches_the_published_facts(nb201, dataset, best):
    evaluator = TabularEvaluator(nb201, need(NB201), dataset)
    key, accuracy = evaluator.best()
    assert round(accuracy, 2) == best
    assert evaluator.lookup(nb201.resolve(key)) == accuracy
    assert len(evaluator.items()) == 15_625


def test_nb201_lookup_and_reference_cells(nb201):
    evaluator = TabularEvaluator(nb201, need(NB201), "ImageNet16-120")  # names are normalised
    assert isinstance(evaluator, Evaluator)
    assert evaluator.evaluate(nb201.resolve(ROW)).metrics == {"accuracy": 44.0333}
    for dataset in ("cifar10", "cifar100", "imagenet16_120"):
        ev = TabularEvaluator(nb201, NB201, dataset)
        assert ev.lookup(nb201.resolve(f"nb201_best_{dataset}")) == ev.best()[1]


def test_nats_sss_lookup_and_bossnas_anchor(sss):
    evaluator = TabularEvaluator(sss, need(SSS), "cifar10")
    accuracy = evaluator.evaluate(sss.resolve("bossnas_nats_sss")).metrics["accuracy"]
    assert accuracy == 93.29
    assert sum(a > accuracy for _, a in evaluator.items()) + 1 == 65  # BossNAS' published rank
    assert evaluator.best()[1] == 93.65 == evaluator.lookup(sss.resolve("nats_sss_best_cifar10"))
    assert len(evaluator.items()) == sss.size()


def test_queries_are_counted_repeats_included(nb201):
    evaluator = TabularEvaluator(nb201, need(NB201), "cifar10")
    a, b = nb201.resolve("nb201_resnet"), nb201.resolve("nb201_all_conv3x3")
    for arch in (a, b, a):
        evaluator.evaluate(arch)
    assert evaluator.queries == 3 and evaluator.unique_queries == 2
    evaluator.lookup(a)
    assert evaluator.queries == 3
    assert evaluator.describe() == {"evaluator": "tabular", "benchmark": str(NB201), "dataset": "cifar10"}


def one_line_error(fn, *args, match: str) -> str:
    with pytest.raises(NASError, match=match) as err:
        fn(*args)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_missing_file_and_unknown_dataset(nb201, tmp_path):
    one_line_error(TabularEvaluator, nb201, tmp_path / "absent.csv", "cifar10", match="does not exist")
    message = one_line_error(TabularEvaluator, nb201, need(NB201), "svhn", match="not a column")
    assert "cifar10, cifar100, imagenet16_120" in message


@pytest.mark.parametrize("text, match", [
    ("", "malformed"),
    ("name,cifar10\nx,1.0\n", "key column"),
    (f"arch,cifar10\n{ROW},93.1,7\n", "line 2 has 3 fields"),
    (f"arch,cifar10\n{ROW},high\n", "not a number"),
    (f"arch,cifar10\n{ROW},93.1\n{ROW},93.2\n", "repeats"),
    ("arch,cifar10\n", "no rows"),
])
def test_malformed_tables(nb201, tmp_path, text, match):
    path = tmp_path / "table.csv"
    path.write_text(text)
    one_line_error(TabularEvaluator, nb201, path, "cifar10", match=match)


def test_unknown_architecture_and_wrong_space(nb201, sss, tmp_path):
    path = tmp_path / "one.csv"
    path.write_text(f"index,arch,cifar10\n1,{ROW},93.66\n")
    evaluator = TabularEvaluator(nb201, path, "cifar10")
    assert evaluator.evaluate(nb201.resolve(ROW)).metrics["accuracy"] == 93.66
    one_line_error(evaluator.evaluate, nb201.resolve("nb201_resnet"), match="not in the benchmark table")
    one_line_error(TabularEvaluator, sss, path, "cifar10", match="does not belong to space 'nats_sss'")


def test_any_space_reads_a_table_keyed_by_architecture_json(tmp_path):
    import csv
    import json
    import random

    space = registry.make_space("hytra", "small")
    archs = [space.sample(random.Random(seed)) for seed in range(3)]
    path = tmp_path / "table.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "arch", "fashion_mnist"])
        for i, arch in enumerate(archs):  # keys written in reverse order: the lookup must not care
            writer.writerow([i, json.dumps(dict(reversed(list(arch.items())))), 80.0 + i])
    evaluator = TabularEvaluator(space, path, "fashion_mnist")
    assert [evaluator.evaluate(a).metrics["accuracy"] for a in archs] == [80.0, 81.0, 82.0]
    assert evaluator.best() == (archs[2].to_json(), 82.0) and evaluator.unique_queries == 3
    assert (evaluator.input_shape, evaluator.num_classes) == (None, None)  # no table.json: the space's defaults
    path.with_suffix(".json").write_text('{"input": [1, 16, 16], "classes": 10}')
    assert TabularEvaluator(space, path, "fashion_mnist").input_shape == (1, 16, 16)
    path.with_suffix(".json").write_text('{"input": 16}')
    one_line_error(TabularEvaluator, space, path, "fashion_mnist", match="table.json is malformed")
    mbconv = registry.make_space("mbconv", "small")
    one_line_error(TabularEvaluator, mbconv, path, "fashion_mnist", match="does not belong to space 'mbconv'")
    other = next(a for a in (space.sample(random.Random(s)) for s in range(3, 99)) if a not in archs)
    path.with_suffix(".json").unlink()
    one_line_error(TabularEvaluator(space, path, "fashion_mnist").evaluate, other, match="not in the benchmark table")


@pytest.mark.parametrize("name", ["random", "evolution", "local_search", "optuna"])
def test_strategies_run_on_the_table_in_seconds(nb201, name):
    evaluator = TabularEvaluator(nb201, need(NB201), "cifar10")
    strategy = registry.get("strategies", name)(nb201, [Objective("accuracy", "maximize")], seed=0)
    start = time.perf_counter()
    found = []
    for _ in range(60):
        arch = strategy.ask()
        metrics = evaluator.evaluate(arch).metrics
        strategy.tell(arch, metrics)
        found.append(metrics["accuracy"])
    strategy.close()
    assert time.perf_counter() - start < 10
    assert evaluator.queries == 60 and evaluator.unique_queries >= 40
    assert max(found) > 93.0  # 9% of cells score above 93 (the median 90.7): 60 queries find one


def test_optuna_gp_sampler_searches_the_table(nb201):
    """`optuna` with `sampler="gp"` is Optuna's Gaussian-process sampler, fitted after its random startup trials."""
    import optuna

    evaluator = TabularEvaluator(nb201, need(NB201), "cifar10")
    strategy = registry.get("strategies", "optuna")(nb201, [Objective("accuracy", "maximize")], seed=0,
                                                    sampler="gp", n_startup_trials=5)
    assert isinstance(strategy.sampler, optuna.samplers.GPSampler)
    for _ in range(20):
        arch = strategy.ask()
        strategy.tell(arch, evaluator.evaluate(arch).metrics)
    strategy.close()
    assert evaluator.unique_queries >= 15
    with pytest.raises(ValueError, match="'bo' is not one of 'auto', 'tpe', 'gp', 'nsga2', 'random'"):
        registry.get("strategies", "optuna")(nb201, [Objective("accuracy", "maximize")], sampler="bo")


@pytest.mark.parametrize("folder", sorted(p.parent.name for p in SHIPPED.glob("fashion_*/table.json")))
def test_shipped_ground_truths_read_as_tabular_benchmarks(folder):
    import json

    path = SHIPPED / folder / "table.csv"
    meta = json.loads(path.with_suffix(".json").read_text())
    space = registry.make_space(meta["space"], meta["preset"])
    evaluator = TabularEvaluator(space, path, "fashion_mnist")
    rows = evaluator.items()
    assert len(rows) >= 40 and evaluator.input_shape == tuple(meta["input"])
    arch = space.resolve(rows[0][0])
    assert evaluator.evaluate(arch).metrics["accuracy"] == rows[0][1]
