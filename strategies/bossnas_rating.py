"""BossNAS architecture rating: per-block scores against the population centre, and the search over them.

A `BlockRater` scores candidate paths of one block entered in one state. Every candidate sees the same
cached views: fixed view pairs of held-out images, passed once through the target network's blocks before
(the prefix, as the official `ValBestPathHook`, which feeds both branches through the target backbone). Before
a candidate is scored, every BatchNorm is reset and recalibrated on a fixed training batch (the prefix
output of that batch), as the official `update_bn_stats` (deviation: a cumulative average over the batch,
momentum None, where the official code uses momentum 1 on one batch; the same for a single batch). The
population centre is the mean over the rated candidates of their (unnormalised) target projections of each
view; a candidate's block loss is
-2 cos(pred(online(v1)), centre(v2)) - 2 cos(pred(online(v2)), centre(v1)), averaged over the images; lower
is better. An architecture's loss is the sum of its block losses (every lambda = 1, as the ranking scripts).

The paper searches complete architectures with an evolutionary algorithm over the block-wise ratings; the
official code only enumerates each block's candidates and takes the best greedily (`search="enumerate"`).
Here the search is the workbench's regularised evolution (Real et al. 2019) run by the ordinary search loop
(`strategies.bossnas.BossNAS._searcher`; a mutation changes one choice of the space, e.g. one HyTra layer's
resolution step or op); block scores come from the rating tables, and paths not yet rated are scored on
demand with the weights the block had when it was rated, against the same centre (deviation: when only a
sample of the candidates was rated, the centre is that sample's). A block trained from several
entry states (`entry_states="all"`, HyTra) is rated in each of them after the best prefix reaching it,
against one centre: the mean over the candidates of all its entry states (`rate_jointly`; the paper's
population is every candidate of the block), so that the block losses of different entry states share one
target and add up comparably. A path in such a block is scored after the best prefix reaching its entry
state, not after the architecture's own earlier paths (block-wise rating, as within one state).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import reduce

import torch
from torch import nn

from nas.blockwise import Path
from nas.supernet import BlockSupernet
from nas.train import batchnorms, bn_recalibration
from strategies.bossnas_parts import cosine_loss


def to_json(value: Hashable) -> str:
    return json.dumps(value, separators=(",", ":"))


def from_json(text: str) -> Hashable:
    def tup(v: object) -> Hashable:
        return tuple(tup(x) for x in v) if isinstance(v, list) else v
    return tup(json.loads(text))


def path_from_json(text: str) -> Path:
    """A path from its `to_json` text (a JSON list, so a tuple)."""
    path = from_json(text)
    assert isinstance(path, tuple), f"not a path: {text}"
    return path


@dataclass
class Nets:
    """The modules that rate one block: both supernets, the block's necks and its predictor."""

    online: BlockSupernet
    target: BlockSupernet
    neck_online: nn.Module
    neck_target: nn.Module
    predictor: nn.Module

    def modules(self) -> list[nn.Module]:
        return [self.online, self.target, self.neck_online, self.neck_target, self.predictor]

    def eval(self) -> None:
        for m in self.modules():
            m.eval()


