"""N2N's policies, reward and REINFORCE update (Ashok et al., ICLR 2018; facts from the official code in
`../shared/reference/gm_nas_and_n2n.md`).

- `RemovalPolicy` (stage 1): a 2-layer bidirectional LSTM (30 hidden units, zero initial state) over the layer
  descriptors, a linear layer and softmax to keep / remove per layer, sampled.
- `ShrinkPolicy` (stage 2): an autoregressive stack of 2 LSTM cells (30 hidden units) stepping through the
  layers and, per layer, through the fields kernel, stride, outputs, padding; each step picks one of `SCALES`
  (an 11-way softmax; the repeated 0.5 biases the initial policy towards halving, as the code's lookup) and the
  chosen scale multiplies that field of the layer's descriptor for the next step.
- `reward`: R = C (2 - C) * A_student / A_teacher with C = 1 - params_student / params_teacher; -1 for an invalid
  student (`INVALID`: it does not build, or is no smaller than the teacher); with a size or accuracy limit, a
  violating student gets (eps - 1) + eps * R, eps = max(1 - update / 15, 0)^4: soft at first, -1 from 15
  policy updates on.
- `Reinforce`: Adam (lr 0.003 for removal, 0.1 for shrinkage in the code), the gradient
  (1/m) sum_k (R_k - b) grad log pi(actions_k) over the m rollouts of an update (the paper's per-rollout form);
  `advantage="batch"` reinforces every rollout with (mean R - b) instead, the official code's quirk. The
  baseline b is the code's running mean: the sum of the earlier updates' mean rewards divided by (their count +
  1), i.e. 0 at the first update.

Deviations: the removal policy samples no action for layers stage 1 may not remove, and the shrink policy none
for fixed fields nor for the type field (the code samples and reinforces them, then ignores them); one
optimiser step per update (the code steps once per rollout); eps held at 0 past 15 updates (the code's
clip((1 - update / 15)^4, 0, 1) climbs back to 1 at 30 updates, surely not meant).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.space import NASError

#: stage 2's scale choices (the official code's lookup)
SCALES = (0.25, 0.5, 0.5, 0.5, 0.5, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
INVALID = -1.0
HIDDEN = 30
ADVANTAGES = ("rollout", "batch")


def _tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32))


class RemovalPolicy(nn.Module):
    """Stage 1's bidirectional LSTM over the layer descriptors: keep (action 1) or remove (0) per layer."""

    def __init__(self, inputs: int = 5, hidden: int = HIDDEN, layers: int = 2) -> None:
        super().__init__()
        self.lstm = nn.LSTM(inputs, hidden, layers, bidirectional=True)
        self.head = nn.Linear(2 * hidden, 2)

    def forward(self, descriptors: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of remove / keep per layer, shape (layers, 2)."""
        out, _ = self.lstm(descriptors.unsqueeze(1))  # zero initial state
        return torch.log_softmax(self.head(out.squeeze(1)), dim=-1)

    def sample(self, descriptors: np.ndarray | torch.Tensor, fixed: Sequence[bool],
               generator: torch.Generator | None = None) -> tuple[list[bool], torch.Tensor]:
        """Keep decisions per layer (`fixed` layers always kept) and the log-probability of the sampled ones."""
        logp = self(_tensor(descriptors))
        actions = torch.multinomial(logp.detach().exp(), 1, generator=generator).squeeze(1)
        free = ~torch.as_tensor(list(fixed), dtype=torch.bool)
        chosen = logp.gather(1, actions.unsqueeze(1)).squeeze(1)
        keep = [bool(a) or f for a, f in zip(actions.tolist(), fixed)]
        return keep, chosen[free].sum()


class ShrinkPolicy(nn.Module):
    """Stage 2's autoregressive LSTM cells: one of `scales` per layer and shrinkable field (module docstring)."""

    def __init__(self, inputs: int = 5, hidden: int = HIDDEN, layers: int = 2,
                 scales: Sequence[float] = SCALES) -> None:
        super().__init__()
        self.cells = nn.ModuleList(nn.LSTMCell(inputs if i == 0 else hidden, hidden) for i in range(layers))
        self.head = nn.Linear(hidden, len(scales))
        self.scales = tuple(float(s) for s in scales)
        self.hidden = hidden

    def sample(self, descriptors: np.ndarray | torch.Tensor, fixed: np.ndarray,
               generator: torch.Generator | None = None) -> tuple[np.ndarray, torch.Tensor]:
        """Scales of shape (layers, 4) for kernel, stride, outputs, padding (1.0 where `fixed`), and the
        log-probability of the sampled ones. Descriptor column j + 1 holds field j."""
        desc = _tensor(descriptors)
        state = [(torch.zeros(1, self.hidden), torch.zeros(1, self.hidden)) for _ in self.cells]
        chosen = np.ones((desc.shape[0], 4), dtype=np.float64)
        logps = []
        for i in range(desc.shape[0]):
            x = desc[i:i + 1].clone()
            for j in range(4):
                if fixed[i][j]:
                    continue
                h = x
                for k, cell in enumerate(self.cells):
                    state[k] = cell(h, state[k])
                    h = state[k][0]
                logp = torch.log_softmax(self.head(h), dim=-1).squeeze(0)
                action = int(torch.multinomial(logp.detach().exp(), 1, generator=generator))
                logps.append(logp[action])
                scale = self.scales[action]
                chosen[i, j] = scale
                x = x.clone()
                x[0, j + 1] = x[0, j + 1] * scale
        return chosen, torch.stack(logps).sum() if logps else torch.zeros((), requires_grad=True)


def compression(student_params: int, teacher_params: int) -> float:
    """C = 1 - params_student / params_teacher."""
    return 1.0 - student_params / teacher_params


def anneal(update: int, updates: float = 15.0) -> float:
    """eps = max(1 - update / updates, 0)^4, the constraint penalty's softness: 1 at first, 0 from `updates` on.
    (The code clips after the power, so its eps rises again past `updates`, back to 1 at twice it.)"""
    return max(0.0, 1.0 - update / updates) ** 4


def reward(student_params: int, teacher_params: int, student_acc: float, teacher_acc: float,
           size_limit: int | None = None, acc_limit: float | None = None, update: int = 0,
           anneal_updates: float = 15.0) -> float:
    """N2N's reward of a student (module docstring); accuracies in one unit (`acc_limit` in it too)."""
    if student_params >= teacher_params:
        return INVALID
    c = compression(student_params, teacher_params)
    r = c * (2.0 - c) * student_acc / teacher_acc
    if (size_limit is not None and student_params > size_limit) or (acc_limit is not None and
                                                                     student_acc < acc_limit):
        eps = anneal(update, anneal_updates)
        return (eps - 1.0) + eps * r
    return r


class Reinforce:
    """REINFORCE with the code's running-mean baseline for one policy (module docstring)."""

    def __init__(self, policy: nn.Module, lr: float, advantage: str = "rollout") -> None:
        if advantage not in ADVANTAGES:
            raise NASError(f"advantage {advantage!r} is not accepted; accepted: {', '.join(map(repr, ADVANTAGES))}")
        self.policy, self.advantage = policy, advantage
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
        self.batch_means: list[float] = []

    @property
    def baseline(self) -> float:
        return sum(self.batch_means) / (len(self.batch_means) + 1)

    def update(self, log_probs: Sequence[torch.Tensor], rewards: Sequence[float]) -> dict[str, float]:
        """One policy step on the rollouts' log-probabilities and rewards."""
        if not rewards or len(log_probs) != len(rewards):
            raise NASError(f"{len(log_probs)} rollouts and {len(rewards)} rewards; accepted: as many of each, >= 1")
        b, mean = self.baseline, float(np.mean(rewards))
        advantages = [r - b for r in rewards] if self.advantage == "rollout" else [mean - b] * len(rewards)
        loss = -torch.stack([a * lp for a, lp in zip(advantages, log_probs)]).sum() / len(rewards)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.batch_means.append(mean)
        return {"mean_reward": mean, "baseline": b, "loss": float(loss.detach())}

    def state_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "batch_means": list(self.batch_means), "advantage": self.advantage}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.batch_means = [float(r) for r in state["batch_means"]]
