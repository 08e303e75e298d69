"""Training: determinism for a seed, a real signal on digits, vectorised augmentation, BN recalibration."""
from __future__ import annotations

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
    config = TrainConfig(epochs=4, batch_size=64, seed=0)
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
