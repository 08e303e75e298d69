"""Quantized-for-all supernet and INT8 subnet search: the last stage of SpaceEvo (Wang et al., ICCV 2023), on
any space's supernet with the space's own weight sharing (elastic, as SpaceEvo's, for a SpaceEvo point such as
`spaceevo@vnni` and for MBConv; separate weights per candidate elsewhere).

1. The supernet is trained as AlphaNet (Wang et al., ICML 2021) trains it, SpaceEvo's configuration: each step
   runs the largest architecture on the labels (cross-entropy, label smoothing 0.1), then `subnets_per_step` - 2
   random ones and the smallest (sandwich rule), each distilled in place from the largest's output
   (`alpha_divergence`: per sample the larger of the alpha-divergences at `alpha_min` and `alpha_max`, importance
   weights clipped at `iw_clip`); gradients are summed over the architectures, clipped by value at 1, and SGD
   with Nesterov momentum, lr `base_lr` x batch / 256, warm-up and cosine decay, takes the step. Every
   architecture runs at its own resolution choice.
2. LSQ+ quantization-aware training (`nas.lsq.quantize_supernet`: 8-bit weights and activations, learned
   scales and offsets shared by every architecture) continues the same sandwich training for `qat_epochs` at
   lr / 10 with `qat_warmup_epochs` of warm-up.
3. Architectures are rated by their fake-quantized INT8 top-1 with inherited weights after BatchNorm
   recalibration (`nas.inherited`) and searched by an evolutionary search (`search`, default SPOS's genetic
   search; SpaceEvo: population 512, the best 256 as parents, 128 mutations with probability 0.3 and 128
   crossovers, 20 generations) within the run's constraints, e.g. `--latency-max MS --latency-precision int8`
   from a latency table or measured, and, as SpaceEvo, above C - `latency_window` ms (paper: 5 ms, the
   official default; off in `quick` and `standard`, whose limits are fractions of a millisecond on a CPU).
4. `finish` writes the best architecture's INT8 model: its LSQ+ subnet exported to ONNX Runtime with the
   learned scales (`nas.lsq_onnx`), beside the same subnet of the FP32 supernet quantized after training
   (ONNX Runtime's static quantization, min-max), with accuracy and latency of each, to `qfa_int8.json` in the
   run's checkpoint folder (`subnet_lsq_int8.onnx`, `subnet_ptq_int8.onnx`, `subnet_fp32.onnx`). Run with
   `--no-retrain` to keep the inherited subnet as the result (the session otherwise trains the best-rated
   architecture stand-alone, as for any supernet strategy).

In a SpaceEvo space whose layers choose their own widths, a layer narrower or wider than its input adds it
through a 1x1 projection shortcut that only the random members of a step train; at small budgets those members
rate far below the largest and smallest, and the space's `+align` preset (one width per stage) avoids the
shortcuts (`benchmarks/qfa.md`).

Budget presets (`QFAConfig`): `paper` as published (360 epochs, 50 LSQ+ epochs, batch 64 per GPU: 512 here,
lr 0.1 x batch / 256, BN recalibration on 20 batches, ratings on 10,000 images); `standard` and `quick` scale
the epochs, images and search to a GPU hour and to minutes on a CPU.

Deviations: ratings use the run's validation split (SpaceEvo holds out 10,000 training images); the largest
architecture gets no dropout (the space's graphs have none; SpaceEvo uses 0.2 on it); SPOS's genetic search
mutates the resolution with the other choices (SpaceEvo: with probability 0.5); the four architectures of a step are
back-propagated one at a time as in the official code, so the step's memory is that of one architecture.
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas import registry
from nas.objectives import Constraint
from nas.space import NASError
from nas.strategy import Record, SupernetContext, SupernetPlan, SupernetStrategy, budget_config, rating_objectives

FP32_FILE, LSQ_FILE, REPORT_FILE = "supernet_fp32.pt", "supernet_lsq.pt", "qfa_int8.json"


@dataclass(frozen=True)
class QFAConfig:
    """Hyperparameters of one budget; the defaults are SpaceEvo's (its `train.yaml` and LSQ+ fine-tuning)."""

    epochs: float = 360.0
    warmup_epochs: float = 5.0
    qat_epochs: float = 50.0
    qat_warmup_epochs: float = 3.0
    qat_lr_factor: float = 0.1
    batch_size: int = 512
    base_lr: float = 0.1  # x batch / 256
    momentum: float = 0.9
    weight_decay: float = 1e-5  # weights only; BatchNorm and biases get none
    label_smoothing: float = 0.1
    subnets_per_step: int = 4  # the largest, the smallest and the rest random
    alpha_min: float = -1.0
    alpha_max: float = 1.0
    iw_clip: float = 5.0
    grad_clip_value: float = 1.0
    bits: int = 8
    weight_init: str = "min_max"
    train_images: int = 0  # 0: the whole training split
    bn_images: int = 1280  # 20 batches of 64
    val_images: int = 10000
    calibration_images: int = 256  # for the post-training quantization compared in `finish`
    search: str = "genetic"
    search_budget: int = 5376  # 512 + 19 generations of 256
    search_options: dict[str, Any] = field(default_factory=lambda: {
        "population": 512, "top_k": 256, "mutations": 128, "crossovers": 128, "mutation_prob": 0.3})
    latency_window: float = 5.0  # ms: rate only architectures within [C - window, C] of the run's limit C (0: off)
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.epochs <= 0 or self.qat_epochs < 0 or self.batch_size < 2 or self.search_budget < 1:
            raise NASError("QFA needs epochs > 0, qat_epochs >= 0, batch_size >= 2 and search_budget >= 1")
        if self.subnets_per_step < 2:
            raise NASError(f"QFA subnets_per_step {self.subnets_per_step} must be at least 2 (largest, smallest)")

    @property
    def lr(self) -> float:
        return self.base_lr * self.batch_size / 256


