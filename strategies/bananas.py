"""BANANAS: Bayesian optimisation with neural architectures for NAS (White, Neiswanger & Savani, AAAI 2021).

As the paper's Algorithm 1 and its official code (naszilla/bananas, NASLib's `Bananas`): `num_init`
random architectures; then, round after round, fit an ensemble of predictors on every evaluation so
far, generate candidates by mutating the best architectures found so far, score them with an
acquisition function over the ensemble, and evaluate the `batch_size` best candidates. Acquisition:
independent Thompson sampling ("its", the paper's choice: one draw per candidate from a normal with the
ensemble's mean and standard deviation) or an upper confidence bound ("ucb", mean + `ucb_beta` x std).

Defaults and deviations (the measurements behind them: `benchmarks/bananas.md`):
- candidates (`candidates="neighbourhood"`, the default): every one-edit neighbour (`space.neighbours`) of
  the `num_parents` (2, as NASLib's defaults; the naszilla code uses 1) best architectures that is not
  isomorphic to an evaluated one (`space.canonical`), at most `num_candidates` (100; a random subset when
  the neighbourhoods are larger). Dropping isomorphs is ours: on NAS-Bench-201 the official code drops exact
  duplicates only (its hash of a cell is the cell's string; isomorphic cells, separate entries of the table
  with their own accuracies, can each be proposed), and on NAS-Bench-101 it hashes path indices. Only when
  fewer than a batch are left, the next best architectures' neighbourhoods, then random ones. The official
  code samples `num_candidates` random mutations of the best ones instead (`candidates="mutation"`, each
  mutated 1 to `max_mutations` (1) times, pool refilled from the next best ones up to `num_candidates`);
  enumerating is the limit of that sampling for small neighbourhoods (24 per NB201 cell, which NB201's
  node-first mutation reaches unevenly: a given edit of node 3 has probability 1/36 per draw, so 50 draws
  miss it with probability (35/36)^50, about a quarter).
  Because the pool is not diluted by worse parents, a neighbour the predictors rank last is still
  evaluated once the better-ranked ones are used up. That is why it is the default: with sampled
  mutations, or with the same neighbourhoods refilled from the next best parents, runs on NB201 CIFAR-10
  stalled below the optimum at cells whose better neighbour (e.g. a skip connection in place of a 1x1
  convolution) the predictors ranked last (measured: `benchmarks/bananas.md`). On the NATS size space the
  mutation rule does better (the neighbourhood rule's runs stop on a second peak a few widths from the
  optimum), so choose it for spaces of that kind; expanding the 3 best (`num_parents=3`) helps there but
  costs on NB201 CIFAR-10, so the default stays 2 (measured: `benchmarks/bananas.md`).
  `num_random` (0) random candidates can be added always.
  `candidates="climb"` (ours; neither the paper nor its code) puts the predictor and the acquisition inside
  the local search that White et al. 2021 found as good as BANANAS on these benchmarks: a centre, at first
  the best of the random start, whose unseen neighbours (up to isomorphism) are the candidates; after each
  batch the centre moves to the batch's best if that beats it. When none of the centre's neighbours is left
  unseen (a local optimum), the candidates are `restart_pool` (500) random unseen architectures, and the
  climb goes on from the best of the batch the acquisition picks from them, better than the old centre or
  not. Unlike the neighbourhood rule, the candidates never come from the neighbourhoods of other good
  cells of the same basin, which kept runs on a local optimum. Where local search does well (NB201 CIFAR-10
  and CIFAR-100) it reaches the optimum more often than the default, and sooner; where it
  does not (ImageNet16-120, the NATS size space with 35 neighbours a cell), it did worse than the default
  on the seeds it was tried on, though better than local search, so it is not the default (measured:
  `benchmarks/bananas.md`).
- predictor: the paper's is an ensemble of 5 feed-forward "meta neural networks" on the path encoding
  (`predictor="mlp", ensemble=5, predictor_options={"encoding": "path"}` here). The default is an ensemble
  of `ensemble` (3) graph neural networks (`predictors.gnn`, 150 training steps so that a round costs
  seconds on a CPU) with their numeric node features (sizes, widths). On NB201 a GNN on op labels and the
  graph only (`predictor_options={"steps": 150, "numeric_features": False}`) reached the optimum more often
  with the mutation rule but with a larger mean regret, and on the NATS size space, whose choices are
  widths only, it sees nothing to learn and does no better than evolution: so the default keeps the
  features (measured: `benchmarks/bananas.md`).
- targets: by default (`target_transform="rank"`) the predictors learn the normal scores of the targets'
  ranks (a quantile transform) instead of the values, so that the few very poor architectures of the
  random start do not dominate the regression and the order among the good ones is learned; acquisition
  values are then on that scale (the paper regresses the values). Without it, failing runs stalled at
  cells below the optimum whose better neighbours (a skip connection in place of a convolution) the
  predictors ranked last; with the default GNN, rank targets reached the optimum more often and with a
  smaller mean regret than the values (measured with the mutation rule: `benchmarks/bananas.md`).
- batch: `batch_size` (10) architectures per round and `num_init` (10) random ones first, as the paper.
- objectives: one. With several, the first is optimised (no multi-objective acquisition).
Infeasible evaluations (metrics None) are remembered so they are never proposed again, and not learned.

Several asks before their tells (parallel workers) take the next architectures of the current batch; the
pending ones (asked, not told) are never proposed again, count towards the `num_init` random start and are
not learned until told. Resume: `state()` holds everything told, the queued batch, the round count and both
random generators' states, so a resumed search continues exactly as an uninterrupted one without
refitting the predictors of past rounds.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from nas.registry import get, register_strategy
from nas.space import Architecture, NASError
from nas.strategy import Strategy, check_count, rng_state, set_rng_state
from predictors.base import Ensemble, Predictor


def make_predictor(name: str, seed: int, ensemble: int, **options: Any) -> Predictor:
    """An ensemble of `ensemble` predictors from the registry: one that trains its own members
    (`Predictor.own_ensemble`, the GNN) is asked for them, others are wrapped in `Ensemble`."""
    cls = get("predictors", name)
    if cls.own_ensemble:
        return cls(seed=seed, ensemble=ensemble, **options)
    return Ensemble(lambda s: cls(seed=s, **options), size=ensemble, seed=seed)


def normal_scores(values: np.ndarray) -> np.ndarray:
    """The standard-normal quantiles of the values' ranks (ties share their mean rank)."""
    from scipy.stats import norm, rankdata

    return norm.ppf((rankdata(values) - 0.5) / len(values))


