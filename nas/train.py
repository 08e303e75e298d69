"""Stand-alone training and evaluation on in-memory tensors.

The recipe (documented defaults): SGD with Nesterov momentum 0.9 (or AdamW), a linear warm-up then a
cosine schedule stepped per batch, label smoothing 0.1, weight decay off BatchNorm and biases, and
batched augmentation suited to the data ("auto": random shifts for digits, shifts plus horizontal flips
for natural and clothing images, none for arrays and synthetic data). After training, BatchNorm running
statistics are recalibrated on training batches with the final weights (as Once-for-All does for subnets):
with the few epochs a search affords, the running averages otherwise lag the weights. Runs on CUDA with bfloat16 autocast
when a GPU is present, on all CPU threads otherwise. Deterministic for a seed on the CPU.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nas.data import TensorData

AUGMENT_BY_DATASET = {"digits": "shift", "fashion_mnist": "shift+flip", "cifar10": "shift+flip",
                      "image_folder": "shift+flip"}


@dataclass
class TrainConfig:
    epochs: int = 5
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 4e-5
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.1
    augment: str = "auto"  # auto | none | shift | shift+flip
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # bfloat16 autocast on CUDA
    num_threads: int = 0  # 0: all cores
    bn_calibration_batches: int = 10  # 0: keep the running statistics of training

    def __post_init__(self) -> None:
        from nas.space import NASError

        if self.optimizer not in ("sgd", "adamw"):
            raise NASError(f"optimizer {self.optimizer!r} is not one of 'sgd', 'adamw'")
        if self.augment not in ("auto", "none", "shift", "shift+flip"):
            raise NASError(f"augment {self.augment!r} is not one of 'auto', 'none', 'shift', 'shift+flip'")
        if self.epochs < 1 or self.batch_size < 1:
            raise NASError(f"epochs ({self.epochs}) and batch size ({self.batch_size}) must be at least 1")


@dataclass
class TrainResult:
    accuracy: float  # top-1 on the validation split, percent
    train_loss: float  # mean loss of the last epoch
    seconds: float


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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
        from nas.space import NASError

        raise NASError(f"data of shape {tuple(x.shape[1:])} cannot feed a model expecting {tuple(shape)}")
    return F.interpolate(x, size=tuple(shape[1:]), mode="bilinear", align_corners=False)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weights of conv/linear layers only, not on BatchNorm parameters and biases."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int, batches: int,
                          generator: torch.Generator | None = None) -> None:
    """Reset BatchNorm running statistics and re-estimate them (cumulative average) on `batches` batches."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or batches < 1:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    order = torch.randperm(len(x), generator=generator)[: batches * batch_size].to(x.device)
    for i in range(0, len(order), batch_size):
        if len(order[i:i + batch_size]) > 1:
            model(x[order[i:i + batch_size]])
    for m, momentum in zip(norms, saved):
        m.momentum = momentum


def _autocast(device: torch.device, amp: bool):
    enabled = amp and device.type == "cuda"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512,
                      device: torch.device | None = None, amp: bool = True) -> float:
    device = device or next(model.parameters()).device
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device, non_blocking=True)
        with _autocast(device, amp):
            logits = model(xb)
        correct += (logits.argmax(1).cpu() == y[i:i + batch_size]).sum().item()
    return 100.0 * correct / max(1, len(x))


def train_and_evaluate(model: nn.Module, data: TensorData, config: TrainConfig,
                       input_shape: tuple[int, ...] | None = None) -> TrainResult:
    """Train `model` on `data.x_train` with `config`, then return its validation top-1."""
    start = time.perf_counter()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    elif torch.get_num_threads() < (os.cpu_count() or 1):
        torch.set_num_threads(os.cpu_count() or 1)
    device = resolve_device(config.device)
    shape = input_shape or data.sample_shape
    x_train, x_val = resize_inputs(data.x_train, shape), resize_inputs(data.x_val, shape)
    x_train, y_train = x_train.to(device), data.y_train.to(device)
    mode = AUGMENT_BY_DATASET.get(data.name, "none") if config.augment == "auto" else config.augment
    generator = torch.Generator().manual_seed(config.seed)
    model.to(device).train()
    optimizer = make_optimizer(model, config)
    steps_per_epoch = max(1, math.ceil(len(x_train) / config.batch_size))
    total = config.epochs * steps_per_epoch
    warmup = int(config.warmup_epochs * steps_per_epoch)
    step, epoch_loss = 0, 0.0
    for _ in range(config.epochs):
        order = torch.randperm(len(x_train), generator=generator).to(device)
        losses = torch.zeros((), device=device)
        for i in range(0, len(order), config.batch_size):
            idx = order[i:i + config.batch_size]
            if len(idx) < 2:  # BatchNorm needs at least two samples
                continue
            xb = augment_batch(x_train[idx], mode, generator)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total, warmup, config.lr)
            with _autocast(device, config.amp):
                loss = F.cross_entropy(model(xb), y_train[idx], label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses += loss.detach()
            step += 1
        epoch_loss = losses.item() / steps_per_epoch
    recalibrate_batchnorm(model, x_train, config.batch_size, config.bn_calibration_batches, generator)
    accuracy = evaluate_accuracy(model, x_val, data.y_val, device=device, amp=config.amp)
    return TrainResult(accuracy, epoch_loss, time.perf_counter() - start)
