"""SPOS's genetic search: generations from the top-k by mutation and crossover, valid children on spaces with
dependent choices, no repeats."""
from __future__ import annotations

import random

from nas.objectives import Objective
from nas.registry import make_space
from nas.space import Architecture
from strategies.genetic import GeneticSearch

ACC = [Objective("accuracy")]


def score(arch: Architecture) -> dict[str, float]:
    return {"accuracy": float(sum(len(str(v)) for v in arch.values()))}


def test_crossover_of_parents_with_different_depths_gives_valid_children() -> None:
    space = make_space("mbconv", "small")
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(40)]
    shallow = next(a for a in archs if a["s3_depth"] == 1)
    deep = next(a for a in archs if a["s3_depth"] == 3)
    search = GeneticSearch(space, ACC, seed=0)
    for _ in range(300):
        child = search._cross(shallow, deep)
        space.validate(child)  # a layer that exists takes a value from a parent that has it
        assert all(child[k] in (shallow.get(k), deep.get(k)) or k not in shallow and k not in deep for k in child)


def test_generations_come_from_the_top_k() -> None:
    space = make_space("nb201")
    search = GeneticSearch(space, ACC, seed=0, population=6, top_k=2, mutations=3, crossovers=3, mutation_prob=0.5)
    first = [search.ask() for _ in range(6)]
    assert search.generation == 1 and len(set(first)) == 6
    for arch in first:
        search.tell(arch, score(arch))
    top = search.top()
    assert top == sorted(first, key=lambda a: -score(a)["accuracy"])[:2]
    second = [search.ask() for _ in range(6)]
    assert search.generation == 2 and not set(second) & set(first)
    near = [a for a in second if any(sum(a[k] != t[k] for k in a) <= 3 for t in top)]
    assert len(near) >= 3  # mutants (p 0.5 per edge) and crossovers of the top 2 stay close to them