PAPER = QFAConfig()
PRESETS: dict[str, QFAConfig] = {
    "paper": PAPER,
    # a GPU hour: 40 + 8 epochs at batch 256, ratings on 2,000 images, 10 generations of 64
    "standard": dataclasses.replace(PAPER, epochs=40.0, warmup_epochs=2.0, qat_epochs=8.0, qat_warmup_epochs=1.0,
                                    batch_size=256, val_images=2000, search_budget=640, latency_window=0.0,
                                    search_options={"population": 64, "top_k": 16, "mutations": 32,
                                                    "crossovers": 32}),
    # minutes on a 2-core CPU: 8 + 1 epochs of 2,048 images at batch 32, ratings on 500 images, 4 generations of 8
    "quick": dataclasses.replace(PAPER, epochs=8.0, warmup_epochs=0.5, qat_epochs=1.0, qat_warmup_epochs=0.2,
                                 batch_size=32, train_images=2048, bn_images=256, val_images=500,
                                 calibration_images=128, search_budget=32, latency_window=0.0,
                                 search_options={"population": 8, "top_k": 4, "mutations": 4, "crossovers": 4}),
}


def make_config(budget: str, **overrides: Any) -> QFAConfig:
    return budget_config("QFA", PRESETS, budget, overrides)


def latency_floor(constraints: list[Constraint], cfg: QFAConfig) -> list[Constraint]:
    """SpaceEvo's lower latency edge: latency >= C - `latency_window` for the run's latency limit C (none when
    the window is 0; a one-line error when there is no limit to put it under)."""
    if not cfg.latency_window:
        return []
    limits = [c.limit for c in constraints if c.metric == "latency" and not c.lower]
    if not limits:
        raise NASError(f"QFA latency_window {cfg.latency_window:g} ms needs a latency limit (--latency-max MS); "
                       "give one or --option latency_window=0")
    return [Constraint("latency", min(limits) - cfg.latency_window, lower=True)]


