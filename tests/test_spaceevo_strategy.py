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
    """Rows where each stage's block type and window of `best` have the lowest loss (the loss adds up over
    stages, so single-stage mutations can climb to it), at a latency no higher than the others'."""
    sup, rows = SUPERSPACES[best.superspace], []
    for i, stage in enumerate(sup.searchable, start=1):
        for b in range(len(sup.blocks)):
            for w in range(stage.windows):
                good = (b, w) == (best.blocks[i - 1], best.windows[i - 1])
                for r in range(5):
                    rows.append({"stage": i, "block": b, "window": w, "loss": (0.1 if good else 1.0) + 0.01 * r,
                                 "ms": 1.0 + 0.1 * r + 0.05 * b})
    return Lookup(rows, fixed_ms=2.0)


VNNI = SpacePoint.parse("onnxw-151122-023231")


def test_lookup_samples_one_row_per_stage_and_adds_the_fixed_stages() -> None:
    point = SpacePoint("onnxw", (2,) * 6, (1,) * 6)
    lookup = made_up_lookup(point)
    loss, ms = lookup.sample(point, 1000, np.random.default_rng(0))
    assert loss.min() >= 0.6 - 1e-9 and loss.max() <= 0.6 + 6 * 0.04 + 1e-9
    assert ms.min() >= 2.0 + 6 * 1.1 - 1e-9


CYCLES = 600


def test_aging_evolution_finds_the_made_up_best_space_and_scores_each_point_once() -> None:
    cfg = SpaceEvoConfig(samples_per_space=200, top=10, population=20, sample_size=5, cycles=CYCLES)
    lookup = made_up_lookup(VNNI)
    history = evolve_spaces(lookup, "onnxw", cfg, (12.0,), seed=0)
    spaces = [h["space"] for h in history]
    assert len(spaces) == len(set(spaces)) == CYCLES
    assert spaces[:20] == [p.encoding for p in uniform_points("onnxw")[:20]]
    assert VNNI.encoding not in spaces[:20]
    best = max(history, key=lambda h: h["score"])
    assert best["space"] == VNNI.encoding
    again = evolve_spaces(lookup, "onnxw", cfg, (12.0,), seed=0)
    assert again == history


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
