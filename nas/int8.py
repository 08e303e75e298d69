"""A run's INT8 model: calibrated on the run's training images, exported, and its accuracy and latency
measured beside FP32 (ONNX Runtime for both, `nas.quantize`), written to the model folder's int8.json.

Both ONNX models take what the export takes (`model_inputs`): raw samples of the dataset's size when the
preprocessing is inside the export (`nas.preprocess`), else standardised samples resized to the network's input."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas.data import TensorData
from nas.preprocess import Preprocessing
from nas.quantize import onnx_session
from nas.timing import Conditions, measure_rounds, onnx_runner

CALIBRATION_IMAGES = 256
BATCH = 32


def model_inputs(x: torch.Tensor, input_shape: tuple[int, ...], preprocessing: Preprocessing | None) -> np.ndarray:
    """Standardised samples `x` as the exported model takes them: back to raw values when its `preprocessing` is
    inside, else resized to the network's `input_shape` as training does."""
    from nas.train import resize_inputs

    if preprocessing is not None:
        return preprocessing.raw(x).numpy()
    return resize_inputs(x, input_shape).numpy()


def calibration_batches(data: TensorData, input_shape: tuple[int, ...], preprocessing: Preprocessing | None = None,
                        images: int = CALIBRATION_IMAGES, batch: int = BATCH) -> list[np.ndarray]:
    """The first `images` training images as the exported model takes them (`model_inputs`), in batches."""
    x = model_inputs(data.x_train[:images], input_shape, preprocessing)
    return [x[i:i + batch] for i in range(0, len(x), batch)]


def onnx_accuracy(path: Path, data: TensorData, input_shape: tuple[int, ...],
                  preprocessing: Preprocessing | None = None, batch: int = 256) -> float:
    """Top-1 (%) of an ONNX model on the validation split (as `model_inputs`), run by ONNX Runtime."""
    session = onnx_session(path, threads=1)
    name = session.get_inputs()[0].name
    x, y = model_inputs(data.x_val, input_shape, preprocessing), data.y_val.numpy()
    correct = sum(int((session.run(None, {name: x[i:i + batch]})[0].argmax(1) == y[i:i + batch]).sum())
                  for i in range(0, len(x), batch))
    return 100.0 * correct / len(x)


def onnx_latencies_ms(paths: list[Path], input_shape: tuple[int, ...],
                      conditions: Conditions | None = None) -> list[float]:
    """Batch-1 latency of ONNX models under `conditions` (default: 1 thread, fastest of 3 rounds), measured
    round-robin together (`nas.timing.measure_rounds`), so a slow stretch of the machine spoils them alike."""
    conditions = conditions or Conditions.make()
    example = np.random.default_rng(0).standard_normal((conditions.batch, *input_shape)).astype(np.float32)
    return measure_rounds([onnx_runner(path, example, conditions) for path in paths], conditions.rounds)


def compare(written: dict[str, Path], data: TensorData, input_shape: tuple[int, ...],
            preprocessing: Preprocessing | None = None) -> dict[str, Any]:
    """FP32 and INT8 accuracy and latency of an export that wrote both ONNX files (taking raw samples when
    `preprocessing` is inside them; latency then includes it)."""
    fp32, int8 = written["onnx"], written["int8"]
    model_shape = preprocessing.shape if preprocessing is not None else input_shape
    report = {"accuracy_fp32": onnx_accuracy(fp32, data, input_shape, preprocessing),
              "accuracy_int8": onnx_accuracy(int8, data, input_shape, preprocessing),
              **dict(zip(("latency_fp32_ms", "latency_int8_ms"), onnx_latencies_ms([fp32, int8], model_shape))),
              "validation_images": len(data.x_val), "calibration_images": min(CALIBRATION_IMAGES, len(data.x_train))}
    report["speedup"] = report["latency_fp32_ms"] / report["latency_int8_ms"]
    return report
