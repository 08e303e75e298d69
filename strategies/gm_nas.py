"""GM-NAS: few-shot supernets split by gradient matching (Hu et al., "Generalizing Few-Shot NAS with Gradient
Matching", ICLR 2022), on any space with a one-shot supernet (`nb201`, `mbconv`, `hytra`, plug-ins).

The supernet (`nas.supernet.Supernet`, the space's own sharing) is trained by uniform single-path sampling
(RSPS, the paper's GM+RSPS pairing) for `split_epochs[0]` epochs. At each split epoch every current
(sub-)supernet scores each unsplit edge by gradient matching (`strategies.gm_nas_split`: 1 - cosine between
the gradients the edge's ops give the weights kept shared, averaged over `gm_batches` batches), picks the edge
by `edge_rule` and splits its ops into `groups` groups by the balanced minimum partition; each group becomes a
sub-supernet (`space.restrict({edge: group})`) that samples only its ops. At intermediate splits a child
inherits the parent's weights, optimizer state and place in the cosine schedule; at the final split it is
re-initialised and trained with a fresh schedule for the remaining epochs (`restart_final`, the official
NAS-Bench-201 `--restart final`; off: it inherits, as the official OFA and ProxylessNAS code does).
`relaxation` "darts" or "snas" trains each (sub-)supernet over the continuous relaxation of its mixed ops instead
(`strategies.gm_nas_relaxed`: GM+DARTS, GM+SNAS; spaces whose choices each pick one candidate op, as `nb201`), the
GM score then mixing the other edges at softmax(alpha), children inheriting alpha with the weights.
Architectures are then rated with their own leaf's weights (BatchNorm recalibrated, `nas.inherited`): by
default ("auto") RSPS's search for single-path training, `search_budget` distinct random architectures drawn from
the leaves in turn, and for a relaxation each leaf's argmax-alpha architecture ("derived"); the best rating across
all leaves is selected (the session trains it stand-alone); `search` may name any ask/tell strategy instead (e.g.
"genetic", the evolutionary search), routed to the leaves the same way.

`mode` gives the baselines of the paper at the same code: "one_shot" (no split, SPOS/RSPS), "few_shot"
(Zhao et al. 2021: one split of one edge into one sub-supernet per op, at `split_epochs[0]`, the edge
`few_shot_edge` or the first splittable one), "gm" (this method).

Budget presets: `paper` is the official NB201 RSPS schedule (splits at epochs 20 and 40 into 2 groups, 4
leaves, 90 epochs, 100 GM batches, 200 ratings per leaf); `standard` a GPU hour; `quick` minutes on a CPU (its
leaves inherit at the last split: its schedule leaves 2 epochs after it).
Deviations: first-order DARTS only (no unrolled second order); across leaves the derived cells are compared by their
rating (single path, inherited weights), where the official NB201 code keeps the best by benchmark accuracy (trained
cells; BENCHMARKS.md shows the rating to be the weak step for DARTS-trained weights); no gradient clipping; the
cosine schedule ends at 0 (the official at 0.001); BatchNorm recalibrated on training images per architecture (RSPS
uses batch statistics); `edges` filters which choices may split (OFA's kernel splits: `edges=["*_k"]`); SGD at batch
64, weight decay 3e-4, plain momentum (the NB201 supernet's settings; the official README runs use `--fs_opt 1`:
Nesterov, batch 48, weight decay 5e-4, and RSPS's own script 1e-4); the sub-supernet seeds its fresh weights from the
run's seed and its id.
"""
from __future__ import annotations

import dataclasses
import json
import random
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas import registry
from nas.evaluate import Evaluation, Evaluator
from nas.relaxed import RELAXATIONS as RELAXED
from nas.space import Architecture, NASError, SearchSpace, one_of
from nas.strategy import (
    Strategy,
    SupernetContext,
    SupernetPlan,
    SupernetStrategy,
    budget_config,
    rating_objectives,
)
from strategies.gm_nas_relaxed import RelaxedTraining
from strategies.gm_nas_split import (
    EDGE_RULES,
    SCOPES,
    EdgeScore,
    gradient_matching_distances,
    pick_edge,
    score_edge,
    splittable_choices,
)
from strategies.random_search import RandomSearch

