"""BossNAS mechanics: ensemble target, momentum schedule, block sequencing, BN recalibration, LARS,
checkpoint/resume, block snapshots, and a smoke run on a tiny MBConv supernet."""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import random
from collections.abc import Hashable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import strategies.bossnas as bossnas_module
from nas.data import TensorData
from nas.optim import LARS, parameter_groups
from nas.runs import RunDir
from nas.search import run_search
from nas.space import SearchSpace
from nas.strategy import Record, StrategyContext, SupernetContext, rating_objectives
from nas.supernet import BlockSupernet
from nas.testing import ToyBlockSpace
from search_spaces.hytra import HyTraSpace
from search_spaces.mbconv import FAMILIES, MBConvSpace, Stage
from strategies.bossnas import BossNAS, make_config
from strategies.bossnas_parts import ensemble_target, momentum_at
from strategies.bossnas_rating import BlockRater, Nets, from_json, rate_jointly


@pytest.fixture(autouse=True)
def one_thread():  # noqa: ANN201 - tiny tensors: one thread avoids OpenMP overhead on a busy machine
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = dict(train_images=32, batch_size=16, proj_hidden=16, proj_dim=8, rating_images=8, bn_images=8,
            max_rated=0, warmup_epochs=0.0, population=4, sample_size=2, cycles=6, crop_min=0.5,
            momentum_reference_steps=0)


def ToySpace() -> ToyBlockSpace:  # noqa: N802 - the name the tests read
    return ToyBlockSpace()


def toy_net() -> BlockSupernet:
    return BlockSupernet(ToyBlockSpace(), (1, 8, 8), 3)


def layer(net: BlockSupernet, block: int, op: str) -> list[nn.Module]:
    """The conv and BN of the first layer of `block` taking op `op` in the toy supernet."""
    graph = net.graph(net.arch_of(net.paths.completion(block, 8, (op,))))
    return [net.weights[net.store_key(graph.node(f"b{block}_l0_{part}"))] for part in ("conv", "bn")]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[int, list[tuple[int, tuple]]]:
    """Every forward_block call, per supernet (by id)."""
    seen: dict[int, list[tuple[int, tuple]]] = {}
    real = BlockSupernet.forward_block

    def record(self: BlockSupernet, block: int, path: tuple, x: torch.Tensor, entry: Hashable) -> torch.Tensor:
        seen.setdefault(id(self), []).append((block, tuple(path)))
        return real(self, block, path, x, entry)

    monkeypatch.setattr(BlockSupernet, "forward_block", record)
    return seen


def synthetic(n: int = 48, size: int = 8) -> TensorData:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, size, size, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return TensorData("synthetic", x[: n - 16], y[: n - 16], x[n - 16:], y[n - 16:], 3)


def context(space: SearchSpace, tmp: Path, **options: object) -> SupernetContext:
    return SupernetContext(space=space, data=synthetic(), objectives=[], seed=0, budget="quick", checkpoint_dir=tmp,
                           progress=False, options={**TINY, **options})


def search(strategy: BossNAS, ctx: SupernetContext) -> tuple[Record, list[Record]]:
    """Train (`prepare`), then the search over ratings through the ordinary loop: the best record and all."""
    plan = strategy.prepare(ctx)
    folder = Path(ctx.checkpoint_dir) / "run"
    meta = {"space": "toy", "strategy": "bossnas", "settings": {}}
    run = RunDir.open(folder) if folder.exists() else RunDir.create(folder, meta)
    objectives = rating_objectives(ctx.objectives)
    result = run_search(run, plan.search, plan.evaluator, StrategyContext(
        ctx.space, objectives, 0, plan.budget, ctx.data.sample_shape, ctx.data.num_classes, progress=False))
    assert all(Path(p).exists() for p in plan.plots)
    return result.best, result.records


# -- pure mechanics ----------------------------------------------------------------------------------------
def test_ensemble_target_is_mean_of_normalised_projections() -> None:
    a, b = torch.randn(5, 7), torch.randn(5, 7)
    expected = (a / a.norm(dim=1, keepdim=True) + b / b.norm(dim=1, keepdim=True)) / 2
    assert torch.allclose(ensemble_target([a, b]), expected, atol=1e-6)
    # a path's projection scale does not weigh it more: normalised before the mean
    assert torch.allclose(ensemble_target([100 * a, b]), expected, atol=1e-6)


