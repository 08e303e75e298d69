"""Building blocks of SpaceEvo's search over search spaces (Wang et al., ICCV 2023): the NSR distillation loss
of its block-wise quality proxy and the Q-T score of a candidate space.

Both follow the released code (microsoft/Moonlit, SpaceEvo), where it and the paper differ, the choice is an
option named below.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from nas.space import NASError

if TYPE_CHECKING:
    import torch

#: the loss the released code gives a space none of whose samples meets the latency constraint
NO_SAMPLE_LOSS = 1e5
#: added to the constraint-satisfaction share P and to the top-k count, as the released code does
CODE_EPSILON = 1e-5


def nsr_loss(student: torch.Tensor, teacher: torch.Tensor, variance_of: str = "teacher") -> torch.Tensor:
    """Noise-to-signal ratio: per sample and channel, the mean squared error over the feature map divided by
    the variance (unbiased, over the map) of one of the two outputs, averaged over samples and channels.

    `variance_of`: "teacher" (the paper's signal: the teacher's feature) or "student" (the released code calls
    its loss as `criterion(student_out, teacher_out)` and normalises by its first argument, the student's)."""
    if variance_of not in ("teacher", "student"):
        raise NASError(f"nsr_loss variance_of {variance_of!r} is not one of 'teacher', 'student'")
    if student.shape != teacher.shape or student.dim() != 4:
        raise NASError(f"nsr_loss needs two (N, C, H, W) tensors of one shape, got {tuple(student.shape)} and "
                       f"{tuple(teacher.shape)}")
    if student.shape[2] * student.shape[3] < 2:
        raise NASError(f"nsr_loss needs feature maps of at least 2 pixels for a variance, got {tuple(student.shape)}")
    signal = (teacher if variance_of == "teacher" else student).var(dim=(2, 3))
    noise = (student - teacher).square().mean(dim=(2, 3))
    return (noise / signal).mean()


@dataclass(frozen=True)
class QTScore:
    """A space's Q-T score and its parts, summed over the latency constraints as the released code sums them."""

    score: float
    latency_penalty: float
    top_loss: float


def qt_score(losses: Sequence[float] | np.ndarray, latencies: Sequence[float] | np.ndarray,
             constraints: Sequence[float], top: int = 50, t: float = 0.1, a: float = 0.01) -> QTScore:
    """SpaceEvo's Q-T score of a space from the (loss, latency) of models sampled in it, exactly as coded.

    For each latency constraint C: P = (share of samples with latency <= C) + 1e-5; L = the sum of the `top`
    lowest losses among those samples divided by (their count + 1e-5), or 1e5 when none meets C; penalty =
    max(1, (t / P) ** a); score = 1 / (L x penalty). Scores, penalties and losses are summed over the
    constraints. Defaults: the code's t = 0.1 and a = 0.01 (its README uses t = 0.08)."""
    losses, latencies = np.asarray(losses, dtype=np.float64), np.asarray(latencies, dtype=np.float64)
    if losses.shape != latencies.shape or losses.ndim != 1 or not len(losses):
        raise NASError(f"qt_score needs as many losses as latencies (one each per sampled model), got "
                       f"{losses.shape} and {latencies.shape}")
    if not constraints or top < 1:
        raise NASError(f"qt_score needs at least one latency constraint and top >= 1, got {list(constraints)}, "
                       f"top {top}")
    score = penalty_sum = loss_sum = 0.0
    for limit in constraints:
        meets = latencies <= limit
        share = meets.sum() / len(latencies) + CODE_EPSILON
        best = np.sort(losses[meets])[:top]
        top_loss = best.sum() / (len(best) + CODE_EPSILON) if len(best) else NO_SAMPLE_LOSS
        penalty = max(1.0, (t / share) ** a)
        score += 1.0 / (top_loss * penalty)
        penalty_sum += penalty
        loss_sum += top_loss
    return QTScore(float(score), float(penalty_sum), float(loss_sum))
