"""BANANAS: Bayesian optimisation with neural architectures for NAS (White, Neiswanger & Savani, AAAI 2021).

As the paper's Algorithm 1 and its official code (naszilla/bananas, NASLib's `Bananas`): `num_init`
random architectures; then, round after round, fit an ensemble of predictors on every evaluation so
far, generate candidates by mutating the best architectures found so far, score them with an
acquisition function over the ensemble, and evaluate the `batch_size` best candidates. Acquisition:
independent Thompson sampling ("its", the paper's choice: one draw per candidate from a normal with the
ensemble's mean and standard deviation) or an upper confidence bound ("ucb", mean + `ucb_beta` x std).

Defaults and deviations (measured on NB201 CIFAR-10 with `scripts/bench_strategies.py`, see
`benchmarks/bananas.md`):
- predictor: the paper's is an ensemble of 5 feed-forward "meta neural networks" on the path encoding.
  The default here is an ensemble of `ensemble` (3) graph neural networks (`predictors.gnn`, training
  shortened to 150 steps so that a round costs seconds on a CPU) on the architecture DAG, which ranks
  NB201 cells better from small training sets (`benchmarks/predictors.md`); `predictor="mlp"` with
  `predictor_options={"encoding": "path"}` gives the paper's setting with an sklearn MLP.
- candidates: `num_candidates` (100, as the paper) mutations of the `num_parents` (10) best architectures,
  each mutated 1 to `max_mutations` (2) times, plus `num_random` (20) random ones (the paper uses
  mutations only); candidates already evaluated are dropped.
- batch: `batch_size` (10) architectures per round and `num_init` (10) random ones first, as the paper.
- objectives: one. With several, the first is optimised (no multi-objective acquisition).
Infeasible evaluations (metrics None) are remembered so they are never proposed again, and not learned.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from nas.registry import get, register_strategy
from nas.space import Architecture, NASError
from nas.strategy import Strategy
from predictors.base import Predictor


def make_predictor(name: str, seed: int, ensemble: int, **options: Any) -> Predictor:
    """An ensemble-capable predictor from the registry: the GNN trains its own members, others are wrapped."""
    from predictors.base import Ensemble

    cls = get("predictors", name)
    if name == "gnn":
        return cls(seed=seed, ensemble=ensemble, **options)
    return Ensemble(lambda s: cls(seed=s, **options), size=ensemble, seed=seed)


@register_strategy("bananas")
class Bananas(Strategy):
    """BANANAS (White et al. 2021): predictor-ensemble Bayesian optimisation with mutation candidates."""

    name = "bananas"

    def __init__(self, space, objectives, seed: int = 0, num_init: int = 10, batch_size: int = 10,
                 num_candidates: int = 100, num_parents: int = 10, max_mutations: int = 2, num_random: int = 20,
                 acquisition: str = "its", ucb_beta: float = 0.5, predictor: str = "gnn", ensemble: int = 3,
                 predictor_options: Mapping[str, Any] | None = None) -> None:
        super().__init__(space, objectives, seed)
        if acquisition not in ("its", "ucb"):
            raise NASError(f"unknown BANANAS acquisition {acquisition!r}; accepted: 'its', 'ucb'")
        if num_init < 2 or batch_size < 1:
            raise NASError(f"BANANAS needs num_init >= 2 and batch_size >= 1, got {num_init} and {batch_size}")
        self.num_init, self.batch_size = num_init, batch_size
        self.num_candidates, self.num_parents, self.max_mutations = num_candidates, num_parents, max_mutations
        self.num_random, self.acquisition, self.ucb_beta = num_random, acquisition, ucb_beta
        self.predictor_name, self.ensemble = predictor, ensemble
        if predictor_options is None:
            predictor_options = {"steps": 150} if predictor == "gnn" else {}
        self.predictor_options = dict(predictor_options)
        self.np_rng = np.random.default_rng(seed)
        self.history: list[tuple[Architecture, float]] = []
        self.seen: set[Architecture] = set()
        self.queue: list[Architecture] = []
        self.rounds = 0

    # -- ask / tell ------------------------------------------------------------------------------------------
    def ask(self) -> Architecture:
        if len(self.seen) + len(self.queue) < self.num_init or len(self.history) < 2:
            return self._random_unseen()
        if not self.queue:
            self.queue = self._propose()
        return self.queue.pop(0)

    def tell(self, arch: Architecture, metrics: Mapping[str, float] | None) -> None:
        arch = Architecture(arch)
        self.seen.add(arch)
        if arch in self.queue:
            self.queue.remove(arch)
        if metrics is not None:
            self.history.append((arch, self.fitness(metrics)[0]))

    # -- internals -------------------------------------------------------------------------------------------
    def _random_unseen(self) -> Architecture:
        arch = self.space.sample(self.rng)
        for _ in range(100):
            if arch not in self.seen and arch not in self.queue:
                break
            arch = self.space.sample(self.rng)
        return arch

    def _candidates(self) -> list[Architecture]:
        ranked = sorted(self.history, key=lambda item: -item[1])
        parents = [a for a, _ in ranked[: self.num_parents]]
        out: dict[Architecture, None] = {}
        for i in range(self.num_candidates * 3):
            if len(out) >= self.num_candidates:
                break
            child = parents[i % len(parents)]
            for _ in range(self.rng.randint(1, self.max_mutations)):
                child = self.space.mutate(child, self.rng)
            if child not in self.seen:
                out[child] = None
        for _ in range(self.num_random * 3):
            if len(out) >= self.num_candidates + self.num_random:
                break
            child = self.space.sample(self.rng)
            if child not in self.seen:
                out[child] = None
        return list(out)

    def _propose(self) -> list[Architecture]:
        self.rounds += 1
        archs = [a for a, _ in self.history]
        targets = [f for _, f in self.history]
        predictor = make_predictor(self.predictor_name, self.seed * 100003 + self.rounds, self.ensemble,
                                   **self.predictor_options)
        predictor.fit(self.space, archs, targets)
        candidates = self._candidates()
        if not candidates:
            return [self._random_unseen()]
        members = predictor.predict_members(self.space, candidates)
        mean, std = members.mean(axis=0), members.std(axis=0)
        if self.acquisition == "its":
            value = self.np_rng.normal(mean, std)
        else:
            value = mean + self.ucb_beta * std
        order = np.argsort(-value, kind="stable")[: self.batch_size]
        return [candidates[i] for i in order]
