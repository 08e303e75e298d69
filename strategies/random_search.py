"""Random search: the baseline every strategy must beat."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nas.registry import register_strategy
from nas.space import Architecture
from nas.strategy import Strategy, rng_state, set_rng_state


@register_strategy("random")
class RandomSearch(Strategy):
    """Uniform random sampling of the space, without repeating an architecture while new ones remain."""

    name = "random"

    def __init__(self, space, objectives, seed: int = 0, max_retries: int = 100) -> None:
        super().__init__(space, objectives, seed)
        self.seen: set[Architecture] = set()
        self.seen_json: list[str] = []  # `seen` as JSON, in the order told: `state` stays cheap as it grows
        self.pending: list[Architecture] = []  # asked, not yet told
        self.max_retries = max_retries

    def ask(self) -> Architecture:
        for _ in range(self.max_retries):
            arch = self.space.sample(self.rng)
            if arch not in self.seen and arch not in self.pending:
                break
        self.pending.append(arch)
        return arch

    def tell(self, arch: Architecture, metrics: Mapping[str, float] | None) -> None:
        arch = Architecture(arch)
        if arch in self.pending:
            self.pending.remove(arch)
        if arch not in self.seen:
            self.seen.add(arch)
            self.seen_json.append(arch.to_json())

    def state(self) -> dict[str, Any]:
        return {"rng": rng_state(self.rng), "seen": list(self.seen_json)}

    def load_state(self, state: Mapping[str, Any]) -> None:
        set_rng_state(self.rng, state["rng"])
        self.seen_json = list(state["seen"])
        self.seen = {Architecture.from_json(text) for text in self.seen_json}