def test_momentum_schedule_is_cosine_from_base_to_one() -> None:
    assert momentum_at(0, 100, 0.99) == pytest.approx(0.99)
    assert momentum_at(100, 100, 0.99) == pytest.approx(1.0)
    assert momentum_at(50, 100, 0.99) == pytest.approx(0.995)
    assert momentum_at(25, 100, 0.99) == pytest.approx(1 - 0.01 * (math.cos(math.pi / 4) + 1) / 2)
    values = [momentum_at(s, 100, 0.99) for s in range(101)]
    assert all(x <= y for x, y in zip(values, values[1:]))


def test_target_momentum_scaled_to_the_steps_of_a_block() -> None:
    from strategies.bossnas import OFFICIAL_STEPS, scaled_momentum

    assert OFFICIAL_STEPS == 1876 and make_config("paper").momentum_reference_steps == 0
    assert make_config("quick").momentum_reference_steps == OFFICIAL_STEPS
    assert scaled_momentum(0.99, 47, 0) == 0.99 and scaled_momentum(0.99, 5000, OFFICIAL_STEPS) == 0.99
    assert scaled_momentum(0.99, 188, OFFICIAL_STEPS) == pytest.approx(1 - 0.01 * 1876 / 188)
    assert scaled_momentum(0.99, 10, OFFICIAL_STEPS) == 0.0  # never below zero

    def kept(base: float, steps: int) -> float:  # the share of its initial weights the target keeps
        return math.prod(momentum_at(s, steps, base) for s in range(steps))

    official = kept(0.99, OFFICIAL_STEPS)
    assert official < 1e-3 and kept(0.99, 188) > 0.3  # unscaled, a short block barely trains the target
    assert kept(scaled_momentum(0.99, 188, OFFICIAL_STEPS), 188) < 10 * official


def test_lars_trust_ratio_and_exclusion() -> None:
    w = nn.Parameter(torch.full((4, 4), 2.0))
    bias = nn.Parameter(torch.ones(4))
    opt = LARS([{"params": [w], "weight_decay": 0.0}, {"params": [bias], "weight_decay": 0.0, "lars_exclude": True}],
               lr=0.5, momentum=0.9, eta=0.01)
    grad = torch.randn(4, 4)
    w.grad, bias.grad = grad.clone(), torch.full((4,), 3.0)
    opt.step()
    trust = 0.01 * 8.0 / grad.norm()  # ||w|| = 2 * 4
    assert torch.allclose(w.detach(), torch.full((4, 4), 2.0) - 0.5 * trust * grad, atol=1e-6)
    assert torch.allclose(bias.detach(), torch.ones(4) - 0.5 * 3.0)  # excluded: plain lr
    # scale invariance: a 1000x larger gradient gives the same step
    w2 = nn.Parameter(torch.full((4, 4), 2.0))
    opt2 = LARS([{"params": [w2], "weight_decay": 0.0}], lr=0.5, eta=0.01)
    w2.grad = 1000 * grad
    opt2.step()
    assert torch.allclose(w2.detach(), w.detach(), atol=1e-5)
    # momentum: the second step adds 0.9 x the first
    w.grad, bias.grad = grad.clone(), torch.zeros(4)
    before = bias.detach().clone()
    opt.step()
    assert torch.allclose(bias.detach(), before - 0.9 * 0.5 * 3.0)


def test_lars_groups_exclude_bn_and_bias() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Linear(2, 2))
    scaled, excluded = parameter_groups([model], 1e-6, lars=True)
    assert {p.dim() for p in scaled["params"]} == {2, 4} and not scaled.get("lars_exclude")
    assert {p.dim() for p in excluded["params"]} == {1} and excluded["lars_exclude"] and excluded["weight_decay"] == 0


