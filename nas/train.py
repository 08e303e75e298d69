"""One training loop for stand-alone networks, supernets (SPOS) and BossNAS's blocks, with hooks.

`Trainer.fit(step, modules, x, y)` owns what every loop shares: the seeded batch order over in-memory
tensors, batched augmentation, gradient accumulation, the optimizer (`nas.optim`: SGD, AdamW, LARS) and its
warm-up + cosine schedule stepped per optimizer step, autocast, progress, epochs, resuming at an epoch
boundary, and the `Runtime` (device, rank, world size; a batch is split over the ranks and gradients are
averaged across them when torch.distributed is initialised). What a step minimises is the hook: `step(batch,
scale)` runs forward and backward of one micro-batch. `supervised_step` makes one from a forward function and
a loss (`CrossEntropy`; `Distillation` from a teacher's logits, as N2N and Once-for-All train students);
BossNAS passes its ensemble-bootstrapping step. `bn_recalibration` re-estimates BatchNorm statistics (for
stand-alone models after training, for supernet paths before rating them).

The stand-alone recipe (`train_and_evaluate`, documented defaults): SGD with Nesterov momentum 0.9 (or
AdamW), a linear warm-up then a cosine schedule stepped per batch, label smoothing 0.1, weight decay off
BatchNorm and biases, and batched augmentation suited to the data ("auto": random shifts for digits, shifts
plus horizontal flips for natural and clothing images, none for arrays and synthetic data). After training,
BatchNorm running statistics are recalibrated on training batches with the final weights (as Once-for-All
does for subnets): with the few epochs a search affords, the running averages otherwise lag the weights. Runs
on CUDA with bfloat16 autocast when a GPU is present, on the idle CPU cores otherwise (`nas.threads`).
Deterministic for a seed on the CPU.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nas.data import TensorData
from nas.optim import OPTIMIZERS, lr_at, make_optimizer
from nas.space import NASError, one_of
from nas.threads import set_threads

AUGMENT_BY_DATASET = {"digits": "shift", "fashion_mnist": "shift+flip", "cifar10": "shift+flip",
                      "image_folder": "shift+flip"}
AUGMENTS = ("auto", "none", "shift", "shift+flip")


@dataclass
class TrainConfig:
    epochs: float = 5
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd | adamw | lars
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 4e-5
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.1
    augment: str = "auto"  # auto | none | shift | shift+flip
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # bfloat16 autocast on CUDA
    num_threads: int = 0  # 0: the cores idle when training starts (nas.threads)
    bn_calibration_batches: int = 10  # 0: keep the running statistics of training
    accumulate: int = 1  # micro-batches per optimizer step
    lars_eta: float = 0.001

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise NASError(f"optimizer {self.optimizer!r} is not one of {one_of(OPTIMIZERS)}")
        if self.augment not in AUGMENTS:
            raise NASError(f"augment {self.augment!r} is not one of {one_of(AUGMENTS)}")
        if not self.epochs > 0 or self.batch_size < 1 or self.accumulate < 1:
            raise NASError(f"epochs ({self.epochs}) must be positive, batch size ({self.batch_size}) and "
                           f"accumulate ({self.accumulate}) at least 1")
        for name, value, low, high in (("lr", self.lr, 0.0, math.inf), ("momentum", self.momentum, 0.0, 1.0),
                                       ("weight decay", self.weight_decay, 0.0, math.inf),
                                       ("label smoothing", self.label_smoothing, 0.0, 1.0)):
            if not (low <= value < high) or (name == "lr" and value == 0):
                interval = "a positive finite number" if name == "lr" else f"in [{low:g}, {high:g})"
                raise NASError(f"{name} {value!r} must be {interval}")
        if self.num_threads < 0:
            raise NASError(f"threads {self.num_threads} must be 0 (automatic) or more")
        check_device(self.device)

    def augment_mode(self, dataset: str) -> str:
        """The augmentation for a dataset: "auto" picks by its name."""
        return AUGMENT_BY_DATASET.get(dataset, "none") if self.augment == "auto" else self.augment


@dataclass
class TrainResult:
    accuracy: float  # top-1 on the validation split, percent
    train_loss: float  # mean loss of the last epoch
    seconds: float


def check_device(name: str) -> None:
    """A one-line error unless `name` is auto, cpu, cuda or cuda:N, and a CUDA device is there when asked for."""
    kind, _, index = name.partition(":")
    if kind not in ("auto", "cpu", "cuda") or (index and (kind != "cuda" or not index.isdigit())):
        raise NASError(f"device {name!r} is not one of 'auto', 'cpu', 'cuda', 'cuda:N'")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise NASError(f"device {name!r} was asked for, but this torch sees no CUDA device "
                           f"(torch {torch.__version__}); use --device cpu or auto")
        if index and int(index) >= torch.cuda.device_count():
            raise NASError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass(frozen=True)
class Runtime:
    """Where a training loop runs: its device, and for data-parallel training this process's rank among
    `world_size` processes (torchrun sets RANK and WORLD_SIZE). Rank 0 is the main process: it shows progress
    and writes checkpoints."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    rank: int = 0
    world_size: int = 1

    @classmethod
    def create(cls, device: str = "auto") -> Runtime:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        if world > 1 and device in ("auto", "cuda") and torch.cuda.is_available():
            return cls(torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank))), rank, world)
        return cls(resolve_device(device), rank, world)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, index: torch.Tensor) -> torch.Tensor:
        """This rank's share of a batch's indices."""
        return index[self.rank::self.world_size] if self.world_size > 1 else index

    def average_gradients(self, parameters: Sequence[nn.Parameter]) -> None:
        """Average the gradients across the ranks (a no-op for one process)."""
        if self.world_size == 1 or not torch.distributed.is_initialized():
            return
        for p in parameters:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            torch.distributed.all_reduce(p.grad)
            p.grad.div_(self.world_size)


