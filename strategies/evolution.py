"""Regularized (aging) evolution, Real et al. 2019, "Regularized Evolution for Image Classifier
Architecture Search".

As the paper's Algorithm 1: the population is a queue; the first `population_size` architectures are
random; afterwards each step draws `sample_size` members uniformly at random (with replacement, as the
algorithm is written), mutates the fittest, and the child enters the population while the oldest dies.
Defaults (population 10, sample 3) are those NAS-Bench-201 uses for its 15,625-cell space; the paper used
P=100, S=25 on a much larger space.

Deviations, documented: with several objectives the fittest member of a sample is the one with the best
Pareto rank inside the sample, ties broken by the first objective (the paper is single-objective).
Infeasible children (constraint violations) do not enter the population; a mutated child already
evaluated is mutated again (up to `max_retries`) so the budget is spent on new architectures.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from nas.objectives import pareto_ranks
from nas.registry import register_strategy
from nas.space import Architecture
from nas.strategy import Strategy


@register_strategy("evolution")
class RegularizedEvolution(Strategy):
    """Regularized (aging) evolution (Real et al. 2019): tournament selection, point mutation, oldest dies."""

    name = "evolution"

    def __init__(self, space, objectives, seed: int = 0, population_size: int = 10, sample_size: int = 3,
                 max_retries: int = 100) -> None:
        super().__init__(space, objectives, seed)
        if not 1 <= sample_size <= population_size:
            raise ValueError(f"sample_size {sample_size} must be between 1 and population_size {population_size}")
        self.population_size = population_size
        self.sample_size = sample_size
        self.max_retries = max_retries
        self.population: deque[tuple[Architecture, tuple[float, ...]]] = deque()
        self.seen: set[Architecture] = set()
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
        warm = len(self.population) < self.population_size
        for _ in range(self.max_retries):
            arch = self.space.sample(self.rng) if warm else self.space.mutate(self._parent(), self.rng)
            if arch not in self.seen:
                return arch
        return arch

    def tell(self, arch: Architecture, metrics: Mapping[str, float] | None) -> None:
        self.seen.add(arch)
        if metrics is None:
            return
        self.population.append((arch, self.fitness(metrics)))
        if len(self.population) > self.population_size:
            self.population.popleft()