def alpha_divergence(student: Any, teacher: Any, alpha: float, iw_clip: float) -> tuple[Any, Any]:
    """D_alpha(p || q) per sample, q the student's and p the teacher's softmax, and a surrogate whose gradient
    (through log q only) is the divergence's: -sum q rho(p / q) log q (AlphaNet's f-divergence).

    D_alpha = sum q (t^alpha - 1) / (alpha (alpha - 1)) with t = p / q (alpha 0: KL(q || p), 1: KL(p || q));
    rho = t^alpha / alpha + 1 / (alpha (alpha - 1)) (0: log t - 1; 1: t); t^alpha (t at alpha 0) is clipped at
    `iw_clip`. Computed from log-probabilities (log t = log p - log q, kept above -50; q t = p at alpha 1), so a
    class whose probability underflows gives a finite loss (ours; the official code divides the probabilities,
    which gives NaN once a student's logits spread by about 100)."""
    import torch.nn.functional as F

    log_q = F.log_softmax(student.float(), 1)
    log_p = F.log_softmax(teacher.float().detach(), 1)
    q = log_q.exp().detach()
    log_t = (log_p - log_q.detach()).clamp(min=-50.0)
    if abs(alpha) < 1e-3:
        log_t = log_t.clamp(max=math.log(iw_clip))
        weighted_value, weighted_rho = -q * log_t, q * (log_t - 1.0)
    elif abs(alpha - 1.0) < 1e-3:  # q t = p: no overflow where q underflows
        p = log_p.exp()
        weighted_value, weighted_rho = p * log_t, p
    else:
        power = (alpha * log_t).clamp(max=math.log(iw_clip)).exp()
        base = 1.0 / (alpha * (alpha - 1.0))
        weighted_value, weighted_rho = q * (power - 1.0) * base, q * (power / alpha + base)
    return weighted_value.sum(1), -(weighted_rho * log_q).sum(1)


def adaptive_distillation(student: Any, teacher: Any, alpha_min: float = -1.0, alpha_max: float = 1.0,
                          iw_clip: float = 5.0) -> tuple[Any, Any]:
    """AlphaNet's adaptive KD loss: per sample whichever of the two alpha-divergences is larger; (the batch
    mean of that divergence, the batch mean of its surrogate to back-propagate)."""
    low, low_surrogate = alpha_divergence(student, teacher, alpha_min, iw_clip)
    high, high_surrogate = alpha_divergence(student, teacher, alpha_max, iw_clip)
    pick = (low > high).float()
    return ((pick * low + (1.0 - pick) * high).mean().detach(),
            (pick * low_surrogate + (1.0 - pick) * high_surrogate).mean())


