"""BossNAS (Li et al., ICCV 2021): block-wise self-supervised ensemble bootstrapping over a `BlockSupernet`.

The supernet is trained block by block. While block k trains, blocks 0..k-1 run along their chosen best
paths (online network for the online branch, target network for the target branch; not detached, so their
best-path weights keep learning, as the official code). An online and a momentum target network (EMA of
the parameters; momentum on a cosine from `base_momentum` to 1.0, restarted per block) each get a neck per
block (adapters to a common width and the smallest output resolution, average pool, projector
FC-BN-ReLU-FC); the online side adds a predictor of the same shape. Each step samples `num_paths` candidate
paths without replacement, each with its own pair of augmented views; the target is the ensemble: the mean
over the sampled paths of the L2-normalised target projections; each path's loss is
-2 cos(pred(online_p(v1_p)), T(v2)) - 2 cos(pred(online_p(v2_p)), T(v1)), and the gradients of the paths
add up (as the official `multipath_batch_processor`). LARS with a per-block linear warm-up and cosine decay
to 0, rebuilt per block. After each block (and every `rating_interval` epochs) every candidate is rated
(`strategies.bossnas_rating`), the ranking is written to `<checkpoint_dir>/path_rank_<block>.json`, and
`block_<block>.pt` keeps the tensors that scoring more of its paths later reads (`BossNAS._snapshot`; deleted
once the search over ratings is recorded unless `keep_snapshots`, so a finished run folder stays small). The
search over complete architectures (`prepare` returns it as a `SupernetPlan`; the session runs it with the
ordinary search loop, every rating recorded) is the workbench's regularised evolution seeded with the greedy
best paths and each block's `record_top` candidates (the paper's evolutionary search; deviation: its mutation
is the space's point mutation, e.g. one HyTra layer's resolution step or op, population / sample_size / cycles
from the preset), or the greedy per-block choice alone (`search="enumerate"`, the official code). Constraints
(`--max-params`, `--constraint`) are checked before an architecture is rated. The supernet is built from the
space's graphs (`nas.supernet.BlockSupernet`): for HyTra at paper scale use the `paper_search` preset, whose
graphs have the search-phase ops the paper's supernet trains.

Entry states. Where a block can be entered in several states (HyTra: the resolution the previous block
ended at), `entry_states` says which are trained. "best" (the official code; the `paper` preset) trains
block k only from the state the best path so far ends in, so only architectures through those states can
be rated. "all" (the `quick` and `standard` presets; our extension, so that the paper's evolutionary
search over the whole space rates what it visits) keeps, for every state block k can be entered in, the
best-rated prefix reaching it (a Viterbi frontier over the summed block losses), trains block k from each
in turn (a block's worth of steps per state). Without it, a random HyTra architecture's later blocks are
mostly entered in states they were never trained from, where the untrained layers (last BN gamma 0) are
identities and every path through them scores the same.

How states are compared (`centre`). Neither the paper nor the code compares one block's candidates across
entry states. "block": the candidates of all states are rated against one population centre and the raw
block losses add up (states then differ by how well their candidates predict the shared ensemble, which
mostly reflects the resolution they run at). "state": each state is rated against its own centre, as the
code rates its one state, and its losses are standardised over its rated candidates before they add up:
an architecture's rating then says how good each of its paths is among the paths entered the same way, not
which down-sampling layout is better (measured: benchmarks/bossnas_rating.md).

Rating details. BN is recalibrated on the BN batch for the networks and necks before each candidate is
rated, as the official `update_bn_stats`; that function resets every BN, the predictor's too, but its
forward stops at the necks, so the predictor rates with reset statistics (mean 0, variance 1):
`predictor_bn="reset"` keeps that (default); "recalibrate" re-estimates them too. Paths are drawn per step
by the space (`BlockPaths.sample_paths`): uniformly for HyTra (`RandomPathHook`), fairly for MBConv
(`FairPathHook`); `path_sampling="uniform"` draws them uniformly in every space (ours before the official
MBConv configs were followed; kept to measure the difference).

Budget presets (`BossNASConfig`): `paper` is the official HyTra schedule (6 epochs per block, 64 images x 8
GPUs x 8 accumulation = 4096 per step, here 256 x 16 on one device; LARS lr 4.8, wd 1e-6, eta 0.001, momentum
0.9; target momentum 0.99; 4 paths; projector 4096 -> 256; rating every 2 epochs on 2,048 held-out images
(deviation: the official code uses the whole ImageNet validation set) with BN recalibrated on one batch of
256 training images (in the code 256 per GPU on 8 GPUs, the statistics averaged across them). `standard` and
`quick` scale it down for a CPU: fewer and smaller steps, a narrower projector, fewer rating images, a cap on
rated candidates per block (a fixed random sample of them; the others are scored on demand by the
evolutionary search), a larger LARS learning rate so the few steps move the weights, and a target momentum
scaled to the steps (`momentum_reference_steps`: the official 1,876 steps per block take a target at base
momentum 0.99 to about exp(-9.4) of its initial weights; a block of T < 1,876 steps starts at 1 - 0.01 x
1,876 / T instead, so the target is as far trained when the block is rated; at 0.99 the quick preset's
target kept most of its initial weights). Deviations, named in each preset. Options override any field,
e.g. `epochs_per_block=2`; `input_size` shrinks the data for the supernet (16 in `quick`; 0: the space's
own size).

The `quick` preset is the default of `nas search` and is sized to take 3 minutes on a 2-core CPU; to get
there it deviates further (each measured in benchmarks/flagship.md): the supernet sees 16x16 inputs (the
default data, scikit-learn's digits, are 8x8), 2 paths per step form the ensemble instead of 4, the earlier
blocks stay fixed while a block trains (`train_prefix=False`; the official code back-propagates into them,
their best paths keep training), and ratings use 64 held-out images. Its ratings are a demonstration of the
method at that budget; for ratings that are meant to rank, train longer (`standard`, `paper`):
benchmarks/bossnas_rating.md measures how well each preset ranks.

Further deviations: the target BN does not shuffle batches across GPUs (one device); mixed precision is
bfloat16 autocast on CUDA instead of apex fp16; depth is searched in the MBConv space (see its supernet).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import random
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Any

import torch
from torch import nn

from nas.blockwise import BlockSpace, Path
from nas.evaluate import Evaluation, Evaluator
from nas.registry import register_strategy
from nas.space import Architecture, NASError, Value
from nas.strategy import (
    Record,
    Seeded,
    Strategy,
    SupernetContext,
    SupernetPlan,
    SupernetStrategy,
    budget_config,
    rating_objectives,
)
from nas.supernet import BlockSupernet
from nas.train import (
    AUGMENT_BY_DATASET,
    Batch,
    StepFn,
    TrainConfig,
    Trainer,
    TrainProgress,
    resize_inputs,
    resolve_device,
)
from strategies.bossnas_parts import (
    BlockNeck,
    augment_views,
    cosine_loss,
    ema_update,
    ensemble_target,
    momentum_at,
    predictor,
)
from strategies.bossnas_rating import BlockRater, Nets, path_from_json, plot_ratings, rate_jointly, to_json
from strategies.evolution import RegularizedEvolution
from strategies.random_search import RandomSearch

__all__ = ["BossNAS", "BossNASConfig", "PRESETS", "plot_ratings"]

#: block_score(block, entry state, path): the block loss of `path` (`BossNAS._block_scorer`)
BlockScorer = Callable[[int, Hashable, Path], float]


@dataclass(frozen=True)
class BossNASConfig:
    """Hyperparameters of one budget; the defaults are the official HyTra configuration."""

    epochs_per_block: float = 6.0
    batch_size: int = 256
    accumulate: int = 16  # 256 x 16 = 4096 images per LARS step, as 64 x 8 GPUs x 8
    lr: float = 4.8
    weight_decay: float = 1e-6
    lars_momentum: float = 0.9
    lars_eta: float = 0.001
    warmup_epochs: float = 1.0
    base_momentum: float = 0.99
    num_paths: int = 4
    proj_hidden: int = 4096
    proj_dim: int = 256
    rating_interval: int = 2  # epochs between ratings inside a block; 0: only at its end
    rating_images: int = 2048
    bn_images: int = 256
    max_rated: int = 0  # candidates rated per block; 0: all of them
    train_images: int = 0  # 0: the whole training split
    crop_min: float = 0.08  # random resized crop area range (crop_min, 1)
    search: str = "auto"  # auto | evolution | enumerate
    entry_states: str = "best"  # best: train each block from the best path's exit only (the code) | all
    population: int = 50
    sample_size: int = 10
    cycles: int = 1000
    record_top: int = 3  # top candidates per block that seed the evolutionary search
    input_size: int = 0  # at most this square input side for the supernet (images shrunk); 0: the space's own
    centre: str = "block"  # block: one centre over a block's entry states | state: one per state, standardised
    predictor_bn: str = "reset"  # reset: the predictor's BN left at its reset statistics when rating (the code)
    path_sampling: str = "space"  # space: as the space trains (fair on MBConv) | uniform: uniform in every space
    momentum_reference_steps: int = 0  # >0: scale the target momentum to steps per block (module docstring)
    keep_snapshots: bool = False  # keep the block snapshots after the search (to rate more architectures later)
    train_prefix: bool = True  # back-propagate into the earlier blocks too (the code); False: they stay fixed
    checkpoint_seconds: float = 60.0  # inside a block, save the training state at most this often (0: every epoch)
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.search not in ("auto", "evolution", "enumerate"):
            raise NASError(f"search {self.search!r} is not one of 'auto', 'evolution', 'enumerate'")
        if self.entry_states not in ("best", "all"):
            raise NASError(f"entry_states {self.entry_states!r} is not one of 'best', 'all'")
        if self.centre not in ("block", "state"):
            raise NASError(f"centre {self.centre!r} is not one of 'block', 'state'")
        if self.predictor_bn not in ("reset", "recalibrate"):
            raise NASError(f"predictor_bn {self.predictor_bn!r} is not one of 'reset', 'recalibrate'")
        if self.path_sampling not in ("space", "uniform"):
            raise NASError(f"path_sampling {self.path_sampling!r} is not one of 'space', 'uniform'")
        if self.num_paths < 1 or self.batch_size < 2 or self.accumulate < 1 or self.epochs_per_block <= 0:
            raise NASError("num_paths and accumulate must be >= 1, batch_size >= 2 and epochs_per_block > 0")


#: LARS steps per block of the official HyTra schedule: 6 epochs of ImageNet's 1,281,167 images at 4,096 a step
OFFICIAL_STEPS = 6 * 1_281_167 // 4096
PAPER = BossNASConfig()
PRESETS: dict[str, BossNASConfig] = {
    "paper": PAPER,
    # 3 epochs per block at batch 64 without accumulation; lr 1.2 (not 4.8 * 64 / 4096) so that ~100x fewer
    # steps still train; projector 1024 -> 128; 512 rating images, BN on 128, at most 64 rated candidates.
    "standard": dataclasses.replace(PAPER, epochs_per_block=3.0, batch_size=64, accumulate=1, lr=1.2,
                                    warmup_epochs=0.5, proj_hidden=1024, proj_dim=128, rating_interval=0,
                                    entry_states="all", rating_images=512, bn_images=128, max_rated=64, crop_min=0.25,
                                    population=32, sample_size=8, cycles=300, momentum_reference_steps=OFFICIAL_STEPS),
    # 3 minutes on a 2-core CPU (the default of `nas search`): one epoch of 384 images per block and entry
    # state at batch 64 and 16x16 inputs, 2 paths per step, the earlier blocks fixed, projector 256 -> 64, 64
    # rating images, BN on 32, at most 8 rated candidates per block and state, a short evolution.
    "quick": dataclasses.replace(PAPER, epochs_per_block=1.0, batch_size=64, accumulate=1, lr=2.0,
                                 warmup_epochs=0.2, proj_hidden=256, proj_dim=64, rating_interval=0,
                                 entry_states="all", rating_images=64, bn_images=32, max_rated=8, train_images=384,
                                 crop_min=0.3, population=16, sample_size=4, cycles=24, num_paths=2, input_size=16,
                                 train_prefix=False, momentum_reference_steps=OFFICIAL_STEPS),
}


def make_config(budget: str, **overrides: Any) -> BossNASConfig:
    return budget_config("BossNAS", PRESETS, budget, overrides)


def scaled_momentum(base: float, steps: int, reference_steps: int) -> float:
    """The base target momentum for a block of `steps` LARS steps that moves the target as far from its initial
    weights as `base` does over `reference_steps` (0: `base` unchanged; never above `base`).

    Under the cosine schedule from m0 to 1 the target keeps about exp(-(1 - m0) T / 2) of its initial weights
    after T steps; equal (1 - m0) T gives equal decay, so 1 - m0 = (1 - base) x reference / T."""
    if not reference_steps or steps >= reference_steps:
        return base
    return max(0.0, 1.0 - (1.0 - base) * reference_steps / steps)


def supernet_input(space, data_shape: tuple[int, ...]) -> tuple[int, ...]:  # noqa: ANN001
    """The input shape the space's models take for this data (that of a reference model, else a sample)."""
    refs = space.reference_archs()
    arch = next(iter(refs.values())) if refs else space.sample(random.Random(0))
    return tuple(space.input_shape_for(arch, data_shape))