def test_presets_scale_the_paper_schedule() -> None:
    paper = make_config("paper")
    assert (paper.epochs_per_block, paper.lr, paper.weight_decay, paper.base_momentum, paper.num_paths) == \
        (6.0, 4.8, 1e-6, 0.99, 4)
    assert paper.batch_size * paper.accumulate == 64 * 8 * 8
    assert make_config("quick", num_paths=2).num_paths == 2
    with pytest.raises(ValueError, match="unknown BossNAS option"):
        make_config("quick", nope=1)
    assert paper.entry_states == "best" and make_config("quick").entry_states == "all"
    with pytest.raises(ValueError, match="entry_states 'some' is not one of"):
        make_config("quick", entry_states="some")
    with pytest.raises(ValueError, match="path_sampling 'fair' is not one of 'space', 'uniform'"):
        make_config("quick", path_sampling="fair")


def test_search_over_complete_architectures_needs_every_entry_state(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="set entry_states='all'"):
        BossNAS([], seed=0).prepare(context(ToySpace(), tmp_path, entry_states="best", search="evolution"))


def test_capped_rating_sample_reaches_every_exit_state(tmp_path: Path) -> None:
    strategy = BossNAS([], seed=0)
    strategy._setup(context(ToySpace(), tmp_path, max_rated=1))
    net = strategy.online
    for seed in range(6):  # whichever single candidate the cap draws, both exit states are rated
        strategy.seed = seed
        sample = strategy._rated_paths(0, 8)
        assert {net.exit_state(0, p, 8) for p in sample} == {8, 4} and len(sample) == 2
    strategy.config = dataclasses.replace(strategy.config, entry_states="best")
    assert len(strategy._rated_paths(0, 8)) == 1


# -- rating ------------------------------------------------------------------------------------------------
def _toy_nets() -> Nets:
    from strategies.bossnas_parts import BlockNeck, predictor

    torch.manual_seed(0)
    online, target = toy_net(), toy_net()
    neck = BlockNeck([(4, 8, 8), (4, 4, 4)], 16, 8)
    target_neck = BlockNeck([(4, 8, 8), (4, 4, 4)], 16, 8)
    return Nets(online, target, neck, target_neck, predictor(8, 16))


def test_bn_recalibrated_before_rating() -> None:
    nets = _toy_nets()
    views = (torch.randn(6, 1, 8, 8), torch.randn(6, 1, 8, 8))
    bn_batch = torch.randn(10, 1, 8, 8)
    rater = BlockRater(nets, 1, 8, [("a",)], views, bn_batch)
    conv, bn = layer(nets.target, 1, "b")
    bn.running_mean.fill_(5.0)
    bn.running_var.fill_(9.0)
    rater.project(("b",))
    features = rater.features()[2]
    with torch.no_grad():
        pre = conv(features)
    assert torch.allclose(bn.running_mean, pre.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var, pre.var((0, 2, 3), unbiased=True), atol=1e-4)
    assert bn.momentum == 0.1 and not bn.training
    # the prefix features came from the target network along the prefix, its BN recalibrated too
    with torch.no_grad():
        stem = nets.target.stem(bn_batch)
        prefix_conv, prefix_bn = layer(nets.target, 0, "a")
        prefix_pre = prefix_conv(stem)
    assert torch.allclose(rater._features[2], F.relu(F.batch_norm(prefix_pre, prefix_pre.mean((0, 2, 3)),
                                                                  prefix_pre.var((0, 2, 3)), prefix_bn.weight,
                                                                  prefix_bn.bias, eps=prefix_bn.eps)), atol=1e-4)


def test_rating_uses_population_centre_and_same_inputs() -> None:
    nets = _toy_nets()
    views = (torch.randn(6, 1, 8, 8), torch.randn(6, 1, 8, 8))
    rater = BlockRater(nets, 0, 8, [], views, torch.randn(10, 1, 8, 8))
    paths = [("a",), ("b",), ("c",)]
    scores = rater.rate(paths)
    outs = [rater.project(p) for p in paths]
    centre1 = torch.stack([o[0] for o in outs]).mean(0)  # not normalised before averaging
    centre2 = torch.stack([o[1] for o in outs]).mean(0)
    for p, (_, _, p1, p2) in zip(paths, outs):
        expected = -2 * F.cosine_similarity(p1, centre2).mean() - 2 * F.cosine_similarity(p2, centre1).mean()
        assert scores[p] == pytest.approx(expected.item(), abs=1e-5)
    assert [p for p, _ in rater.ranking()] == sorted(paths, key=scores.get)
    # an unrated path is scored against the stored centre
    assert rater.score(("a", "b")) == pytest.approx(rater.score(("a", "b")))