CANDIDATE_RULES = ("neighbourhood", "mutation", "climb")


@register_strategy("bananas")
class Bananas(Strategy):
    """BANANAS (White et al. 2021): predictor-ensemble Bayesian optimisation with mutation candidates."""

    name = "bananas"

    def __init__(self, space, objectives, seed: int = 0, num_init: int = 10, batch_size: int = 10,
                 num_candidates: int = 100, num_parents: int = 2, max_mutations: int = 1, num_random: int = 0,
                 acquisition: str = "its", ucb_beta: float = 0.5, predictor: str = "gnn", ensemble: int = 3,
                 predictor_options: Mapping[str, Any] | None = None, target_transform: str = "rank",
                 candidates: str = "neighbourhood", restart_pool: int = 500) -> None:
        super().__init__(space, objectives, seed)
        if acquisition not in ("its", "ucb"):
            raise NASError(f"unknown BANANAS acquisition {acquisition!r}; accepted: 'its', 'ucb'")
        if target_transform not in ("rank", "none"):
            raise NASError(f"unknown BANANAS target_transform {target_transform!r}; accepted: 'rank', 'none'")
        if candidates not in CANDIDATE_RULES:
            raise NASError(f"unknown BANANAS candidates {candidates!r}; accepted: "
                           + ", ".join(repr(rule) for rule in CANDIDATE_RULES))
        self.target_transform, self.candidate_rule = target_transform, candidates
        if num_init < 2 or batch_size < 1:
            raise NASError(f"BANANAS needs num_init >= 2 and batch_size >= 1, got {num_init} and {batch_size}")
        self.num_init, self.batch_size = num_init, batch_size
        self.num_candidates, self.num_parents, self.max_mutations = num_candidates, num_parents, max_mutations
        self.restart_pool = check_count("restart_pool", restart_pool)
        self.num_random, self.acquisition, self.ucb_beta = num_random, acquisition, ucb_beta
        self.predictor_name, self.ensemble = predictor, ensemble
        if predictor_options is None:
            predictor_options = {"steps": 150} if predictor == "gnn" else {}
        self.predictor_options = dict(predictor_options)
        self.np_rng = np.random.default_rng(seed)
        self.history: list[tuple[Architecture, float]] = []
        self.seen_keys: set[str] = set()  # canonical forms of every architecture told
        self.pending: list[Architecture] = []  # asked, not yet told
        self.queue: list[Architecture] = []
        self.rounds = 0
        self.centre: Architecture | None = None  # climb: the architecture whose neighbours are proposed
        self.centre_fit = -np.inf
        self.batch_start = 0  # climb: len(history) when the last batch was proposed
        self.restarting = False  # climb: the last batch was a restart

    # -- ask / tell ------------------------------------------------------------------------------------------
    def ask(self) -> Architecture:
        if len(self.seen_keys) + len(self.pending) + len(self.queue) < self.num_init or len(self.history) < 2:
            arch = self._random_unseen()
        else:
            if not self.queue:
                self.queue = self._propose()
            arch = self.queue.pop(0)
        self.pending.append(arch)
        return arch

    def tell(self, arch: Architecture, metrics: Mapping[str, float] | None) -> None:
        arch = Architecture(arch)
        self.seen_keys.add(self.space.canonical(arch))
        if arch in self.pending:
            self.pending.remove(arch)
        if arch in self.queue:
            self.queue.remove(arch)
        if metrics is not None:
            self.history.append((arch, self.fitness(metrics)[0]))

    def state(self) -> dict[str, Any]:
        return {"rng": rng_state(self.rng), "np_rng": self.np_rng.bit_generator.state, "rounds": self.rounds,
                "history": [[dict(a), f] for a, f in self.history], "seen_keys": sorted(self.seen_keys),
                "queue": [dict(a) for a in self.queue], "batch_start": self.batch_start,
                "centre": None if self.centre is None else dict(self.centre), "centre_fit": self.centre_fit,
                "restarting": self.restarting}

    def load_state(self, state: Mapping[str, Any]) -> None:
        set_rng_state(self.rng, state["rng"])
        self.np_rng.bit_generator.state = state["np_rng"]
        self.rounds = state["rounds"]
        self.history = [(Architecture(a), f) for a, f in state["history"]]
        self.seen_keys = set(state["seen_keys"])
        self.queue = [Architecture(a) for a in state["queue"]]
        centre = state.get("centre")  # states saved before the climb rule have none of these
        self.centre = None if centre is None else Architecture(centre)
        self.centre_fit = state.get("centre_fit", -np.inf)
        self.batch_start = state.get("batch_start", len(self.history))
        self.restarting = state.get("restarting", False)

    # -- internals -------------------------------------------------------------------------------------------
    def _excluded(self) -> set[str]:
        """Canonical forms not to propose again: those of told and of pending architectures."""
        return self.seen_keys | {self.space.canonical(a) for a in self.pending}

    def _random_unseen(self) -> Architecture:
        excluded = self._excluded()
        arch = self.space.sample(self.rng)
        for _ in range(100):
            if self.space.canonical(arch) not in excluded and arch not in self.queue:
                break
            arch = self.space.sample(self.rng)
        return arch

    def _mutant(self, parent: Architecture) -> Architecture:
        child = parent
        for _ in range(self.rng.randint(1, self.max_mutations)):
            child = self.space.mutate(child, self.rng)
        return child

    def _candidates(self) -> list[Architecture]:
        """Unseen candidates (up to isomorphism) from the best architectures by the candidate rule, at least a
        batch of them, plus `num_random` random ones (module docstring)."""
        ranked = [a for a, _ in sorted(self.history, key=lambda item: -item[1])]
        pool: dict[str, Architecture] = {}
        excluded = self._excluded()
        if self.candidate_rule == "neighbourhood":
            for rank, parent in enumerate(ranked):
                if rank >= self.num_parents and len(pool) >= self.batch_size:
                    break
                self._add_unseen(pool, excluded, self.space.neighbours(parent, self.rng))
            if len(pool) > self.num_candidates:
                keys = self.rng.sample(sorted(pool), self.num_candidates)
                pool = {key: pool[key] for key in keys}
        else:
            for i in range(self.num_candidates):
                self._add_unseen(pool, excluded, [self._mutant(ranked[i % min(self.num_parents, len(ranked))])])
            per_parent = max(1, self.num_candidates // self.num_parents)
            for parent in ranked[self.num_parents:]:  # neighbourhoods of the best used up: the next best ones
                if len(pool) >= self.num_candidates:
                    break
                for _ in range(per_parent):
                    self._add_unseen(pool, excluded, [self._mutant(parent)])
        self._fill_random(pool, excluded, max(len(pool) + self.num_random, self.batch_size))  # at least a batch
        return list(pool.values())

    def _climb_candidates(self) -> list[Architecture]:
        """Climb rule (module docstring): move the centre to the last batch's best when it beats the centre (to a
        restart batch's best always), then propose the centre's unseen neighbours or, when none is left (a local
        optimum), `restart_pool` random unseen architectures."""
        recent = self.history[self.batch_start:]
        self.batch_start = len(self.history)
        if recent:
            arch, fit = max(recent, key=lambda item: item[1])
            if self.centre is None or self.restarting or fit > self.centre_fit:
                self.centre, self.centre_fit = arch, fit
        assert self.centre is not None  # proposals start after the random ones are told
        excluded = self._excluded()
        pool: dict[str, Architecture] = {}
        self._add_unseen(pool, excluded, self.space.neighbours(self.centre, self.rng))
        self.restarting = not pool
        if self.restarting:
            self._fill_random(pool, excluded, self.restart_pool)
        return list(pool.values())

    def _add_unseen(self, pool: dict[str, Architecture], excluded: set[str], archs: Iterable[Architecture]) -> None:
        """Add each of `archs` whose canonical form is neither excluded nor in `pool` yet (keyed by that form)."""
        for arch in archs:
            key = self.space.canonical(arch)
            if key not in excluded:
                pool.setdefault(key, arch)

    def _fill_random(self, pool: dict[str, Architecture], excluded: set[str], wanted: int) -> None:
        """Add random unseen architectures until `pool` holds `wanted` (at most 3 x `wanted` draws)."""
        for _ in range(3 * wanted):
            if len(pool) >= wanted:
                break
            self._add_unseen(pool, excluded, [self.space.sample(self.rng)])

    def _propose(self) -> list[Architecture]:
        self.rounds += 1
        archs = [a for a, _ in self.history]
        targets = np.array([f for _, f in self.history])
        if self.target_transform == "rank":
            targets = normal_scores(targets)
        predictor = make_predictor(self.predictor_name, self.seed * 100003 + self.rounds, self.ensemble,
                                   **self.predictor_options)
        predictor.fit(self.space, archs, targets)
        candidates = self._climb_candidates() if self.candidate_rule == "climb" else self._candidates()
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
