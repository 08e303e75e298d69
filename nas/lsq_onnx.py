"""INT8 ONNX models of LSQ+ networks (`nas.lsq`): the scales quantization-aware training learned, carried into
ONNX Runtime's static quantization (`nas.quantize`), so the deployed model computes with the training's integers.

The float model exported first (`dequantized`) holds every wrapped layer with its fake-quantized weight. ONNX
Runtime's pre-processing folds each BatchNorm into the convolution before it, which scales output channel c of
the LSQ+ weight (integers q times the learned scale s) by the BatchNorm's factor g_c; the folded weight is then
quantized per output channel with the scale s |g_c| and zero point 0, which gives back the trained integers q
(with their sign flipped where g_c < 0; -128 then becomes 127, the one value that moves). A convolution's
input is quantized with its learned scale and offset; ONNX needs an integer zero point, so the offset is
rounded to the grid: round(-offset / scale), at most half a step from the learned one. Tensors LSQ+ does not
quantize (convolution outputs before the next layer, residual sums, pooling) get min-max calibration from the
calibration batches, as in post-training quantization. Where two convolutions read one tensor with different
learned scales (a block's input feeding its expansion and its projection shortcut), ONNX can hold one: the
first reader's is used (`LSQExport.conflicts` counts them).
"""
from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.lsq import LSQPlus, fake_quant_weight
from nas.space import NASError

MATCH_TOLERANCE = 1e-4  # relative: a folded ONNX weight is this close to g_c x an LSQ+ weight


def lsq_layers(model: nn.Module) -> list[LSQPlus]:
    return [m for m in model.modules() if isinstance(m, LSQPlus)]


@torch.no_grad()
def dequantized(model: nn.Module) -> nn.Module:
    """A float copy of an LSQ+ `model` in eval mode: each `LSQPlus` replaced by its layer computing with the
    fake-quantized weight (inputs are left to the INT8 model's quantization)."""
    clone = copy.deepcopy(model).eval()

    def swap(parent: nn.Module) -> None:
        for name, child in list(parent.named_children()):
            if isinstance(child, LSQPlus):
                child.layer.weight.copy_(fake_quant_weight(child.layer.weight, child.weight_scale, child.bits, False))
                setattr(parent, name, child.layer)
            else:
                swap(child)

    swap(clone)
    return clone


@dataclass
class LSQExport:
    """The overrides written for one model: how many layers matched, and the tensors read with two scales."""

    layers: int
    matched: int = 0
    conflicts: int = 0
    unmatched: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"lsq_layers": self.layers, "matched": self.matched, "shared_input_conflicts": self.conflicts,
                "unmatched_onnx_layers": self.unmatched[:20]}


def _channel_factors(onnx_weight: np.ndarray, lsq_weight: np.ndarray) -> np.ndarray | None:
    """g with onnx_weight[c] = g[c] x lsq_weight[c] for every output channel c, or None when they do not match."""
    if onnx_weight.shape != lsq_weight.shape:
        return None
    a = onnx_weight.reshape(len(onnx_weight), -1).astype(np.float64)
    b = lsq_weight.reshape(len(lsq_weight), -1).astype(np.float64)
    norms = (b * b).sum(1)
    g = np.where(norms > 0, (a * b).sum(1) / np.maximum(norms, 1e-30), 1.0)
    error = np.abs(a - g[:, None] * b).max()
    return g if error <= MATCH_TOLERANCE * max(float(np.abs(a).max()), 1e-12) else None


class Overrides:
    """`quantize_onnx`'s `overrides` for an LSQ+ model: matches the pre-processed ONNX model's Conv and Gemm
    weights to the LSQ+ layers (by value, after BatchNorm folding) and fixes their scales."""

    def __init__(self, model: nn.Module) -> None:
        with torch.no_grad():
            self.layers = [(float(m.input_scale.abs()), float(m.input_offset), float(m.weight_scale.abs()), m.bits,
                            fake_quant_weight(m.layer.weight, m.weight_scale, m.bits, False).cpu().numpy())
                           for m in lsq_layers(model)]
        self.report = LSQExport(len(self.layers))

    def __call__(self, model: Any) -> dict[str, list[dict[str, Any]]]:
        from onnx import numpy_helper

        weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        free = list(range(len(self.layers)))
        producer = {o: n for n in model.graph.node if n.op_type in ("Relu", "Clip") for o in n.output}
        out: dict[str, list[dict[str, Any]]] = {}
        for node in model.graph.node:
            if node.op_type not in ("Conv", "Gemm") or len(node.input) < 2 or node.input[1] not in weights:
                continue
            weight = weights[node.input[1]]
            found = next(((i, g) for i in free if (g := _channel_factors(weight, self.layers[i][4])) is not None),
                         None)
            if found is None:
                self.report.unmatched.append(node.name or node.input[1])
                continue
            i, g = found
            free.remove(i)
            self.report.matched += 1
            input_scale, offset, weight_scale, bits, _ = self.layers[i]
            # per output channel (axis 0 of a Conv weight and of a Gemm's transposed B): s |g_c|, zero point 0
            out[node.input[1]] = [{"axis": 0, "scale": np.array(weight_scale * abs(c) if c else weight_scale,
                                                                 np.float32), "zero_point": np.array(0, np.int8)}
                                  for c in g]
            zero = int(min(max(round(-offset / input_scale), 0), 2 ** bits - 1))
            params = {"scale": np.array(input_scale, np.float32), "zero_point": np.array(zero, np.uint8)}
            tensor = node.input[0]
            # ONNX Runtime drops a ReLU / Clip into the layer before it, quantizing that layer's output instead
            for name in [tensor] + ([producer[tensor].input[0]] if tensor in producer else []):
                if name in out:
                    self.report.conflicts += int(out[name][0]["scale"] != params["scale"])
                else:
                    out[name] = [params]
        return out


def export_lsq_int8(model: nn.Module, example: torch.Tensor, int8_path: str | Path,
                    calibration: Iterable[np.ndarray]) -> LSQExport:
    """Write the INT8 ONNX model of the LSQ+ `model` (input like `example`) with its learned scales; the report
    says how many layers took them."""
    import tempfile

    from nas.export import export_onnx
    from nas.quantize import quantize_onnx

    if not lsq_layers(model):
        raise NASError("export_lsq_int8 needs a model with LSQ+ layers (nas.lsq.prepare_lsq)")
    overrides = Overrides(model)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "dequantized.onnx"
        export_onnx(dequantized(model).cpu(), example.cpu(), fp32)
        quantize_onnx(fp32, int8_path, calibration, overrides=overrides)
    return overrides.report
