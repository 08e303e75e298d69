"""One loader per data source; each returns `TensorData` or raises a one-line `NASError`."""
from __future__ import annotations

import gzip
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas.data import TensorData, make, split
from nas.space import NASError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def _require_dir(path: str | None, what: str, default: str | None = None) -> Path:
    folder = Path(path or default or "")
    if not (path or default):
        raise NASError(f"dataset {what!r} needs a path: give --data-path DIR")
    if not folder.is_dir():
        raise NASError(f"dataset {what!r}: folder {str(folder)[:200]!r} "
                       f"{'is a file, not a folder' if folder.exists() else 'does not exist'}")
    return folder


def load_digits(path: str | None = None, seed: int = 0, val_fraction: float = 0.2) -> TensorData:
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), built in."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target)
    return make("digits", *split(x, y, val_fraction, seed), num_classes=10,
                values="pixel intensity / 16 (sklearn's 0..16 scale), in [0, 1]")


def _read_idx(file: Path) -> np.ndarray:
    opener = gzip.open if file.suffix == ".gz" else open
    try:
        with opener(file, "rb") as fh:
            data = fh.read()
        zero, dtype, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype != 0x08:
            raise ValueError("not an unsigned-byte IDX file")
        dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
        array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        return array.reshape(dims)
    except (OSError, ValueError, struct.error, EOFError) as err:
        raise NASError(f"file {str(file)!r} is not a valid IDX file ({err})") from None


def _find(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise NASError(f"folder {str(folder)!r} has no {stem!r} (or {stem}.gz)")


def load_fashion_mnist(path: str | None = None, seed: int = 0) -> TensorData:
    """Fashion-MNIST from its four IDX files (Debian's dataset-fashion-mnist puts them in
    /usr/share/datasets/fashion-mnist); the official test split is the validation split."""
    folder = _require_dir(path, "fashion_mnist", FASHION_MNIST_DIR)
    xs, ys = [], []
    for prefix in ("train", "t10k"):
        x = _read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))
        y = _read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"))
        if x.ndim != 3 or len(x) != len(y):
            raise NASError(f"fashion_mnist {prefix} images {x.shape} and labels {y.shape} do not match")
        xs.append(torch.from_numpy(x.copy()).float().unsqueeze(1) / 255.0)
        ys.append(torch.from_numpy(y.astype(np.int64)))
    return make("fashion_mnist", xs[0], ys[0], xs[1], ys[1], num_classes=10, values="8-bit pixel / 255, in [0, 1]")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches: dicts, bytes, lists and numpy arrays only."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle protocol
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch")


