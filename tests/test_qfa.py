"""SpaceEvo's quantized-for-all stage: AlphaNet's alpha-divergence against its definition (value and gradient),
an LSQ+ supernet whose stand-alone subnets compute what it computes and survive a save, and the INT8 ONNX export
that carries the learned scales into ONNX Runtime, run in a bare interpreter."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nas import registry
from nas.inherited import load_supernet, save_supernet
from nas.lsq import ElasticLSQ, LSQPlus, prepare_lsq, quantize_supernet, quantized_subnet
from nas.lsq_onnx import export_lsq_int8
from nas.supernet import Supernet
from strategies.qfa import adaptive_distillation, alpha_divergence


def _direct(student: torch.Tensor, teacher: torch.Tensor, alpha: float) -> torch.Tensor:
    """The alpha-divergence D(p || q) written out: sum q ((p/q)^alpha - 1) / (alpha (alpha - 1)), its limits at 0
    (KL(q || p)) and 1 (KL(p || q))."""
    q, p = student.softmax(1), teacher.softmax(1)
    if alpha == 0:
        return (q * (q.log() - p.log())).sum(1)
    if alpha == 1:
        return (p * (p.log() - q.log())).sum(1)
    return (q * ((p / q) ** alpha - 1)).sum(1) / (alpha * (alpha - 1))


@pytest.mark.parametrize("alpha", [-1.0, 0.0, 0.5, 1.0, 2.0])
def test_alpha_divergence_value_and_gradient_match_the_definition(alpha: float) -> None:
    g = torch.Generator().manual_seed(0)
    student = torch.randn(6, 5, generator=g, dtype=torch.float64).requires_grad_()
    teacher = torch.randn(6, 5, generator=g, dtype=torch.float64)
    value, surrogate = alpha_divergence(student, teacher, alpha, iw_clip=1e9)
    expected = _direct(student, teacher, alpha)
    torch.testing.assert_close(value.double(), expected.detach(), rtol=1e-5, atol=1e-6)
    (grad,) = torch.autograd.grad(surrogate.sum(), student)
    (expected_grad,) = torch.autograd.grad(expected.sum(), student)
    torch.testing.assert_close(grad.double(), expected_grad, rtol=1e-4, atol=1e-6)


def test_importance_weights_are_clipped_and_underflow_stays_finite() -> None:
    student, teacher = torch.tensor([[0.0, 3.0]]), torch.tensor([[3.0, 0.0]])
    value, _ = alpha_divergence(student, teacher, -1.0, iw_clip=2.0)
    q, p = student.softmax(1), teacher.softmax(1)
    clipped = ((p / q) ** -1).clamp(max=2.0)
    torch.testing.assert_close(value, ((q * (clipped - 1)).sum(1) / 2.0).float())
    far = torch.tensor([[0.0, 200.0, 0.0]], requires_grad=True)  # the teacher's class has probability e^-200 here
    for alpha in (-1.0, 0.0, 1.0):
        value, surrogate = alpha_divergence(far, torch.tensor([[200.0, 0.0, 0.0]]), alpha, 5.0)
        surrogate.sum().backward()
        assert torch.isfinite(value).all() and torch.isfinite(far.grad).all()


def test_adaptive_distillation_takes_the_larger_divergence_per_sample() -> None:
    g = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g) * 3
    low, _ = alpha_divergence(student, teacher, -1.0, 5.0)
    high, _ = alpha_divergence(student, teacher, 1.0, 5.0)
    value, _ = adaptive_distillation(student, teacher, -1.0, 1.0, 5.0)
    assert float(value) == pytest.approx(float(torch.maximum(low, high).mean()), rel=1e-6)
    assert bool((low > high).any()) and bool((high > low).any())  # both sides are exercised


@pytest.fixture(scope="module")
def lsq_supernet() -> Supernet:
    torch.manual_seed(0)
    space = registry.make_space("mbconv", "small")
    supernet = Supernet(space, (1, 8, 8), 3)
    quantize_supernet(supernet)
    supernet.train()
    supernet(torch.randn(4, 1, 8, 8), space.extreme(largest=True))  # initialises the quantizers
    return supernet.eval()


def test_elastic_layers_share_one_set_of_quantizers_and_subnets_compute_the_same(lsq_supernet: Supernet) -> None:
    import random

    wrapped = [m for m in lsq_supernet.weights.values() if isinstance(m, ElasticLSQ)]
    assert wrapped and all(bool(m.initialised) for m in wrapped)
    x = torch.randn(5, 1, 8, 8)
    for seed in range(3):
        arch = lsq_supernet.space.sample(random.Random(seed))
        model = quantized_subnet(lsq_supernet, arch).eval()
        layers = [m for m in model.modules() if isinstance(m, LSQPlus)]
        assert layers and all(bool(m.initialised) for m in layers)
        with torch.no_grad():
            torch.testing.assert_close(model(x), lsq_supernet(x, arch))


def test_a_saved_lsq_supernet_loads_quantized(lsq_supernet: Supernet, tmp_path: Path) -> None:
    save_supernet(tmp_path / "lsq.pt", lsq_supernet)
    loaded = load_supernet(tmp_path / "lsq.pt", lsq_supernet.space).eval()
    assert loaded.quantized_bits == 8
    arch, x = lsq_supernet.space.extreme(largest=False), torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, arch), lsq_supernet(x, arch))


def _trained_lsq_model() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))
    prepare_lsq(model)
    x = torch.randn(96, 1, 10, 10)
    y = (x[:, 0, :, :5].mean((1, 2)) > 0).long() * 2 + (x[:, 0, :5].mean((1, 2)) > 0).long()  # which halves
    optimiser = torch.optim.SGD(model.parameters(), lr=0.002, momentum=0.9)
    model.train()
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():  # a negative BatchNorm factor: the folded integers change sign
        model[1].weight[0] = -model[1].weight[0].abs()
    return model.eval(), x


def test_int8_export_carries_the_learned_scales_and_runs_in_a_bare_interpreter(tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    model, x = _trained_lsq_model()
    report = export_lsq_int8(model, x[:2], tmp_path / "model.int8.onnx", [x.numpy()])  # calibrated on x
    assert report.matched == report.layers == 3 and not report.unmatched
    graph = onnx.load(str(tmp_path / "model.int8.onnx")).graph
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "QLinearConv"]
    assert len(convs) == 2
    first, second = model[0], model[3]
    # QLinearConv inputs: x, x_scale, x_zero_point, w, w_scale, w_zero_point, ...
    scale, offset = float(first.input_scale.detach()), float(first.input_offset.detach())
    assert float(values[convs[0].input[1]]) == pytest.approx(scale, rel=1e-6)
    assert int(values[convs[0].input[2]]) == round(-offset / scale)
    assert float(values[convs[1].input[1]]) == pytest.approx(float(second.input_scale.detach()), rel=1e-6)
    with torch.no_grad():
        integers = torch.clamp(torch.round(first.layer.weight / first.weight_scale), -128, 127).numpy()
    np.testing.assert_array_equal(np.abs(values[convs[0].input[3]].astype(int)), np.abs(integers.astype(int)))
    np.save(tmp_path / "x.npy", x.numpy())
    script = ("import json, numpy as np, onnxruntime as ort; s = ort.InferenceSession('model.int8.onnx', "
              "providers=['CPUExecutionProvider']); x = np.load('x.npy'); "
              "print(json.dumps(s.run(None, {s.get_inputs()[0].name: x})[0].tolist()))")
    out = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300, check=True)
    logits = np.array(json.loads(out.stdout))
    with torch.no_grad():
        fake_quant = model(x).numpy()
    spread = fake_quant.max() - fake_quant.min()
    assert np.abs(logits - fake_quant).max() < 0.05 * spread, (np.abs(logits - fake_quant).max(), spread)
    assert (logits.argmax(1) == fake_quant.argmax(1)).mean() >= 0.9


def test_search_writes_the_best_subnets_int8_models_with_their_accuracy(tmp_path: Path) -> None:
    """`nas search --strategy qfa --no-retrain` on MBConv's small space: the FP32 and LSQ+ supernets, ratings
    within the latency limit, and the best subnet exported three ways (FP32, LSQ+ INT8, post-training INT8)."""
    from conftest import run_nas

    run = tmp_path / "run"
    result = run_nas("search", "--space", "mbconv@small", "--strategy", "qfa", "--dataset", "digits",
                     "--no-retrain", "--no-progress", "--max-macs", "5e6", "--run-dir", str(run),
                     "--option", "epochs=1", "--option", "qat_epochs=0.5", "--option", "val_images=100",
                     "--option", "bn_images=64", "--option", "calibration_images=64", "--option", "search_budget=4",
                     "--option", 'search_options={"population": 4, "top_k": 2, "mutations": 1, "crossovers": 1}')
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    ratings = [r["metrics"] for r in records if r["metrics"]]
    assert len(ratings) == 4 and all(m["macs"] <= 5e6 and 0 <= m["rating"] <= 100 for m in ratings)
    assert all(r["info"]["infeasible"]["macs"] > 5e6 for r in records if not r["metrics"])
    report = json.loads((run / "checkpoints" / "qfa_int8.json").read_text())
    assert report["lsq_export"]["matched"] == report["lsq_export"]["lsq_layers"] > 0
    for key in ("fp32_torch", "lsq_fake_quant_torch", "fp32_ort", "lsq_int8_ort", "ptq_int8_ort"):
        assert 0 <= report[f"accuracy_{key}"] <= 100
    assert report["accuracy_fp32_ort"] == pytest.approx(report["accuracy_fp32_torch"], abs=1.0)
    assert all((run / "checkpoints" / f"subnet_{name}.onnx").exists() for name in ("fp32", "lsq_int8", "ptq_int8"))
    assert (run / "checkpoints" / "qfa_training.png").exists()


def test_the_rating_search_keeps_latency_inside_spaceevos_window(tmp_path: Path) -> None:
    """With `latency_window` w, QFA rates only architectures within [C - w, C] of the run's latency limit C."""
    from nas.objectives import Constraint
    from nas.space import NASError
    from nas.testing import FAST_OPTIONS, contract_space, made_up_latency, run_supernet_strategy
    from strategies.qfa import latency_floor, make_config

    cost, limit = made_up_latency(contract_space("qfa"))
    window = limit * 0.3
    history, _ = run_supernet_strategy("qfa", tmp_path, options={**FAST_OPTIONS["qfa"], "latency_window": window},
                                       constraints=[Constraint("latency", limit)], cost_models=[cost])
    rated = [m for _, m in history if m is not None]
    assert rated and all(limit - window <= m["latency"] <= limit for m in rated)
    with pytest.raises(NASError, match="needs a latency limit"):
        latency_floor([Constraint("macs", 1e6)], make_config("paper"))
    assert latency_floor([Constraint("latency", 20.0)], make_config("paper")) == \
        [Constraint("latency", 15.0, lower=True)]
