"""DiffusionNAG as a Bayesian-optimisation loop (An et al., ICLR 2024, Appendix C.6, "BO with DiffusionNAG").

The first guided round trains (or loads from its cache, as a resumed search does) the unconditional diffusion prior
over the space's node-operation matrices (`nas.diffusion`): all 15,625 cells for NAS-Bench-201, `train_archs` random
architectures for other spaces. `ask` proposes `num_init` random architectures first; then every round refits the
noise-aware predictor (`predictors.noise_aware`) on every evaluation so far, samples `num_samples` matrices from the
prior guided by it (score + w * grad f(x_t, sigma)), keeps the valid ones not evaluated or pending (exact
duplicates; isomorphic NB201 cells count as new), ranks them with the same predictor at sigma_min and queues the
`batch_size` best. A round whose samples hold no new valid architecture is sampled again with the guidance scale
lowered by `scale_step` (the paper's NB201 schedule: 10000, then -300 a round), at most `patience` times (default:
the preset's; "paper" 20, the official `patient_factor`); then it proposes a random architecture and counts a
fallback (`fallbacks` in the saved state, and `rounds_log` with each round's scale, valid and new counts).

Deviations: the authors' BO code is not released; its leftovers (an ensemble of noise-aware surrogates, EI) suggest
an acquisition over an ensemble, here the ensemble mean (`ensemble`, default 1) ranks, without EI. The clean ranker
is the noise-aware predictor read at sigma_min, not a separate MetaD2A predictor. The scale restarts at
`guidance_scale` each round. The prior's seed is `prior_seed` (0), not the search seed, so searches with different
seeds share one cached prior.

Budget presets (`preset`): "paper" (the published prior schedule, 256 samples a round, the predictor's published 10k
steps: a GPU job), "quick" (ours: the NB201 prior in about 25 min on 2 CPU cores, 128 samples a round), "tiny"
(ours: seconds, for checks; its prior yields almost no valid samples, so such a search is random search with
`fallbacks` counting it); "auto" (default) is "tiny" for budgets of at most 20 evaluations and "quick" above. Cache
(`cache_dir`): default the folder `.diffusionnag-cache` beside the run directory (runs in one folder share priors; a
resumed run finds its prior there), or the user's cache folder (`$XDG_CACHE_HOME/nas/diffusionnag`) outside a run.

Spaces: NAS-Bench-201 and MBConv spaces use the published layouts (MBConv's has no resolution or width rows: every
proposal takes the largest resolution and width 1.0, `representable`; its prior uses the published sigma range
0.1-1.0; where stages differ in depths or expand values, as in the `small` preset, the matrix numbers its rows per
layer and the prior scales its positional encoding by sqrt(d_model), both ours: with the official stage-tiled,
unscaled positions the quick prior for `small` left over 90% of its samples invalid; `encoding="native"`, which
raises a one-line
`NASError` for other spaces); `encoding="choices"` uses a generic one-hot-per-choice matrix
(`nas.diffusion.choice_matrix`, ours); "auto" (default) picks the published layout when there is one, else the
generic one.
"""
from __future__ import annotations

import itertools
import math
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.diffusion.choice_matrix import ChoiceMatrix
from nas.diffusion.encoding import MBConvMatrix, NB201Matrix, OperationMatrix, operation_matrix
from nas.registry import register_strategy
from nas.space import Architecture, NASError, SearchSpace
from nas.strategy import Proposals, Strategy, StrategyContext, check_count, rng_state, set_rng_state
from predictors.base import single_thread

if TYPE_CHECKING:  # torch is imported when a search starts, not when the registry loads the strategies
    from nas.diffusion.prior import DiffusionPrior, PriorPreset
    from predictors.noise_aware import NoiseAwarePredictor


MBCONV_SIGMA_MAX = 1.0  # the official MobileNetV3 score network's sigma range is 0.1-1.0 (NB201's 0.1-5.0)


@dataclass(frozen=True)
class Budget:
    """How much the prior, the rounds' sampling and the predictor cost."""

    prior: str  # a `nas.diffusion.prior` preset, with `prior_overrides` (`net_overrides` for its score network)
    train_archs: int  # architectures to train the prior on when the space is not enumerated (not NB201)
    num_samples: int
    predictor_steps: int
    predictor_hidden: int = 64
    predictor_batch: int = 64
    patience: int = 3  # sampling attempts a round, the scale lowered after each one without a new architecture
    prior_overrides: dict[str, Any] = field(default_factory=dict)
    net_overrides: dict[str, Any] = field(default_factory=dict)

    def prior_preset(self) -> PriorPreset:
        from nas.diffusion.prior import resolve_preset, with_overrides

        base = resolve_preset(self.prior)
        return with_overrides(base, net=replace(base.net, **self.net_overrides), **self.prior_overrides)


