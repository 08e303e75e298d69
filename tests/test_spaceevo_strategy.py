"""SpaceEvo's search over spaces: the lookup sampler, the aging evolution on a made-up lookup whose best space
is known, the block-KD student stages, layer latency prediction, and the strategy's one-line errors."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from nas.space import NASError
from search_spaces.spaceevo import SUPERSPACES, SpaceEvoSpace, SpacePoint, uniform_points
from strategies.spaceevo import Lookup, SpaceEvoConfig, evolve_spaces, make_config
from strategies.spaceevo_parts import qt_score


def made_up_lookup(best: SpacePoint) -> Lookup:
    """Rows whose loss is lower by 0.45 for each stage whose block type, and for each whose window, is `best`'s
    (so single mutations can climb to it), at a latency no higher than the others'."""
    sup, rows = SUPERSPACES[best.superspace], []
    for i, stage in enumerate(sup.searchable, start=1):
        for b in range(len(sup.blocks)):
            for w in range(stage.windows):
                loss = 1.0 - 0.45 * (b == best.blocks[i - 1]) - 0.45 * (w == best.windows[i - 1])
                for r in range(5):
                    rows.append({"stage": i, "block": b, "window": w, "loss": loss + 0.01 * r,
                                 "ms": {"160": 1.0 + 0.1 * r + 0.05 * b, "224": 2.0 + 0.2 * r + 0.1 * b}})
    return Lookup(rows, fixed_ms={"160": 2.0, "224": 4.0})


VNNI = SpacePoint.parse("onnxw-151122-023231")


def test_lookup_samples_one_row_per_stage_and_adds_the_fixed_stages() -> None:
    point = SpacePoint("onnxw", (2,) * 6, (1,) * 6)
    lookup = made_up_lookup(point)
    loss, ms = lookup.sample(point, 1000, np.random.default_rng(0))
    assert loss.min() >= 0.6 - 1e-9 and loss.max() <= 0.6 + 6 * 0.04 + 1e-9
    at_160, at_224 = ms[ms < 12], ms[ms >= 12]  # each model at one resolution: 8.6..11 ms or 17.2..22 ms
    assert at_160.min() >= 2.0 + 6 * 1.1 - 1e-9 and at_160.max() <= 2.0 + 6 * 1.5 + 1e-9
    assert at_224.min() >= 4.0 + 6 * 2.2 - 1e-9 and 300 < len(at_224) < 700


def wrong(point: SpacePoint, target: SpacePoint) -> int:
    """How many block types and windows of `point` differ from `target`'s (12 in all)."""
    return sum(a != b for a, b in zip(point.blocks + point.windows, target.blocks + target.windows))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_aging_evolution_climbs_to_the_made_up_best_space_and_scores_each_point_once(seed: int) -> None:
    """From the uniform spaces (at least 5 of 12 choices wrong) to within one choice of the best in 400 spaces
    (single mutations as coded can stall one step short: a one-wrong parent must win a tournament of 5 and hit
    the one fix among 30 block or 18 window changes)."""
    cfg = SpaceEvoConfig(samples_per_space=200, top=10, population=20, sample_size=5, cycles=400)
    lookup = made_up_lookup(VNNI)
    history = evolve_spaces(lookup, "onnxw", cfg, (30.0,), seed=seed)
    spaces = [h["space"] for h in history]
    assert len(spaces) == len(set(spaces)) == 400
    assert spaces[:20] == [p.encoding for p in uniform_points("onnxw")[:20]]
    assert min(wrong(SpacePoint.parse(s), VNNI) for s in spaces[:20]) >= 5
    best = max(history, key=lambda h: h["score"])
    assert wrong(SpacePoint.parse(best["space"]), VNNI) <= 1
    assert evolve_spaces(lookup, "onnxw", cfg, (30.0,), seed=seed) == history


def test_a_space_whose_models_miss_the_constraint_is_penalised() -> None:
    point = SpacePoint("onnxw", (0,) * 6, (0,) * 6)
    lookup = made_up_lookup(point)
    loss, ms = lookup.sample(point, 2000, np.random.default_rng(0))
    tight, loose = qt_score(loss, ms, [8.5]), qt_score(loss, ms, [100.0])
    assert tight.latency_penalty > loose.latency_penalty == 1.0 and tight.score < loose.score


def test_student_stage_supernet_runs_its_sub_stages_as_stand_alone_modules() -> None:
    import torch

    from nas.supernet import Supernet
    from strategies.spaceevo_proxy import StageSpace

    sup = SUPERSPACES["mobilew"]
    for b in (0, 4, 5):  # MBv1-dual, FusedMBConv-SE, the stacked-3x3 MBv3
        space = StageSpace(sup, 2, sup.blocks[b], (24, 8, 8), 40)
        torch.manual_seed(0)
        net = Supernet(space, space.default_input, 1).eval()
        rng = random.Random(b)
        for arch in (space.extreme(True), space.extreme(False), space.sample_in_window((56, 64), rng)):
            space.validate(arch)
            x = torch.randn(2, 24, 8, 8)
            with torch.no_grad():
                out = net(x, arch)
                torch.testing.assert_close(net.subnet(arch).eval()(x), out, rtol=1e-4, atol=1e-5)
            assert tuple(out.shape) == (2, 40, 4, 4)


