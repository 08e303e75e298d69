"""Datasets held in memory as tensors: built-in digits (default), Fashion-MNIST IDX files, CIFAR-10 python
batches, an image folder, `.npz` arrays and synthetic tensors, and (N, C, L) sequences (`nas.data.sequences`:
mnist1d, seq_fashion_mnist). Nothing is ever downloaded.

Every loader returns `TensorData`: float32 images (N, C, H, W) normalised per channel with the training
split's statistics (kept as `mean` and `std`, with `values` saying what the raw values were, so an export can
take raw input: `nas.preprocess`), int64 labels, and a train / validation split.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from nas.space import NASError, one_of


@dataclass
class TensorData:
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int
    mean: tuple[float, ...] | None = None  # per channel, of the raw training split (None: not known)
    std: tuple[float, ...] | None = None
    values: str = ""  # what the raw values are, e.g. "pixel / 16, in [0, 1]"

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def describe(self) -> str:
        return (f"{self.name}: {len(self.x_train)} train / {len(self.x_val)} val, shape {self.sample_shape}, "
                f"{self.num_classes} classes")

    def subset(self, train: int | None = None, val: int | None = None, seed: int = 0) -> TensorData:
        """A random class-mixed subset of each split (None keeps a split whole)."""
        g = torch.Generator().manual_seed(seed)

        def pick(x: torch.Tensor, y: torch.Tensor, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
            if n is None or n >= len(x):
                return x, y
            idx = torch.randperm(len(x), generator=g)[:n]
            return x[idx], y[idx]

        xt, yt = pick(self.x_train, self.y_train, train)
        xv, yv = pick(self.x_val, self.y_val, val)
        return TensorData(self.name, xt, yt, xv, yv, self.num_classes, self.mean, self.std, self.values)


def channel_stats(x_train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (at least 1e-6) of the training split, shaped to broadcast over a batch."""
    dims = [0] + list(range(2, x_train.dim()))
    return x_train.mean(dim=dims, keepdim=True), x_train.std(dim=dims, keepdim=True).clamp_min(1e-6)


def split(x: torch.Tensor, y: torch.Tensor, val_fraction: float,
          seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(x), generator=g)
    n_val = int(round(len(x) * val_fraction))
    return x[idx[n_val:]], y[idx[n_val:]], x[idx[:n_val]], y[idx[:n_val]]


def make(name: str, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
         num_classes: int | None = None, values: str = "") -> TensorData:
    """`TensorData` from raw splits: both standardised per channel with the training split's statistics, which
    it keeps (`values` says what the raw values are)."""
    mean, std = channel_stats(x_train.float())
    x_train, x_val = ((x.float() - mean) / std for x in (x_train, x_val))
    classes = num_classes or int(max(y_train.max(), y_val.max())) + 1
    return TensorData(name, x_train.contiguous(), y_train.long(), x_val.contiguous(), y_val.long(), classes,
                      tuple(mean.flatten().tolist()), tuple(std.flatten().tolist()), values)


LOADERS = ("digits", "fashion_mnist", "cifar10", "image_folder", "npz", "synthetic", "mnist1d", "seq_fashion_mnist")
SEQUENCES = ("mnist1d", "seq_fashion_mnist")  # loaders in `nas.data.sequences`
BUILT_IN = ("digits", "synthetic", "mnist1d")  # made here: they read no files, so take no path


def load_dataset(name: str, path: str | None = None, seed: int = 0, **options: int) -> TensorData:
    """Load a dataset by name (`LOADERS`); file-based ones read `path`."""
    from nas.data import loaders, sequences

    if name not in LOADERS:
        raise NASError(f"unknown dataset {name!r}; accepted: {one_of(LOADERS)}")
    if path and name in BUILT_IN:
        raise NASError(f"dataset {name!r} is built in and reads no files: drop the data path {path!r}")
    return getattr(sequences if name in SEQUENCES else loaders, f"load_{name}")(path=path, seed=seed, **options)
