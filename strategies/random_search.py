"""Random search: the baseline every strategy must beat."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nas.registry import register_strategy
from nas.space import Architecture, SearchSpace
from nas.strategy import Proposals, Strategy, check_count, rng_state, set_rng_state


@register_strategy("random")
class RandomSearch(Strategy):
    """Uniform random sampling of the space, without repeating an architecture while new ones remain."""

    name = "random"

    def __init__(self, space, objectives, seed: int = 0, max_retries: int = 100) -> None:
        super().__init__(space, objectives, seed)
        check_count("max_retries", max_retries)
        self.proposals = Proposals()
        self.max_retries = max_retries

    def ask(self) -> Architecture:
        return self.draw(self.space)

    def draw(self, space: SearchSpace) -> Architecture:
        """A uniform sample of `space` not proposed before (after `max_retries` repeats, a repeat)."""
        for _ in range(self.max_retries):
            arch = space.sample(self.rng)
            if arch not in self.proposals:
                break
        self.proposals.asked(arch)
        return arch

    def tell(self, arch: Architecture, metrics: Mapping[str, float] | None) -> None:
        self.proposals.told(arch)

    def state(self) -> dict[str, Any]:
        return {"rng": rng_state(self.rng), "seen": self.proposals.state()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        set_rng_state(self.rng, state["rng"])
        self.proposals.load_state(state["seen"])