BUDGETS: dict[str, Budget] = {
    "paper": Budget("paper", 100_000, 256, 10_000, 144, 256, patience=20),
    "quick": Budget("quick", 20_000, 128, 300),
    "tiny": Budget("quick", 300, 16, 30, 32, patience=1,
                   prior_overrides={"iterations": 40, "batch_size": 64, "lr": 1e-2, "warmup": 5, "ema": 0.9,
                                    "sample_steps": 20},
                   net_overrides={"d_model": 32, "n_layers": 2, "n_heads": 4, "d_ff": 64}),
}


def nb201_cells() -> list[Architecture]:
    """All 15,625 NAS-Bench-201 cells in a fixed order."""
    from search_spaces.nb201 import EDGES, OPS, edge_name

    return [Architecture({edge_name(j, i): op for (j, i), op in zip(EDGES, ops)})
            for ops in itertools.product(OPS, repeat=len(EDGES))]


def default_cache(run_dir: Path | None) -> Path:
    """`.diffusionnag-cache` beside the run directory, else the user's cache folder."""
    if run_dir is not None:
        return Path(run_dir).resolve().parent / ".diffusionnag-cache"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nas" / "diffusionnag"


def make_matrix(space: SearchSpace, encoding: str) -> OperationMatrix:
    """The node-operation matrix of `space` by `encoding` ("auto", "native", "choices")."""
    if encoding == "choices":
        return ChoiceMatrix(space)
    try:
        return operation_matrix(space)
    except NASError as err:
        if encoding == "auto":
            return ChoiceMatrix(space)
        raise NASError(f"{err} (or --option encoding=choices for a generic one)") from None


