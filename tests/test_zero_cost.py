"""Zero-cost proxies: finite on built networks, cost proxies equal the graph's counts, models untouched."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from nas import registry
from nas.space import NASError
from predictors.zero_cost import PROXIES, ZeroCostPredictor, proxy_batch, score
from search_spaces.nb201 import parse_arch_string

CELLS = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
         "|avg_pool_3x3~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|none~1|skip_connect~2|")


@pytest.fixture(scope="module")
def nb201():
    """One cell per stage keeps the proxies fast; the cell semantics are those of the full network."""
    return registry.get("spaces", "nb201")(cells=1)


@pytest.mark.parametrize("cell", CELLS)
def test_proxies_finite_and_costs_match_graph(nb201, cell):
    arch = parse_arch_string(cell)
    torch.manual_seed(0)
    model = nb201.build(arch, (3, 32, 32), 10)
    x, y = proxy_batch((3, 32, 32), 10, batch_size=16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    values = {name: score(name, model, x, y) for name in PROXIES}
    assert all(np.isfinite(v) for v in values.values()), values
    graph = nb201.graph(arch, (3, 32, 32), 10)
    assert values["params"] == graph.params()
    assert values["flops"] == graph.macs()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # proxies work on copies
    assert values["synflow"] > 0 and values["snip"] > 0 and values["grad_norm"] > 0 and values["fisher"] > 0


def test_naswot_counts_agreeing_codes(nb201):
    """A batch of identical samples has a rank-one code kernel: log|det| is -inf, reported as NaN;
    distinct samples give a finite log-determinant, equal on a rerun."""
    model = nb201.build(parse_arch_string(CELLS[0]), (3, 32, 32), 10)
    x, y = proxy_batch((3, 32, 32), 10, batch_size=8)
    assert np.isnan(score("naswot", model, x[:1].repeat(8, 1, 1, 1), y))
    assert score("naswot", model, x, y) == score("naswot", model, x, y)


def test_synflow_grows_with_parameters(nb201):
    """Synflow on a linearised network sums |w * dR/dw|: more convolutions on the path, larger score."""
    x, y = proxy_batch((3, 32, 32), 10, batch_size=4, source="synthetic")
    small = nb201.build(parse_arch_string("|skip_connect~0|+|none~0|none~1|+|none~0|none~1|nor_conv_1x1~2|"))
    big = nb201.build(parse_arch_string(CELLS[0]))
    assert score("synflow", big, x, y) > score("synflow", small, x, y)


def test_predictor_on_other_space_and_errors():
    space = registry.make_space("mbconv", "small")
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(2)]
    pred = ZeroCostPredictor("params", batch_size=4).fit(space, archs, [0.0, 0.0]).predict(space, archs)
    assert list(pred) == [space.graph(a, space.input_shape_for(a, (3, 32, 32)), 10).params() for a in archs]
    with pytest.raises(NASError, match="unknown zero-cost proxy"):
        ZeroCostPredictor("bogus")
    with pytest.raises(NASError, match="source"):
        proxy_batch((3, 8, 8), 10, source="imagenet")