MODES = ("gm", "few_shot", "one_shot")
RELAXATIONS = ("rsps", *RELAXED)  # single-path training, or a continuous relaxation
TREE_FILE = "gm_tree.json"


@dataclass(frozen=True)
class GMNASConfig:
    """Hyperparameters of one budget; the defaults are the official NAS-Bench-201 GM+RSPS run."""

    mode: str = "gm"
    epochs: int = 90
    split_epochs: tuple[int, ...] = (20, 40)
    groups: int = 2
    restart_final: bool = True
    gm_batches: int = 100
    edge_rule: str = "max_cut"
    edges: tuple[str, ...] = ("*",)
    few_shot_edge: str = ""
    grad_scope: str = "auto"  # auto: "all" for elastic (OFA) supernets, else "inner"
    batch_size: int = 64
    lr: float = 0.025
    momentum: float = 0.9
    weight_decay: float = 3e-4
    label_smoothing: float = 0.0
    train_images: int = 0  # 0: the whole training split
    bn_images: int = 2048
    val_images: int = 0  # 0: the whole validation split
    relaxation: str = "rsps"  # single-path training, or "darts"/"snas" on spaces with mixed ops (gm_nas_relaxed)
    arch_lr: float = 3e-4
    arch_weight_decay: float = 1e-3
    tau: tuple[float, float] = (1.0, 0.1)  # SNAS's temperature, from and to
    search: str = "auto"  # auto: "random" per leaf for rsps (RSPS), "derived" (argmax alpha per leaf) for darts/snas;
    # or a registered ask/tell strategy
    search_budget: int = 800
    search_options: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "split_epochs", tuple(int(e) for e in self.split_epochs))
        object.__setattr__(self, "edges", (self.edges,) if isinstance(self.edges, str) else tuple(self.edges))
        object.__setattr__(self, "tau", tuple(float(t) for t in self.tau))
        for name, value, accepted in (("mode", self.mode, MODES), ("edge_rule", self.edge_rule, EDGE_RULES),
                                      ("grad_scope", self.grad_scope, SCOPES),
                                      ("relaxation", self.relaxation, RELAXATIONS)):
            if value not in accepted:
                raise NASError(f"GM-NAS {name} {value!r} is not one of {one_of(accepted)}")
        splits = list(self.split_epochs)
        if self.mode != "one_shot" and (not splits or splits != sorted(set(splits)) or splits[0] < 1
                                        or splits[-1] >= self.epochs):
            raise NASError(f"GM-NAS split_epochs {splits} must rise strictly within 1..{self.epochs - 1} (epochs "
                           f"{self.epochs})")
        if self.groups < 2 or self.gm_batches < 1 or self.batch_size < 2 or self.search_budget < 1:
            raise NASError("GM-NAS needs groups >= 2, gm_batches >= 1, batch_size >= 2 and search_budget >= 1")
        if self.relaxation != "rsps" and (not splits or splits[-1] >= self.epochs):
            raise NASError(f"GM-NAS relaxation {self.relaxation!r}: alpha learns from the warm-up's end "
                           f"split_epochs[-1] (in every mode), so split_epochs {splits} needs a last epoch below "
                           f"epochs {self.epochs}")
        if self.search == "derived" and self.relaxation == "rsps":
            raise NASError("GM-NAS search 'derived' reads alpha, which only relaxation 'darts' or 'snas' learns")

    @property
    def search_method(self) -> str:
        """The search on top: `search`, with "auto" resolved by the relaxation."""
        if self.search != "auto":
            return self.search
        return "random" if self.relaxation == "rsps" else "derived"

    @property
    def splits(self) -> tuple[int, ...]:
        """The epochs at which supernets split in this mode."""
        return {"gm": self.split_epochs, "few_shot": self.split_epochs[:1], "one_shot": ()}[self.mode]


