"""Optimizers and the learning-rate schedule every training loop uses (`nas.train.Trainer`).

Parameter groups put weight decay on weights only: tensors of two or more dimensions (conv and linear weights),
not BatchNorm parameters and biases. SGD (Nesterov) and AdamW come from torch; LARS (You et al. 2017, as
BYOL / BossNAS use it through OpenSelfSup) is here. The schedule is a linear warm-up then a cosine decay to
zero, stepped per optimizer step.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

OPTIMIZERS = ("sgd", "adamw", "lars")


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling (You et al. 2017) as used by BYOL/BossNAS (OpenSelfSup's LARS).

    For a parameter group with `lars_exclude` False: local_lr = eta * ||w|| / (||g|| + wd * ||w||) (1 when
    either norm is zero), the step is lr * local_lr * (g + wd * w), fed through heavy-ball momentum.
    Groups with `lars_exclude` True (BatchNorm weights and biases) take plain SGD with momentum, no decay.
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 0.001) -> None:
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars_exclude=False)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201 - torch optimizer protocol
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                if not group["lars_exclude"]:
                    wd = group["weight_decay"]
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d_p)
                    trust = torch.where((w_norm > 0) & (g_norm > 0),
                                        group["eta"] * w_norm / (g_norm + wd * w_norm), torch.ones_like(w_norm))
                    d_p = (d_p + wd * p) * trust
                d_p = d_p * group["lr"]
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = d_p.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(d_p)
                p.sub_(state["momentum_buffer"])


def parameter_groups(modules: Iterable[nn.Module], weight_decay: float, lars: bool = False) -> list[dict]:
    """Weights (two or more dimensions) get `weight_decay`; biases and BatchNorm parameters none (and, for
    LARS, no trust-ratio scaling). Each trainable parameter once, even when modules share it."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in modules:
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                (decay if p.dim() > 1 else no_decay).append(p)
    plain: dict = {"params": no_decay, "weight_decay": 0.0}
    if lars:
        plain["lars_exclude"] = True
    return [{"params": decay, "weight_decay": weight_decay}, plain]


def make_optimizer(modules: Iterable[nn.Module], name: str, lr: float, weight_decay: float, momentum: float = 0.9,
                   nesterov: bool = True, lars_eta: float = 0.001) -> torch.optim.Optimizer:
    """SGD (with Nesterov momentum unless `nesterov` is off), AdamW or LARS over `modules`' parameters."""
    groups = parameter_groups(modules, weight_decay, lars=name == "lars")
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, eta=lars_eta)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warm-up over `warmup` steps, then a cosine from `base` to 0 at step `total`."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * progress))
