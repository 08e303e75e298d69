"""The evolutionary search of SPOS (Guo et al., "Single Path One-Shot Neural Architecture Search with Uniform
Sampling", ECCV 2020, Algorithm 1; megvii-model/SinglePathOneShot `search.py`).

Generation by generation: the first is `population` random architectures; every later one is `mutations`
mutants and `crossovers` children of the `top_k` best architectures evaluated so far, filled up with random
ones to `population`. A mutant resamples each of its parent's choices with probability `mutation_prob`; a
crossover child takes each choice from one of two parents at random. Architectures already proposed are
never proposed again (the official `vis_dict`); a child that breaks the space's rules is drawn again.
Constraints (`--max-macs`, ...) are checked by the search loop before evaluation, as the official code
checks FLOPs before inference; an infeasible child costs no budget.

Defaults are the paper's: population 50, top 10, 25 mutations with probability 0.1, 25 crossovers, 20
generations (budget 1,000). Deviations: choices that exist only given others (a layer of a deeper stage)
are sampled when a mutation or crossover makes them active; with several objectives the top-k are the best
by Pareto rank, ties by the first objective (SPOS is single-objective).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nas.objectives import pareto_ranks
from nas.registry import register_strategy
from nas.space import Architecture, ArchitectureError
from nas.strategy import Strategy, rng_state, set_rng_state

TRIES = 100


@register_strategy("genetic")
class GeneticSearch(Strategy):
    """SPOS's evolutionary search (Guo et al. 2020): top-k, mutation and crossover, generation by generation."""

    name = "genetic"

    def __init__(self, space, objectives, seed: int = 0, population: int = 50, top_k: int = 10,  # noqa: ANN001
                 mutations: int = 25, crossovers: int = 25, mutation_prob: float = 0.1) -> None:
        super().__init__(space, objectives, seed)
        if population < 1 or not 1 <= top_k or mutations < 0 or crossovers < 0 or not 0 < mutation_prob <= 1:
            raise ValueError("genetic search needs population >= 1, top_k >= 1, mutations and crossovers >= 0 and "
                             f"0 < mutation_prob <= 1; got {population}, {top_k}, {mutations}, {crossovers}, "
                             f"{mutation_prob}")
        self.population, self.top_k = population, top_k
        self.mutations, self.crossovers, self.mutation_prob = mutations, crossovers, mutation_prob
        self.queue: list[Architecture] = []
        self.proposed: set[Architecture] = set()
        self.scored: list[tuple[Architecture, tuple[float, ...]]] = []
        self.generation = 0

    # -- ask / tell -------------------------------------------------------------------------------------
    def ask(self) -> Architecture:
        if not self.queue:
            self.queue = self._next_generation()
            self.generation += 1
        arch = self.queue.pop(0)
        self.proposed.add(arch)
        return arch

    def tell(self, arch: Architecture, metrics: Mapping[str, float] | None) -> None:
        self.proposed.add(arch)
        if metrics is not None:
            self.scored.append((arch, self.fitness(metrics)))

    # -- generations ------------------------------------------------------------------------------------
    def top(self) -> list[Architecture]:
        """The `top_k` best architectures told so far."""
        if not self.scored:
            return []
        fits = [f for _, f in self.scored]
        if len(self.objectives) > 1:
            ranks = pareto_ranks(fits)
            order = sorted(range(len(fits)), key=lambda i: (ranks[i], -fits[i][0]))
        else:
            order = sorted(range(len(fits)), key=lambda i: fits[i], reverse=True)
        return [self.scored[i][0] for i in order[:self.top_k]]

    def _new(self, make: Any, fresh: set[Architecture]) -> Architecture | None:
        for _ in range(TRIES):
            try:
                arch = make()
                self.space.check(arch)
            except ArchitectureError:
                continue
            if arch not in self.proposed and arch not in fresh:
                return arch
        return None

    def _mutant(self, parent: Architecture) -> Architecture:
        values = {c.name: (self.rng.choice(c.values) if self.rng.random() < self.mutation_prob else parent[c.name])
                  for c in self.space.active_choices(parent)}
        return self.space.complete(values, self.rng)

    def _cross(self, a: Architecture, b: Architecture) -> Architecture:
        values = {}
        for choice in self.space.choices():  # from one parent at random, from the other where it lacks the choice
            if choice.name in a or choice.name in b:
                first, second = (a, b) if self.rng.random() < 0.5 else (b, a)
                values[choice.name] = first[choice.name] if choice.name in first else second[choice.name]
        return self.space.complete(values, self.rng)

    def _next_generation(self) -> list[Architecture]:
        top = self.top()
        fresh: dict[Architecture, None] = {}
        if top:
            for _ in range(self.mutations):
                child = self._new(lambda: self._mutant(self.rng.choice(top)), set(fresh))
                if child is not None:
                    fresh[child] = None
            for _ in range(self.crossovers):
                child = self._new(lambda: self._cross(self.rng.choice(top), self.rng.choice(top)), set(fresh))
                if child is not None:
                    fresh[child] = None
        while len(fresh) < self.population:
            child = self._new(lambda: self.space.sample(self.rng), set(fresh))
            if child is None:  # the space is used up: repeats are allowed again
                child = self.space.sample(self.rng)
            fresh[child] = None
        return list(fresh)

    # -- resume -------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"rng": rng_state(self.rng), "generation": self.generation,
                "queue": [dict(a) for a in self.queue], "proposed": sorted(a.to_json() for a in self.proposed),
                "scored": [[dict(a), list(f)] for a, f in self.scored]}

    def load_state(self, state: Mapping[str, Any]) -> None:
        set_rng_state(self.rng, state["rng"])
        self.generation = state["generation"]
        self.queue = [Architecture(a) for a in state["queue"]]
        self.proposed = {Architecture.from_json(text) for text in state["proposed"]}
        self.scored = [(Architecture(a), tuple(f)) for a, f in state["scored"]]