def test_entry_states_of_one_block_share_the_population_centre() -> None:
    nets = _toy_nets()
    views = (torch.randn(6, 1, 8, 8), torch.randn(6, 1, 8, 8))
    at8 = BlockRater(nets, 1, 8, [("a",)], views, torch.randn(10, 1, 8, 8))
    at4 = BlockRater(nets, 1, 4, [("c",)], views, torch.randn(10, 1, 8, 8))
    paths = [[("a",), ("c",), ("b", "a")], [("a",), ("b",)]]
    rate_jointly([at8, at4], paths)
    outs = [(r, p, r.project(p)) for r, some in zip((at8, at4), paths) for p in some]
    centre = [torch.stack([o[i] for _, _, o in outs]).mean(0) for i in (0, 1)]  # over all five candidates
    assert at8.centre is at4.centre and torch.allclose(at8.centre[0], centre[0], atol=1e-6)
    for rater, path, (_, _, p1, p2) in outs:
        expected = -2 * F.cosine_similarity(p1, centre[1]).mean() - 2 * F.cosine_similarity(p2, centre[0]).mean()
        assert rater.scores[path] == pytest.approx(expected.item(), abs=1e-5)
    # the same path after another prefix is another candidate: its score differs
    assert at8.scores[("a",)] != pytest.approx(at4.scores[("a",)], abs=1e-6)


def test_entry_states_rated_each_against_their_own_centre_and_standardised() -> None:
    nets = _toy_nets()
    views = (torch.randn(6, 1, 8, 8), torch.randn(6, 1, 8, 8))
    at8 = BlockRater(nets, 1, 8, [("a",)], views, torch.randn(10, 1, 8, 8))
    at4 = BlockRater(nets, 1, 4, [("c",)], views, torch.randn(10, 1, 8, 8))
    paths = [[("a",), ("c",), ("b", "a")], [("a",), ("b",), ("a", "b")]]
    rate_jointly([at8, at4], paths, per_state=True)
    assert at8.centre is not at4.centre
    for rater, some in zip((at8, at4), paths):
        outs = [rater.project(p) for p in some]
        centre = [torch.stack([o[i] for o in outs]).mean(0) for i in (0, 1)]  # this state's candidates only
        torch.testing.assert_close(rater.centre[0], centre[0])
        raw = [BlockRater.loss(p1, p2, rater.centre) for _, _, p1, p2 in outs]
        scores = [rater.scores[p] for p in some]
        assert sum(scores) == pytest.approx(0.0, abs=1e-5)  # standardised over the state's rated candidates
        assert torch.tensor(scores).std().item() == pytest.approx(1.0, abs=1e-5)
        assert sorted(some, key=rater.scores.get) == sorted(some, key=lambda p: raw[some.index(p)])
    unrated = ("b", "b")
    raw = BlockRater.loss(*at8.project(unrated)[2:], at8.centre)
    assert at8.score(unrated) == pytest.approx((raw - at8.shift) / at8.scale)  # on demand, on the same scale


@pytest.mark.parametrize("mode", ["reset", "recalibrate"])
def test_predictor_bn_reset_or_recalibrated_when_rating(mode: str) -> None:
    nets = _toy_nets()
    bn = next(m for m in nets.predictor.modules() if isinstance(m, nn.BatchNorm1d))
    bn.running_mean.fill_(3.0)
    rater = BlockRater(nets, 0, 8, [], (torch.randn(6, 1, 8, 8),) * 2, torch.randn(10, 1, 8, 8), predictor_bn=mode)
    rater.project(("a",))
    if mode == "reset":  # the official update_bn_stats resets it and its forward never reaches the predictor
        assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))
    else:
        assert not torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean)) and bn.running_mean.abs().max() < 3


