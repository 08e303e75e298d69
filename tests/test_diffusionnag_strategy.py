"""DiffusionNAG part 2: the noise-aware predictor, guidance by it, and the `diffusionnag` BO strategy."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_diffusionnag import nb201_exact_score

from nas import registry
from nas.diffusion.encoding import NB201Matrix, centre, quantize, uncentre
from nas.diffusion.score_net import ScoreTransformer, positional_table
from nas.diffusion.sde import VESDE, Guidance, pc_sample
from nas.objectives import Objective
from nas.space import NASError
from nas.strategy import StrategyContext
from nas.testing import ToyBlockSpace, ToyScore
from predictors.base import spearman_rho
from predictors.noise_aware import NoiseAwarePredictor
from search_spaces.mbconv import MBConvSpace
from search_spaces.nb201 import NB201Space
from strategies.diffusionnag import DiffusionNAG, nb201_cells

pytestmark = pytest.mark.usefixtures("one_thread")

TABLE = (Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "nasbench201"
         / "nats_tss_test_accuracy_200ep.csv")
SDE = VESDE(0.1, 5.0, n_steps=50)


@pytest.fixture(scope="module")
def evaluator():
    if not TABLE.is_file():
        pytest.skip(f"shared NAS-Bench-201 table not found at {TABLE}")
    from nas.tabular import TabularEvaluator

    return TabularEvaluator(registry.make_space("nb201"), TABLE, "cifar10")


@pytest.fixture(scope="module")
def trained(evaluator) -> tuple[NoiseAwarePredictor, list, np.ndarray]:
    """A noise-aware predictor fitted on 200 random cells; the shuffled cells and their accuracies."""
    torch.set_num_threads(1)
    cells = nb201_cells()
    random.Random(0).shuffle(cells)
    cells = cells[:700]
    acc = np.array([evaluator.evaluate(a).metrics["accuracy"] for a in cells])
    m = NB201Matrix()
    predictor = NoiseAwarePredictor(m.n_types, m.adjacency, SDE, steps=150).fit(m.encode_many(cells[:200]), acc[:200])
    return predictor, cells, acc


def test_noise_aware_predictor_ranks_held_out_cells(trained) -> None:
    predictor, cells, acc = trained
    x = NB201Matrix().encode_many(cells[200:])
    assert spearman_rho(predictor.predict_clean(x), acc[200:]) > 0.5
    x0 = torch.as_tensor(centre(x))
    noisy = x0 + SDE.sigma_min * torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        at_small_sigma = predictor(noisy, torch.full((len(x0),), SDE.sigma_min)).numpy()
    assert spearman_rho(at_small_sigma, acc[200:]) > 0.5
    x0.requires_grad_(True)
    predictor(x0, torch.full((len(x0),), 1.0)).sum().backward()  # differentiable in x_t: usable as a guide
    assert x0.grad is not None and float(x0.grad.abs().sum()) > 0


def test_guidance_by_the_trained_predictor_raises_accuracy(trained, evaluator) -> None:
    """Samples of the exact uniform NB201 prior, unguided and guided by the trained predictor (scale 1000)."""
    predictor, _, _ = trained
    m = NB201Matrix()

    def sample(guidance: Guidance | None) -> tuple[float, float]:
        x = pc_sample(nb201_exact_score(), SDE, (64, 8, 7), guidance=guidance,
                      generator=torch.Generator().manual_seed(0))
        b = quantize(uncentre(x))
        archs = [a for a in m.decode_many(b) if a is not None]
        assert len(archs) > 0.9 * len(b)
        true = np.mean([evaluator.evaluate(a).metrics["accuracy"] for a in archs])
        return float(predictor.predict_clean(m.encode_many(archs)).mean()), float(true)

    plain, guided = sample(None), sample(Guidance(predictor, scale=1000.0))
    assert guided[0] > plain[0] + 1.0 and guided[1] > plain[1]


def test_strategy_searches_nb201_and_resumes_from_its_state(evaluator, tmp_path) -> None:
    """With the tiny preset's prior swapped for the exact NB201 score (a perfect prior, so that rounds propose guided
    candidates rather than fall back to random ones)."""
    space, objectives = evaluator.space, [Objective("accuracy")]
    options: dict[str, Any] = {"num_init": 6, "batch_size": 3, "preset": "tiny", "num_samples": 32}
    context = StrategyContext(space, objectives, 0, 12, space.default_input, 10, run_dir=tmp_path / "run",
                              progress=False)

    def started() -> DiffusionNAG:
        strategy = DiffusionNAG(space, objectives, seed=0, **options)
        strategy.setup(context)
        strategy.fit_prior().score_fn = lambda kind="sample": nb201_exact_score()  # type: ignore[method-assign]
        return strategy

    strategy = started()
    asked = []
    for _ in range(12):
        arch = strategy.ask()
        asked.append(arch)
        strategy.tell(arch, evaluator.evaluate(arch).metrics)
    acc = [evaluator.evaluate(a).metrics["accuracy"] for a in asked]
    assert len(set(asked)) == 12 and strategy.rounds == 2 and strategy.fallbacks == 0
    assert all(r["new"] > 0 for r in strategy.rounds_log)
    assert np.median(acc[6:]) > np.median(acc[:6])  # guided proposals beat the random initial ones
    assert list((tmp_path / ".diffusionnag-cache").glob("diffusionnag-nb201-*.pt"))
    resumed = started()  # loads the cached prior
    resumed.load_state(strategy.state())
    assert [resumed.ask() for _ in range(3)] == [strategy.ask() for _ in range(3)]


def test_spaces_without_a_published_layout() -> None:
    space, objectives = ToyBlockSpace(), [Objective("accuracy")]
    with pytest.raises(NASError, match="no node-operation matrix for space 'toy_blocks'.*encoding=choices"):
        DiffusionNAG(space, objectives, encoding="native")
    matrix = DiffusionNAG(space, objectives).matrix  # auto: the generic choice matrix
    archs = [space.sample(random.Random(i)) for i in range(20)]
    assert matrix.decode_many(matrix.encode_many(archs)) == archs
    bad = matrix.encode(archs[0])
    bad[:, :] = 0
    assert matrix.decode(bad) is None
    assert ToyScore(space).evaluate(archs[0]).metrics is not None


def test_mbconv_prior_presets() -> None:
    """The published MobileNetV3 sigma range on MBConv spaces; per-layer, embedding-scale positions only where the
    stages differ (the `small` preset), the official unscaled stage positions on OFA."""
    objectives = [Objective("accuracy")]
    small = DiffusionNAG(MBConvSpace("small"), objectives, preset="quick")
    ofa = DiffusionNAG(MBConvSpace("ofa_mbv3"), objectives, preset="quick")
    nb201 = DiffusionNAG(NB201Space(), objectives, preset="quick")
    assert small.prior_preset().sigma_max == ofa.prior_preset().sigma_max == 1.0 == nb201.prior_preset().sigma_max / 5
    assert small.prior_preset().net.position_scale == 8.0  # sqrt(d_model 64)
    assert ofa.prior_preset().net.position_scale == nb201.prior_preset().net.position_scale == 1.0
    net = ScoreTransformer(small.matrix.n_types, torch.as_tensor(small.matrix.positions), small.prior_preset().net)
    plain = positional_table(torch.as_tensor(small.matrix.positions), 64)
    assert torch.allclose(net.pos, 8 * plain)
