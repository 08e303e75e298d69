"""A run's INT8 model: calibrated on the run's training images, exported, and its accuracy and latency
measured beside FP32 (ONNX Runtime for both, `nas.quantize`), written to the model folder's int8.json."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nas.data import TensorData
from nas.quantize import onnx_session
from nas.timing import Conditions, measure_rounds, onnx_runner

CALIBRATION_IMAGES = 256
BATCH = 32


def calibration_batches(data: TensorData, input_shape: tuple[int, ...], images: int = CALIBRATION_IMAGES,
                        batch: int = BATCH) -> list[np.ndarray]:
    """The first `images` training images, resized to the model's input as training does, in batches."""
    from nas.train import resize_inputs

    x = resize_inputs(data.x_train[:images], input_shape).numpy()
    return [x[i:i + batch] for i in range(0, len(x), batch)]


def onnx_accuracy(path: Path, data: TensorData, input_shape: tuple[int, ...], batch: int = 256) -> float:
    """Top-1 (%) of an ONNX model on the validation split, run by ONNX Runtime."""
    from nas.train import resize_inputs

    session = onnx_session(path, threads=1)
    name = session.get_inputs()[0].name
    x, y = resize_inputs(data.x_val, input_shape).numpy(), data.y_val.numpy()
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


def compare(written: dict[str, Path], data: TensorData, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """FP32 and INT8 accuracy and latency of an export that wrote both ONNX files."""
    fp32, int8 = written["onnx"], written["int8"]
    report = {"accuracy_fp32": onnx_accuracy(fp32, data, input_shape),
              "accuracy_int8": onnx_accuracy(int8, data, input_shape),
              **dict(zip(("latency_fp32_ms", "latency_int8_ms"), onnx_latencies_ms([fp32, int8], input_shape))),
              "validation_images": len(data.x_val), "calibration_images": min(CALIBRATION_IMAGES, len(data.x_train))}
    report["speedup"] = report["latency_fp32_ms"] / report["latency_int8_ms"]
    return report
