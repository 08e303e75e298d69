"""Sequence datasets: samples are (C, L) float32 sequences. Nothing is downloaded.

- `mnist1d`: our own generator in the style of Greydanus's MNIST-1D ("Scaling down deep learning", 2020): ten
  template 1-D patterns of 12 points (our own shapes, not MNIST-1D's), each sample stretched, zero-padded to a random
  length, sheared (a random linear trend), amplitude-scaled, circularly shifted, given correlated noise (white noise
  smoothed by a Gaussian kernel), resampled to 40 points and given i.i.d. noise. Same recipe, different templates
  and constants, so accuracies are not comparable with the published MNIST-1D numbers.
- `seq_fashion_mnist`: Fashion-MNIST with the 784 pixels of an image as one sequence (1, 784), read from the IDX
  files in /usr/share/datasets/fashion-mnist (or --data-path); the test split validates.
"""
from __future__ import annotations

import numpy as np
import torch

from nas.data import TensorData, make, split

#: ten 12-point template patterns (ours): bump, step up, peak, two bumps, valley, sawtooth, ramp, drop, square, late
TEMPLATES = np.array([
    [0, 2, 4, 5, 5, 5, 5, 5, 4, 2, 0, 0],
    [0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4],
    [0, 1, 2, 3, 4, 5, 4, 3, 2, 1, 0, 0],
    [0, 3, 5, 3, 0, 0, 0, 3, 5, 3, 0, 0],
    [4, 4, 3, 1, 0, -1, -1, 0, 1, 3, 4, 4],
    [0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6],
    [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5],
    [5, 5, 5, 5, 5, 0, 0, -2, -2, 0, 0, 0],
    [3, 3, -3, -3, 3, 3, -3, -3, 3, 3, -3, -3],
    [0, 0, 0, 0, 0, 0, 0, 1, 3, 6, 3, 1],
], dtype=np.float64)


def mnist1d_arrays(n: int = 4000, length: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` samples (n, 1, length) and labels from the generator described in the module docstring."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(TEMPLATES)
    rng.shuffle(labels)
    grid = np.linspace(0.0, 1.0, length)
    out = np.empty((n, 1, length), dtype=np.float32)
    for k, label in enumerate(labels):
        pattern = TEMPLATES[label] / 6.0
        width = int(rng.integers(24, 40))  # the pattern's stretched length
        total = int(rng.integers(64, 96))  # after zero padding
        left = int(rng.integers(0, total - width + 1))
        signal = np.zeros(total)
        signal[left:left + width] = np.interp(np.linspace(0, 11, width), np.arange(12), pattern)
        t = np.linspace(-1.0, 1.0, total)
        signal = signal * (1.0 + 0.4 * rng.standard_normal()) + 0.75 * rng.standard_normal() * t
        signal = np.roll(signal, int(rng.integers(-total // 3, total // 3 + 1)))
        noise = np.convolve(rng.standard_normal(total + 16), np.exp(-0.5 * (np.arange(-8, 9) / 3.0) ** 2), "valid")
        signal = signal + 0.1 * noise / np.sqrt(np.pi * 18)
        resampled = np.interp(grid, np.linspace(0.0, 1.0, total), signal)
        out[k, 0] = resampled + 0.02 * rng.standard_normal(length)
    return out, labels.astype(np.int64)


def load_mnist1d(path: str | None = None, seed: int = 0, n: int = 4000, length: int = 40,
                 val_fraction: float = 0.2) -> TensorData:
    """Our MNIST-1D-style sequences (1, `length`), 10 classes, generated from `seed` (module docstring)."""
    x, y = mnist1d_arrays(n, length, seed)
    return make("mnist1d", *split(torch.from_numpy(x), torch.from_numpy(y), val_fraction, seed), num_classes=10,
                values="generated signals, unscaled (mostly within [-1.5, 1.5])")


def load_seq_fashion_mnist(path: str | None = None, seed: int = 0) -> TensorData:
    """Sequential Fashion-MNIST: each 28x28 image as a (1, 784) pixel sequence, row by row."""
    from nas.data.loaders import load_fashion_mnist

    images = load_fashion_mnist(path, seed)
    return TensorData("seq_fashion_mnist", images.x_train.flatten(2), images.y_train, images.x_val.flatten(2),
                      images.y_val, images.num_classes, images.mean, images.std, images.values)
