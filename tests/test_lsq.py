"""LSQ+ fake quantization: values on the integer grid, the straight-through and LSQ scale gradients in closed
form, min-max initialisation (and the released code's), and a wrapped model that trains."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nas.lsq import LSQPlus, fake_quant_activation, fake_quant_weight, prepare_lsq
from nas.space import NASError


def test_activation_forward_is_the_grid_of_scale_and_offset_clipped_to_8_bits() -> None:
    x = torch.tensor([[-1.0, 0.24, 0.26, 10.0, 100.0]])
    out = fake_quant_activation(x, torch.tensor([0.5]), torch.tensor([0.1]), bits=8, training=False)
    # (x - 0.1) / 0.5 = -2.2, 0.28, 0.32, 19.8, 199.8 -> clip to [0, 255] and round: 0, 0, 0, 20, 200
    torch.testing.assert_close(out, torch.tensor([[0.1, 0.1, 0.1, 10.1, 100.1]]))
    big = fake_quant_activation(torch.tensor([[1000.0]]), torch.tensor([0.5]), torch.tensor([0.0]), 8, False)
    assert float(big) == 255 * 0.5


def test_weight_forward_is_symmetric_signed() -> None:
    w = torch.tensor([-100.0, -0.26, 0.74, 3.0, 100.0])
    out = fake_quant_weight(w, torch.tensor([0.5]), bits=8, training=False)
    torch.testing.assert_close(out, torch.tensor([-64.0, -0.5, 0.5, 3.0, 63.5]))


def test_activation_gradients_are_lsq_plus() -> None:
    """d/dx: 1 inside the range, 0 outside; d/ds: (round(u) - u) inside, Qp above, 0 below; d/d(offset): 0
    inside, 1 outside; both scaled by 1 / sqrt(features x Qp)."""
    s, b = torch.tensor([0.5], requires_grad=True), torch.tensor([0.1], requires_grad=True)
    x = torch.tensor([[-1.0, 0.33, 5.17, 200.0]], requires_grad=True)
    fake_quant_activation(x, s, b, bits=8, training=True).sum().backward()
    u = (x.detach() - 0.1) / 0.5
    inside = (u > 0) & (u < 255)
    g = 1 / math.sqrt(4 * 255)
    torch.testing.assert_close(x.grad, inside.float())
    expected_s = torch.where(inside, u.round() - u, torch.where(u >= 255, torch.tensor(255.0), torch.tensor(0.0)))
    torch.testing.assert_close(s.grad, expected_s.sum().reshape(1) * g)
    torch.testing.assert_close(b.grad, (~inside).float().sum().reshape(1) * g)


def test_weight_gradients_are_lsq() -> None:
    s = torch.tensor([0.25], requires_grad=True)
    w = torch.tensor([-40.0, -0.3, 0.61, 31.9, 40.0], requires_grad=True)
    fake_quant_weight(w, s, bits=8, training=True).sum().backward()
    u = w.detach() / 0.25
    inside = (u > -128) & (u < 127)
    torch.testing.assert_close(w.grad, inside.float())
    expected = torch.where(inside, u.round() - u, u.clamp(-128, 127))
    torch.testing.assert_close(s.grad, expected.sum().reshape(1) / math.sqrt(5 * 127))


@pytest.mark.parametrize(("weight_init", "factor"), [("min_max", 2), ("as_coded", 1)])
def test_initialisation_from_the_first_batch(weight_init: str, factor: int) -> None:
    torch.manual_seed(0)
    layer = LSQPlus(nn.Conv2d(3, 4, 3, padding=1), weight_init=weight_init)
    x = torch.randn(2, 3, 5, 5)
    layer(x)
    assert float(layer.input_offset.detach()) == pytest.approx(float(x.min()))
    assert float(layer.input_scale.detach()) == pytest.approx(float(x.max() - x.min()) / 255)
    largest = float(layer.layer.weight.detach().abs().max())
    assert float(layer.weight_scale.detach()) == pytest.approx(factor * largest / 255)
    with pytest.raises(NASError, match="weight_init 'paper'"):
        LSQPlus(nn.Linear(2, 2), weight_init="paper")


def _train(model: nn.Module, x: torch.Tensor, target: torch.Tensor, steps: int = 100, lr: float = 0.2) -> list[float]:
    model.train()
    optimiser = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses


def _small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 4))


def test_quantization_aware_fine_tuning_of_a_trained_model_keeps_its_loss() -> None:
    """As SpaceEvo: train in float, wrap, fine-tune at a tenth of the learning rate."""
    x, target = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 4
    model = _small_net()
    float_losses = _train(model, x, target)
    reference = model.eval()(x)
    prepare_lsq(model)
    assert isinstance(model[0], LSQPlus) and isinstance(model[5], LSQPlus)
    assert sum(isinstance(m, LSQPlus) for m in model.modules()) == 2
    quantized = model.eval()(x)
    assert (quantized - reference).abs().max() < 0.05 * reference.abs().max()
    losses = _train(model, x, target, steps=50, lr=0.02)
    assert losses[-1] < float_losses[-1] + 0.01 and losses[-1] < float_losses[0] * 0.8
    assert model[5].input_scale.grad is not None and float(model[5].input_scale.grad.abs()) > 0