PAPER = GMNASConfig()
PRESETS: dict[str, GMNASConfig] = {
    "paper": PAPER,
    # a GPU hour: splits at 6 and 12 of 30 epochs, 20 GM batches, 100 ratings per leaf
    "standard": dataclasses.replace(PAPER, epochs=30, split_epochs=(6, 12), gm_batches=20, search_budget=400),
    # minutes on a 2-core CPU: 2,048 images, splits at 2 and 4 of 6 epochs, lr 0.1 (few steps, as SPOS's quick),
    # 4 GM batches, 16 ratings per leaf on 500 validation images; the leaves inherit at the last split, since 2
    # epochs from scratch leave them untrained (BENCHMARKS.md: restarted leaves with 4 epochs rate no better than
    # chance inside a leaf); alpha (darts/snas) at lr 3e-2: it learns for the leaves' 32 steps only, where the
    # published 3e-4 moves it by about 0.01 (chosen so that alpha can move at all, not tuned on any ground truth)
    "quick": dataclasses.replace(PAPER, epochs=6, split_epochs=(2, 4), lr=0.1, gm_batches=4, train_images=2048,
                                 bn_images=128, val_images=500, search_budget=64, restart_final=False, arch_lr=3e-2),
}


def make_config(budget: str, **overrides: Any) -> GMNASConfig:
    return budget_config("GM-NAS", PRESETS, budget, overrides)