@registry.register_strategy("qfa")
class QFA(SupernetStrategy):
    """SpaceEvo's quantized-for-all supernet (AlphaNet sandwich training, then LSQ+) and INT8 subnet search."""

    name = "qfa"

    def prepare(self, context: SupernetContext) -> SupernetPlan:
        import torch

        from nas.inherited import InheritedEvaluator, load_supernet, save_supernet
        from nas.lsq import quantize_supernet
        from nas.supernet import Supernet
        from nas.train import resolve_device

        cfg = make_config(context.budget or "quick", **{**self.options, **context.options})
        folder, data = self.folder_and_data(context, cfg.train_images)
        device = resolve_device(cfg.device)
        if (folder / LSQ_FILE).exists():
            supernet = load_supernet(folder / LSQ_FILE, context.space, device)
        else:
            if (folder / FP32_FILE).exists():
                supernet = load_supernet(folder / FP32_FILE, context.space, device)
            else:
                torch.manual_seed(self.seed)
                supernet = Supernet(context.space, data.sample_shape, data.num_classes).to(device)
                self._train(supernet, data, cfg, folder, "fp32", context.progress)
                save_supernet(folder / FP32_FILE, supernet)
            quantize_supernet(supernet, cfg.bits, cfg.weight_init)
            if cfg.qat_epochs > 0:
                self._train(supernet, data, cfg, folder, "lsq", context.progress)
            save_supernet(folder / LSQ_FILE, supernet)
        self.config, self.data, self.supernet = cfg, context.data, supernet
        evaluator = InheritedEvaluator(supernet, context.data, cfg.bn_images, cfg.val_images,
                                       batch_size=max(64, min(cfg.batch_size, 256)), seed=self.seed)
        search = registry.get("strategies", cfg.search)(context.space, rating_objectives(context.objectives),
                                                        seed=self.seed, **cfg.search_options)
        plots = [str(p) for p in (folder / "qfa_training.png",) if p.exists()]
        return SupernetPlan(evaluator, search, cfg.search_budget, plots, latency_floor(context.constraints, cfg))

    def _train(self, supernet: Any, data: Any, cfg: QFAConfig, folder: Path, phase: str, progress: bool) -> None:
        """Sandwich training with in-place distillation, FP32 (`phase` "fp32") or LSQ+ ("lsq"), resumable at
        epoch ends from `folder/qfa_<phase>_state.pt`."""
        import torch

        from nas.train import EpochCheckpoint, TrainConfig, Trainer, TrainProgress, resize_inputs

        qat = phase == "lsq"
        config = TrainConfig(epochs=cfg.qat_epochs if qat else cfg.epochs, batch_size=cfg.batch_size,
                             lr=cfg.lr * (cfg.qat_lr_factor if qat else 1.0), momentum=cfg.momentum,
                             weight_decay=cfg.weight_decay,
                             warmup_epochs=cfg.qat_warmup_epochs if qat else cfg.warmup_epochs,
                             label_smoothing=cfg.label_smoothing, seed=self.seed + int(qat), device=cfg.device)
        trainer = Trainer(config, progress=progress, desc=f"qfa {phase} supernet")
        device = trainer.runtime.device
        space = supernet.space
        largest, smallest = space.extreme(largest=True), space.extreme(largest=False)
        x, y = data.x_train.to(device), data.y_train.to(device)
        rngs: dict[int, random.Random] = {}
        params = [p for p in supernet.parameters() if p.requires_grad]

        def run(arch: Any, batch: Any) -> torch.Tensor:
            return supernet(resize_inputs(batch.x, supernet.arch_input_shape(arch)), arch)

        def step(batch: Any, scale: float) -> float:
            rng = rngs.setdefault(batch.epoch, random.Random(f"{self.seed}-qfa-{phase}-{batch.epoch}"))
            logits = run(largest, batch)
            loss = torch.nn.functional.cross_entropy(logits.float(), batch.y, label_smoothing=cfg.label_smoothing)
            (loss * scale).backward()
            total, soft = loss.item(), logits.detach()
            others = [space.sample(rng) for _ in range(cfg.subnets_per_step - 2)] + [smallest]
            for arch in others:
                divergence, surrogate = adaptive_distillation(run(arch, batch), soft, cfg.alpha_min, cfg.alpha_max,
                                                              cfg.iw_clip)
                (surrogate * scale).backward()
                total += divergence.item()
            torch.nn.utils.clip_grad_value_(params, cfg.grad_clip_value)
            return total / cfg.subnets_per_step

        checkpoint = EpochCheckpoint(folder / f"qfa_{phase}_state.pt", supernet)
        state, optimizer_state = checkpoint.load(device)

        def on_epoch_end(progress: TrainProgress, optimizer: torch.optim.Optimizer, last: bool) -> None:
            checkpoint.save(progress, optimizer)
            if last:
                _plot_losses(folder, phase, progress.epoch_losses)

        if len({supernet.arch_input_shape(a) for a in (largest, smallest)}) == 1:
            x = resize_inputs(x, supernet.arch_input_shape(largest))  # one resolution: resize once
        trainer.fit(step, [supernet], x, y, augment=config.augment_mode(data.name), state=state,
                    optimizer_state=optimizer_state, on_epoch_end=on_epoch_end)
        checkpoint.path.unlink(missing_ok=True)

    def finish(self, context: SupernetContext, best: Record | None = None) -> None:
        """The best architecture's INT8 models and their accuracy and latency (module docstring, step 4)."""
        if best is None:
            return
        report = int8_report(self.supernet, Path(context.checkpoint_dir), best.arch, self.data, self.config,
                             self.seed)
        (Path(context.checkpoint_dir) / REPORT_FILE).write_text(json.dumps(report, indent=2))