def test_mbconv_paths_are_drawn_fairly_per_layer() -> None:
    blocks = tiny_mbconv().block_paths((1, 8, 8))
    ops = blocks._ops[0]
    rng = random.Random(0)
    for count in (2, len(ops)):
        paths = blocks.sample_paths(0, None, count, rng)
        assert len(paths) == count and all(p in blocks.candidates(0, None) for p in paths)
        for j in range(2):  # every layer slot: different ops across the step's paths
            column = [p[j] for p in paths if len(p) > j]
            assert len(set(column)) == len(column)
    first_layer = [blocks.sample_paths(0, None, len(ops), rng) for _ in range(3)]
    assert all(sorted(p[0] for p in step) == sorted(ops) for step in first_layer)  # all ops once per step
    uniform = [blocks.uniform_paths(0, None, len(ops), rng) for _ in range(20)]  # path_sampling="uniform"
    assert all(len(set(step)) == len(step) and all(p in blocks.candidates(0, None) for p in step) for step in uniform)
    assert not all(sorted(p[0] for p in step) == sorted(ops) for step in uniform)  # not fair per layer


def test_the_search_over_ratings_finds_the_additive_optimum(tmp_path: Path) -> None:
    """BossNAS's search phase, regularised evolution seeded with a start architecture, run by the ordinary
    loop over block-additive ratings (a block scored by its ops, entry at 4x4 penalised), reaches the optimum."""
    from nas.evaluate import Evaluation, Evaluator
    from nas.strategy import Seeded
    from strategies.evolution import RegularizedEvolution

    space, table = ToyBlockSpace(), {"a": 0.0, "b": -1.0, "c": 0.5}
    blocks = space.block_paths((1, 8, 8))

    class Additive(Evaluator):
        metrics = ("rating",)

        def evaluate(self, arch):  # noqa: ANN001, ANN202
            paths = blocks.paths_of(arch)
            losses = [sum(table[o] for o in p) + (0.3 if e == 4 else 0.0)
                      for p, e in zip(paths, blocks.entries_of(paths))]
            return Evaluation({"rating": -sum(losses)})

    objectives = rating_objectives([])
    start = blocks.arch_of([("c",), ("a",), ("a",)])
    search = Seeded(RegularizedEvolution(space, objectives, 0, population_size=8, sample_size=3), [start])
    run = RunDir.create(tmp_path / "run", {"space": "toy", "strategy": "evolution", "settings": {}})
    result = run_search(run, search, Additive(), StrategyContext(space, objectives, 0, 150, (1, 8, 8), 3,
                                                                  progress=False))
    assert run.history()[0].arch == start
    assert blocks.paths_of(result.best.arch) == [("b", "b")] * 3 and result.best.metrics["rating"] == 6.0
    assert blocks.random_paths(random.Random(1))[0] in blocks.candidates(0, 8)