# -- the split tree ------------------------------------------------------------------------------------------------
class SplitTree:
    """The (sub-)supernets of a run as JSON: id ("r", "r0", "r01", ...) -> restriction, depth, status
    ("train", "split", "leaf"), the GM scores computed so far and the children; saved after every step."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.nodes: dict[str, dict[str, Any]] = json.loads(path.read_text())["nodes"] if path.exists() else \
            {"r": {"restriction": {}, "depth": 0, "status": "train", "scores": {}, "children": []}}

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"nodes": self.nodes}, indent=1))
        tmp.replace(self.path)

    def pending(self) -> Iterator[str]:
        """Ids of nodes still to train or split, parents before children (the tree grows while iterating)."""
        while True:
            todo = sorted((i for i, n in self.nodes.items() if n["status"] == "train"), key=lambda i: (len(i), i))
            if not todo:
                return
            yield todo[0]

    def leaves(self) -> list[str]:
        return sorted((i for i, n in self.nodes.items() if n["status"] == "leaf"), key=lambda i: (len(i), i))


@registry.register_strategy("gm_nas")
class GMNAS(SupernetStrategy):
    """GM-NAS (Hu et al. 2022): few-shot sub-supernets split where gradients disagree, then RSPS search."""

    name = "gm_nas"

    def prepare(self, context: SupernetContext) -> SupernetPlan:
        from nas.inherited import InheritedEvaluator, load_supernet

        cfg = make_config(context.budget or "quick", **{**self.options, **context.options})
        folder, data = self.folder_and_data(context, cfg.train_images)
        tree = SplitTree(folder / TREE_FILE)
        for node_id in tree.pending():
            self._grow(node_id, tree, context.space, data, cfg, folder, context.progress)
        leaves = []
        for node_id in tree.leaves():  # every leaf recalibrates BN on the same images and rates on the same ones
            space = restricted(context.space, tree.nodes[node_id]["restriction"])
            supernet = load_supernet(folder / f"gm_{node_id}_leaf.pt", context.space, self._device(cfg))
            leaves.append((space, InheritedEvaluator(supernet, context.data, cfg.bn_images, cfg.val_images,
                                                     batch_size=max(cfg.batch_size, 64), seed=self.seed)))
        evaluator = LeafRouter(leaves)
        objectives = rating_objectives(context.objectives)
        budget = cfg.search_budget
        if cfg.search_method == "random":
            search: Strategy = PerLeafRandom(context.space, objectives, [s for s, _ in leaves], self.seed)
        elif cfg.search_method == "derived":
            derived = [Architecture(tree.nodes[i]["derived"]) for i in tree.leaves()]
            search, budget = Derived(context.space, objectives, derived, self.seed), len(derived)
        else:
            search = registry.get("strategies", cfg.search)(context.space, objectives, seed=self.seed,
                                                            **cfg.search_options)
        return SupernetPlan(evaluator, search, budget, sorted(str(p) for p in folder.glob("gm_*.png")))

    @staticmethod
    def _device(cfg: GMNASConfig) -> Any:
        from nas.train import resolve_device

        return resolve_device(cfg.device)

    # -- one node of the tree: train it to its split epoch (or the end), then split it -------------------------------
    def _grow(self, node_id: str, tree: SplitTree, space: SearchSpace, data: Any, cfg: GMNASConfig,
              folder: Path, progress: bool) -> None:
        import torch

        from nas.inherited import save_supernet
        from nas.supernet import Supernet

        node = tree.nodes[node_id]
        depth, leaf = node["depth"], node["depth"] == len(cfg.splits)
        node_space = restricted(space, node["restriction"])
        state_file = folder / f"gm_{node_id}.pt"
        torch.manual_seed(self.seed * 7919 + sum(ord(c) * 31 ** k for k, c in enumerate(node_id)))
        supernet = Supernet(space, data.sample_shape, data.num_classes).to(self._device(cfg))
        fresh = leaf and depth > 0 and cfg.restart_final
        relaxed = self._train(supernet, node_space, node_id, data, cfg, state_file, fresh,
                              None if leaf else cfg.splits[depth], progress)
        if leaf:
            save_supernet(folder / f"gm_{node_id}_leaf.pt", supernet)
            if relaxed is not None:
                node["alpha"], node["derived"] = relaxed.arch.as_json(), dict(relaxed.arch.derive(node_space))
            node["status"] = "leaf"
            tree.save()
            state_file.unlink(missing_ok=True)
            return
        edge, groups = self._split(node, node_id, supernet, node_space, data, cfg, tree, progress, relaxed)
        node["edge"], node["groups"] = edge, [list(g) for g in groups]
        node["children"] = [f"{node_id}{i}" for i in range(len(groups))]
        for child, group in zip(node["children"], groups):
            last = depth + 1 == len(cfg.splits)
            if not (last and cfg.restart_final):  # the child continues from the parent's weights and optimizer
                shutil.copyfile(state_file, folder / f"gm_{child}.pt")
            tree.nodes[child] = {"restriction": {**node["restriction"], edge: list(group)}, "depth": depth + 1,
                                 "status": "train", "scores": {}, "children": []}
        if node["scores"]:
            plot_scores(node_id, node, folder / f"gm_scores_{node_id}.png")
        node["status"] = "split"
        tree.save()
        state_file.unlink(missing_ok=True)

    def _train(self, supernet: Any, space: SearchSpace, node_id: str, data: Any, cfg: GMNASConfig,
               state_file: Path, fresh: bool, stop: int | None, progress: bool) -> RelaxedTraining | None:
        """Uniform single-path training over `space` (or its relaxation, `cfg.relaxation`) to epoch `stop` of
        the lineage's schedule (None: to its end), resumable at epoch ends from `state_file` (which a child
        starts from as its parent left it). Returns the relaxed training (its alpha) for darts/snas."""
        import torch

        from nas.train import CrossEntropy, EpochCheckpoint, TrainConfig, Trainer, resize_inputs, supervised_step

        epochs = cfg.epochs - cfg.splits[-1] if fresh else cfg.epochs
        config = TrainConfig(epochs=epochs, batch_size=cfg.batch_size, lr=cfg.lr, momentum=cfg.momentum,
                             weight_decay=cfg.weight_decay, label_smoothing=cfg.label_smoothing,
                             seed=self.seed, device=cfg.device)
        trainer = Trainer(config, progress=progress, desc=f"gm_nas supernet {node_id}")
        device = trainer.runtime.device
        x, y = self._inputs(supernet, space, data)
        x, y = x.to(device), y.to(device)
        relaxed = None
        if cfg.relaxation != "rsps":

            alpha_batches = None
            if cfg.relaxation == "darts":  # half the images train the weights, half alpha (official NB201 split)
                order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.seed)).to(device)
                half = len(x) // 2
                alpha_batches = random_batches(x[order[half:]], y[order[half:]], cfg.batch_size,
                                               hash_seed(self.seed, node_id, "alpha"), device)
                x, y = x[order[:half]], y[order[:half]]
            relaxed = RelaxedTraining(supernet, space, cfg.relaxation, arch_lr=cfg.arch_lr,
                                      arch_weight_decay=cfg.arch_weight_decay, tau=cfg.tau,
                                      learn_from=0 if fresh else cfg.split_epochs[-1], epochs=epochs,
                                      seed=hash_seed(self.seed, "alpha"), alpha_batches=alpha_batches)
        checkpoint = EpochCheckpoint(state_file, supernet, relaxed.state() if relaxed else None)
        state, optimizer_state = checkpoint.load(device)
        if state.epoch >= (stop or epochs):
            return relaxed
        rngs: dict[int, random.Random] = {}

        def single_path(batch: Any) -> torch.Tensor:
            rng = rngs.setdefault(batch.epoch, random.Random(f"{self.seed}-gm-{node_id}-{batch.epoch}"))
            arch = space.sample(rng)
            return supernet(resize_inputs(batch.x, supernet.arch_input_shape(arch)), arch)

        trainer.fit(supervised_step(relaxed.forward if relaxed else single_path, CrossEntropy(cfg.label_smoothing)),
                    [supernet], x, y, augment=config.augment_mode(data.name), state=state,
                    optimizer_state=optimizer_state, after_step=relaxed.after_step if relaxed else None,
                    on_epoch_end=lambda progress, optimizer, _: checkpoint.save(progress, optimizer), stop_epoch=stop,
                    epoch_generator=lambda e: torch.Generator().manual_seed(hash_seed(self.seed, node_id, e)))
        return relaxed

    @staticmethod
    def _inputs(supernet: Any, space: SearchSpace, data: Any) -> tuple[Any, Any]:
        """Training images, resized once when every architecture takes the same input shape."""
        from nas.train import resize_inputs

        shapes = {supernet.arch_input_shape(space.sample(random.Random(s))) for s in range(16)}
        return (data.x_train if len(shapes) > 1 else resize_inputs(data.x_train, shapes.pop())), data.y_train

    def _split(self, node: dict[str, Any], node_id: str, supernet: Any, space: SearchSpace, data: Any,
               cfg: GMNASConfig, tree: SplitTree, progress: bool,
               relaxed: RelaxedTraining | None) -> tuple[str, list[tuple[Any, ...]]]:
        """The edge to split and its groups: by gradient matching, or every op alone (few-shot)."""
        candidates = splittable_choices(space, cfg.edges, self.seed)
        if not candidates:
            raise NASError(f"GM-NAS: sub-supernet {node_id} has no edge left to split (edges {list(cfg.edges)}); "
                           "use fewer split_epochs or other edges")
        values = {c.name: c.values for c in space.choices()}
        if cfg.mode == "few_shot":
            edge = cfg.few_shot_edge or next(iter(candidates))
            if edge not in candidates:
                raise NASError(f"few_shot_edge {edge!r} is not a splittable choice; accepted: "
                               f"{one_of(list(candidates))}")
            return edge, [(v,) for v in values[edge]]
        from tqdm.auto import tqdm

        from nas.train import resize_inputs

        scope = cfg.grad_scope if cfg.grad_scope != "auto" else \
            ("all" if supernet.sharing == "elastic" else "inner")
        x, y = self._inputs(supernet, space, data)
        device = next(supernet.parameters()).device
        for edge, slot in tqdm(candidates.items(), desc=f"gm_nas scores edges of {node_id}", disable=not progress,
                               leave=False):
            if edge in node["scores"]:  # scored before a kill
                continue
            batches = random_batches(x, y, cfg.batch_size, hash_seed(self.seed, node_id, edge), device)
            distances = gradient_matching_distances(
                supernet, space, edge, slot, batches, cfg.gm_batches, random.Random(f"{self.seed}-{node_id}-{edge}"),
                scope, resize=lambda xb, arch: resize_inputs(xb, supernet.arch_input_shape(arch)),
                relaxed=relaxed.gm_forward(edge) if relaxed else None)
            node["scores"][edge] = score_edge(edge, values[edge], distances, cfg.groups, self.seed).as_json()
            tree.save()
        scores = [EdgeScore(**{**s, "ops": tuple(s["ops"]), "groups": tuple(map(tuple, s["groups"]))})
                  for s in node["scores"].values()]
        chosen = pick_edge(scores, cfg.edge_rule)
        return chosen.edge, list(chosen.groups)


def random_batches(x: Any, y: Any, size: int, seed: int, device: Any) -> Iterator[tuple[Any, Any]]:
    """Endless batches of `size` training images drawn with replacement by a generator seeded with `seed`."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    while True:
        index = torch.randint(len(x), (size,), generator=generator)
        yield x[index].to(device), y[index].to(device)