class BlockRater:
    """Scores the candidates of block `block` entered in state `entry` after the fixed `prefix` paths."""

    def __init__(self, nets: Nets, block: int, entry: Hashable, prefix: Sequence[Path],
                 views: tuple[torch.Tensor, torch.Tensor], bn_batch: torch.Tensor, chunk: int = 256,
                 predictor_bn: str = "reset") -> None:
        self._nets, self.block, self.entry, self.prefix = nets, block, entry, list(prefix)
        self.views, self.bn_batch, self.chunk = views, bn_batch, chunk
        self.predictor_bn = predictor_bn
        self.scores: dict[Path, float] = {}
        self.centre: tuple[torch.Tensor, torch.Tensor] | None = None
        self.shift, self.scale = 0.0, 1.0  # a score is (loss - shift) / scale: standardised per state, or raw
        self._features: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._norms: list[nn.modules.batchnorm._BatchNorm] | None = None

    @property
    def nets(self) -> Nets:
        return self._nets

    @nets.setter
    def nets(self, nets: Nets) -> None:
        """Other weights to score with (a block's snapshot); the cached prefix features stay."""
        self._nets, self._norms = nets, None

    # -- inputs --------------------------------------------------------------------------------
    def _prefix(self, x: torch.Tensor) -> torch.Tensor:
        return self.nets.target.forward_paths(x, self.prefix)

    @torch.no_grad()
    def features(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The prefix outputs of the two views and of the BN batch (prefix BN recalibrated first)."""
        if self._features is None:
            with bn_recalibration(self.nets.target):
                self._prefix(self.bn_batch)
            self.nets.eval()
            v1, v2 = self.views
            self._features = (self._batched(self._prefix, v1), self._batched(self._prefix, v2),
                              self._batched(self._prefix, self.bn_batch))
        return self._features

    def _batched(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return torch.cat([fn(x[i:i + self.chunk]) for i in range(0, len(x), self.chunk)])

    # -- one candidate --------------------------------------------------------------------------
    @torch.no_grad()
    def project(self, path: Path) -> tuple[torch.Tensor, ...]:
        """(target v1, target v2, prediction v1, prediction v2) of `path`, BN recalibrated first: the networks'
        and necks' BN on the BN batch; the predictor's too with `predictor_bn="recalibrate"`, else it is reset
        and left at mean 0 / variance 1 (the official `update_bn_stats` resets every BN but its forward
        stops at the necks)."""
        f1, f2, fb = self.features()
        n, k, e = self.nets, self.block, self.entry

        def target(x: torch.Tensor) -> torch.Tensor:
            return n.neck_target(n.target.forward_block(k, path, x, e))

        def online(x: torch.Tensor) -> torch.Tensor:
            return n.predictor(n.neck_online(n.online.forward_block(k, path, x, e)))

        if self._norms is None:  # the BatchNorms to recalibrate, found once (the supernets have hundreds)
            self._norms = batchnorms(*(n.modules() if self.predictor_bn == "recalibrate" else n.modules()[:-1]))
        if self.predictor_bn == "reset":
            for bn in batchnorms(n.predictor):
                bn.reset_running_stats()
        for module in n.modules():
            if module.training:  # training the next block left it in training mode
                module.eval()
        with bn_recalibration(*self._norms):
            target(fb)
            online(fb)
        return (self._batched(target, f1), self._batched(target, f2),
                self._batched(online, f1), self._batched(online, f2))

    @staticmethod
    def loss(pred1: torch.Tensor, pred2: torch.Tensor, centre: tuple[torch.Tensor, torch.Tensor]) -> float:
        return float(cosine_loss(pred1, centre[1]) + cosine_loss(pred2, centre[0]))

    # -- tables ---------------------------------------------------------------------------------
    def rate(self, paths: Sequence[Path], progress: bool = False) -> dict[Path, float]:
        """Score `paths` against their population centre (which this call sets); returns path -> loss."""
        rate_jointly([self], [paths], progress)
        return dict(self.scores)

    def score(self, path: Path) -> float:
        """The block score of `path` (from the table, or computed now against the stored centre and scale)."""
        if path not in self.scores:
            if self.centre is None:
                raise RuntimeError(f"block {self.block} has no centre yet: call rate() first")
            _, _, p1, p2 = self.project(path)
            self.scores[path] = (self.loss(p1, p2, self.centre) - self.shift) / self.scale
        return self.scores[path]

    def ranking(self) -> list[tuple[Path, float]]:
        return sorted(self.scores.items(), key=lambda kv: kv[1])

    def state(self) -> dict:
        return {"block": self.block, "entry": to_json(self.entry), "prefix": [to_json(p) for p in self.prefix],
                "scores": [[to_json(p), s] for p, s in self.scores.items()],
                "centre": list(self.centre) if self.centre is not None else None, "shift": self.shift,
                "scale": self.scale}

    def load_state(self, state: dict) -> None:
        self.scores = {path_from_json(p): float(s) for p, s in state["scores"]}
        self.centre = tuple(state["centre"]) if state["centre"] is not None else None
        self.shift, self.scale = state.get("shift", 0.0), state.get("scale", 1.0)


def rate_jointly(raters: Sequence[BlockRater], paths: Sequence[Sequence[Path]], progress: bool = False,
                 per_state: bool = False) -> None:
    """Score each rater's `paths` against a population centre: the mean of the target projections over all
    of them (the raters of one block entered in different states share the block's centre), or with
    `per_state` over each rater's own (as the official code rates the one state it trains), each rater's
    losses then standardised (minus their mean, over their standard deviation) so that the block scores of
    different states add up on one scale."""
    from tqdm.auto import tqdm

    # per rater: (sum of target v1, sum of target v2, count), path -> predictions
    sums: list[tuple[torch.Tensor, torch.Tensor, int]] = []
    preds: list[dict[Path, tuple[torch.Tensor, torch.Tensor]]] = []
    for rater, some in zip(raters, paths):
        t1: torch.Tensor | None = None
        t2: torch.Tensor | None = None
        mine = {}
        for path in tqdm(some, desc=f"rate block {rater.block}", disable=not progress, leave=False):
            a1, a2, p1, p2 = rater.project(path)
            t1 = a1 if t1 is None else t1 + a1
            t2 = a2 if t2 is None else t2 + a2
            mine[path] = (p1, p2)
        assert t1 is not None and t2 is not None, f"block {rater.block}: no paths to rate"
        sums.append((t1, t2, len(mine)))
        preds.append(mine)
    groups = [[i] for i in range(len(raters))] if per_state else [list(range(len(raters)))]
    for group in groups:
        count = sum(sums[i][2] for i in group)
        centre = (reduce(torch.add, (sums[i][0] for i in group)) / count,
                  reduce(torch.add, (sums[i][1] for i in group)) / count)
        for i in group:
            rater = raters[i]
            rater.centre = centre
            losses = {path: rater.loss(p1, p2, centre) for path, (p1, p2) in preds[i].items()}
            if per_state and len(losses) > 1:
                values = torch.tensor(list(losses.values()))
                rater.shift, rater.scale = float(values.mean()), float(values.std().clamp_min(1e-8))
            rater.scores = {path: (loss - rater.shift) / rater.scale for path, loss in losses.items()}


def plot_ratings(ratings: Sequence[float], accuracies: Sequence[float], path: str,
                 title: str = "BossNAS rating vs. stand-alone accuracy") -> str:
    """Scatter of ratings (higher = better) against stand-alone accuracies, with Kendall tau and Spearman rho."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from predictors.base import kendall_tau, spearman_rho

    tau = kendall_tau(ratings, accuracies) if len(ratings) > 1 else float("nan")
    rho = spearman_rho(ratings, accuracies) if len(ratings) > 1 else float("nan")
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(ratings, accuracies, s=18)
    ax.set_xlabel("rating (-sum of block losses)")
    ax.set_ylabel("stand-alone top-1 (%)")
    ax.set_title(f"{title}\nKendall tau {tau:.2f}, Spearman rho {rho:.2f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