# -- the strategy --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("entry_states", "train_prefix"), [("best", True), ("all", True), ("all", False)])
def test_blocks_train_in_sequence_on_best_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                calls: dict, entry_states: str, train_prefix: bool) -> None:
    momenta: list[float] = []
    real_ema = bossnas_module.ema_update
    monkeypatch.setattr(bossnas_module, "ema_update", lambda t, o, m: (momenta.append(m), real_ema(t, o, m)))
    ensembles: list[int] = []
    real_ensemble = bossnas_module.ensemble_target

    def ensemble(projections):  # noqa: ANN001, ANN202
        projections = list(projections)
        ensembles.append(len(projections))
        return real_ensemble(projections)

    monkeypatch.setattr(bossnas_module, "ensemble_target", ensemble)
    strategy = BossNAS([], seed=0)
    seen: dict[int, set] = {}
    states: list[int] = []  # per block, the entry states it was trained from
    real_train = BossNAS._train_block

    def train(self: BossNAS, block: int, state: dict | None) -> None:
        calls.clear()
        block0 = [p for k, p in self.online.named_parameters() if k in self.online.block_state_keys(0)]
        before = [p.detach().clone() for p in block0]
        real_train(self, block, state)
        prefixes = self.prefixes(block)
        states.append(len(prefixes))
        best = [p for _, p in sorted(self.frontier[block].values())][0]
        assert list(best) == self.best_paths
        for net in (self.online, self.target):
            runs, run = [], []  # the paths of each forward pass
            for k, path in calls.get(id(net), []):
                run = [path] if k == 0 else run + [path]
                if k == block:
                    runs.append(tuple(run))
                seen.setdefault(block, set()).add((k, path))
                assert k <= block
            # earlier blocks run the best prefix of an entry state (with 'best': the chosen best paths)
            assert {r[:-1] for r in runs} == set(prefixes)
        if entry_states == "all" and block:
            assert len(prefixes) == 2  # the toy's blocks 1 and 2 are entered at 8 and at 4
        else:
            assert len(prefixes) == 1
        if block:  # the code: earlier blocks are not detached, their best-path weights still learn
            changed = [not torch.equal(a, b) for a, b in zip(before, block0)]
            assert any(changed) if train_prefix else not any(changed)  # quick: they stay fixed

    monkeypatch.setattr(BossNAS, "_train_block", train)
    best, records = search(strategy, context(ToySpace(), tmp_path, epochs_per_block=2.0, num_paths=3,
                                             entry_states=entry_states, train_prefix=train_prefix))
    assert set(seen) == {0, 1, 2}
    assert all(any(k == b for k, _ in seen[b]) for b in seen)
    steps = [4 * n for n in states]  # 32 images / batch 16 x 2 epochs per block, for each entry state
    assert len(momenta) == sum(steps)
    assert ensembles == [3] * (2 * len(momenta))  # one target per view side, over the 3 sampled paths
    for b in range(3):
        block_momenta = momenta[sum(steps[:b]):sum(steps[:b + 1])]
        assert block_momenta[0] == pytest.approx(0.99)  # restarted per block
        assert all(x < y for x, y in zip(block_momenta, block_momenta[1:]))
    assert strategy.rate([best.arch])[0] == pytest.approx(best.metrics["rating"])
    greedy = toy_net().arch_of(strategy.best_paths)
    assert records[0].arch == greedy  # the search starts from the greedy choice (the official code's)
    assert best.metrics["rating"] >= strategy.rate([greedy])[0] - 1e-9
    other = ("a",) if "c" in strategy.best_paths[0] else ("c",)  # block 1 entered in the other state
    if entry_states == "all":  # rated in a state it was trained from, against the block's one centre
        monkeypatch.setattr(BlockRater, "rate", lambda *a, **k: pytest.fail("no new population centre expected"))
        assert math.isfinite(strategy.rate([toy_net().arch_of([other, ("a",), ("a",)])])[0])
        assert strategy.raters[1][0].centre is strategy.raters[1][1].centre
    else:  # a state no block was trained from has no rating
        with pytest.raises(ValueError, match="block 1 was not trained from entry state"):
            strategy.rate([toy_net().arch_of([other, ("a",), ("a",)])])
    for block in range(3):
        ranking = json.loads((tmp_path / f"path_rank_{block}.json").read_text())
        assert len(ranking["entries"]) == states[block] and all(e["ranking"] for e in ranking["entries"])
    rated = [r for r in records if r.feasible and not r.info.get("cached")]
    budget = 1 if entry_states == "best" else TINY["population"] + TINY["cycles"]  # 'best' on the toy: enumerate
    assert len(rated) == budget and all("rating" in r.metrics and "macs" in r.metrics for r in rated)


class Killed(Exception):
    """Stands for the process being killed."""


def test_resume_skips_finished_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trained: list[int] = []
    real_train, real_rate = BossNAS._train_block, BossNAS._rate_block

    def train(self: BossNAS, block: int, state: dict | None) -> None:
        trained.append(block)
        real_train(self, block, state)

    def rate_then_die(self: BossNAS, block: int, suffix: str = "") -> BlockRater:
        if block == 1:
            raise Killed
        return real_rate(self, block, suffix)

    monkeypatch.setattr(BossNAS, "_train_block", train)
    monkeypatch.setattr(BossNAS, "_rate_block", rate_then_die)
    with pytest.raises(Killed):
        search(BossNAS([], seed=0), context(ToySpace(), tmp_path))
    assert trained == [0, 1]
    state = torch.load(tmp_path / "bossnas_state.pt", weights_only=True)
    assert state["progress"]["block"] == 1 and state["progress"]["trained"]
    killed = {key: (loss, tuple(from_json(p) for p in paths)) for key, loss, paths in state["frontier"][1]}
    monkeypatch.setattr(BossNAS, "_rate_block", real_rate)
    trained.clear()
    resumed = BossNAS([], seed=0)
    search(resumed, context(ToySpace(), tmp_path))
    assert trained == [2]  # block 0 finished, block 1 trained (its rating is redone), block 2 fresh
    assert resumed.frontier[1] == killed  # block 0's ratings were kept, not redone
    trained.clear()
    again = BossNAS([], seed=0)
    search(again, context(ToySpace(), tmp_path))
    assert trained == [] and again.best_paths == resumed.best_paths


