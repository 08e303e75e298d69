"""Measuring how long one forward pass of a module takes, on this machine, under stated conditions.

`Conditions` says how: the runtime (ONNX Runtime on our ONNX export, the default on the CPU because that is
what a user deploys and where INT8 runs; or PyTorch eager, the only one on CUDA), the precision
(FP32, or INT8 by ONNX Runtime static quantization, `nas.quantize`), the device, the threads and the batch.
A measurement warms the runner up, then takes `repeats` samples, each a loop of as many calls as fill
`sample_ms` (at least one, so sub-millisecond blocks are not drowned by the clock's resolution), and keeps
the fastest sample (`statistic="min"`, the default) or the median. Threads are fixed for the measurement (1
by default, as SpaceEvo and nn-Meter measure on CPUs) and restored afterwards.

Why the minimum, over `rounds` measurements spread in time: on the shared 2-core virtual machine this was
written on, everything runs up to 1.45-1.9x slower for seconds to minutes at a stretch (the host's other
tenants), in every sample of that stretch, so a median of repeats is not reproducible (two passes over the
same 60 small models agreed within +-10% for 32% of them with a median of 15 samples). The fastest of 3
rounds of 30 samples, taken round-robin over everything being measured (`measure_rounds`,
`nas.latency_table.measure_in_rounds`), so that each model's rounds lie seconds to minutes apart, did better
(68-75% in the same test) but cannot help when a slow stretch covers all rounds; `benchmarks/latency.md`
reports the noise floor it leaves. Tried and dropped: scaling by a reference network timed beside each
measurement (it slows by another factor than the models), and measuring only while that reference runs at
its fastest (the gate rarely opened: 82 blocks in 9 minutes).
"""
from __future__ import annotations

import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.space import NASError, one_of

RUNTIMES = ("torch", "onnxruntime")
PRECISIONS = ("fp32", "int8")
STATISTICS = ("min", "median")
if TYPE_CHECKING:
    import torch
    from torch import nn
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Conditions:
    """How latency is measured; a latency table holds measurements under one set of conditions."""

    runtime: str = "onnxruntime"
    precision: str = "fp32"
    device: str = "cpu"
    threads: int = 1
    batch: int = 1
    statistic: str = "min"
    rounds: int = 3
    warmup: int = 10
    repeats: int = 30
    sample_ms: float = 1.0

    def __post_init__(self) -> None:
        for name, value, accepted in (("runtime", self.runtime, RUNTIMES), ("precision", self.precision, PRECISIONS),
                                      ("device", self.device, DEVICES), ("statistic", self.statistic, STATISTICS)):
            if value not in accepted:
                raise NASError(f"latency {name} {value!r} is not one of {one_of(list(accepted))}")
        if self.precision == "int8" and self.runtime != "onnxruntime":
            raise NASError(f"INT8 latency is measured with ONNX Runtime (nas.quantize), not {self.runtime!r}: "
                           "use runtime onnxruntime")
        if self.device == "cuda" and self.runtime != "torch":
            raise NASError("latency on cuda is measured with the torch runtime (ONNX Runtime runs on the CPU here)")
        for count, number in (("threads", self.threads), ("batch", self.batch), ("repeats", self.repeats),
                              ("rounds", self.rounds)):
            if number < 1:
                raise NASError(f"latency {count} {number} must be at least 1")

    @classmethod
    def make(cls, runtime: str | None = None, device: str = "cpu", **given: Any) -> Conditions:
        """Conditions with the runtime defaulting to the device's: ONNX Runtime on the CPU, torch on CUDA."""
        return cls(runtime=runtime or ("torch" if device == "cuda" else "onnxruntime"), device=device, **given)

    def key(self) -> dict[str, Any]:
        """What must agree for two measurements to be comparable (timing-loop settings excluded)."""
        return {k: v for k, v in asdict(self).items() if k not in ("warmup", "repeats", "sample_ms", "rounds")}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def machine(conditions: Conditions) -> dict[str, str]:
    """The facts of this machine a latency measured under `conditions` depends on."""
    import torch

    facts = {"cpu": cpu_model(), "system": f"{platform.system()} {platform.machine()}", "torch": torch.__version__,
             "python": platform.python_version()}
    if conditions.runtime == "onnxruntime":
        import onnxruntime

        facts["onnxruntime"] = onnxruntime.__version__
    if conditions.device == "cuda" and torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name()
    return facts


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def time_calls(call: Callable[[], Any], conditions: Conditions, sync: Callable[[], None] = lambda: None) -> float:
    """Milliseconds of one `call()`: warm-up, then the minimum (or median) of `repeats` samples, each the mean
    of a loop of calls filling `sample_ms`."""
    for _ in range(conditions.warmup):
        call()
    sync()
    start = time.perf_counter()
    call()
    sync()
    once = max(time.perf_counter() - start, 1e-7)
    loops = max(1, int(conditions.sample_ms / 1000 / once))
    samples = []
    for _ in range(conditions.repeats):
        start = time.perf_counter()
        for _ in range(loops):
            call()
        sync()
        samples.append((time.perf_counter() - start) / loops)
    return 1000 * (min(samples) if conditions.statistic == "min" else statistics.median(samples))


