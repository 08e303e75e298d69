"""DiffusionNAG part 1: node-operation matrices, the VE SDE, score matching, the PC sampler, guidance, the prior."""
from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch

from nas.diffusion.encoding import (
    MBConvMatrix,
    NB201Matrix,
    centre,
    operation_matrix,
    quantize,
    transitive_closure,
    uncentre,
)
from nas.diffusion.prior import DiffusionPrior, with_overrides
from nas.diffusion.score_net import EMA, ScoreNetConfig, ScoreTransformer
from nas.diffusion.sde import VESDE, Guidance, dsm_loss, pc_sample
from nas.space import Architecture, NASError
from search_spaces.mbconv import MBConvSpace
from search_spaces.nb201 import EDGES, OPS, NB201Space, edge_name

pytestmark = pytest.mark.usefixtures("one_thread")

ALL_CELLS = [Architecture({edge_name(j, i): op for (j, i), op in zip(EDGES, ops)})
             for ops in itertools.product(OPS, repeat=len(EDGES))]


# -- encoding ---------------------------------------------------------------------------------------------------
def test_nb201_round_trip_every_cell() -> None:
    m = NB201Matrix()
    x = m.encode_many(ALL_CELLS)
    assert x.shape == (15625, 8, 7) and m.valid(x).all()
    assert m.decode_many(x) == ALL_CELLS
    assert len({a.tobytes() for a in x}) == 15625
    best = NB201Space().reference_archs()["nb201_best_cifar10"]
    assert m.decode(m.encode(best)) == best


def test_nb201_official_adjacency_quirk() -> None:
    official, consistent = NB201Matrix().adjacency, NB201Matrix(official_adjacency=False).adjacency
    swap = [0, 1, 2, 4, 3, 5, 6, 7]  # rows 3 (edge 3<-0) and 4 (edge 2<-1) exchanged
    assert not np.array_equal(official, consistent)
    assert np.array_equal(official[np.ix_(swap, swap)], consistent)
    assert consistent[1, 3] == 1 and consistent[3, 6] == 1  # node 1 -> edge (2<-1) -> edge (3<-2)
    assert transitive_closure(official)[0].sum() == 7 and transitive_closure(official)[7].sum() == 0


@pytest.mark.parametrize("preset", ["ofa_mbv3", "small"])
def test_mbconv_round_trip_sample(preset: str) -> None:
    space = MBConvSpace(preset)
    m = operation_matrix(space)
    assert isinstance(m, MBConvMatrix)
    if preset == "ofa_mbv3":
        assert (m.n_nodes, m.n_types) == (20, 9) and m.types[0] == (3, 3) and m.types[8] == (7, 6)
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(300)]
    x = m.encode_many(archs)
    assert m.valid(x).all()
    for arch, back in zip(archs, m.decode_many(x)):
        assert back == arch.replace(resolution=m.resolution, width_mult=m.width_mult)
        space.validate(back)
    skipped = x.sum(-1) == 0
    assert skipped.any() and not skipped.reshape(len(x), -1, m.max_depth)[..., 0].any()


def test_mbconv_positions_tell_stages_apart_where_stages_differ() -> None:
    ofa, small = MBConvMatrix(MBConvSpace("ofa_mbv3")), MBConvMatrix(MBConvSpace("small"))
    assert ofa.position_kind == "stage" and ofa.positions.tolist() == [0, 1, 2, 3] * 5
    assert small.position_kind == "layer" and small.positions.tolist() == list(range(12))  # stage 3 alone has 3
    tiled = MBConvMatrix(MBConvSpace("small"), positions="stage")
    assert tiled.positions.tolist() == [0, 1, 2] * 4 and tiled.describe() != small.describe()
    with pytest.raises(NASError, match="'rows'.*'auto', 'stage', 'layer'"):
        MBConvMatrix(MBConvSpace("small"), positions="rows")


def test_nb201_validity_rules() -> None:
    m = NB201Matrix()
    good = m.encode(ALL_CELLS[123])
    assert m.is_valid(good)
    two = good.copy()
    two[3, 2] = two[3, 3] = 1
    empty = good.copy()
    empty[5] = 0
    inner_input = good.copy()
    inner_input[2] = 0
    inner_input[2, 0] = 1
    no_output = good.copy()
    no_output[7] = 0
    no_output[7, 4] = 1
    for bad in (two, empty, inner_input, no_output):
        assert not m.is_valid(bad) and m.decode(bad) is None
    assert m.valid(np.stack([good, two, empty, inner_input, no_output])).tolist() == [True] + [False] * 4
    assert not m.is_valid(good[:7])