def int8_report(supernet: Any, folder: Path, arch: Any, data: Any, cfg: QFAConfig, seed: int) -> dict[str, Any]:
    """Export `arch` from the LSQ+ supernet (learned scales) and from the FP32 supernet in `folder` (post-training
    quantization), each after BatchNorm recalibration; accuracy of the torch models and of the ONNX Runtime
    models on the validation split, and batch-1 latency of the ONNX models."""
    import torch

    from nas.export import export_onnx
    from nas.inherited import load_supernet
    from nas.int8 import calibration_batches, onnx_accuracy, onnx_latencies_ms
    from nas.lsq import quantized_subnet
    from nas.lsq_onnx import export_lsq_int8
    from nas.quantize import quantize_onnx
    from nas.train import evaluate_accuracy, recalibrate_batchnorm, resize_inputs

    shape = supernet.arch_input_shape(arch)
    g = torch.Generator().manual_seed(seed)
    x_bn = resize_inputs(data.x_train[torch.randperm(len(data.x_train), generator=g)[:cfg.bn_images]], shape)
    x_val = resize_inputs(data.x_val, shape)
    calibration = calibration_batches(data, shape, images=cfg.calibration_images)
    example = x_val[:2].cpu()

    def ready(model: torch.nn.Module) -> torch.nn.Module:
        model = model.cpu()
        recalibrate_batchnorm(model, x_bn.cpu(), 64, math.ceil(len(x_bn) / 64), torch.Generator().manual_seed(0))
        return model.eval()

    lsq = ready(quantized_subnet(supernet, arch))
    fp32 = ready(load_supernet(folder / FP32_FILE, supernet.space, "cpu").subnet(arch))
    paths = {name: folder / f"subnet_{name}.onnx" for name in ("fp32", "lsq_int8", "ptq_int8")}
    export_onnx(fp32, example, paths["fp32"])
    quantize_onnx(paths["fp32"], paths["ptq_int8"], calibration)
    exported = export_lsq_int8(lsq, example, paths["lsq_int8"], calibration)
    latencies = onnx_latencies_ms(list(paths.values()), tuple(shape))
    report: dict[str, Any] = {
        "arch": dict(arch), "input_shape": list(shape), "validation_images": len(x_val),
        "accuracy_fp32_torch": evaluate_accuracy(fp32, x_val, data.y_val),
        "accuracy_lsq_fake_quant_torch": evaluate_accuracy(lsq, x_val, data.y_val, amp=False),
        **{f"accuracy_{name}_ort": onnx_accuracy(path, data, tuple(shape)) for name, path in paths.items()},
        **{f"latency_{name}_ms": ms for name, ms in zip(paths, latencies)},
        "lsq_export": exported.describe(), "files": {k: str(v) for k, v in paths.items()}}
    report["speedup_lsq_int8"] = report["latency_fp32_ms"] / report["latency_lsq_int8_ms"]
    return report


def _plot_losses(folder: Path, phase: str, losses: list[float]) -> None:
    """qfa_training.png: the mean loss per epoch of each finished phase (FP32, then LSQ+)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    record = folder / "qfa_losses.json"
    phases = json.loads(record.read_text()) if record.exists() else {}
    phases[phase] = losses
    record.write_text(json.dumps(phases))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    start = 0
    for name in ("fp32", "lsq"):
        if name in phases:
            values = phases[name]
            ax.plot(range(start + 1, start + len(values) + 1), values, marker="o", label=name)
            start += len(values)
    ax.set_xlabel("epoch")
    ax.set_ylabel("sandwich loss (CE of the largest + KD), mean")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "qfa_training.png", dpi=110)
    plt.close(fig)
