"""Regularized (aging) evolution, Real et al. 2019, "Regularized Evolution for Image Classifier
Architecture Search".

As the paper's Algorithm 1: the population is a queue; the first `population_size` architectures are
random (and count in the budget); afterwards each step draws `sample_size` members uniformly at random
(with replacement, as the algorithm is written), mutates the fittest, and the child enters the
population while the oldest dies.

Defaults: population 10, sample 3, the settings NAS-Bench-201 / NATS-Bench run and publish their REA
with (`exps/NATS-algos/regularized_ea.py`, results filed as "R-EA-SS3"). The paper's P=100, S=25 was
for a much larger space: on the 15,625-cell NAS-Bench-201 table its 100 random founders make it random
search for the first 100 queries. The tournament size decides how well it does at small budgets: NASLib's
NAS-Bench-201 settings, P=30, S=10, do clearly better at 100 and 200 queries on that table (measured:
`benchmarks/strategies.md`). Pass `population_size=30, sample_size=10` (`nas search --option ...`) for the
stronger setting; the default stays the benchmark authors' own.

Deviations, documented: with several objectives the fittest member of a sample is the one with the best
Pareto rank inside the sample, ties broken by the first objective (the paper is single-objective).
Infeasible children (constraint violations) do not enter the population; a mutated child already
evaluated is mutated again (up to `max_retries`, from a fresh tournament) so the budget is spent on new
architectures, where NAS-Bench-201's REA evaluates repeats again: a small gain at P=10, S=3 and a clear one
at P=30, S=10 (measured: `benchmarks/strategies.md`).

Several asks before their tells (parallel workers, the paper's asynchronous setting): asked architectures
count as founders while the population fills (random ones until population + pending reach
`population_size`, and whenever the population is still empty) and are not proposed again while pending.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from nas.objectives import pareto_ranks
from nas.registry import register_strategy
from nas.space import Architecture
from nas.strategy import Proposals, Strategy, check_count, rng_state, set_rng_state


@register_strategy("evolution")
class RegularizedEvolution(Strategy):
    """Regularized (aging) evolution (Real et al. 2019): tournament selection, point mutation, oldest dies."""

    name = "evolution"

    def __init__(self, space, objectives, seed: int = 0, population_size: int = 10, sample_size: int = 3,
                 max_retries: int = 100) -> None:
        super().__init__(space, objectives, seed)
        check_count("max_retries", max_retries)
        if not 1 <= sample_size <= population_size:
            raise ValueError(f"sample_size {sample_size} must be between 1 and population_size {population_size}")
        self.population_size = population_size
        self.sample_size = sample_size
        self.max_retries = max_retries
        self.population: deque[tuple[Architecture, tuple[float, ...]]] = deque()
        self.proposals = Proposals()
        self.asked = 0

    def _parent(self) -> Architecture:
        sample = [self.rng.choice(self.population) for _ in range(self.sample_size)]
        fits = [f for _, f in sample]
        if len(self.objectives) > 1:
            ranks = pareto_ranks(fits)
            best = min(range(len(sample)), key=lambda i: (ranks[i], -fits[i][0]))
        else:
            best = max(range(len(sample)), key=lambda i: fits[i])
        return sample[best][0]

    def ask(self) -> Architecture:
        self.asked += 1
        warm = not self.population or len(self.population) + len(self.proposals.pending) < self.population_size
        for _ in range(self.max_retries):
            arch = self.space.sample(self.rng) if warm else self.space.mutate(self._parent(), self.rng)
            if arch not in self.proposals:
                break
        self.proposals.asked(arch)
        return arch

    def tell(self, arch: Architecture, metrics: Mapping[str, float] | None) -> None:
        arch = self.proposals.told(arch)
        if metrics is None:
            return
        self.population.append((arch, self.fitness(metrics)))
        if len(self.population) > self.population_size:
            self.population.popleft()

    def state(self) -> dict[str, Any]:
        return {"rng": rng_state(self.rng), "asked": self.asked,
                "population": [[dict(a), list(f)] for a, f in self.population], "seen": self.proposals.state()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        set_rng_state(self.rng, state["rng"])
        self.asked = state["asked"]
        self.population = deque((Architecture(a), tuple(f)) for a, f in state["population"])
        self.proposals.load_state(state["seen"])
