"""INT8 models: ONNX Runtime static post-training quantization of our ONNX export.

Why this path: SpaceEvo measures its INT8 CPU models this way (`quantize_static`, QOperator format, ONNX
Runtime's CPU provider), the exported ONNX file is what we already hand users, and the result runs anywhere
ONNX Runtime does, with nothing of ours installed. PyTorch's PT2E/X86Inductor path needs torch.compile at
deployment, which a user of the exported model may not have.

Choices (configurable in `quantize_onnx`): QOperator format (QLinearConv etc., as SpaceEvo), unsigned 8-bit
activations with min-max calibration, signed 8-bit weights per output channel (deviation: SpaceEvo keeps
ONNX Runtime's per-tensor default; we take the usual choice for depthwise convolutions, not measured against
per-tensor here), and `reduce_range` (7-bit weights) on x86 CPUs without VNNI, where ONNX Runtime's u8s8
kernels can otherwise saturate (its documented advice). Calibration batches come from the run's training data
(256 images; SpaceEvo calibrates on 30 dummy samples) when a trained model is quantized; latency measurement
of untrained blocks uses random inputs (the speed of the kernels does not depend on the scales).
"""
from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from nas.space import NASError


def has_vnni() -> bool:
    """Whether this CPU has the VNNI instructions ONNX Runtime's INT8 kernels use (x86 only; False elsewhere)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


class _Batches:
    """ONNX Runtime's CalibrationDataReader protocol over a list of input batches."""

    def __init__(self, name: str, batches: Iterable[np.ndarray]) -> None:
        self._batches = [np.ascontiguousarray(b, dtype=np.float32) for b in batches]
        self._next = 0
        self.name = name

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._batches):
            return None
        self._next += 1
        return {self.name: self._batches[self._next - 1]}

    def rewind(self) -> None:
        """Start again from the first batch (ONNX Runtime calls it between calibration passes)."""
        self._next = 0


def quantize_onnx(fp32_path: str | Path, int8_path: str | Path, calibration: Iterable[np.ndarray],
                  per_channel: bool = True, reduce_range: bool | None = None,
                  overrides: Callable[[Any], dict[str, list[dict[str, Any]]]] | None = None) -> Path:
    """Write the statically quantized INT8 model of `fp32_path` to `int8_path`, calibrated on `calibration`
    (input batches); `reduce_range` None: 7-bit weights exactly where the CPU lacks VNNI. `overrides(model)`
    gives ONNX Runtime's TensorQuantOverrides (fixed scales and zero points by tensor name) for the model as
    pre-processed (BatchNorm folded), e.g. the scales a quantization-aware training learned (`nas.lsq_onnx`)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = list(calibration)
    if not batches:
        raise NASError("INT8 quantization needs at least one calibration batch")
    out = Path(int8_path)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared), load_external_data=False)
        name = model.graph.input[0].name
        extra = {"TensorQuantOverrides": overrides(model)} if overrides is not None else {}
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantizer warns on the root logger for every integer shape tensor
        try:
            quantize_static(str(prepared), str(out), _Batches(name, batches), quant_format=QuantFormat.QOperator,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=per_channel,
                            reduce_range=(not has_vnni()) if reduce_range is None else reduce_range,
                            calibrate_method=CalibrationMethod.MinMax, extra_options=extra)
        finally:
            root.setLevel(level)
    return out


def onnx_session(path: str | Path, threads: int = 1):  # type: ignore[no-untyped-def]
    """An ONNX Runtime CPU session as SpaceEvo measures: all graph optimisations, sequential execution,
    `threads` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
