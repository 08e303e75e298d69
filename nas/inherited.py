"""Architectures rated with weights inherited from a trained supernet (SPOS's evaluation, Guo et al. 2020).

`InheritedEvaluator` scores an architecture by running it through a trained `nas.supernet.Supernet`: the
BatchNorm statistics are re-estimated on training batches along that path first (the weights were trained
for every path, the running statistics are not any path's), then the top-1 on held-out validation images
is its `rating` (in percent). Nothing is trained. Registered as evaluator `supernet`: `--evaluator supernet
--evaluator-option checkpoint=RUN_DIR/checkpoints/supernet.pt` re-searches a supernet a `spos` run trained
(`save_supernet` writes that file: the space, sharing, input and the weights; loaded with weights_only).
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.evaluate import Evaluation, Evaluator
from nas.registry import register_evaluator
from nas.space import Architecture, NASError, SearchSpace

if TYPE_CHECKING:
    import torch

    from nas.data import TensorData
    from nas.supernet import Supernet


def save_supernet(path: str | Path, supernet: Supernet) -> None:
    """The supernet's weights and what rebuilds it (space name and preset, sharing, data shape, classes, LSQ+
    bits when quantized)."""
    import torch

    tmp = Path(path).with_suffix(".tmp")
    torch.save({"space": supernet.space.name, "preset": supernet.space.preset,
                "sharing": supernet.sharing, "data_shape": list(supernet.data_shape),
                "num_classes": supernet.num_classes, "quantized_bits": supernet.quantized_bits,
                "state": supernet.state_dict()}, tmp)
    tmp.replace(path)


def load_supernet(path: str | Path, space: SearchSpace, device: str | torch.device = "cpu") -> Supernet:
    """The supernet `save_supernet` wrote, for `space` (which must be the space it was trained on)."""
    import torch

    from nas.supernet import Supernet

    file = Path(path)
    if not file.is_file():
        raise NASError(f"supernet checkpoint {str(file)!r} does not exist (a spos run writes checkpoints/supernet.pt)")
    saved = torch.load(file, map_location=device, weights_only=True)
    preset = space.preset
    if saved["space"] != space.name or saved["preset"] != preset:
        raise NASError(f"supernet checkpoint {str(file)!r} was trained on space {saved['space']!r} preset "
                       f"{saved['preset']!r}, not {space.name!r} preset {preset!r}")
    supernet = Supernet(space, tuple(saved["data_shape"]), saved["num_classes"], sharing=saved["sharing"])
    if saved.get("quantized_bits"):
        from nas.lsq import quantize_supernet

        quantize_supernet(supernet, saved["quantized_bits"])
    supernet.load_state_dict(saved["state"])
    return supernet.to(device)


@register_evaluator("supernet")
class InheritedEvaluator(Evaluator):
    """Top-1 (%) with weights inherited from a trained supernet, BatchNorm recalibrated per architecture."""

    name = "supernet"
    metrics = ("rating",)
    needs_data = True
    options = ("checkpoint", "bn_images", "val_images", "batch_size")
    data: TensorData

    def __init__(self, supernet: Supernet, data: TensorData, bn_images: int = 2048, val_images: int = 0,
                 batch_size: int = 256, seed: int = 0) -> None:
        import torch

        self.supernet, self.data = supernet, data
        self.input_shape, self.num_classes = data.sample_shape, data.num_classes
        self.batch_size = batch_size
        g = torch.Generator().manual_seed(seed)
        self.x_bn = data.x_train[torch.randperm(len(data.x_train), generator=g)[:bn_images]]
        val = torch.randperm(len(data.x_val), generator=g)[:val_images] if val_images else torch.arange(len(data.x_val))
        self.x_val, self.y_val = data.x_val[val], data.y_val[val]
        self.bn_images, self.val_images = len(self.x_bn), len(self.x_val)
        self._resized: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_settings(cls, space: SearchSpace, settings: Mapping[str, Any],
                      data: TensorData | None) -> InheritedEvaluator:
        from nas.train import resolve_device

        if data is None:
            raise NASError(f"evaluator {cls.name!r} recalibrates and rates on data; from_settings was given none")
        options = dict(settings.get("evaluator_options") or {})
        if "checkpoint" not in options:
            raise NASError("evaluator 'supernet' needs --evaluator-option checkpoint=PATH (a spos run's "
                           "checkpoints/supernet.pt)")
        device = resolve_device(settings.get("train", {}).get("device", "auto"))
        supernet = load_supernet(options.pop("checkpoint"), space, device)
        return cls(supernet, data, seed=settings["seed"], **{k: int(v) for k, v in options.items()})

    def _inputs(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """The BN and validation images at an architecture's input shape, on the supernet's device (cached)."""
        from nas.train import resize_inputs

        if shape not in self._resized:
            device = next(self.supernet.parameters()).device
            self._resized[shape] = (resize_inputs(self.x_bn, shape).to(device),
                                    resize_inputs(self.x_val, shape).to(device))
        return self._resized[shape]

    def evaluate(self, arch: Architecture) -> Evaluation:
        import torch

        from nas.train import bn_recalibration, evaluate_accuracy

        start = time.perf_counter()
        x_bn, x_val = self._inputs(self.supernet.arch_input_shape(arch))
        self.supernet.eval()
        with torch.no_grad(), bn_recalibration(self.supernet):
            for i in range(0, len(x_bn), self.batch_size):
                if len(x_bn[i:i + self.batch_size]) > 1:
                    self.supernet(x_bn[i:i + self.batch_size], arch)
        accuracy = evaluate_accuracy(lambda x: self.supernet(x, arch), x_val, self.y_val, self.batch_size,
                                     device=x_val.device)
        return Evaluation({"rating": accuracy, "rating_seconds": time.perf_counter() - start})

    def describe(self) -> dict[str, Any]:
        return {"evaluator": self.name, "rating": "top-1 (%) with inherited weights, BN recalibrated",
                "sharing": self.supernet.sharing, "bn_images": self.bn_images, "val_images": self.val_images}