def test_snapshot_holds_what_rating_reads_and_nothing_else(tmp_path: Path) -> None:
    """Block k's snapshot: both networks' block k, the target's stem and the layers of the frontier's prefix
    paths (what the prefixes of block k's entry states run through), block k's heads."""
    strategy = BossNAS([], seed=0)
    strategy.prepare(context(ToySpace(), tmp_path))
    full = strategy.online.state_dict()
    for k in range(3):
        snap = torch.load(tmp_path / f"block_{k}.pt", weights_only=True)
        block = {key for key in full if key.startswith(f"weights.b{k}_")}
        assert block and set(snap["online"]) == block
        prefix_layers = {f"weights.b{j}_l{i}_{part}__{op}." for prefix in strategy.prefixes(k)
                         for j, path in enumerate(prefix) for i, op in enumerate(path) for part in ("conv", "bn")}
        assert set(snap["target"]) == {key for key in full if key.startswith("weights.stem_conv.") or key in block
                                       or any(key.startswith(layer) for layer in prefix_layers)}
        assert "online" not in torch.load(tmp_path / "bossnas_state.pt", weights_only=True)  # held once, here
        if k:  # fewer than all the earlier blocks' weights: only the layers the frontier's paths use
            assert len(snap["target"]) < len({key for key in full if key.startswith("weights.stem_conv.") or
                                              any(key.startswith(f"weights.b{j}_") for j in range(k + 1))})
        assert set(snap["neck_online"]) == set(strategy.necks_online[k].state_dict())
        assert set(snap["predictor"]) == set(strategy.predictors[k].state_dict())


