"""Local search with random restarts, White, Nolen & Savani 2021, "Exploring the Loss Landscape in Neural
Architecture Search" (UAI; first circulated as "Local Search is State of the Art for Neural Architecture
Search Benchmarks", 2020).

As the paper's official code (naszilla, `local_search` with its defaults `num_init=10`,
`query_full_nbhd=False`, `stop_at_minimum=True`): evaluate `num_init` (10) random architectures and
start from the best of them; evaluate the current architecture's one-edit neighbours (`space.neighbours`:
every active choice moved to each of its neighbouring values) in random order and move to the first one
that is strictly better (first improvement); when every neighbour has been evaluated and none is better
(a local optimum), restart with `num_init` new random architectures and the best of them. No predictor,
no model. NASLib's `LocalSearch` differs in two ways: it evaluates the whole neighbourhood before moving
to its best (best improvement), and it restarts from one random architecture; `num_restart=1` gives the
latter restart here.

Never proposes an architecture already asked (exact duplicates, as the official code on NAS-Bench-201,
whose hash is the cell string; isomorphic cells are separate entries of the table): as in the official
code, neighbours asked before (in an earlier climb or start) are skipped, neither re-evaluated nor moved
to. Infeasible evaluations (metrics None) count as not better. Objectives: with several, the first is
optimised (no multi-objective local search).

Several asks before their tells (parallel workers): further asks take the next neighbours of the current
architecture, or more random ones while a (re)start is pending (the start is then the best of all of
them); a tell better than the current architecture moves there, whichever architecture it was asked as a
neighbour of; when the neighbourhood runs out while neighbours are still pending, the search restarts
(told later, they are remembered as evaluated but do not move the restarted search). Resume: `state()`
holds what was told, the current architecture, its remaining neighbours in their order, the restart's
evaluations and the random state, so a resumed search continues exactly as an uninterrupted one.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nas.registry import register_strategy
from nas.space import Architecture, NASError
from nas.strategy import Proposals, Strategy, check_count, rng_state, set_rng_state


@register_strategy("local_search")
class LocalSearch(Strategy):
    """Local search (White et al. 2021): first-improvement hill climbing over one-edit neighbours, random restarts."""

    name = "local_search"

    def __init__(self, space, objectives, seed: int = 0, num_init: int = 10, num_restart: int | None = None,
                 max_retries: int = 100) -> None:
        super().__init__(space, objectives, seed)
        check_count("max_retries", max_retries)
        num_restart = num_init if num_restart is None else num_restart
        if num_init < 1 or num_restart < 1:
            raise NASError(f"local search needs num_init >= 1 and num_restart >= 1, got {num_init} and {num_restart}")
        self.num_init, self.num_restart, self.max_retries = num_init, num_restart, max_retries
        self.proposals = Proposals()
        self.centre: Architecture | None = None  # None: a (re)start is being evaluated
        self.centre_fit = 0.0
        self.queue: list[Architecture] = []  # the centre's neighbours not yet asked, in the order they will be
        self.starts: list[tuple[Architecture, float | None]] = []  # the (re)start's evaluations (None: infeasible)
        self.start_pending: list[Architecture] = []  # the (re)start's asks not yet told
        self.restarts = 0  # how many times a local optimum was reached
        self.moves = 0

    # -- ask / tell ------------------------------------------------------------------------------------------
    def ask(self) -> Architecture:
        if self.centre is not None:
            while self.queue:
                arch = self.queue.pop(0)
                if arch not in self.proposals:
                    self.proposals.asked(arch)
                    return arch
            self._restart()  # every neighbour asked, none better so far: a local optimum
        arch = self._random_unseen()
        self.start_pending.append(arch)
        self.proposals.asked(arch)
        return arch

    def tell(self, arch: Architecture, metrics: Mapping[str, float] | None) -> None:
        arch = self.proposals.told(arch)
        fit = None if metrics is None else self.fitness(metrics)[0]
        if arch in self.start_pending:
            self.start_pending.remove(arch)
            self.starts.append((arch, fit))
            size = self.num_init if self.restarts == 0 else self.num_restart
            if self.centre is None and not self.start_pending and len(self.starts) >= size:
                feasible = [(a, f) for a, f in self.starts if f is not None]
                if feasible:  # the best of the start (the first of equals); none feasible: start again
                    self._move(*max(feasible, key=lambda item: item[1]))
                self.starts = []
        elif self.centre is not None and fit is not None and fit > self.centre_fit:
            self.moves += 1
            self._move(arch, fit)

    def state(self) -> dict[str, Any]:
        return {"rng": rng_state(self.rng), "seen": self.proposals.state(),
                "centre": None if self.centre is None else dict(self.centre), "centre_fit": self.centre_fit,
                "queue": [dict(a) for a in self.queue], "starts": [[dict(a), f] for a, f in self.starts],
                "restarts": self.restarts, "moves": self.moves}

    def load_state(self, state: Mapping[str, Any]) -> None:
        set_rng_state(self.rng, state["rng"])
        self.proposals.load_state(state["seen"])
        self.centre = None if state["centre"] is None else Architecture(state["centre"])
        self.centre_fit = state["centre_fit"]
        self.queue = [Architecture(a) for a in state["queue"]]
        self.starts = [(Architecture(a), f) for a, f in state["starts"]]
        self.start_pending = []
        self.restarts, self.moves = state["restarts"], state["moves"]

    # -- internals -------------------------------------------------------------------------------------------
    def _move(self, arch: Architecture, fit: float) -> None:
        """Make `arch` the current architecture: its unasked neighbours, shuffled, are evaluated next."""
        self.centre, self.centre_fit = arch, fit
        self.queue = [a for a in self.space.neighbours(arch, self.rng) if a not in self.proposals]
        self.rng.shuffle(self.queue)

    def _restart(self) -> None:
        self.restarts += 1
        self.centre, self.queue, self.starts = None, [], []

    def _random_unseen(self) -> Architecture:
        for _ in range(self.max_retries):
            arch = self.space.sample(self.rng)
            if arch not in self.proposals:
                break
        return arch
