"""Accuracy predictors and encodings: each learns a real signal on a slice of the NAS-Bench-201 table."""
from __future__ import annotations

import random
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from nas import registry
from nas.space import NASError
from predictors.base import Ensemble, kendall_tau, spearman_rho
from predictors.encodings import ENCODINGS, compact_graph, encode, path_counts
from predictors.gnn import GNNPredictor
from predictors.sklearn_models import GradientBoostingPredictor, MLPPredictor, RandomForestPredictor
from search_spaces.nb201 import parse_arch_string

TABLE = (Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "nasbench201"
         / "nats_tss_test_accuracy_200ep.csv")
BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


@pytest.fixture(scope="module")
def nb201():
    return registry.make_space("nb201")


@pytest.fixture(scope="module")
def table_slice(nb201):
    """200 training and 300 held-out cells of the CIFAR-10 table, fixed by seed."""
    if not TABLE.is_file():
        pytest.skip(f"shared NAS-Bench-201 table not found at {TABLE}")
    from nas.tabular import read_table

    rows = sorted(read_table(TABLE, "cifar10").items())
    picked = random.Random(0).sample(rows, 500)
    archs = [parse_arch_string(k) for k, _ in picked]
    y = np.array([v for _, v in picked])
    return archs[:200], y[:200], archs[200:], y[200:]


@pytest.mark.parametrize("make", [
    lambda: RandomForestPredictor("onehot", n_estimators=100),
    lambda: RandomForestPredictor("path", n_estimators=100),
    lambda: GradientBoostingPredictor("adjacency", max_iter=100),
    lambda: MLPPredictor("adjacency"),
    lambda: GNNPredictor(steps=200),
    lambda: GNNPredictor(steps=200, numeric_features=False),
], ids=["rf-onehot", "rf-path", "gbm-adjacency", "mlp-adjacency", "gnn", "gnn-ops-only"])
def test_predictor_learns_nb201(nb201, table_slice, make):
    train_a, train_y, test_a, test_y = table_slice
    pred = make().fit(nb201, train_a, train_y).predict(nb201, test_a)
    assert pred.shape == (len(test_a),) and np.all(np.isfinite(pred))
    assert kendall_tau(pred, test_y) > 0.3
    assert spearman_rho(pred, test_y) > 0.45


def test_shuffled_targets_learn_nothing(nb201, table_slice):
    """The bound above is one a predictor without signal fails."""
    train_a, train_y, test_a, test_y = table_slice
    shuffled = np.random.default_rng(0).permutation(train_y)
    pred = RandomForestPredictor("onehot", n_estimators=100).fit(nb201, train_a, shuffled).predict(nb201, test_a)
    assert abs(kendall_tau(pred, test_y)) < 0.15


def test_compact_graph_collapses_stacked_cells(nb201):
    cg = compact_graph(nb201, parse_arch_string(BEST))
    assert len(cg) < 40 < len(nb201.graph(parse_arch_string(BEST)))
    assert set(cg.feats[:, 4]) == {1.0, 5.0}  # cells kept once per stage with repeat 5; the rest once
    assert "relu-conv3x3-bn" in cg.labels and "Identity" in cg.labels
    local = path_counts(cg)
    assert sum(n for p, n in local.items() if p.count("add") and "Identity" in p) >= 1


def test_dead_edges_do_not_change_graph_encodings(nb201):
    """With node 1 fed only by `none`, the ops on its outgoing edges compute on zeros."""
    base = "|none~0|+|nor_conv_3x3~0|{}~1|+|skip_connect~0|{}~1|nor_conv_1x1~2|"
    a = parse_arch_string(base.format("nor_conv_3x3", "avg_pool_3x3"))
    b = parse_arch_string(base.format("nor_conv_1x1", "skip_connect"))
    c = parse_arch_string(base.replace("none~0", "nor_conv_1x1~0").format("nor_conv_3x3", "avg_pool_3x3"))
    for kind in ("path", "adjacency"):
        ea, eb, ec = encode(nb201, [a, b, c], kind)
        assert np.array_equal(ea, eb) and not np.array_equal(ea, ec)
    assert not np.array_equal(*encode(nb201, [a, b], "onehot"))