def _read_cifar_batch(file: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(file, "rb") as fh:
            batch = _ArrayUnpickler(fh, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError, TypeError) as err:
        raise NASError(f"file {str(file)!r} is not a CIFAR-10 python batch ({err})") from None
    return data, labels


def load_cifar10(path: str | None = None, seed: int = 0) -> TensorData:
    """CIFAR-10 in its python format: a folder with data_batch_1..5 and test_batch (the test split validates)."""
    folder = _require_dir(path, "cifar10")
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    train = [_read_cifar_batch(_find(folder, f"data_batch_{i}")) for i in range(1, 6)]
    test = _read_cifar_batch(_find(folder, "test_batch"))
    x_train = torch.from_numpy(np.concatenate([d for d, _ in train])).float() / 255.0
    y_train = torch.from_numpy(np.concatenate([lab for _, lab in train]))
    x_val = torch.from_numpy(test[0]).float() / 255.0
    return make("cifar10", x_train, y_train, x_val, torch.from_numpy(test[1]), num_classes=10,
                values="RGB 8-bit pixel / 255, in [0, 1]")


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def load_image_folder(path: str | None = None, seed: int = 0, size: int = 32, val_fraction: float = 0.2) -> TensorData:
    """A folder with one sub-folder of images per class, resized to `size` x `size` RGB."""
    from PIL import Image, UnidentifiedImageError

    folder = _require_dir(path, "image_folder")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise NASError(f"image folder {str(folder)!r} needs at least two class sub-folders, found {len(classes)}")
    images, labels = [], []
    for label, cls in enumerate(classes):
        for file in sorted((folder / cls).iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(file) as img:
                    rgb = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            except (UnidentifiedImageError, OSError) as err:
                raise NASError(f"image {str(file)!r} cannot be read ({err})") from None
            images.append(np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1))
            labels.append(label)
    if not images:
        raise NASError(f"image folder {str(folder)!r} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    x = torch.from_numpy(np.stack(images)).float() / 255.0
    return make("image_folder", *split(x, torch.tensor(labels), val_fraction, seed), num_classes=len(classes),
                values=f"RGB 8-bit pixel / 255, in [0, 1], images resized to {size}x{size} (bilinear, PIL)")


MAX_CLASSES = 100_000  # a label above this is a corrupt file, not a classification task


def _member(arrays: Any, key: str, file: Path) -> np.ndarray:
    """Array `key` of an open `.npz` archive; a one-line error when it cannot be read."""
    try:
        return np.asarray(arrays[key])
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise NASError(f"{str(file)!r}: array {key} cannot be read ({str(err)[:120]})") from None


def _labels(y: np.ndarray, images: int, file: Path, key: str) -> torch.Tensor:
    """Class labels: whole numbers from 0, one per image."""
    if y.ndim != 1 or len(y) != images:
        raise NASError(f"{str(file)!r}: {key} must hold one label per image ({images}), got shape {y.shape}")
    if y.dtype.kind not in "iu":
        raise NASError(f"{str(file)!r}: {key} must hold whole-number class labels, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= MAX_CLASSES:
        raise NASError(f"{str(file)!r}: {key} holds label {y.min() if y.min() < 0 else y.max()}; labels are class "
                       f"indices from 0 to {MAX_CLASSES - 1}")
    return torch.from_numpy(y.astype(np.int64))


def _as_nchw(x: np.ndarray, file: Path) -> torch.Tensor:
    if x.dtype.kind not in "iuf":
        raise NASError(f"{str(file)!r}: x arrays must hold real numbers, got dtype {x.dtype}")
    if x.ndim == 3:  # N, H, W
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):  # N, H, W, C
        x = x.transpose(0, 3, 1, 2)
    elif x.ndim != 4:
        raise NASError(f"{str(file)!r}: x arrays must be (N,H,W), (N,H,W,C) or (N,C,H,W), got shape {x.shape}")
    if 0 in x.shape:
        raise NASError(f"{str(file)!r}: x arrays must hold at least one image of at least 1x1 pixels, got shape "
                       f"{x.shape}")
    t = torch.from_numpy(np.ascontiguousarray(x)).float()
    if not torch.isfinite(t).all():
        raise NASError(f"{str(file)!r}: x arrays hold values that are NaN, infinite or beyond float32's range")
    return t / 255.0 if x.dtype == np.uint8 else t


def load_npz(path: str | None = None, seed: int = 0, val_fraction: float = 0.2) -> TensorData:
    """Arrays in an `.npz` file: `x_train`, `y_train` and optionally `x_val`/`y_val` (or `x_test`/`y_test`)."""
    file = Path(path or "")
    if not path:
        raise NASError("dataset 'npz' reads an .npz file: give --data-path FILE.npz")
    if not file.is_file():
        raise NASError(f"dataset 'npz': file {str(path)[:200]!r} "
                       f"{'is a folder, not an .npz file' if file.is_dir() else 'does not exist'}")
    try:
        arrays = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise NASError(f"file {str(file)!r} is not a readable .npz archive ({str(err)[:120]})") from None
    if not isinstance(arrays, np.lib.npyio.NpzFile):  # a single .npy array
        raise NASError(f"file {str(file)!r} is one array, not an .npz archive of x_train, y_train (np.savez)")
    keys = set(arrays.files)
    if not {"x_train", "y_train"} <= keys:
        raise NASError(f"{str(file)!r} has keys {sorted(keys)[:10]}; it needs x_train and y_train (and x_val/y_val)")
    raw = _member(arrays, "x_train", file)
    x = _as_nchw(raw, file)
    y = _labels(_member(arrays, "y_train", file), len(x), file, "y_train")
    values = ("the x arrays as stored (N, C, H, W); uint8 arrays divided by 255" if raw.dtype == np.uint8
              else "the x arrays as stored (N, C, H, W)")
    for a, b in (("x_val", "y_val"), ("x_test", "y_test")):
        if {a, b} <= keys:
            x_val = _as_nchw(_member(arrays, a, file), file)
            if x_val.shape[1:] != x.shape[1:]:
                raise NASError(f"{str(file)!r}: {a} images are {tuple(x_val.shape[1:])}, x_train's "
                               f"{tuple(x.shape[1:])}")
            return make("npz", x, y, x_val, _labels(_member(arrays, b, file), len(x_val), file, b), values=values)
    if round(len(x) * val_fraction) < 1 or round(len(x) * val_fraction) >= len(x):
        raise NASError(f"{str(file)!r}: {len(x)} images are too few to split off a validation set; give at least "
                       "3, or x_val and y_val")
    return make("npz", *split(x, y, val_fraction, seed), values=values)


def load_synthetic(path: str | None = None, seed: int = 0, n: int = 512, channels: int = 3, size: int = 16,
                   classes: int = 4) -> TensorData:
    """Random images with a learnable class signal (a class-specific mean pattern), for smoke tests."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randn(classes, channels, size, size, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    x = patterns[y] + 1.5 * torch.randn(n, channels, size, size, generator=g)
    return make("synthetic", *split(x, y, 0.25, seed), num_classes=classes,
                values="class pattern plus Gaussian noise, unscaled")

