"""The accuracy-predictor interface, an ensemble wrapper and rank-correlation metrics.

A predictor learns a map from architectures of any space to a scalar (accuracy, usually): `fit(space,
archs, targets)` then `predict(space, archs)`. Predictors read architectures only through the space
(`space.encode`, `space.graph`), so one predictor works on every space. `predict_members` returns one
row per ensemble member (a single row for a lone model), which acquisition functions use as a
distribution. A predictor that trains an ensemble of its own (`own_ensemble`, the GNN) takes an
`ensemble` size; others are wrapped in `Ensemble`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np

from nas.space import SearchSpace


class Predictor(ABC):
    """Base class: fit on (architecture, target) pairs, predict targets of new architectures."""

    name = "predictor"
    #: whether the constructor takes `ensemble=N` and trains N members itself (else wrap it in `Ensemble`)
    own_ensemble = False

    @abstractmethod
    def fit(self, space: SearchSpace, archs: Sequence[Mapping], targets: Sequence[float] | np.ndarray) -> Predictor:
        """Train on `archs` with their `targets`; returns self."""

    @abstractmethod
    def predict(self, space: SearchSpace, archs: Sequence[Mapping]) -> np.ndarray:
        """Predicted targets, shape (len(archs),)."""

    def predict_members(self, space: SearchSpace, archs: Sequence[Mapping]) -> np.ndarray:
        """Predictions of each ensemble member, shape (members, len(archs))."""
        return self.predict(space, archs)[None, :]


class Ensemble(Predictor):
    """`size` copies of a predictor that differ by their seed (as BANANAS' ensemble of meta neural nets);
    the prediction is the members' mean."""

    name = "ensemble"

    def __init__(self, factory: Callable[[int], Predictor], size: int = 5, seed: int = 0) -> None:
        if size < 1:
            raise ValueError(f"ensemble size {size} must be at least 1")
        self.factory = factory
        self.size = size
        self.seed = seed
        self.members: list[Predictor] = []

    def fit(self, space: SearchSpace, archs: Sequence[Mapping], targets: Sequence[float] | np.ndarray) -> Ensemble:
        self.members = [self.factory(self.seed * 1000 + i).fit(space, archs, targets) for i in range(self.size)]
        return self

    def predict_members(self, space: SearchSpace, archs: Sequence[Mapping]) -> np.ndarray:
        if not self.members:
            raise RuntimeError("fit the ensemble before predicting")
        return np.stack([m.predict(space, archs) for m in self.members])

    def predict(self, space: SearchSpace, archs: Sequence[Mapping]) -> np.ndarray:
        return self.predict_members(space, archs).mean(axis=0)


def kendall_tau(predicted: Sequence[float], actual: Sequence[float]) -> float:
    """Kendall's tau-b between predictions and ground truth (0.0 when either is constant)."""
    from scipy.stats import kendalltau

    tau = kendalltau(predicted, actual).statistic
    return 0.0 if np.isnan(tau) else float(tau)


def spearman_rho(predicted: Sequence[float], actual: Sequence[float]) -> float:
    """Spearman's rank correlation (0.0 when either is constant)."""
    from scipy.stats import spearmanr

    rho = spearmanr(predicted, actual).statistic
    return 0.0 if np.isnan(rho) else float(rho)


def rank_correlations_by_row(predicted: np.ndarray, actual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kendall's tau-b and Spearman's rho of each row of `predicted` against the same row of `actual` (2-D arrays
    of one shape), vectorised over the rows; each value equals `kendall_tau` / `spearman_rho` of that row pair.
    Tau compares every pair (memory and time grow with the square of the row length): for short rows."""
    from scipy.stats import rankdata

    p, a = np.asarray(predicted, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if p.ndim != 2 or p.shape != a.shape:
        raise ValueError(f"need two 2-D arrays of one shape, got {p.shape}, {a.shape}")
    tau = np.zeros(len(p))
    chunk = max(1, 2 ** 22 // max(1, p.shape[1] ** 2))  # rows at a time: pair matrices of at most 32 MB each
    for start in range(0, len(p), chunk):
        rows = slice(start, start + chunk)
        sign_p = np.sign(p[rows, :, None] - p[rows, None, :])  # every ordered pair; tied pairs count 0
        sign_a = np.sign(a[rows, :, None] - a[rows, None, :])
        untied = np.sqrt(np.abs(sign_p).sum(axis=(1, 2)) * np.abs(sign_a).sum(axis=(1, 2)))
        np.divide((sign_p * sign_a).sum(axis=(1, 2)), untied, out=tau[rows], where=untied > 0)
    rank_p, rank_a = (r - r.mean(axis=1, keepdims=True) for r in (rankdata(p, axis=1), rankdata(a, axis=1)))
    spread = np.sqrt((rank_p ** 2).sum(axis=1) * (rank_a ** 2).sum(axis=1))
    rho = np.divide((rank_p * rank_a).sum(axis=1), spread, out=np.zeros(len(p)), where=spread > 0)
    return tau, rho


class Standardizer:
    """Targets to zero mean and unit variance, and back."""

    def __init__(self, values: Sequence[float] | np.ndarray) -> None:
        y = np.asarray(values, dtype=np.float64)
        self.mean = float(y.mean())
        self.std = float(y.std()) or 1.0

    def forward(self, values: Sequence[float] | np.ndarray) -> np.ndarray:
        return (np.asarray(values, dtype=np.float64) - self.mean) / self.std

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64) * self.std + self.mean


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread inside the block: the small networks and graphs predictors handle run
    faster so than with several threads competing for a small, busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def bootstrap_draws(n: int, resamples: int = 2000, seed: int = 0) -> np.ndarray:
    """Indices of `resamples` draws of `n` pairs with replacement, one draw per row (the draws
    `bootstrap_interval` makes, for statistics it cannot compute from one metric)."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The (1 - level) / 2 and (1 + level) / 2 quantiles of bootstrap `values`."""
    return float(np.quantile(values, (1 - level) / 2)), float(np.quantile(values, (1 + level) / 2))


def bootstrap_interval(metric: Callable[[Sequence[float], Sequence[float]], float], predicted: Sequence[float],
                       actual: Sequence[float], resamples: int = 2000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of `metric(predicted, actual)` (e.g. `kendall_tau`): the pairs are drawn
    with replacement `resamples` times; returns the (1 - level) / 2 and (1 + level) / 2 quantiles. Kendall's tau
    and Spearman's rho of up to 256 pairs are computed for every resample at once (`rank_correlations_by_row`)."""
    p, a = np.asarray(predicted, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if p.shape != a.shape or len(p) < 3:
        raise ValueError(f"bootstrap needs two equal-length sequences of at least 3 values, got {p.shape}, {a.shape}")
    draws = bootstrap_draws(len(p), resamples, seed)
    if metric in (kendall_tau, spearman_rho) and len(p) <= 256:  # the same values, every resample at once
        values = rank_correlations_by_row(p[draws], a[draws])[metric is spearman_rho]
    else:
        values = np.array([metric(p[d], a[d]) for d in draws])
    return percentile_interval(values, level)