def measure(module: nn.Module, input_shape: tuple[int, ...], conditions: Conditions, seed: int = 0,
            calibration: list[np.ndarray] | None = None) -> float:
    """Milliseconds of one forward pass of `module` on a batch of `conditions.batch` inputs of `input_shape`
    (without the batch): the fastest of `conditions.rounds` measurements (`prepare`). Measuring many modules,
    `measure_rounds` spreads the rounds further apart in time."""
    with tempfile.TemporaryDirectory() as tmp:
        run = prepare(module, input_shape, conditions, Path(tmp), seed, calibration)
        return min(run() for _ in range(conditions.rounds))


def measure_rounds(runners: Sequence[Callable[[], float]], rounds: int, progress: Any = None,
                   taken: Sequence[int] | None = None,
                   record: Callable[[int, float], None] | None = None) -> list[float]:
    """The fastest of `rounds` measurements of each runner, taken round-robin: every runner once, then every
    runner again, so that a stretch of time when the machine runs slow spoils at most one round of each.
    `taken[i]` rounds of runner i were taken before (a resumed build: those are skipped, and runner i's result
    is then the fastest of the new ones only); `record(i, ms)` sees each measurement as it is taken."""
    taken = taken or [0] * len(runners)
    best = [float("inf")] * len(runners)
    for r in range(rounds):
        for i, run in enumerate(runners):
            if taken[i] > r:
                continue
            ms = run()
            best[i] = min(best[i], ms)
            if record is not None:
                record(i, ms)
            if progress is not None:
                progress.update(1)
    return best


def onnx_runner(path: Path, example: np.ndarray, conditions: Conditions) -> Callable[[], float]:
    """A function that measures the ONNX model at `path` on `example` under `conditions` each time it is called."""
    return lambda: _measure_onnxruntime(path, example, conditions)


def prepare(module: nn.Module, input_shape: tuple[int, ...], conditions: Conditions, folder: Path, seed: int = 0,
            calibration: list[np.ndarray] | None = None) -> Callable[[], float]:
    """A function that measures `module` anew each time it is called (ONNX files are written once, into
    `folder`, which must outlive the function). INT8 models are quantized with `calibration` batches (random
    inputs when none are given: the scales then differ from a trained model's, the kernels' speed does not)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    example = torch.randn(conditions.batch, *input_shape, generator=generator)
    module = module.eval()
    if conditions.runtime == "torch":
        return lambda: _measure_torch(module, example, conditions)
    from nas.export import export_onnx
    from nas.quantize import quantize_onnx

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    export_onnx(module, example, path)
    if conditions.precision == "int8":
        batches = calibration or [torch.randn(example.shape, generator=generator).numpy() for _ in range(4)]
        path = quantize_onnx(path, folder / "model.int8.onnx", batches)
    return onnx_runner(path, example.numpy(), conditions)


def _measure_torch(module: nn.Module, example: torch.Tensor, conditions: Conditions) -> float:
    import torch

    device = torch.device(conditions.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NASError("latency on cuda was asked for, but torch sees no CUDA device here")
    module, example = module.to(device), example.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    before = torch.get_num_threads()
    torch.set_num_threads(conditions.threads)
    try:
        with torch.inference_mode():
            return time_calls(lambda: module(example), conditions, sync)
    finally:
        torch.set_num_threads(before)


def _measure_onnxruntime(path: Path, example: np.ndarray, conditions: Conditions) -> float:
    from nas.quantize import onnx_session

    session = onnx_session(path, conditions.threads)
    feed = {session.get_inputs()[0].name: example}
    return time_calls(lambda: session.run(None, feed), conditions)
