"""The preprocessing a model was trained with, carried into its export so the exported model takes raw input.

Training standardises every sample per channel with the training split's mean and std (`nas.data.make`) and
resizes images to the architecture's input (`nas.train.resize_inputs`: bilinear, after standardising).
`Preprocessing` records those statistics with the dataset's own sample shape and what its raw values are
(a run keeps it in evaluator.json); `Preprocess` is the module an export puts in front of the network
(`nas.build.render_source(..., preprocessing=...)`): the same standardisation, then the same resize, in plain
torch, holding its constants as non-persistent buffers so the network's state-dict keys do not change.
"""
from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from nas.space import NASError

if TYPE_CHECKING:
    from nas.data import TensorData


class Preprocess(nn.Module):
    """Raw samples -> the network's input: (x - mean) / std per channel (the training split's statistics), then,
    when `size` is given, a bilinear resize of images to `size` (align_corners=False), as the training did."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: list[float], std: list[float], spatial_dims: int, size: list[int] | None = None) -> None:
        super().__init__()
        shape = [1, len(mean)] + [1] * spatial_dims
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(shape), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(shape), persistent=False)
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        if self.size is not None:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return x


@dataclass(frozen=True)
class Preprocessing:
    """A dataset's standardisation: per-channel `mean` and `std` of its raw training split, its raw sample
    `shape` ((C, H, W) images or (C, L) sequences) and `values`, what its raw values are."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    shape: tuple[int, ...]
    values: str = ""

    @classmethod
    def of(cls, data: TensorData) -> Preprocessing | None:
        """The preprocessing of `data`, or None when it does not know its statistics (data made by hand)."""
        if data.mean is None or data.std is None:
            return None
        return cls(tuple(data.mean), tuple(data.std), tuple(data.sample_shape), data.values)

    @classmethod
    def from_json(cls, value: Any, where: str = "evaluator.json") -> Preprocessing:
        """From `to_json`'s dict; a one-line error naming `where` when it is not one."""
        try:
            if not isinstance(value, Mapping):
                raise TypeError("not an object")
            prep = cls(tuple(float(v) for v in value["mean"]), tuple(float(v) for v in value["std"]),
                       tuple(int(v) for v in value["shape"]), str(value.get("values", "")))
        except (KeyError, TypeError, ValueError) as err:
            raise NASError(f"{where}: 'preprocessing' is not mean, std and shape lists ({err})") from None
        if (len(prep.shape) not in (2, 3) or len(prep.mean) != prep.shape[0] or len(prep.std) != prep.shape[0]
                or not all(math.isfinite(v) for v in prep.mean) or not all(s > 0 for s in prep.std)
                or not all(n > 0 for n in prep.shape)):
            raise NASError(f"{where}: 'preprocessing' needs one finite mean and one positive std per channel of a "
                           f"(C, H, W) or (C, L) shape, got mean {list(prep.mean)}, std {list(prep.std)}, "
                           f"shape {list(prep.shape)}")
        return prep

    def to_json(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std), "shape": list(self.shape), "values": self.values}

    def resize(self, network_shape: tuple[int, ...]) -> list[int] | None:
        """The size images are resized to for a network taking `network_shape` (None: no resize)."""
        if tuple(network_shape) == self.shape:
            return None
        if len(self.shape) != 3 or len(network_shape) != 3 or network_shape[0] != self.shape[0]:
            raise NASError(f"samples of shape {self.shape} cannot feed a network expecting {tuple(network_shape)}")
        return list(network_shape[1:])

    def source(self, network_shape: tuple[int, ...]) -> str:
        """The constructor of the `Preprocess` module for a network taking `network_shape`."""
        return (f"Preprocess(mean={list(self.mean)!r}, std={list(self.std)!r}, spatial_dims={len(self.shape) - 1}, "
                f"size={self.resize(network_shape)!r})")

    def module(self, network_shape: tuple[int, ...]) -> Preprocess:
        return Preprocess(list(self.mean), list(self.std), len(self.shape) - 1, self.resize(network_shape))

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised samples `x` back to raw values (x * std + mean), e.g. a run's images for an export."""
        shape = [1, len(self.mean)] + [1] * (x.dim() - 2)
        return x * torch.tensor(self.std).reshape(shape) + torch.tensor(self.mean).reshape(shape)


def describe_input(network_shape: tuple[int, ...], preprocessing: Preprocessing | None) -> dict[str, Any]:
    """What an exported model takes as input (for arch.json and net.py's docstring)."""
    network = list(network_shape)
    if preprocessing is None:
        return {"shape": ["batch", *network], "dtype": "float32", "values": "already standardised: each channel "
                "minus its training mean, divided by its training std (no statistics known: exported without data)",
                "preprocessing_inside": False, "network_input_shape": network}
    size = preprocessing.resize(network_shape)
    inside = (f"per-channel standardisation (x - mean) / std with mean {list(preprocessing.mean)} and std "
              f"{list(preprocessing.std)} (the training split's statistics)")
    if size is not None:
        inside += f", then a bilinear resize (align_corners=False) to {size[0]}x{size[1]}"
    return {"shape": ["batch", *preprocessing.shape], "dtype": "float32",
            "values": f"raw dataset values, as the dataset's loader reads them: {preprocessing.values or 'unscaled'}",
            "preprocessing_inside": True, "preprocessing": inside, "mean": list(preprocessing.mean),
            "std": list(preprocessing.std), "resize_to": size, "network_input_shape": network}


def input_doc(network_shape: tuple[int, ...], preprocessing: Preprocessing | None) -> str:
    """A paragraph for net.py's docstring saying what input the exported model expects."""
    network = ", ".join(map(str, network_shape))
    if preprocessing is None:
        text = (f"Input: float32 tensors of shape (batch, {network}), already standardised: each channel minus its "
                "training mean, divided by its training std, at the network's own input size (exported without data, "
                "so no preprocessing is inside).")
    else:
        info = describe_input(network_shape, preprocessing)
        text = (f"Input: float32 tensors of shape (batch, {', '.join(map(str, preprocessing.shape))}) holding raw "
                f"dataset values, as the dataset's loader reads them ({preprocessing.values or 'unscaled'}). The "
                f"preprocessing the network was trained with is inside the model (`Net.preprocess`): "
                f"{info['preprocessing']}; the network itself takes shape (batch, {network}). Its constants are "
                "buffers outside the state dict, so weights.pt holds only the network's weights. To feed "
                "already-standardised input at the network's size, set `model.preprocess = torch.nn.Identity()`.")
    return textwrap.fill(text, 116)