def test_rating_from_reloaded_snapshots_equals_rating_with_the_live_weights(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    live: dict[int, Nets] = {}
    real_snapshot = BossNAS._snapshot

    def snapshot(self: BossNAS, block: int) -> None:
        live[block] = copy.deepcopy(self.nets(block))  # every weight, as it was when the block was rated
        real_snapshot(self, block)

    monkeypatch.setattr(BossNAS, "_snapshot", snapshot)
    first = BossNAS([], seed=0)
    first.prepare(context(ToySpace(), tmp_path, max_rated=2))  # most paths are left to on-demand scoring
    resumed = BossNAS([], seed=0)  # a finished run: rates from the snapshots on disk only
    resumed.prepare(context(ToySpace(), tmp_path, max_rated=2))
    block_score = resumed._block_scorer()
    net = resumed.online
    assert [len(raters) for raters in first.raters] == [1, 2, 2]  # blocks 1 and 2 entered at 8 and at 4
    for k, raters in enumerate(first.raters):
        for trained in raters:
            rater = first._rater(k, trained.prefix, live[k])
            rater.centre = trained.centre
            for path in net.candidates(k, rater.entry):
                assert block_score(k, rater.entry, path) == rater.score(path), (k, trained.prefix, path)
    # the test can fail: training later blocks moved block 0's weights, so the final weights rate it otherwise
    final = first._rater(0, [], first.nets(0))
    final.centre = first.raters[0][0].centre
    assert any(final.score(p) != block_score(0, net.initial_state(), p) for p in net.candidates(0, 8))


@pytest.mark.parametrize("make", [toy_net, lambda: BlockSupernet(HyTraSpace("small"), (1, 32, 32), 10),
                                  lambda: BlockSupernet(tiny_mbconv(), (1, 8, 8), 10, sharing="separate")],
                         ids=["toy", "hytra", "mbconv"])
def test_block_weights_partition_the_supernet_and_hold_those_each_block_uses(make) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    net = make()
    blocks = [net.block_state_keys(k) for k in range(net.num_blocks)]
    groups = [net.stem_state_keys(), *blocks]
    keys = [key for group in groups for key in group]
    assert sorted(keys) == sorted(net.state_dict()) and len(set(keys)) == len(keys)
    params = dict(net.named_parameters())
    x = torch.randn(2, *net.input_shape)

    def used(fn) -> set[str]:  # noqa: ANN001
        net.zero_grad(set_to_none=True)
        fn().sum().backward()
        return {name for name, p in params.items() if p.grad is not None}

    assert used(lambda: net.stem(x)) <= set(groups[0])
    for seed in range(3):
        paths = net.paths.random_paths(random.Random(seed))
        entry = net.initial_state()
        for k, path in enumerate(paths):
            with torch.no_grad():
                h = net.forward_paths(x, paths[:k])
            assert used(lambda k=k, path=path, h=h, entry=entry: net.forward_block(k, path, h, entry)) <= set(blocks[k])
            entry = net.exit_state(k, path, entry)


def tiny_mbconv() -> MBConvSpace:
    space = MBConvSpace("small")
    space.family = dataclasses.replace(
        FAMILIES["small"], stem_width=8, first_width=8, final_width=32,
        stages=(Stage(8, 2, "relu", False, (1, 2)), Stage(16, 2, "hswish", True, (1,))),
        kernels=(3, 5), expands=(3, 6), resolutions=(8,), width_mults=(1.0,), references={})
    return space


def test_smoke_tiny_mbconv(tmp_path: Path) -> None:
    space = tiny_mbconv()
    best, records = search(BossNAS([], seed=0), context(space, tmp_path, search="evolution"))
    space.validate(best.arch)
    assert best.arch["resolution"] == 8 and best.arch["s2_depth"] == 1
    assert math.isfinite(best.metrics["rating"]) and -8.0 <= -best.metrics["rating"] <= 8.0
    assert sum(v for k, v in best.metrics.items() if k.endswith("_loss")) == pytest.approx(-best.metrics["rating"])
    assert len([r for r in records if r.feasible]) >= TINY["population"] + TINY["cycles"]


@pytest.mark.parametrize(("mode", "sampler"), [("space", "sample_paths"), ("uniform", "uniform_paths")])
def test_path_sampling_picks_the_sampler_that_trains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str,
                                                    sampler: str) -> None:
    from search_spaces.mbconv import MBConvBlocks

    calls: list[str] = []
    for name in ("sample_paths", "uniform_paths"):
        def record(self, *args, _name=name, _original=getattr(MBConvBlocks, name)):
            calls.append(_name)
            return _original(self, *args)
        monkeypatch.setattr(MBConvBlocks, name, record)
    BossNAS([], seed=0).prepare(context(tiny_mbconv(), tmp_path, path_sampling=mode))
    assert calls and set(calls) == {sampler}


@pytest.mark.slow
def test_hytra_every_reachable_entry_state_is_trained_and_rated(tmp_path: Path) -> None:
    """With entry_states='all' each HyTra block is trained from every level it can be entered at, so any
    architecture can be rated, and the evolutionary search runs over the whole space."""
    space = HyTraSpace("small")
    strategy = BossNAS([], seed=0)
    best, _ = search(strategy, context(space, tmp_path, input_size=8, train_images=16, max_rated=1, search="evolution"))
    net = strategy.online
    levels = [sorted(map(str, entries)) for entries in net.paths.entries]
    assert [sorted(states) for states in strategy.frontier[:4]] == levels
    assert [len(raters) for raters in strategy.raters] == [len(e) for e in levels] == [1, 4, 4, 4]
    archs = [space.sample(random.Random(s)) for s in range(4)]
    assert all(math.isfinite(r) for r in strategy.rate(archs))
    space.validate(best.arch)


@pytest.mark.parametrize("keep", [False, True])
def test_finish_drops_the_block_snapshots_unless_kept(tmp_path: Path, keep: bool) -> None:
    strategy = BossNAS([], seed=0, keep_snapshots=keep)
    ctx = context(ToySpace(), tmp_path)
    search(strategy, ctx)
    assert all((tmp_path / f"block_{k}.pt").exists() for k in range(3))
    strategy.finish(ctx)
    assert all((tmp_path / f"block_{k}.pt").exists() == keep for k in range(3))
    assert (tmp_path / "bossnas_state.pt").exists() and (tmp_path / "path_rank_2.json").exists()