# -- augmentation ----------------------------------------------------------------------------------------
def random_shift(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Per-sample random translation by up to `pad` pixels (pad-and-crop), vectorised over the batch."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator).to(x.device)
    rows = (dy + torch.arange(h, device=x.device))[:, :, None]
    cols = (dx + torch.arange(w, device=x.device))[:, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2)


def augment_batch(x: torch.Tensor, mode: str, generator: torch.Generator) -> torch.Tensor:
    if mode == "none" or x.dim() != 4:
        return x
    x = random_shift(x, max(1, x.shape[-1] // 8), generator)
    if "flip" in mode:
        flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


def resize_inputs(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Resize images to the architecture's input resolution (bilinear), once per dataset."""
    if tuple(x.shape[1:]) == tuple(shape):
        return x
    if x.dim() != 4 or x.shape[1] != shape[0]:
        raise NASError(f"data of shape {tuple(x.shape[1:])} cannot feed a model expecting {tuple(shape)}")
    return F.interpolate(x, size=tuple(shape[1:]), mode="bilinear", align_corners=False)


# -- BatchNorm statistics ----------------------------------------------------------------------------------
def batchnorms(*modules: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return list({id(m): m for module in modules for m in module.modules()
                 if isinstance(m, nn.modules.batchnorm._BatchNorm)}.values())


@contextlib.contextmanager
def bn_recalibration(*modules: nn.Module) -> Iterator[None]:
    """Inside: every BatchNorm of `modules` has reset statistics, averages cumulatively (momentum None) and is
    in training mode, so forward passes re-estimate its statistics; after: the old momentum, eval mode."""
    norms = batchnorms(*modules)
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    try:
        yield
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
            bn.eval()


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int, batches: int,
                          generator: torch.Generator | None = None,
                          forward: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
    """Re-estimate BatchNorm statistics on `batches` random batches of `x` (through `forward`, else `model`)."""
    if not batchnorms(model) or batches < 1:
        return
    order = torch.randperm(len(x), generator=generator)[: batches * batch_size].to(x.device)
    with bn_recalibration(model):
        for i in range(0, len(order), batch_size):
            if len(order[i:i + batch_size]) > 1:
                (forward or model)(x[order[i:i + batch_size]])


def autocast(device: torch.device, amp: bool = True) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA when `amp`; nothing elsewhere."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda")


# -- the loop ------------------------------------------------------------------------------------------------
@dataclass
class Batch:
    """One micro-batch: inputs (augmented), labels (None for self-supervised training), its index within the
    epoch, the epoch and the epoch's random generator."""

    x: torch.Tensor
    y: torch.Tensor | None
    index: int
    epoch: int
    generator: torch.Generator


#: forward and backward of one micro-batch, the loss scaled by the given factor; returns the unscaled loss
StepFn = Callable[[Batch, float], float]


@dataclass
class TrainProgress:
    """Where a `fit` stands (and where a resumed one starts): optimizer steps and finished epochs."""

    step: int = 0
    epoch: int = 0
    epoch_losses: list[float] = field(default_factory=list)  # mean micro-batch loss of each finished epoch


class EpochCheckpoint:
    """A supernet's training at its last finished epoch, in one file: the weights, the optimizer state and the
    `TrainProgress`, written atomically at every epoch end (`save`, for `Trainer.fit`'s `on_epoch_end`), so a
    killed `fit` continues exactly from `load` (SPOS, GM-NAS, QFA). `extra` names other objects with a
    `state_dict` saved and restored beside them (GM+DARTS's architecture weights and their optimizer)."""

    def __init__(self, path: str | os.PathLike[str], module: nn.Module, extra: Mapping[str, Any] | None = None) -> None:
        from pathlib import Path

        self.path, self.module, self.extra = Path(path), module, dict(extra or {})

    def load(self, device: torch.device | str = "cpu") -> tuple[TrainProgress, dict | None]:
        """The progress and optimizer state to resume from (the weights and `extra` are loaded); a fresh
        start when there is no file."""
        if not self.path.exists():
            return TrainProgress(), None
        saved = torch.load(self.path, map_location=device, weights_only=True)
        self.module.load_state_dict(saved["supernet"])
        for name, obj in self.extra.items():
            obj.load_state_dict(saved["extra"][name])
        return TrainProgress(*saved["progress"]), saved["optimizer"]

    def save(self, progress: TrainProgress, optimizer: torch.optim.Optimizer) -> None:
        tmp = self.path.with_suffix(".tmp")
        torch.save({"supernet": self.module.state_dict(), "optimizer": optimizer.state_dict(),
                    "progress": [progress.step, progress.epoch, progress.epoch_losses],
                    "extra": {name: obj.state_dict() for name, obj in self.extra.items()}}, tmp)
        tmp.replace(self.path)


class Trainer:
    """The training loop (module docstring); `config` gives batch size, optimizer, schedule, augmentation."""

    def __init__(self, config: TrainConfig, runtime: Runtime | None = None, progress: bool = False,
                 desc: str = "train") -> None:
        self.config = config
        self.runtime = runtime or Runtime.create(config.device)
        self.progress = progress and self.runtime.is_main
        self.desc = desc

    def optimizer(self, modules: Sequence[nn.Module]) -> torch.optim.Optimizer:
        c = self.config
        return make_optimizer(modules, c.optimizer, c.lr, c.weight_decay, c.momentum, lars_eta=c.lars_eta)

    def steps_per_epoch(self, samples: int) -> int:
        return max(1, math.ceil(samples / self.config.batch_size) // self.config.accumulate)

    def fit(self, step: StepFn, modules: Sequence[nn.Module], x: torch.Tensor, y: torch.Tensor | None = None, *,
            total_steps: int | None = None, augment: str = "none", state: TrainProgress | None = None,
            optimizer_state: dict | None = None, epoch_generator: Callable[[int], torch.Generator] | None = None,
            also_train: Sequence[nn.Module] = (), after_step: Callable[[int, int], None] | None = None,
            on_epoch_end: Callable[[TrainProgress, torch.optim.Optimizer, bool], None] | None = None,
            stop_epoch: int | None = None) -> TrainProgress:
        """Train `modules`' parameters with `step` on `x` (and `y`) for `config.epochs` epochs, or `total_steps`
        optimizer steps (`also_train`: modules not optimized but in training mode too, e.g. an EMA target
        network); `after_step(step, total)` follows every optimizer step (e.g. an EMA update),
        `on_epoch_end(progress, optimizer, last)` every epoch (checkpoints). Batch order and augmentation come
        from one generator seeded with `config.seed`, or from `epoch_generator(epoch)` per epoch; a resumed
        run (`state`, `optimizer_state` from an epoch end) continues exactly. `stop_epoch` ends the call after
        that many finished epochs while the schedule still spans all of them (GM-NAS splits a supernet there and
        its sub-supernets continue the schedule)."""
        c, runtime = self.config, self.runtime
        per_epoch = self.steps_per_epoch(len(x))
        total = total_steps if total_steps is not None else max(1, round(c.epochs * per_epoch))
        warmup = round(c.warmup_epochs * per_epoch)
        epochs = math.ceil(total / per_epoch)
        optimizer = self.optimizer(modules)
        if optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        progress = state or TrainProgress()
        shared = torch.Generator().manual_seed(c.seed)
        from tqdm.auto import tqdm

        for epoch in range(progress.epoch, epochs if stop_epoch is None else min(epochs, stop_epoch)):
            for module in (*modules, *also_train):
                module.train()
            g = epoch_generator(epoch) if epoch_generator else shared
            order = torch.randperm(len(x), generator=g).to(x.device)
            losses, micro = [], 0
            starts = range(0, len(order), c.batch_size)
            bar = tqdm(starts, desc=f"{self.desc} epoch {epoch + 1}/{epochs}", disable=not self.progress, leave=False)
            for i in bar:
                if progress.step >= total:
                    break
                index = runtime.shard(order[i:i + c.batch_size])
                if len(index) < 2:  # BatchNorm needs at least two samples
                    continue
                xb = augment_batch(x[index], augment, g)
                with autocast(runtime.device, c.amp):
                    losses.append(step(Batch(xb, None if y is None else y[index], i // c.batch_size, epoch, g),
                                       1.0 / c.accumulate))
                micro += 1
                if micro % c.accumulate:
                    continue
                runtime.average_gradients(params)
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(progress.step, total, warmup, c.lr)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                progress.step += 1
                if after_step is not None:
                    after_step(progress.step - 1, total)
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
            optimizer.zero_grad(set_to_none=True)
            progress.epoch = epoch + 1
            progress.epoch_losses.append(sum(losses) / max(1, len(losses)))
            if on_epoch_end is not None:
                on_epoch_end(progress, optimizer, epoch + 1 == epochs)
        return progress


# -- what a step minimises -------------------------------------------------------------------------------------
class CrossEntropy:
    """Cross-entropy on the labels, with label smoothing."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def __call__(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        if batch.y is None:
            raise NASError("cross-entropy needs labels; this batch has none (fit was given no y)")
        return F.cross_entropy(logits, batch.y, label_smoothing=self.label_smoothing)


class Distillation:
    """Distillation from a teacher's logits on the same (augmented) inputs.

    `kind="mse"`: the mean squared error between student and teacher logits, no labels (N2N, Ashok et al. 2018,
    as its code); `kind="kl"`: Hinton et al.'s temperature-softened KL divergence times T^2. `alpha` mixes in
    the label cross-entropy: loss = alpha * CE + (1 - alpha) * distillation (0: distillation only)."""

    KINDS = ("mse", "kl")

    def __init__(self, teacher: Callable[[torch.Tensor], torch.Tensor], kind: str = "kl", temperature: float = 4.0,
                 alpha: float = 0.0, label_smoothing: float = 0.0) -> None:
        if kind not in self.KINDS:
            raise NASError(f"distillation kind {kind!r} is not one of {one_of(self.KINDS)}")
        self.teacher, self.kind, self.temperature, self.alpha = teacher, kind, temperature, alpha
        self.ce = CrossEntropy(label_smoothing)

    def __call__(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        with torch.no_grad():
            target = self.teacher(batch.x).float()
        logits = logits.float()
        if self.kind == "mse":
            loss = F.mse_loss(logits, target)
        else:
            t = self.temperature
            loss = F.kl_div(F.log_softmax(logits / t, 1), F.log_softmax(target / t, 1), log_target=True,
                            reduction="batchmean") * t * t
        return loss if not self.alpha else self.alpha * self.ce(logits, batch) + (1 - self.alpha) * loss


def supervised_step(forward: Callable[[Batch], torch.Tensor],
                    loss: Callable[[torch.Tensor, Batch], torch.Tensor]) -> StepFn:
    """A step that computes `loss(forward(batch), batch)` and back-propagates it."""

    def step(batch: Batch, scale: float) -> float:
        value = loss(forward(batch), batch)
        (value * scale).backward()
        return value.detach().item()

    return step


# -- stand-alone training --------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate_accuracy(model: nn.Module | Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                      batch_size: int = 512, device: torch.device | None = None, amp: bool = True) -> float:
    """Top-1 (%) of `model` (a module, put in eval mode, or any forward function) on `x`, `y`."""
    if isinstance(model, nn.Module):
        device = device or next(model.parameters()).device
        model.eval()
    device = device or x.device
    correct = 0
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(xb)
        correct += int((logits.argmax(1).cpu() == y[i:i + batch_size].cpu()).sum().item())
    return 100.0 * correct / max(1, len(x))


def train_and_evaluate(model: nn.Module, data: TensorData, config: TrainConfig,
                       input_shape: tuple[int, ...] | None = None, loss: Any = None) -> TrainResult:
    """Train `model` on `data.x_train` with `config` (cross-entropy, or the given loss hook), recalibrate its
    BatchNorm statistics, and return its validation top-1."""
    start = time.perf_counter()
    set_threads(config.num_threads)
    trainer = Trainer(config)
    device = trainer.runtime.device
    shape = input_shape or data.sample_shape
    x_train, x_val = resize_inputs(data.x_train, shape), resize_inputs(data.x_val, shape)
    x_train, y_train = x_train.to(device), data.y_train.to(device)
    model.to(device)
    step = supervised_step(lambda batch: model(batch.x), loss or CrossEntropy(config.label_smoothing))
    generator = torch.Generator().manual_seed(config.seed)
    progress = trainer.fit(step, [model], x_train, y_train, augment=config.augment_mode(data.name),
                           epoch_generator=lambda epoch: generator)
    recalibrate_batchnorm(model, x_train, config.batch_size, config.bn_calibration_batches, generator)
    accuracy = evaluate_accuracy(model, x_val, data.y_val, device=device, amp=config.amp)
    return TrainResult(accuracy, progress.epoch_losses[-1], time.perf_counter() - start)