def test_mbconv_validity_rules() -> None:
    m = MBConvMatrix(MBConvSpace("ofa_mbv3"))
    good = m.encode(MBConvSpace("ofa_mbv3").reference_archs()["ofa_mbv3_min"])  # depth 2 everywhere
    assert m.is_valid(good) and good[2:4].sum() == 0
    two_ops = good.copy()
    two_ops[0, 1] = 1
    too_shallow = good.copy()
    too_shallow[1] = 0  # layer 2 of stage 1 empty
    gap = good.copy()
    gap[3, 0] = 1  # layer 4 present, layer 3 empty
    for bad in (two_ops, too_shallow, gap):
        assert m.decode(bad) is None
    deeper = good.copy()
    deeper[2, 4] = 1  # stage 1 depth 3 with kernel 5, expand 4
    arch = m.decode(deeper)
    assert arch is not None and arch["s1_depth"] == 3 and (arch["s1_l2_k"], arch["s1_l2_e"]) == (5, 4)


def test_scaling_and_quantize() -> None:
    x = NB201Matrix().encode(ALL_CELLS[7])
    c = centre(x)
    assert set(np.unique(c)) == {-1.0, 1.0}
    assert np.array_equal(quantize(uncentre(c)), x)
    assert np.array_equal(quantize(torch.tensor([[0.49, 0.5, 0.9]])), [[0.0, 1.0, 1.0]])


# -- SDE and loss -----------------------------------------------------------------------------------------------
def test_ve_sde_marginal_statistics() -> None:
    sde = VESDE(0.1, 5.0)
    assert float(sde.sigma(torch.tensor(0.0))) == pytest.approx(0.1)
    assert float(sde.sigma(torch.tensor(1.0))) == pytest.approx(5.0)
    torch.manual_seed(0)
    x0 = torch.tensor([[-1.0, 1.0, 0.5]]).expand(20000, 3)
    for t in (0.0, 0.3, 1.0):
        xt = sde.perturb(x0, torch.full((20000,), t))
        sigma = 0.1 * 50 ** t
        assert torch.allclose(xt.mean(0), x0[0], atol=4 * sigma / 20000 ** 0.5)
        assert torch.allclose(xt.std(0), torch.full((3,), sigma), rtol=0.03)
    assert float(sde.prior_sample((20000,)).std()) == pytest.approx(5.0, rel=0.03)


def test_dsm_loss_known_cases() -> None:
    sde = VESDE(0.1, 5.0)
    x0, z = torch.randn(64, 8, 7), torch.randn(64, 8, 7)
    t = torch.rand(64)
    # a zero score leaves the loss at mean(z^2)
    assert float(dsm_loss(lambda x, s: torch.zeros_like(x), x0, sde, t, z)) == pytest.approx(float((z ** 2).mean()))
    # data N(0, s0^2): the exact score -x / (s0^2 + sigma^2) gives loss s0^2 / (s0^2 + sigma^2) at every t
    s0 = 0.7
    torch.manual_seed(1)
    for t_value in (0.1, 0.5, 0.9):
        sigma = float(sde.sigma(torch.tensor(t_value)))
        x0 = s0 * torch.randn(4000, 8, 7)
        loss = dsm_loss(lambda x, s: -x / (s0 ** 2 + s[:, None, None] ** 2), x0, sde, torch.full((4000,), t_value))
        assert float(loss) == pytest.approx(s0 ** 2 / (s0 ** 2 + sigma ** 2), rel=0.02)