def test_encodings_are_generic_and_fixed_length():
    space = registry.make_space("mbconv", "small")
    rng = random.Random(1)
    archs = [space.sample(rng) for _ in range(6)]
    for kind in ENCODINGS:
        x = encode(space, archs, kind)
        assert x.shape[0] == 6 and x.shape[1] > 0 and np.all(np.isfinite(x))
        assert len({row.tobytes() for row in x}) > 1
    with pytest.raises(NASError, match="unknown encoding"):
        encode(space, archs, "bogus")


def test_gnn_on_mbconv_synthetic_target():
    """The GNN reads any space's graph: it learns a cost-like target of the MBConv space."""
    space = registry.make_space("mbconv", "small")
    rng = random.Random(0)
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(70)))
    y = np.array([np.log(space.graph(a).macs()) for a in archs])
    model = GNNPredictor(steps=120, ensemble=2).fit(space, archs[:45], y[:45])
    members = model.predict_members(space, archs[45:])
    assert members.shape == (2, len(archs) - 45)
    assert kendall_tau(model.predict(space, archs[45:]), y[45:]) > 0.5


def test_ensemble_members_and_registry(nb201, table_slice):
    train_a, train_y, test_a, _ = table_slice
    ens = Ensemble(lambda s: MLPPredictor("onehot", seed=s, max_iter=50), size=3).fit(nb201, train_a, train_y)
    members = ens.predict_members(nb201, test_a[:20])
    assert members.shape == (3, 20) and members.std(axis=0).mean() > 0
    assert np.allclose(ens.predict(nb201, test_a[:20]), members.mean(axis=0))
    assert {"gnn", "rf", "gbm", "mlp", "zero_cost"} <= set(registry.names("predictors"))
    with pytest.raises(RuntimeError, match="fit"):
        RandomForestPredictor().predict(nb201, test_a[:2])
    big = Ensemble(lambda s: RandomForestPredictor(seed=s, n_estimators=5), size=2, seed=43 * 100003)
    assert big.fit(nb201, train_a, train_y).predict_members(nb201, test_a[:3]).shape == (2, 3)  # seeds past 2**32



def test_rank_correlations_by_row_equal_scipy_row_by_row():
    from predictors.base import bootstrap_interval, rank_correlations_by_row

    rng = np.random.default_rng(3)
    x = rng.integers(0, 6, size=(7, 30)).astype(float)  # many ties, as in bootstrap resamples
    y = x + rng.integers(-3, 4, size=x.shape)
    x[2] = 1.0  # a constant row: both metrics 0, as kendall_tau / spearman_rho say
    tau, rho = rank_correlations_by_row(x, y)
    assert np.allclose(tau, [kendall_tau(a, b) for a, b in zip(x, y)])
    assert np.allclose(rho, [spearman_rho(a, b) for a, b in zip(x, y)])
    assert tau[2] == rho[2] == 0.0 and np.delete(tau, 2).min() > 0.2
    long_x = rng.normal(size=(50, 300))  # 50 rows of 300: two chunks of pair matrices
    long_y = long_x + rng.normal(size=long_x.shape)
    assert np.allclose(rank_correlations_by_row(long_x, long_y)[0], [kendall_tau(a, b) for a, b in zip(long_x, long_y)])
    with pytest.raises(ValueError, match="2-D"):
        rank_correlations_by_row(x[0], y[0])
    for metric in (kendall_tau, spearman_rho):  # the vectorised bootstrap gives the one-by-one loop's interval
        one_by_one = partial(lambda f, p, a: f(p, a), metric)
        assert np.allclose(bootstrap_interval(metric, x[0], y[0]), bootstrap_interval(one_by_one, x[0], y[0]))


def test_bootstrap_interval_of_rank_correlations():
    from predictors.base import bootstrap_interval, kendall_tau

    x = np.arange(40.0)
    assert np.allclose(bootstrap_interval(kendall_tau, x, 2 * x + 1), 1.0)  # every resample is perfectly ordered
    rng = np.random.default_rng(0)
    noise = rng.normal(size=40)
    lo, hi = bootstrap_interval(kendall_tau, x, noise)
    assert lo < kendall_tau(x, noise) < hi and lo < 0 < hi  # unrelated: the interval holds zero
    lo_big, hi_big = bootstrap_interval(kendall_tau, np.arange(400.0), rng.normal(size=400))
    assert hi_big - lo_big < (hi - lo) / 2  # ten times the pairs, about a third of the width
    with pytest.raises(ValueError, match="at least 3"):
        bootstrap_interval(kendall_tau, [1.0, 2.0], [1.0, 2.0])
