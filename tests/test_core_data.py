"""Datasets: built-in, file formats, and clear errors for missing or malformed files."""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from nas.data import load_dataset
from nas.space import NASError


def test_digits_is_built_in_and_normalised():
    data = load_dataset("digits")
    assert data.sample_shape == (1, 8, 8) and data.num_classes == 10
    assert len(data.x_train) + len(data.x_val) == 1797
    assert abs(float(data.x_train.mean())) < 1e-4


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_reads_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 8)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    data = load_dataset("fashion_mnist", str(tmp_path))
    assert data.x_train.shape == (20, 1, 28, 28) and data.x_val.shape == (8, 1, 28, 28)
    assert data.y_val.tolist() == [0, 1, 2, 3, 4, 5, 6, 7]


def test_real_fashion_mnist_when_installed():
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    data = load_dataset("fashion_mnist")
    assert len(data.x_train) == 60000 and len(data.x_val) == 10000 and data.num_classes == 10


def test_cifar10_batches(tmp_path):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3]}
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    data = load_dataset("cifar10", str(tmp_path))
    assert data.x_train.shape == (20, 3, 32, 32) and data.x_val.shape == (4, 3, 32, 32)


def test_cifar10_batch_with_foreign_objects_is_refused(tmp_path):
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (tmp_path / name).write_bytes(pickle.dumps({b"data": Path("/"), b"labels": []}))
    with pytest.raises(NASError, match="is not a CIFAR-10 python batch"):
        load_dataset("cifar10", str(tmp_path))


def test_image_folder(tmp_path):
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("RGB", (10, 12), (i * 40, 0, 0)).save(tmp_path / cls / f"{i}.png")
    data = load_dataset("image_folder", str(tmp_path))
    assert data.num_classes == 2 and data.sample_shape == (3, 32, 32)
    assert len(data.x_train) + len(data.x_val) == 6


def test_npz(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=np.zeros((10, 5, 5), np.uint8), y_train=np.arange(10) % 2,
             x_test=np.ones((4, 5, 5), np.uint8), y_test=np.array([0, 1, 0, 1]))
    data = load_dataset("npz", str(tmp_path / "d.npz"))
    assert data.sample_shape == (1, 5, 5) and len(data.x_val) == 4


@pytest.mark.parametrize("name, path, message", [
    ("mnist", None, "unknown dataset 'mnist'; accepted: 'digits'"),
    ("cifar10", "/nonexistent/cifar", "folder '/nonexistent/cifar' does not exist"),
    ("npz", "/nonexistent.npz", "file '/nonexistent.npz' does not exist"),
    ("cifar10", None, "needs a path"),
])
def test_bad_dataset_input(name, path, message):
    with pytest.raises(NASError, match=message):
        load_dataset(name, path)


def test_malformed_idx_file(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"garbage")
    with pytest.raises(NASError, match="is not a valid IDX file"):
        load_dataset("fashion_mnist", str(tmp_path))


def test_synthetic_is_learnable_and_seeded():
    a, b = load_dataset("synthetic", seed=1), load_dataset("synthetic", seed=1)
    assert torch.equal(a.x_train, b.x_train)
    assert a.num_classes == 4
