"""Training: determinism for a seed, a real signal on digits, vectorised augmentation, BN recalibration."""
from __future__ import annotations

import pytest
import torch

from nas.data import load_dataset
from nas.train import TrainConfig, random_shift, recalibrate_batchnorm, train_and_evaluate
from search_spaces.mbconv import MBConvSpace


def _model():
    space = MBConvSpace("small")
    arch = space.resolve('{"resolution":24,"width_mult":0.75,"s1_depth":1,"s1_l0_k":3,"s1_l0_e":3,"s2_depth":1,'
                         '"s2_l0_k":3,"s2_l0_e":3,"s3_depth":1,"s3_l0_k":3,"s3_l0_e":3,"s4_depth":1,"s4_l0_k":3,'
                         '"s4_l0_e":3}')
    torch.manual_seed(0)
    return space.build(arch, (1, 24, 24), 10)


def test_training_learns_digits_and_is_deterministic():
    data = load_dataset("digits").subset(train=400, val=200, seed=0)
    config = TrainConfig(epochs=4, batch_size=64, seed=0, num_threads=1)  # fixed: idle cores vary with the load
    first = train_and_evaluate(_model(), data, config, (1, 24, 24))
    second = train_and_evaluate(_model(), data, config, (1, 24, 24))
    assert first.accuracy > 30  # chance is 10%
    assert first.accuracy == second.accuracy and first.train_loss == second.train_loss


def test_random_shift_moves_each_sample_within_padding():
    x = torch.zeros(64, 1, 9, 9)
    x[:, :, 4, 4] = 1.0
    shifted = random_shift(x, 2, torch.Generator().manual_seed(0))
    positions = shifted.flatten(1).argmax(1)
    rows, cols = positions // 9, positions % 9
    assert shifted.sum() == 64  # no pixel lost within the padding
    assert rows.min() >= 2 and rows.max() <= 6 and cols.min() >= 2 and cols.max() <= 6
    assert len(set(positions.tolist())) > 5  # shifts differ per sample


def test_batchnorm_recalibration_resets_and_reestimates():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 1), torch.nn.BatchNorm2d(4))
    model[1].running_mean.fill_(100.0)
    x = torch.randn(256, 1, 4, 4) * 3 + 2
    recalibrate_batchnorm(model, x, batch_size=64, batches=4)
    with torch.no_grad():
        conv_out = model[0](x)
    expected = conv_out.mean(dim=(0, 2, 3))
    assert torch.allclose(model[1].running_mean, expected, atol=1e-4)
    assert model[1].momentum == 0.1


def test_accumulated_micro_batches_equal_one_large_batch():
    """Two micro-batches of 16 per step give the step of one batch of 32 (a model without BatchNorm)."""
    from nas.train import Trainer, supervised_step

    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    weights = []
    for batch, accumulate in ((32, 1), (16, 2)):
        torch.manual_seed(0)
        model = torch.nn.Linear(5, 3)
        trainer = Trainer(TrainConfig(epochs=2, batch_size=batch, accumulate=accumulate, lr=0.1, augment="none",
                                      device="cpu", label_smoothing=0.0))
        step = supervised_step(lambda b, model=model: model(b.x),
                               lambda out, b: torch.nn.functional.cross_entropy(out, b.y))
        progress = trainer.fit(step, [model], x, y)
        assert progress.step == 4 and progress.epoch == 2
        weights.append(model.weight.detach().clone())
    torch.testing.assert_close(weights[0], weights[1])


def test_distillation_losses():
    from nas.train import Batch, Distillation

    teacher = torch.nn.Linear(4, 3)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    batch = Batch(x, y, 0, 0, torch.Generator())
    student = torch.randn(8, 3)
    with torch.no_grad():
        t = teacher(x)
    assert Distillation(teacher, "mse")(student, batch).item() == pytest.approx(((student - t) ** 2).mean().item())
    kl = Distillation(teacher, "kl", temperature=2.0)(student, batch)
    p = torch.softmax(t / 2, 1)
    expected = (p * (p.log() - torch.log_softmax(student / 2, 1))).sum(1).mean() * 4
    assert kl.item() == pytest.approx(expected.item(), rel=1e-5)
    assert Distillation(teacher, "kl")(t, batch).item() == pytest.approx(0.0, abs=1e-6)  # the teacher's own logits
    mixed = Distillation(teacher, "mse", alpha=0.25)(student, batch)
    ce = torch.nn.functional.cross_entropy(student, y)
    assert mixed.item() == pytest.approx(0.25 * ce.item() + 0.75 * ((student - t) ** 2).mean().item(), rel=1e-5)
    with pytest.raises(ValueError, match="distillation kind 'l2' is not one of"):
        Distillation(teacher, "l2")


def test_runtime_shards_batches_over_ranks():
    from nas.train import Runtime

    index = torch.arange(10)
    parts = [Runtime(rank=r, world_size=3).shard(index) for r in range(3)]
    assert sorted(torch.cat(parts).tolist()) == list(range(10)) and Runtime().is_main
    assert not Runtime(rank=1, world_size=2).is_main and Runtime().shard(index) is index
