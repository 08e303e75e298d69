"""GM-NAS's DARTS and SNAS pairings (Hu et al., ICLR 2022: GM+DARTS, GM+SNAS): one (sub-)supernet trained over the
continuous relaxation of its space's mixed ops (`nas.relaxed`).

- "darts": first-order DARTS (Liu et al., ICLR 2019). The training images are split in half (the official GM-NAS
  NAS-Bench-201 runs split CIFAR's training set 50/50 between weights and alpha); before each weight step on the
  first half, one alpha step on a batch of the second half, theta = softmax(alpha) over the allowed ops; alpha by
  Adam at lr 3e-4, betas (0.5, 0.999), weight decay 1e-3 (the official architect). The second-order (unrolled)
  variant is not built.
- "snas": SNAS (Xie et al., ICLR 2019) as a single-level method: theta a Gumbel-softmax draw of alpha at temperature
  tau, weights and alpha updated from the same loss on the same batches (alpha by the same Adam), tau lowered
  linearly from `tau[0]` to `tau[1]` over the epochs alpha learns (official NB201: 1 to 0.1). SNAS's resource
  term is not used (neither does GM-NAS on NAS-Bench-201).
- alpha learns only from the lineage's last split epoch on (the official NB201 `warmup_epoch = split_ckpts[-1]`:
  weights alone until then); a leaf restarted at the final split learns alpha from its first epoch. The one-shot and
  few-shot baselines take the same warm-up, so the modes differ only in their splits.

Children inherit alpha and its optimizer state with the weights (saved in the same `EpochCheckpoint`); a restarted
leaf starts from fresh alpha. A leaf's architecture is the argmax of its alpha over its allowed ops (DARTS and SNAS
on NAS-Bench-201).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from nas.relaxed import ArchitectureWeights, MixedProgram, mixed_choices
from nas.space import SearchSpace
from nas.train import Batch


class RelaxedTraining:
    """The forward and the alpha updates of one (sub-)supernet's relaxed training (module docstring)."""

    def __init__(self, supernet: Any, space: SearchSpace, relaxation: str, *, arch_lr: float, arch_weight_decay: float,
                 tau: tuple[float, float], learn_from: int, epochs: int, seed: int,
                 alpha_batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | None) -> None:
        self.program = MixedProgram(supernet, space)
        self.relaxation, self.tau_range, self.learn_from, self.epochs = relaxation, tau, learn_from, epochs
        device = next(supernet.parameters()).device
        self.arch = ArchitectureWeights(mixed_choices(supernet.space), seed).to(device)
        self.optimizer = torch.optim.Adam(self.arch.parameters(), lr=arch_lr, betas=(0.5, 0.999),
                                          weight_decay=arch_weight_decay)
        self.alpha_batches = alpha_batches
        self.learning = False

    def state(self) -> dict[str, Any]:
        """What an `EpochCheckpoint` saves beside the weights."""
        return {"arch": self.arch, "arch_optimizer": self.optimizer}

    def tau(self, epoch: int) -> float:
        """SNAS's temperature at `epoch`: linear from tau[0] at `learn_from` to tau[1] at the last epoch."""
        span = max(1, self.epochs - 1 - self.learn_from)
        done = min(1.0, max(0.0, (epoch - self.learn_from) / span))
        return self.tau_range[0] + (self.tau_range[1] - self.tau_range[0]) * done

    def theta(self, epoch: int) -> dict[str, torch.Tensor]:
        return self.arch.theta(self.program.choices, self.relaxation, self.tau(epoch))

    def forward(self, batch: Batch) -> torch.Tensor:
        """The weights' forward for one batch, after DARTS's alpha step on an alpha batch when alpha learns."""
        self.learning = batch.epoch >= self.learn_from
        if not self.learning:
            return self.program(batch.x, {c: t.detach() for c, t in self.theta(batch.epoch).items()})
        if self.relaxation == "snas":  # one level: alpha's gradient comes from this loss, stepped in `after_step`
            return self.program(batch.x, self.theta(batch.epoch))
        assert self.alpha_batches is not None  # DARTS is given its half of the images
        x, y = next(self.alpha_batches)
        loss = torch.nn.functional.cross_entropy(self.program(x, self.theta(batch.epoch)), y)
        params = list(self.arch.parameters())  # a choice restricted to one op (few-shot's split edge) has no gradient
        for p, g in zip(params, torch.autograd.grad(loss, params, allow_unused=True)):
            p.grad = g
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return self.program(batch.x, {c: t.detach() for c, t in self.theta(batch.epoch).items()})

    def after_step(self, step: int, total: int) -> None:  # noqa: ARG002 - Trainer.fit's callback signature
        """SNAS's alpha step from the gradient the weights' loss left on alpha."""
        if self.relaxation == "snas" and self.learning:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def gm_forward(self, edge: str) -> Any:
        """For gradient matching: the relaxed forward with `edge` set to one op (weight 1) and every other mixed
        choice at softmax(alpha) (the official NB201 GM+DARTS scoring)."""
        def forward(x: torch.Tensor, value: Any) -> torch.Tensor:
            theta = {c: t.detach() for c, t in self.arch.theta(self.program.choices, "darts").items()}
            values = self.program.choices[edge]
            theta[edge] = torch.tensor([1.0 if v == value else 0.0 for v in values], device=x.device)
            return self.program(x, theta)
        return forward