# -- sampler and guidance with an exact score ---------------------------------------------------------------------
def nb201_exact_score():
    """The exact score of all NB201 matrices (uniform, independent rows) under the VE SDE, centred."""
    eye = torch.eye(7)
    rows = [[0]] + [[2, 3, 4, 5, 6]] * 6 + [[1]]
    means = torch.stack([centre(eye[[r[k % len(r)] for k in range(5)]]) for r in rows])  # (8, 5, 7)

    def score(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        var = sigma[:, None, None] ** 2
        weights = torch.softmax(-((x[:, :, None] - means) ** 2).sum(-1) / (2 * var), -1)
        return ((weights[..., None] * means).sum(2) - x) / var
    return score


@pytest.mark.parametrize("predictor", ["euler_maruyama", "reverse_diffusion"])
def test_sampler_turns_noise_into_valid_matrices(predictor: str) -> None:
    sde = VESDE(0.1, 5.0, n_steps=100)
    x = pc_sample(nb201_exact_score(), sde, (256, 8, 7), predictor=predictor,
                  generator=torch.Generator().manual_seed(0))
    archs = NB201Matrix().decode_many(quantize(uncentre(x)))
    valid = [a for a in archs if a is not None]
    assert len(valid) >= 250 and len(set(valid)) >= 240
    counts = np.bincount([OPS.index(a["edge_1_0"]) for a in valid], minlength=5)
    assert counts.min() > 25  # every op of an edge appears: samples follow the uniform data


def conv3x3_share(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A differentiable toy predictor: the mean nor_conv_3x3 entry of the six edge rows."""
    return uncentre(x[:, 1:7, 5]).mean(-1)


def test_guidance_raises_predicted_value() -> None:
    sde = VESDE(0.1, 5.0, n_steps=100)
    m = NB201Matrix()

    def predicted(guidance: Guidance | None) -> float:
        x = pc_sample(nb201_exact_score(), sde, (128, 8, 7), guidance=guidance,
                      generator=torch.Generator().manual_seed(0))
        b = quantize(uncentre(x))
        assert m.valid(b).mean() > 0.9
        return float(conv3x3_share(torch.as_tensor(centre(b)), torch.zeros(len(b))).mean())

    plain = predicted(None)
    guided = predicted(Guidance(conv3x3_share, scale=5.0))
    assert plain == pytest.approx(0.2, abs=0.06) and guided > plain + 0.3
    g = Guidance(conv3x3_share, scale=10000.0)
    assert g.next_round().scale == 9700.0
    assert float(Guidance(conv3x3_share, scale=10.0, schedule="exp").weight(torch.tensor([1.0]))) == pytest.approx(1.0)
    assert float(Guidance(conv3x3_share, t_spot=0.5).weight(torch.tensor([0.7]))) == 0.0


# -- score network and trained toy prior -------------------------------------------------------------------------
def test_score_network_mask_and_ema() -> None:
    torch.manual_seed(0)
    m = NB201Matrix()
    net = ScoreTransformer(7, torch.as_tensor(m.positions), ScoreNetConfig(d_model=16, n_layers=2, n_heads=2,
                                                                            d_ff=32, dropout=0.0)).eval()
    x, sigma = torch.randn(4, 8, 7), torch.rand(4) + 0.1
    raw, closure = (torch.as_tensor(m.mask(k)) for k in ("raw", "closure"))
    out = net(x, sigma, raw)
    assert out.shape == (4, 8, 7)
    assert not torch.allclose(out, net(x, sigma, closure))
    # information flows only along the mask: no node attends to the input node 0 but the output node 7 (no
    # successors: it attends uniformly), so after 2 layers nodes 1, 2 and 4 (not reaching 7 within one hop of a
    # node that attends to 7) do not see a change of node 0
    x2 = x.clone()
    x2[:, 0] += 1.0
    out2 = net(x2, sigma, raw)
    assert torch.allclose(out2[:, [1, 2, 4]], out[:, [1, 2, 4]], atol=1e-6)
    assert not torch.allclose(out2[:, 7], out[:, 7])
    assert torch.allclose(net(x, sigma, raw.expand(4, 8, 8)), out, atol=1e-6)
    ema = EMA(net, decay=0.9999)
    before = [p.clone() for p in net.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    ema.update(net)  # warm-up decay min(0.9999, 2 / 11)
    assert torch.allclose(ema.shadow[0], before[0] + 1 - 2 / 11)


TOY = with_overrides("quick", iterations=120, batch_size=128, lr=1e-2, warmup=10, ema=0.98, sample_steps=50,
                     net=ScoreNetConfig(d_model=32, n_layers=2, n_heads=4, d_ff=64, dropout=0.0, scale_by_sigma=True))


def test_trained_toy_prior_generates_valid_cells(tmp_path) -> None:
    m = NB201Matrix()
    untrained = DiffusionPrior(m, with_overrides(TOY, iterations=0), device="cpu").fit([])
    assert untrained.generate(64).validity < 0.05
    prior = DiffusionPrior(m, TOY, device="cpu").fit(ALL_CELLS[::2], cache_dir=tmp_path)
    assert np.mean(prior.losses[-20:]) < 0.5 * np.mean(prior.losses[:5])
    result = prior.generate(96)
    assert result.validity > 0.15 and result.uniqueness > 0.9 and 0.1 < result.novelty < 0.9
    space = NB201Space()
    for arch in result.archs:
        space.validate(arch)
    cached = DiffusionPrior(m, TOY, device="cpu").fit(ALL_CELLS[::2], cache_dir=tmp_path)  # loaded, not trained
    assert cached.losses == prior.losses and len(list(tmp_path.iterdir())) == 1
    assert all(torch.equal(a, b) for a, b in zip(cached.model.parameters(), prior.model.parameters()))