def test_a_student_with_an_lsq_epoch_is_quantized_and_rates_int8_sub_stages() -> None:
    """The LSQ+ epoch after the FP32 ones: every convolution of the student gets learned quantizers that
    training initialises, and a sub-stage's loss is read from its fake-quantized stand-alone model."""
    import torch

    from nas.lsq import ElasticLSQ, quantized_subnet
    from nas.train import recalibrate_batchnorm
    from strategies.spaceevo_proxy import StageSpace, nsr_loss, sub_stage_loss, train_student

    sup = SUPERSPACES["onnxw"]
    space = StageSpace(sup, 2, sup.blocks[1], (24, 8, 8), 40)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 24, 8, 8, generator=g), torch.randn(32, 40, 4, 4, generator=g)
    steps: list[int] = []
    net = train_student(space, x, y, 0.5, 16, seed=0, progress=lambda: steps.append(1), lsq_epochs=0.5)
    quantizers = [m for m in net.weights.values() if isinstance(m, ElasticLSQ)]
    assert net.quantized_bits == 8 and quantizers and all(bool(m.initialised) for m in quantizers)
    assert len(steps) == 2  # one FP32 step and one LSQ+ step of 16 of the 32 images
    scales = [m.weight for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert scales and min(float(w.abs().min()) for w in scales) > 0.5  # started at 1 (official block KD), not 0
    arch = space.sample_in_window((56, 64), random.Random(0))
    loss = sub_stage_loss(net, arch, x[:16], x[16:], y[16:])
    model = quantized_subnet(net, arch)
    recalibrate_batchnorm(model, x[:16], 64, 1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert loss == pytest.approx(float(nsr_loss(model.eval()(x[16:]), y[16:])), rel=1e-5)


def test_layer_latency_predicts_unmeasured_layers_from_measured_ones(tmp_path: Path) -> None:
    from strategies.spaceevo_proxy import LayerLatency, LayerSpec

    sup = SUPERSPACES["onnxw"]
    layers = [LayerSpec(b, cin, 20, w, k, 4, 1) for b in (1, 5) for cin in (32, 64, 96) for w in (32, 64, 96)
              for k in (3, 5)]
    latency = LayerLatency(sup, tmp_path / "ms.json")
    truth = {s.key: 1e-6 * s.graph(sup).macs() + 0.05 for s in layers}
    latency.measured = {s.key: truth[s.key] for s in layers[::2]}
    latency.fit(layers, seed=0)
    predicted = latency.ms(layers)
    assert all(predicted[i] == truth[s.key] for i, s in enumerate(layers) if i % 2 == 0)
    errors = [abs(predicted[i] / truth[s.key] - 1) for i, s in enumerate(layers) if i % 2]
    assert np.median(errors) < 0.25


def test_the_strategy_needs_a_superspace_and_valid_options() -> None:
    from nas.objectives import Objective
    from nas.strategy import SupernetContext
    from strategies.spaceevo import SpaceEvo

    context = SupernetContext(SpaceEvoSpace("vnni"), None, [Objective("accuracy")], 0, "quick", Path("."))
    with pytest.raises(NASError, match="searches the spaces of a superspace"):
        SpaceEvo([Objective("accuracy")]).prepare(context)
    with pytest.raises(NASError, match="unknown SpaceEvo option 'cycle'"):
        make_config("quick", cycle=3)
    with pytest.raises(NASError, match="latency 'flops'"):
        make_config("quick", latency="flops")
    assert make_config("quick", latency_ms="5+7.5").latency_ms == (5.0, 7.5)


def test_the_lookup_applies_its_whole_model_calibration() -> None:
    point = SpacePoint("onnxw", (3,) * 6, (0,) * 6)
    lookup = made_up_lookup(point)
    raw = lookup.sample(point, 500, np.random.default_rng(0))[1]
    lookup.scale, lookup.offset = 1.5, 0.25
    corrected = lookup.sample(point, 500, np.random.default_rng(0))[1]
    np.testing.assert_allclose(corrected, 1.5 * raw + 0.25)


def test_a_teacher_without_spaceevo_stages_is_a_one_line_error(tmp_path: Path) -> None:
    from nas.testing import toy_data
    from strategies.spaceevo_proxy import train_teacher

    with pytest.raises(NASError, match=r"teacher 'mobilenet_v3_large' has stage strides \[2, 2, 2, 1, 2\]"):
        train_teacher("mobilenet_v3_large", toy_data(), 64, 1, 16, 0, tmp_path / "teacher.pt")
    assert not (tmp_path / "teacher.pt").exists()