def hash_seed(*parts: Any) -> int:
    """A stable 63-bit seed from the parts (Python's `hash` of a str changes per process)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1


def restricted(space: SearchSpace, restriction: Mapping[str, Sequence[Any]]) -> SearchSpace:
    return space.restrict(restriction) if restriction else space


# -- rating and search across the leaves ---------------------------------------------------------------------------
class LeafRouter(Evaluator):
    """Rates an architecture with the sub-supernet whose restricted space holds it (the leaves partition the
    space); metric `sub_supernet` says which (the leaf's index)."""

    name = "gm_nas"
    metrics = ("rating", "sub_supernet")

    def __init__(self, leaves: Sequence[tuple[SearchSpace, Evaluator]]) -> None:
        self.leaves = list(leaves)

    def leaf_of(self, arch: Architecture) -> int:
        for i, (space, _) in enumerate(self.leaves):
            if getattr(space, "contains", lambda a: True)(arch):
                return i
        raise NASError(f"architecture {arch.to_json()[:200]} lies in no sub-supernet")

    def evaluate(self, arch: Architecture) -> Evaluation:
        i = self.leaf_of(arch)
        metrics = dict(self.leaves[i][1].evaluate(arch).metrics)
        return Evaluation({**metrics, "sub_supernet": float(i)})

    def describe(self) -> dict[str, Any]:
        return {"evaluator": self.name, "rating": "top-1 (%) with the weights of the architecture's sub-supernet, "
                "BN recalibrated", "sub_supernets": [getattr(s, "restriction", {}) for s, _ in self.leaves]}


class PerLeafRandom(RandomSearch):
    """RSPS's search over few-shot supernets: distinct uniform random architectures, from each leaf in turn."""

    def __init__(self, space: SearchSpace, objectives: Sequence[Any], leaves: Sequence[SearchSpace],
                 seed: int = 0) -> None:
        super().__init__(space, objectives, seed)
        self.leaves = list(leaves)
        self.asked = 0

    def ask(self) -> Architecture:
        self.asked += 1
        return self.draw(self.leaves[(self.asked - 1) % len(self.leaves)])

    def state(self) -> dict[str, Any]:
        return {**super().state(), "asked": self.asked}

    def load_state(self, state: Mapping[str, Any]) -> None:
        super().load_state(state)
        self.asked = state["asked"]


class Derived(Strategy):
    """The architectures derived from the leaves' alpha (argmax per mixed choice), proposed once each: DARTS's and
    SNAS's search on top, selected across leaves by their rating (GM+DARTS/SNAS on NAS-Bench-201)."""

    name = "gm_nas_derived"

    def __init__(self, space: SearchSpace, objectives: Sequence[Any], derived: Sequence[Architecture],
                 seed: int = 0) -> None:
        super().__init__(space, objectives, seed)
        self.derived = list(dict.fromkeys(derived))
        self.asked = 0

    def ask(self) -> Architecture:
        arch = self.derived[self.asked % len(self.derived)]
        self.asked += 1
        return arch

    def tell(self, arch: Architecture, metrics: Mapping[str, float] | None) -> None:
        """Nothing to learn from a rating: the list is fixed, and the search loop keeps the best-rated one."""

    def state(self) -> dict[str, Any]:
        return {"asked": self.asked}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.asked = state["asked"]


def plot_scores(node_id: str, node: Mapping[str, Any], path: Path) -> None:
    """The GM distance matrix of every edge scored at one split as heatmaps, the chosen edge's title starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = list(node["scores"].values())
    fig, axes = plt.subplots(1, len(scores), figsize=(3.2 * len(scores), 3.4), squeeze=False)
    for ax, score in zip(axes[0], scores):
        image = ax.imshow(score["distances"], cmap="viridis", vmin=0)
        labels = [str(o)[:12] for o in score["ops"]]
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        star = "*" if score["edge"] == node.get("edge") else ""
        ax.set_title(f"{star}{score['edge']} cut {score['cut']:.3f}", fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.suptitle(f"GM distance (1 - cos) at sub-supernet {node_id}'s split", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