@register_strategy("diffusionnag")
class DiffusionNAG(Strategy):
    """DiffusionNAG (An et al. 2024): a diffusion prior guided by a noise-aware predictor, in a BO loop."""

    name = "diffusionnag"

    def __init__(self, space: SearchSpace, objectives: Any, seed: int = 0, preset: str = "auto", num_init: int = 10,
                 batch_size: int = 5, num_samples: int | None = None, guidance_scale: float = 10000.0,
                 scale_step: float = 300.0, patience: int | None = None, ensemble: int = 1,
                 predictor_steps: int | None = None, encoding: str = "auto", cache_dir: str | None = None,
                 prior_seed: int = 0) -> None:
        super().__init__(space, objectives, seed)
        if preset != "auto" and preset not in BUDGETS:
            raise NASError(f"unknown diffusionnag preset {preset!r}; accepted: 'auto', {', '.join(map(repr, BUDGETS))}")
        if encoding not in ("auto", "native", "choices"):
            raise NASError(f"unknown diffusionnag encoding {encoding!r}; accepted: 'auto', 'native', 'choices'")
        self.num_init, self.batch_size = check_count("num_init", num_init, 2), check_count("batch_size", batch_size)
        self.patience = None if patience is None else check_count("patience", patience)
        self.ensemble = check_count("ensemble", ensemble)
        self.preset, self.num_samples, self.predictor_steps = preset, num_samples, predictor_steps
        self.guidance_scale, self.scale_step = float(guidance_scale), float(scale_step)
        self.cache_dir, self.prior_seed = cache_dir, prior_seed
        self.matrix = make_matrix(space, encoding)
        self.device = "cpu"
        self.budget: Budget = BUDGETS["quick" if preset == "auto" else preset]
        self.prior: DiffusionPrior | None = None
        self.cache, self.progress = Path(cache_dir) if cache_dir else default_cache(None), False
        self.proposals = Proposals()
        self.history: list[tuple[Architecture, float]] = []
        self.queue: list[Architecture] = []
        self.rounds = self.fallbacks = 0
        self.rounds_log: list[dict[str, float]] = []

    # -- setup: the prior ------------------------------------------------------------------------------------
    def setup(self, context: StrategyContext) -> None:
        if self.preset == "auto":
            self.budget = BUDGETS["tiny" if context.budget <= 20 else "quick"]
        self.device = "cuda" if context.device == "cuda" else "cpu"
        self.cache = Path(self.cache_dir) if self.cache_dir else default_cache(context.run_dir)
        self.progress = context.progress

    def fit_prior(self) -> DiffusionPrior:
        """The prior, trained or loaded from the cache on first use (a search that never gets past its random
        initial architectures trains none)."""
        from nas.diffusion.prior import DiffusionPrior

        if self.prior is not None:
            return self.prior
        if isinstance(self.matrix, NB201Matrix):
            archs = nb201_cells()
        else:
            rng = random.Random(self.prior_seed)
            archs = [self.representable(self.space.sample(rng)) for _ in range(self.budget.train_archs)]
        preset = self.prior_preset()
        with single_thread():
            self.prior = DiffusionPrior(self.matrix, preset, device=self.device,
                                        seed=self.prior_seed).fit(archs, cache_dir=self.cache, progress=self.progress)
        return self.prior

    def prior_preset(self) -> PriorPreset:
        """The budget's prior preset, for MBConv spaces with the published MobileNetV3 sigma range and, where the
        matrix numbers its rows per layer (stages that differ), positions on the node embedding's scale."""
        preset = self.budget.prior_preset()
        if isinstance(self.matrix, MBConvMatrix):  # the published MobileNetV3 range (nas.diffusion.sde)
            preset = replace(preset, sigma_max=MBCONV_SIGMA_MAX)
            if self.matrix.position_kind == "layer":
                preset = replace(preset, net=replace(preset.net, position_scale=math.sqrt(preset.net.d_model)))
        return preset

    # -- ask / tell ------------------------------------------------------------------------------------------
    def ask(self) -> Architecture:
        told = len(self.proposals.seen) + len(self.proposals.pending) + len(self.queue)
        if told < self.num_init or len(self.history) < 2:
            arch = self._random_unseen()
        else:
            if not self.queue:
                self.queue = self._propose()
            arch = self.queue.pop(0)
        self.proposals.asked(arch)
        return arch

    def tell(self, arch: Architecture, metrics: Mapping[str, float] | None) -> None:
        arch = self.proposals.told(arch)
        if arch in self.queue:
            self.queue.remove(arch)
        if metrics is not None:
            self.history.append((arch, self.fitness(metrics)[0]))

    def state(self) -> dict[str, Any]:
        return {"rng": rng_state(self.rng), "rounds": self.rounds, "fallbacks": self.fallbacks,
                "history": [[dict(a), f] for a, f in self.history], "seen": self.proposals.state(),
                "queue": [dict(a) for a in self.queue], "rounds_log": self.rounds_log}

    def load_state(self, state: Mapping[str, Any]) -> None:
        set_rng_state(self.rng, state["rng"])
        self.rounds, self.fallbacks = state["rounds"], state["fallbacks"]
        self.history = [(Architecture(a), f) for a, f in state["history"]]
        self.proposals.load_state(state["seen"])
        self.queue = [Architecture(a) for a in state["queue"]]
        self.rounds_log = [dict(r) for r in state["rounds_log"]]

    # -- internals -------------------------------------------------------------------------------------------
    def _random_unseen(self) -> Architecture:
        arch = self.representable(self.space.sample(self.rng))
        for _ in range(100):
            if arch not in self.proposals and arch not in self.queue:
                break
            arch = self.representable(self.space.sample(self.rng))
        return arch

    def representable(self, arch: Architecture) -> Architecture:
        """`arch` as the matrix holds it: the MBConv matrix has no rows for resolution and width, which decoding
        sets to the largest resolution and width 1.0, so random and generated proposals (and the prior's training
        architectures) live in the same sub-space and repeats are seen as repeats."""
        return self.matrix.decode(self.matrix.encode(arch)) or arch

    def fit_predictor(self, seed: int) -> NoiseAwarePredictor:
        """The noise-aware predictor fitted on every evaluation so far."""
        from predictors.noise_aware import NoiseAwarePredictor

        b = self.budget
        predictor = NoiseAwarePredictor(self.matrix.n_types, self.matrix.adjacency, self.fit_prior().sde,
                                        hidden=b.predictor_hidden, steps=self.predictor_steps or b.predictor_steps,
                                        batch_size=b.predictor_batch, ensemble=self.ensemble, seed=seed,
                                        device=self.device)
        return predictor.fit(self.matrix.encode_many([a for a, _ in self.history]), [f for _, f in self.history])

    def _propose(self) -> list[Architecture]:
        from nas.diffusion.sde import Guidance

        prior = self.fit_prior()
        self.rounds += 1
        seed = self.seed * 100003 + self.rounds
        with single_thread():
            predictor = self.fit_predictor(seed)
            guidance = Guidance(predictor, scale=self.guidance_scale, scale_step=self.scale_step)
            for attempt in range(self.patience or self.budget.patience):
                result = prior.generate(self.num_samples or self.budget.num_samples, guidance,
                                             seed=seed * 31 + attempt)
                new = [a for a in result.archs if a not in self.proposals and a not in self.queue]
                self.rounds_log.append({"round": self.rounds, "scale": guidance.scale, "valid": result.n_valid,
                                        "unique": len(result.archs), "new": len(new)})
                if new:
                    order = np.argsort(-predictor.predict_clean(self.matrix.encode_many(new)), kind="stable")
                    return [new[i] for i in order[: self.batch_size]]
                guidance = guidance.next_round()
        self.fallbacks += 1
        return [self._random_unseen()]