def load_part(module: nn.Module, part: dict[str, torch.Tensor]) -> None:
    """Load the tensors `part` holds; every other floating tensor becomes NaN, so reading one would show."""
    for key, value in module.state_dict().items():
        if key not in part and value.is_floating_point():
            value.fill_(math.nan)
    unexpected = module.load_state_dict(part, strict=False).unexpected_keys
    if unexpected:
        raise NASError(f"snapshot tensor {unexpected[0]!r} is not in the network")


@register_strategy("bossnas")
class BossNAS(SupernetStrategy):
    """BossNAS: block-wise self-supervised ensemble bootstrapping, then rating-based search."""

    name = "bossnas"

    # -- set-up ---------------------------------------------------------------------------------------
    def _setup(self, context: SupernetContext) -> None:
        options = {**self.options, **context.options}
        self.config = make_config(context.budget or "quick", **options)
        self.context = context
        self.dir = FilePath(context.checkpoint_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(self.config.device)
        data = context.data
        if not isinstance(context.space, BlockSpace):
            raise NASError(f"space {context.space.name!r} has no block-wise view; BossNAS needs one (a BlockSpace)")
        torch.manual_seed(self.seed)
        shape = supernet_input(context.space, data.sample_shape)
        if self.config.input_size and self.config.input_size < max(shape[1:]):
            shape = (shape[0], self.config.input_size, self.config.input_size)
        self.online = BlockSupernet(context.space, shape, data.num_classes, sharing="separate")
        self.target: BlockSupernet = copy.deepcopy(self.online)
        for p in self.target.parameters():
            p.requires_grad_(False)
        shape = self.online.input_shape
        g = torch.Generator().manual_seed(self.seed)
        x_train = data.x_train
        if self.config.train_images and self.config.train_images < len(x_train):
            x_train = x_train[torch.randperm(len(x_train), generator=g)[:self.config.train_images]]
        self.x_train = resize_inputs(x_train, shape).to(self.device)
        self.flip = "flip" in AUGMENT_BY_DATASET.get(data.name, "none")
        held_out = data.x_val[torch.randperm(len(data.x_val), generator=g)[:self.config.rating_images]]
        held_out = resize_inputs(held_out, shape).to(self.device)
        bn = self.x_train[torch.randperm(len(self.x_train), generator=g)[:self.config.bn_images].to(self.device)]
        self.views = (self._view(held_out, g, 1.0), self._view(held_out, g, 0.1))
        self.bn_batch = torch.cat([self._view(bn, g, 1.0), self._view(bn, g, 0.1)])
        self.online.to(self.device)
        self.target.to(self.device)
        self.entries = self.online.paths.entries
        if self.config.entry_states == "best" and any(len(e) > 1 for e in self.entries) and \
                self.config.search == "evolution":
            raise NASError(f"search over complete {context.space.name} architectures (search='evolution') "
                           "needs every entry state trained: set entry_states='all'")
        self.necks_online, self.necks_target, self.predictors = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        #: per block, entry state (JSON) -> (summed loss, paths): the best-rated prefix reaching that state
        self.frontier: list[dict[str, tuple[float, tuple[Path, ...]]]] = \
            [{to_json(self.online.initial_state()): (0.0, ())}]
        self.raters: list[list[BlockRater]] = []  # per block, one per trained entry state
        self.losses: list[list[float]] = []
        self.progress = {"block": 0, "epoch": 0, "step": 0, "trained": False}
        self._scorer: BlockScorer | None = None  # `block_losses` makes it on first use
        self.train_seconds: list[float] = []  # per block, the wall-clock of its supernet training

    def _view(self, x: torch.Tensor, g: torch.Generator, blur: float) -> torch.Tensor:
        return augment_views(x, g, self.flip, blur, (self.config.crop_min, 1.0))

    def _add_block_heads(self, block: int) -> None:
        """The block's necks (one input layer per output shape its candidates can have) and predictor. A path's
        output shape is that of its exit state (the next block is entered in that state whatever the path), so
        one path per exit state is built."""
        net = self.online
        exits: dict[str, tuple[Path, Hashable]] = {}  # exit state (JSON) -> one (path, entry) reaching it
        for entry in self.entries[block]:
            for path in net.candidates(block, entry):
                exits.setdefault(to_json(net.exit_state(block, path, entry)), (path, entry))
        shapes = {net.output_shape(block, path, entry) for path, entry in exits.values()}
        torch.manual_seed(self.seed * 1000 + block)
        neck = BlockNeck(shapes, self.config.proj_hidden, self.config.proj_dim).to(self.device)
        target = copy.deepcopy(neck)
        for p in target.parameters():
            p.requires_grad_(False)
        self.necks_online.append(neck)
        self.necks_target.append(target)
        self.predictors.append(predictor(self.config.proj_dim, self.config.proj_hidden).to(self.device))

    @property
    def best_paths(self) -> list[Path]:
        """The lowest-loss prefix of the newest frontier (after the last block: the greedy architecture)."""
        return list(min(self.frontier[-1].values(), key=lambda t: t[0])[1])

    def prefixes(self, block: int) -> list[tuple[Path, ...]]:
        """The prefixes block `block` is trained and rated after: one per entry state it is trained from."""
        return [prefix for _, prefix in self.frontier[block].values()]

    def nets(self, block: int) -> Nets:
        return Nets(self.online, self.target, self.necks_online[block], self.necks_target[block],
                    self.predictors[block])

    # -- checkpoints ----------------------------------------------------------------------------------
    @property
    def _state_file(self) -> FilePath:
        return self.dir / "bossnas_state.pt"

    def _save(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """The training state; once every block is trained and rated its weights are left out (scoring more
        paths reads the block snapshots), so the run folder holds them once."""
        trained = self.progress["block"] >= self.online.num_blocks
        weights = {} if trained else {
            "online": self.online.state_dict(), "target": self.target.state_dict(),
            "necks_online": self.necks_online.state_dict(), "necks_target": self.necks_target.state_dict(),
            "predictors": self.predictors.state_dict()}
        state = {**weights, "heads": len(self.necks_online),
                 "frontier": [[[key, loss, [to_json(p) for p in paths]] for key, (loss, paths) in states.items()]
                              for states in self.frontier],
                 "raters": [[r.state() for r in raters] for raters in self.raters], "losses": self.losses,
                 "progress": dict(self.progress),
                 "train_seconds": self.train_seconds,
                 "optimizer": optimizer.state_dict() if optimizer is not None else None}
        tmp = self._state_file.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self._state_file)

    def _snapshot(self, block: int) -> None:
        """What scoring more paths of block `block` later reads, as it was when the block was rated.

        A candidate of an entry state runs after that state's best prefix (the frontier) through the target
        network, and through both networks' block `block`: so the target's stem and the layers of those
        prefix paths, both networks' block `block` (every candidate), and the block's necks and predictor.
        The prefix layers are saved again because training this block moved them (best paths not detached,
        the target's EMA); nothing else is ever read.
        """
        online, target, paths = self.online.state_dict(), self.target.state_dict(), self.online.paths
        prefix_keys = [k for prefix in self.prefixes(block)
                       for j, (entry, path) in enumerate(zip(paths.entries_of(prefix), prefix))
                       for k in self.target.path_state_keys(j, path, entry)]
        target_keys = dict.fromkeys(self.target.stem_state_keys() + prefix_keys + self.target.block_state_keys(block))
        torch.save({"online": {k: online[k] for k in self.online.block_state_keys(block)},
                    "target": {k: target[k] for k in target_keys},
                    "neck_online": self.necks_online[block].state_dict(),
                    "neck_target": self.necks_target[block].state_dict(),
                    "predictor": self.predictors[block].state_dict()}, self.dir / f"block_{block}.pt")

    def _load(self) -> dict | None:
        if not self._state_file.exists():
            return None
        state = torch.load(self._state_file, map_location=self.device, weights_only=True)
        self.frontier = [{key: (loss, tuple(path_from_json(p) for p in paths)) for key, loss, paths in states}
                         for states in state["frontier"]]
        for block in range(state["heads"]):
            self._add_block_heads(block)
        if "online" in state:  # training unfinished (a finished run rates from the block snapshots)
            self.online.load_state_dict(state["online"])
            self.target.load_state_dict(state["target"])
            self.necks_online.load_state_dict(state["necks_online"])
            self.necks_target.load_state_dict(state["necks_target"])
            self.predictors.load_state_dict(state["predictors"])
        for block, rstates in enumerate(state["raters"]):
            raters = []
            for rstate in rstates:
                prefix = [path_from_json(p) for p in rstate["prefix"]]
                raters.append(self._rater(block, prefix))
                raters[-1].load_state(rstate)
            self.raters.append(raters)
        self.losses = state["losses"]
        self.train_seconds = state["train_seconds"]
        self.progress = state["progress"]
        return state["optimizer"]

    # -- training -------------------------------------------------------------------------------------
    def _step(self, block: int, prefixes: Sequence[tuple[Path, ...]]) -> StepFn:
        """One micro-batch of block `block`: the entry states take turns; `num_paths` candidates are sampled
        without replacement, each with its own pair of views; every path's loss against the ensemble target is
        back-propagated (the gradients add up, as the official `multipath_batch_processor`), into the earlier
        blocks too unless `train_prefix` is off."""
        cfg = self.config
        entries = [self.online.paths.state_after(p) for p in prefixes]
        neck_t, neck_o, pred = self.necks_target[block], self.necks_online[block], self.predictors[block]
        rngs: dict[int, random.Random] = {}
        block_paths = self.online.paths
        sample = block_paths.sample_paths if cfg.path_sampling == "space" else block_paths.uniform_paths

        def online(x: torch.Tensor, prefix: list[Path], entry: Hashable, path: Path) -> torch.Tensor:
            if cfg.train_prefix or not prefix:
                return self.online.forward_paths(x, prefix + [path])
            with torch.no_grad():
                x = self.online.forward_paths(x, prefix)
            return self.online.forward_block(block, path, x, entry)

        def step(batch: Batch, scale: float) -> float:
            rng = rngs.setdefault(batch.epoch, random.Random(f"{self.seed}-{block}-{batch.epoch}"))
            j = batch.index % len(prefixes)
            prefix = list(prefixes[j])
            paths = sample(block, entries[j], cfg.num_paths, rng)
            views = [(self._view(batch.x, batch.generator, 1.0), self._view(batch.x, batch.generator, 0.1))
                     for _ in paths]
            with torch.no_grad():
                t1 = ensemble_target(neck_t(self.target.forward_paths(v1, prefix + [p])).float()
                                     for p, (v1, _) in zip(paths, views))
                t2 = ensemble_target(neck_t(self.target.forward_paths(v2, prefix + [p])).float()
                                     for p, (_, v2) in zip(paths, views))
            total = 0.0
            for p, (v1, v2) in zip(paths, views):
                o1, o2 = (pred(neck_o(online(v, prefix, entries[j], p))).float() for v in (v1, v2))
                loss = cosine_loss(o1, t2) + cosine_loss(o2, t1)
                (loss * scale).backward()
                total += loss.item()
            return total / len(paths)

        return step

    def _train_block(self, block: int, optimizer_state: dict | None) -> None:
        """Train block `block` from every entry state in `prefixes` (a block's worth of LARS steps each), with
        the target network following by EMA (momentum from `base_momentum` to 1, restarted per block)."""
        cfg = self.config
        clock = [time.perf_counter()]
        if len(self.train_seconds) <= block:
            self.train_seconds.append(0.0)
        prefixes = self.prefixes(block)
        trainer = Trainer(TrainConfig(epochs=cfg.epochs_per_block, batch_size=cfg.batch_size, optimizer="lars",
                                      lr=cfg.lr, momentum=cfg.lars_momentum, weight_decay=cfg.weight_decay,
                                      warmup_epochs=cfg.warmup_epochs, augment="none", seed=self.seed,
                                      device=cfg.device, accumulate=cfg.accumulate, lars_eta=cfg.lars_eta),
                          progress=self.context.progress, desc=f"block {block}")
        total = max(1, round(cfg.epochs_per_block * trainer.steps_per_epoch(len(self.x_train)) * len(prefixes)))
        online_pair = nn.ModuleList([self.online, self.necks_online[block]])
        target_pair = nn.ModuleList([self.target, self.necks_target[block]])

        base = scaled_momentum(cfg.base_momentum, total, cfg.momentum_reference_steps)

        def after_step(step: int, total: int) -> None:
            ema_update(target_pair, online_pair, momentum_at(step, total, base))

        saved = [time.perf_counter()]

        def on_epoch_end(progress: TrainProgress, optimizer: torch.optim.Optimizer, last: bool) -> None:
            self.progress.update(epoch=progress.epoch, step=progress.step)
            self.train_seconds[block] += time.perf_counter() - clock[0]
            clock[0] = time.perf_counter()
            if not last and cfg.rating_interval and progress.epoch % cfg.rating_interval == 0:
                self._rate_block(block, suffix=f"_ep{progress.epoch}")
            if not last and time.perf_counter() - saved[0] >= cfg.checkpoint_seconds:  # prepare() saves the last
                self._save(optimizer)
                saved[0] = time.perf_counter()

        state = TrainProgress(self.progress["step"], self.progress["epoch"], self.losses[block])
        trainer.fit(self._step(block, prefixes), [self.online, self.necks_online[block], self.predictors[block]],
                    self.x_train, total_steps=total, state=state, optimizer_state=optimizer_state,
                    also_train=[self.target, self.necks_target[block]], after_step=after_step,
                    on_epoch_end=on_epoch_end,
                    epoch_generator=lambda e: torch.Generator().manual_seed(hash((self.seed, block, e)) % 2**31))

    # -- rating ---------------------------------------------------------------------------------------
    def _rater(self, block: int, prefix: Sequence[Path], nets: Nets | None = None) -> BlockRater:
        return BlockRater(nets or self.nets(block), block, self.online.paths.state_after(prefix), prefix,
                          self.views, self.bn_batch, chunk=max(2, self.config.batch_size),
                          predictor_bn=self.config.predictor_bn)

    def _rated_paths(self, block: int, entry: Hashable) -> list[Path]:
        """The candidates rated (a fixed random sample when capped by `max_rated`; with entry_states='all'
        the sample gains one candidate per exit state it misses, so every reachable state is trained)."""
        net, cap = self.online, self.config.max_rated
        candidates = net.candidates(block, entry)
        if not cap or len(candidates) <= cap:
            return candidates
        rng = random.Random(f"{self.seed}-rate-{block}-{to_json(entry)}")
        sample = rng.sample(candidates, cap)
        if self.config.entry_states == "all":
            exits = {to_json(net.exit_state(block, p, entry)) for p in sample}
            for path in rng.sample(candidates, len(candidates)):
                key = to_json(net.exit_state(block, path, entry))
                if key not in exits:
                    exits.add(key)
                    sample.append(path)
        return sample

    def _rate_block(self, block: int, suffix: str = "") -> list[BlockRater]:
        """Rate the block's candidates in every trained entry state (against one population centre, or one per
        state with `centre="state"`)."""
        raters = [self._rater(block, prefix) for prefix in self.prefixes(block)]
        rate_jointly(raters, [self._rated_paths(block, r.entry) for r in raters], progress=self.context.progress,
                     per_state=self.config.centre == "state")
        (self.dir / f"path_rank_{block}{suffix}.json").write_text(json_ranking(block, raters))
        return raters

    def _advance(self, block: int, raters: Sequence[BlockRater]) -> None:
        """The next block's frontier: per exit state the lowest summed loss (only the best with 'best')."""
        nxt: dict[str, tuple[float, tuple[Path, ...]]] = {}
        for (base, prefix), rater in zip(self.frontier[block].values(), raters):
            for path, loss in rater.scores.items():
                key = to_json(self.online.exit_state(block, path, rater.entry))
                if key not in nxt or base + loss < nxt[key][0]:
                    nxt[key] = (base + loss, (*prefix, path))
        if self.config.entry_states == "best":
            nxt = dict([min(nxt.items(), key=lambda kv: kv[1][0])])
        self.frontier[block + 1:] = [nxt]

    # -- search ---------------------------------------------------------------------------------------
    def prepare(self, context: SupernetContext) -> SupernetPlan:
        """Train and rate block by block (resumable), then plan the search over complete architectures."""
        self._setup(context)
        optimizer_state = self._load()
        num_blocks = self.online.num_blocks
        while self.progress["block"] < num_blocks:
            block = self.progress["block"]
            if len(self.necks_online) <= block:
                self._add_block_heads(block)
            if len(self.losses) <= block:
                self.losses.append([])
            if not self.progress["trained"]:
                self._train_block(block, optimizer_state)
                optimizer_state = None
                self.progress["trained"] = True
                self._save()
            raters = self._rate_block(block)
            self.raters[block:] = [raters]
            self._advance(block, raters)
            self._snapshot(block)
            self.progress = {"block": block + 1, "epoch": 0, "step": 0, "trained": False}
            self._save()
        search, budget = self._searcher()
        return SupernetPlan(BossNASRating(self), search, budget, [self._plot_losses()])

    def finish(self, context: SupernetContext, best: Record | None = None) -> None:
        """Delete the block snapshots once the search over ratings is recorded (a resumed run needs no more
        ratings), unless `keep_snapshots`; the state, rankings and plots stay."""
        if not self.config.keep_snapshots:
            for block in range(self.online.num_blocks):
                (self.dir / f"block_{block}.pt").unlink(missing_ok=True)

    def _searcher(self) -> tuple[Strategy, int]:
        """The search over complete architectures: regularised evolution (the paper) seeded with the greedy
        best paths and the per-block top candidates, or the greedy choice alone (`enumerate`, the code)."""
        cfg, net, space = self.config, self.online, self.context.space
        mode = cfg.search
        if mode == "auto":
            partial = any(len(r.scores) < len(net.candidates(r.block, r.entry)) for rs in self.raters for r in rs)
            branching = any(len(e) > 1 for e in self.entries)
            every_state = cfg.entry_states == "all" or not branching
            mode = "evolution" if every_state and (partial or branching) else "enumerate"
        objectives = rating_objectives(self.context.objectives)
        initial = [net.arch_of(self.best_paths), *self._block_tops()]
        if mode == "enumerate":
            return Seeded(RandomSearch(space, objectives, self.seed), initial[:1]), 1
        evolution = RegularizedEvolution(space, objectives, self.seed, population_size=cfg.population,
                                         sample_size=min(cfg.sample_size, cfg.population))
        return Seeded(evolution, initial), cfg.population + cfg.cycles

    def _block_tops(self) -> list[Architecture]:
        """The best paths with one block replaced by one of its `record_top` best candidates (where the next
        block's entry state stays the same)."""
        net, best = self.online, self.best_paths
        entries = net.paths.entries_of(best)
        out = []
        for rater in (r for raters in self.raters for r in raters if r.entry == entries[r.block]):
            for path, _ in rater.ranking()[:self.config.record_top]:
                if rater.block + 1 < len(best) and \
                        net.exit_state(rater.block, path, entries[rater.block]) != entries[rater.block + 1]:
                    continue
                out.append(net.arch_of([*best[:rater.block], path, *best[rater.block + 1:]]))
        return out

    def _block_scorer(self) -> BlockScorer:
        """block_score(k, entry, path): table lookups, on-demand scoring with block k's snapshot (after the
        best prefix reaching `entry`, against the block's centre)."""
        raters = {(r.block, to_json(r.entry)): r for block in self.raters for r in block}
        snapshots: dict[int, Nets] = {}

        def nets_of(block: int) -> Nets:
            if block not in snapshots:
                snap = torch.load(self.dir / f"block_{block}.pt", map_location=self.device, weights_only=True)
                nets = Nets(copy.deepcopy(self.online), copy.deepcopy(self.target),
                            copy.deepcopy(self.necks_online[block]), copy.deepcopy(self.necks_target[block]),
                            copy.deepcopy(self.predictors[block]))
                for module, key in zip(nets.modules(), ("online", "target", "neck_online", "neck_target",
                                                          "predictor")):
                    load_part(module, snap[key])
                snapshots[block] = nets
            return snapshots[block]

        def block_score(block: int, entry: Hashable, path: Path) -> float:
            rater = raters.get((block, to_json(entry)))
            if rater is None:
                raise NASError(f"block {block} was not trained from entry state {to_json(entry)} "
                               f"(entry_states={self.config.entry_states!r}); rate with entry_states='all'")
            if path not in rater.scores:
                rater.nets = nets_of(block)
            return rater.score(path)

        return block_score

    def block_losses(self, arch: Mapping[str, Value]) -> list[float]:
        """The block losses of an architecture (lower is better), after `prepare` has trained the supernet."""
        net = self.online
        if self._scorer is None:
            self._scorer = self._block_scorer()
        paths = net.paths_of(arch)
        return [self._scorer(k, e, p) for k, (e, p) in enumerate(zip(net.paths.entries_of(paths), paths))]

    def rate(self, archs: Sequence[Mapping[str, Value]]) -> list[float]:
        """Ratings (-sum of block losses; higher is better) of architectures, after `prepare` has run."""
        return [-sum(self.block_losses(arch)) for arch in archs]

    def _plot_losses(self) -> str:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        for block, losses in enumerate(self.losses):
            ax.plot(range(1, len(losses) + 1), losses, marker="o", label=f"block {block}")
        ax.set_xlabel("epoch in block")
        ax.set_ylabel("ensemble bootstrapping loss")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = self.dir / "bossnas_training.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return str(path)


class BossNASRating(Evaluator):
    """An architecture's BossNAS rating: minus the sum of its block losses against each block's population
    centre (`strategies.bossnas_rating`), with `block<k>_loss` for each block."""

    name = "bossnas"
    metrics = ("rating",)

    def __init__(self, strategy: BossNAS) -> None:
        self.strategy = strategy

    def evaluate(self, arch: Architecture) -> Evaluation:
        losses = self.strategy.block_losses(arch)
        return Evaluation({"rating": -sum(losses), **{f"block{k}_loss": loss for k, loss in enumerate(losses)}})

    def describe(self) -> dict[str, Any]:
        return {"evaluator": self.name, "rating": "-sum of BossNAS block losses (ensemble bootstrapping)",
                "config": dataclasses.asdict(self.strategy.config)}


def json_ranking(block: int, raters: Sequence[BlockRater]) -> str:
    import json

    return json.dumps({"block": block, "entries": [
        {"entry": r.entry, "prefix": [list(p) for p in r.prefix], "ranking": [[list(p), s] for p, s in r.ranking()]}
        for r in raters]}, indent=1)
