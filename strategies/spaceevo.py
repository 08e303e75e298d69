"""SpaceEvo: search for a quantization-friendly search space, then for an architecture in it (Wang et al.,
"SpaceEvo: Hardware-Friendly Search Space Design for Efficient INT8 Inference", ICCV 2023).

Runs on a superspace preset of the `spaceevo` space (`--space spaceevo`, i.e. onnxw, or `spaceevo@mobilew`):
1. The block-wise quality proxy (`strategies.spaceevo_proxy`): a teacher trained on the run's data, one student
   per (stage, block type) distilled with the NSR loss, lookup rows of sampled sub-stages per (stage, block
   type, width window) with their loss and INT8 latency on this CPU.
2. Aging evolution over the superspace's points as the released code runs it: the initial population is every
   uniform (block type, window index) point, then random points up to `population`; each cycle samples
   `sample_size` members, the best one's two children (one stage's block type changed, one stage's window
   changed) are scored unless seen before, each joining the population as its oldest member leaves; until
   `cycles` points are scored. Deviation: the initial population is cut to `population` when the uniform
   points outnumber it (the released code keeps them all; quick's 40 cuts mobilew's 49). A point's score is
   the Q-T score (`strategies.spaceevo_parts.qt_score`) of `samples_per_space` models drawn from its lookup
   rows (each model at a random one of `latency_resolutions`, one row per stage, latencies summed with the
   fixed stages'). Latency constraints: `latency_ms`
   (milliseconds), else the run's latency limit (`--latency-max`), else the 30% quantile of the latencies of
   models drawn from uniformly random points (ours: the paper's constraints were set for its devices). The
   sum of a model's separately measured layers is corrected by a line fitted on `calibration_models` whole
   models measured (ours; the official lookup sums its blocks as they are).
3. In the found space (the superspace restricted to its block types and windows), an evolutionary search
   (`search`, default `evolution`) over ratings, within the run's constraints; the best-rated architecture is
   then trained stand-alone by the session. Deviation: ratings come from the block-KD students (minus the sum
   of the six stages' NSR losses, each sub-stage's BatchNorm recalibrated) instead of SpaceEvo's
   quantized-for-all supernet, which is strategy `qfa` (`strategies.qfa`), run on the found space.

Files in the run's checkpoint folder (resumable): teacher.pt, students/*.pt, lut.json, layer_latency.json,
spaceevo_search.json and the trajectory plot spaceevo_search.png.

Budget presets (`SpaceEvoConfig`): `paper` as published where the paper says (5 FP32 and 1 LSQ+ student
epochs, 1,000 rows per (stage, block, window), 100,000 samples per space, population 500, sample size 125,
5,000 points, t 0.1, a 0.01, every layer's latency measured at 160, 192 and 224 px, the proxy at 224 px: the
official block-KD runs at 160-224); `quick` keeps a run in minutes on this CPU (a 64 px proxy, half an FP32
epoch of 1,024 images per student and no LSQ+ one, 6 rows, a latency forest on 150 measured layers, 200 points).
"""
from __future__ import annotations

import collections
import dataclasses
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nas import registry
from nas.evaluate import Evaluation, Evaluator
from nas.space import Architecture, NASError
from nas.strategy import SupernetContext, SupernetPlan, SupernetStrategy, budget_config, rating_objectives
from search_spaces.spaceevo import SpaceEvoSpace, SpacePoint, mutate_block, mutate_window, sample_point, uniform_points
from strategies.spaceevo_parts import qt_score

LUT_FILE, SEARCH_FILE = "lut.json", "spaceevo_search.json"


@dataclass(frozen=True)
class SpaceEvoConfig:
    """Hyperparameters of one budget (see the module docstring for the presets)."""

    resolution: int = 224  # input resolution of the teacher and the students (the proxy)
    latency_resolutions: tuple[int, ...] = (160, 192, 224)  # the lookup's deployment resolutions (the official's)
    precision: str = "int8"
    latency: str = "measured"  # "measured" on this machine, or "macs" (multiply-adds in millions: deterministic)
    teacher: str = "efficientnet_b0"
    teacher_epochs: float = 30.0
    kd_images: int = 0  # 0: the whole training split
    eval_images: int = 1000  # held-out images whose teacher features score sub-stages (NSR)
    bn_images: int = 1000  # training images whose features re-estimate a sub-stage's BatchNorm statistics
    student_epochs: float = 5.0
    student_lsq_epochs: float = 1.0  # LSQ+ epochs after the FP32 ones (0: FP32 students)
    batch_size: int = 64
    nsr_variance_of: str = "teacher"
    lut_samples: int = 1000
    latency_layers: int = 0  # 0: measure every distinct layer
    latency_rounds: int = 3
    calibration_models: int = 20  # whole models measured to correct the sum of layers (0: none)
    samples_per_space: int = 100_000
    top: int = 50
    latency_ms: tuple[float, ...] = ()
    t: float = 0.1
    a: float = 0.01
    population: int = 500
    sample_size: int = 125
    cycles: int = 5000
    search: str = "evolution"
    search_budget: int = 500
    search_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.sample_size > self.population or self.cycles < 1 or self.lut_samples < 1:
            raise NASError(f"SpaceEvo needs sample_size ({self.sample_size}) <= population ({self.population}), "
                           f"cycles >= 1 and lut_samples >= 1")
        if self.latency not in ("measured", "macs"):
            raise NASError(f"SpaceEvo latency {self.latency!r} is not one of 'measured', 'macs'")
        if self.resolution < 64:
            raise NASError(f"SpaceEvo's proxy resolution {self.resolution} leaves stage 6 under 2x2 pixels; use 64+")


PAPER = SpaceEvoConfig()
PRESETS: dict[str, SpaceEvoConfig] = {
    "paper": PAPER,
    "standard": dataclasses.replace(PAPER, resolution=128, teacher_epochs=20.0,
                                    kd_images=10000, student_epochs=2.0, student_lsq_epochs=0.5, lut_samples=100,
                                    latency_layers=1000,
                                    latency_rounds=2, population=200, sample_size=50, cycles=2000, search_budget=200),
    "quick": dataclasses.replace(PAPER, resolution=64, teacher_epochs=4.0, kd_images=1024,
                                 eval_images=64, bn_images=64, student_epochs=0.5, student_lsq_epochs=0.0,
                                 lut_samples=6, latency_layers=150,
                                 calibration_models=8,
                                 latency_rounds=1, samples_per_space=20_000, population=40, sample_size=10,
                                 cycles=200, search_budget=16,
                                 search_options={"population_size": 8, "sample_size": 4}),
}


def make_config(budget: str, **overrides: Any) -> SpaceEvoConfig:
    """The preset `budget` with `overrides`; tuples may be given as "a+b" (`--option latency_ms=15+20`)."""
    for key, kind in (("latency_ms", float), ("latency_resolutions", int)):
        value = overrides.get(key)
        if value is not None and not isinstance(value, tuple):
            overrides[key] = tuple(kind(v) for v in (value.split("+") if isinstance(value, str) else [value]))
    return budget_config("SpaceEvo", PRESETS, budget, overrides)


# -- lookup rows and the Q-T score of points -------------------------------------------------------------------
class Lookup:
    """The lookup rows by (stage, block type, window): arrays of loss and of latency at each deployment
    resolution (`rows[k]["ms"]`: {resolution: ms}); plus the fixed stages' latency per resolution."""

    def __init__(self, rows: list[dict[str, Any]], fixed_ms: dict[str, float],
                 calibration: tuple[float, float] = (1.0, 0.0)) -> None:
        self.scale, self.offset = calibration
        grouped: dict[tuple[int, int, int], list[dict[str, Any]]] = collections.defaultdict(list)
        for row in rows:
            grouped[(row["stage"], row["block"], row["window"])].append(row)
        self.resolutions = sorted(fixed_ms, key=int)
        self.loss = {k: np.array([r["loss"] for r in v]) for k, v in grouped.items()}
        self.latency = {k: np.array([[r["ms"][res] for res in self.resolutions] for r in v])
                        for k, v in grouped.items()}
        self.fixed_ms = np.array([fixed_ms[res] for res in self.resolutions])

    def sample(self, point: SpacePoint, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Loss and latency of `n` models of `point`, each at a random deployment resolution with one random row
        per stage (the official sampler draws the resolution per 500 models), summed with the fixed stages and
        corrected by the linear calibration against whole models (`Proxy.calibrate`)."""
        res = rng.integers(len(self.resolutions), size=n)
        loss, latency = np.zeros(n), self.fixed_ms[res].copy()
        for i, (b, w) in enumerate(zip(point.blocks, point.windows), start=1):
            idx = rng.integers(len(self.loss[(i, b, w)]), size=n)
            loss += self.loss[(i, b, w)][idx]
            latency += self.latency[(i, b, w)][idx, res]
        return loss, self.scale * latency + self.offset


def evolve_spaces(lookup: Lookup, superspace: str, cfg: SpaceEvoConfig, constraints: tuple[float, ...],
                  seed: int) -> list[dict[str, Any]]:
    """SpaceEvo's aging evolution over points (module docstring); the history of scored points, in order."""
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    history: dict[SpacePoint, dict[str, Any]] = {}

    def score(point: SpacePoint) -> dict[str, Any]:
        loss, latency = lookup.sample(point, cfg.samples_per_space, np_rng)
        q = qt_score(loss, latency, constraints, cfg.top, cfg.t, cfg.a)
        entry = {"space": point.encoding, "score": q.score, "latency_penalty": q.latency_penalty,
                 "top_loss": q.top_loss, "index": len(history)}
        history[point] = entry
        return entry

    population: collections.deque[tuple[SpacePoint, float]] = collections.deque()
    for point in uniform_points(superspace)[:cfg.population]:
        population.append((point, score(point)["score"]))
    while len(population) < cfg.population and len(history) < cfg.cycles:
        point = sample_point(superspace, rng)
        population.append((point, history[point]["score"] if point in history else score(point)["score"]))
    while len(history) < cfg.cycles:
        parent = max(rng.sample(list(population), cfg.sample_size), key=lambda member: member[1])[0]
        for child in (mutate_block(parent, rng), mutate_window(parent, rng)):
            if child not in history and len(history) < cfg.cycles:
                population.append((child, score(child)["score"]))
                population.popleft()
    return list(history.values())


def plot_search(history: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = [h["score"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.scatter(range(1, len(scores) + 1), scores, s=6, alpha=0.5, label="scored space")
    ax.plot(range(1, len(scores) + 1), np.maximum.accumulate(scores), color="C3", label="best so far")
    ax.set_xlabel("spaces scored")
    ax.set_ylabel("Q-T score")
    ax.set_title(f"SpaceEvo search: best {max(history, key=lambda h: h['score'])['space']}", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- ratings of architectures of the found space ---------------------------------------------------------------
class BlockKDEvaluator(Evaluator):
    """Rates an architecture of a SpaceEvo space by its block-KD loss: minus the sum over stages 1-6 of the NSR
    of its sub-stage in that stage's student (fed the stage width before it)."""

    name = "spaceevo_block_kd"
    metrics = ("rating",)
    needs_data = True

    def __init__(self, space: SpaceEvoSpace, students: dict[tuple[int, int], Any], features: dict[str, Any],
                 data: Any, variance_of: str) -> None:
        self.space, self.students, self.features, self.variance_of = space, students, features, variance_of
        self.data, self.input_shape, self.num_classes = data, data.sample_shape, data.num_classes

    def evaluate(self, arch: Architecture) -> Evaluation:
        from strategies.spaceevo_proxy import sub_stage_loss

        point = self.space.point_of(arch)
        total = 0.0
        previous = self.space.layer(arch, 0, arch["s0_depth"] - 1)[1]
        for i, b in enumerate(point.blocks, start=1):
            net = self.students[(i, b)]
            layers = [self.space.layer(arch, i, j) for j in range(arch[f"s{i}_depth"])]
            sub = net.space.compose(previous, layers)
            f = self.features
            total += sub_stage_loss(net, sub, f["bn"][i - 1], f["eval"][i - 1], f["eval"][i], self.variance_of)
            previous = layers[-1][1]
        return Evaluation({"rating": -total})

    def describe(self) -> dict[str, Any]:
        return {"evaluator": self.name, "variance_of": self.variance_of}


@registry.register_strategy("spaceevo")
class SpaceEvo(SupernetStrategy):
    """SpaceEvo (Wang et al. 2023): Q-T-score evolution over search spaces, then a search in the space found."""

    name = "spaceevo"

    @staticmethod
    def contract_space() -> SpaceEvoSpace:
        """The space the contract checks (`nas.testing`) run this strategy on."""
        return SpaceEvoSpace("onnxw")

    def prepare(self, context: SupernetContext) -> SupernetPlan:
        space = context.space
        if not isinstance(space, SpaceEvoSpace) or space.point is not None:
            raise NASError(f"strategy 'spaceevo' searches the spaces of a superspace: use --space spaceevo (onnxw) or "
                           f"spaceevo@mobilew, not {getattr(space, 'name', space)!r} preset "
                           f"{getattr(space, 'preset', None)!r} (--strategy qfa searches INT8 subnets in one space)")
        cfg = make_config(context.budget or "quick", **{**self.options, **context.options})
        folder, data = self.folder_and_data(context, 0)
        proxy = Proxy(space, data, cfg, folder, self.seed, context.progress)
        lookup = proxy.lookup()
        given = tuple(c.limit for c in context.constraints if c.metric == "latency")
        constraints = cfg.latency_ms or given or (self._default_constraint(lookup, space.superspace.name),)
        if (folder / SEARCH_FILE).exists():
            result = json.loads((folder / SEARCH_FILE).read_text())
        else:
            history = evolve_spaces(lookup, space.superspace.name, cfg, constraints, self.seed)
            best = max(history, key=lambda h: h["score"])
            fixed = dict(zip(lookup.resolutions, lookup.fixed_ms.tolist()))
            result = {"best": best, "constraints_ms": list(constraints), "fixed_ms": fixed,
                      "teacher_accuracy": proxy.teacher.accuracy, "history": history}
            tmp = folder / (SEARCH_FILE + ".tmp")
            tmp.write_text(json.dumps(result, indent=1))
            tmp.replace(folder / SEARCH_FILE)
            plot_search(history, folder / "spaceevo_search.png")
        point = SpacePoint.parse(result["best"]["space"])
        names = [b.name for b in space.superspace.blocks]
        found = space.restrict({**{f"s{i}_block": [names[b]] for i, b in enumerate(point.blocks, 1)},
                                **{f"s{i}_window": [w] for i, w in enumerate(point.windows, 1)}})
        evaluator = BlockKDEvaluator(space, proxy.students, proxy.rating_features(), context.data,
                                     cfg.nsr_variance_of)
        search = registry.get("strategies", cfg.search)(found, rating_objectives(context.objectives),
                                                        seed=self.seed, **cfg.search_options)
        return SupernetPlan(evaluator, search, cfg.search_budget, [str(folder / "spaceevo_search.png")])

    def _default_constraint(self, lookup: Lookup, superspace: str) -> float:
        rng, np_rng = random.Random(self.seed), np.random.default_rng(self.seed)
        latencies = np.concatenate([lookup.sample(sample_point(superspace, rng), 100, np_rng)[1] for _ in range(200)])
        return float(np.quantile(latencies, 0.3))


class Proxy:
    """The trained teacher, students and lookup rows of a run (built on first use, resumed from `folder`)."""

    def __init__(self, space: SpaceEvoSpace, data: Any, cfg: SpaceEvoConfig, folder: Path, seed: int,
                 progress: bool) -> None:
        import torch

        from nas.train import resize_inputs
        from strategies.spaceevo_proxy import train_teacher

        self.space, self.cfg, self.folder, self.seed, self.progress = space, cfg, folder, seed, progress
        self.superspace = space.superspace
        self.teacher = train_teacher(cfg.teacher, data, cfg.resolution, cfg.teacher_epochs, cfg.batch_size, seed,
                                     folder / "teacher.pt")
        g = torch.Generator().manual_seed(seed)
        shape = (data.sample_shape[0], cfg.resolution, cfg.resolution)
        train = torch.randperm(len(data.x_train), generator=g)[:cfg.kd_images or len(data.x_train)]
        val = torch.randperm(len(data.x_val), generator=g)[:cfg.eval_images]
        self.train_features = self.teacher.features(resize_inputs(data.x_train[train], shape))
        self.eval_features = self.teacher.features(resize_inputs(data.x_val[val], shape))
        self.students = self._students()

    def _students(self) -> dict[tuple[int, int], Any]:
        import torch
        from tqdm.auto import tqdm

        from nas.lsq import quantize_supernet
        from nas.supernet import Supernet
        from strategies.spaceevo_proxy import StageSpace, student_steps, train_student

        folder = self.folder / "students"
        folder.mkdir(exist_ok=True)
        out = {}
        sup = self.superspace
        jobs = [(i, b) for i in range(1, len(sup.searchable) + 1) for b in range(len(sup.blocks))]
        per_student = sum(student_steps(epochs, len(self.train_features[0]), self.cfg.batch_size)
                          for epochs in (self.cfg.student_epochs, self.cfg.student_lsq_epochs))
        with tqdm(total=len(jobs) * per_student, desc="block-KD students", disable=not self.progress) as bar:
            for i, b in jobs:
                x, y = self.train_features[i - 1], self.train_features[i]
                space = StageSpace(self.superspace, i, self.superspace.blocks[b], tuple(x.shape[1:]), y.shape[1])
                path = folder / f"stage{i}_{self.superspace.blocks[b].name}.pt"
                if path.exists():
                    net = Supernet(space, space.default_input, 1)
                    if self.cfg.student_lsq_epochs > 0:
                        quantize_supernet(net)
                    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
                    bar.update(per_student)
                else:
                    net = train_student(space, x, y, self.cfg.student_epochs, self.cfg.batch_size,
                                        self.seed + 1000 * i + b, self.cfg.nsr_variance_of, lambda: bar.update(1),
                                        self.cfg.student_lsq_epochs)
                    torch.save(net.state_dict(), path.with_suffix(".tmp"))
                    path.with_suffix(".tmp").replace(path)
                out[(i, b)] = net.eval()
        return out

    def rating_features(self) -> dict[str, Any]:
        """Teacher features for ratings: BatchNorm images (from the training features) and held-out ones."""
        return {"bn": [f[:self.cfg.bn_images] for f in self.train_features], "eval": self.eval_features}

    def lookup(self) -> Lookup:
        """The lookup rows (loss and latency per sampled sub-stage), from lut.json or built now."""
        from tqdm.auto import tqdm

        from strategies.spaceevo_proxy import LayerLatency, fixed_graphs, sub_stage_loss

        path = self.folder / LUT_FILE
        if path.exists():
            saved = json.loads(path.read_text())
            return Lookup(saved["rows"], saved["fixed_ms"], tuple(saved["calibration"]["line"]))
        sup, cfg, rng = self.superspace, self.cfg, random.Random(self.seed)
        rows, features = [], self.rating_features()
        jobs = [(i, b, w) for (i, b) in self.students for w in range(sup.searchable[i - 1].windows)]
        for i, b, w in tqdm(jobs, desc="lookup rows", disable=not self.progress):
            net = self.students[(i, b)]
            widths = sup.searchable[i - 1].window_widths(w)
            for _ in range(cfg.lut_samples):
                arch = net.space.sample_in_window(widths, rng)
                loss = sub_stage_loss(net, arch, features["bn"][i - 1], features["eval"][i - 1], features["eval"][i],
                                      cfg.nsr_variance_of)
                rows.append({"stage": i, "block": b, "window": w, "in_w": arch["in_w"],
                             "layers": net.space.layers(arch), "loss": loss})
        resolutions = [str(r) for r in cfg.latency_resolutions]
        specs = {res: [self._layer_specs(row, int(res)) for row in rows] for res in resolutions}
        distinct = list(dict.fromkeys(s for per in specs.values() for layer_specs in per for s in layer_specs))
        fixed = {res: fixed_graphs(sup, int(res)) for res in resolutions}
        if cfg.latency == "macs":
            by_key = {s.key: s.graph(sup).macs() / 1e6 for s in distinct}
            fixed_ms, chosen = {res: sum(g.macs() for g in fixed[res]) / 1e6 for res in resolutions}, distinct
        else:
            latency = LayerLatency(sup, self.folder / "layer_latency.json", cfg.precision, cfg.latency_rounds)
            chosen = distinct if not cfg.latency_layers else random.Random(self.seed).sample(
                distinct, min(cfg.latency_layers, len(distinct)))
            latency.measure({**{s.key: s.graph(sup) for s in chosen},
                             **{f"fixed/{part}/{res}": fixed[res][k] for res in resolutions
                                for k, part in enumerate(("front", "head"))}}, self.progress)
            latency.fit(distinct, self.seed)
            by_key = {s.key: float(t) for s, t in zip(distinct, latency.ms(distinct))}
            fixed_ms = {res: latency.measured[f"fixed/front/{res}"] + latency.measured[f"fixed/head/{res}"]
                        for res in resolutions}
        for k, row in enumerate(rows):
            row["ms"] = {res: sum(by_key[s.key] for s in specs[res][k]) for res in resolutions}
        calibration: dict[str, Any] = {"line": [1.0, 0.0], "models": []}
        if cfg.latency == "measured" and cfg.calibration_models:
            calibration = self.calibrate(latency, fixed_ms)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"rows": rows, "fixed_ms": fixed_ms, "measured_layers": len(chosen),
                                   "distinct_layers": len(distinct), "calibration": calibration}))
        tmp.replace(path)
        return Lookup(rows, fixed_ms, tuple(calibration["line"]))

    def calibrate(self, latency: Any, fixed_ms: dict[str, float]) -> dict[str, Any]:
        """Measure `calibration_models` random architectures of the superspace whole (at the lookup's
        resolutions) and fit measured = scale x (sum of their layers + fixed stages) + offset by least squares:
        what a sum of separately measured layers misses (`nas.latency_model` corrects its tables alike)."""
        rng = random.Random(self.seed + 7)
        models = []
        for k in range(self.cfg.calibration_models):
            arch = self.space.sample(rng).replace(resolution=rng.choice(self.cfg.latency_resolutions))
            point, res = self.space.point_of(arch), arch["resolution"]
            previous, specs = self.space.layer(arch, 0, arch["s0_depth"] - 1)[1], []
            for i, b in enumerate(point.blocks, start=1):
                layers = [self.space.layer(arch, i, j) for j in range(arch[f"s{i}_depth"])]
                specs += self._layer_specs({"stage": i, "block": b, "in_w": previous, "layers": layers}, res)
                previous = layers[-1][1]
            summed = float(latency.ms(specs).sum()) + fixed_ms[str(res)]
            models.append({"arch": dict(arch), "key": f"model/{k}", "summed_ms": summed,
                           "graph": self.space.graph(arch, (3, res, res), 1000)})
        latency.measure({m["key"]: m.pop("graph") for m in models}, self.progress)
        for m in models:
            m["measured_ms"] = latency.measured[m.pop("key")]
        x, y = np.array([m["summed_ms"] for m in models]), np.array([m["measured_ms"] for m in models])
        scale, offset = np.polyfit(x, y, 1) if len(models) > 1 else (y[0] / x[0], 0.0)
        return {"line": [float(scale), float(offset)], "models": models}

    def _layer_specs(self, row: dict[str, Any], resolution: int) -> list[Any]:
        """The layers of a lookup row at their input size in a network at `resolution`."""
        from strategies.spaceevo_proxy import LayerSpec

        i, sup = row["stage"], self.superspace
        hw = resolution // 2 // math.prod(s.stride for s in sup.searchable[:i - 1])
        stride, cin, out = sup.searchable[i - 1].stride, row["in_w"], []
        for j, (k, w, e) in enumerate(row["layers"]):
            out.append(LayerSpec(row["block"], cin, hw, w, k, e, stride if j == 0 else 1))
            hw, cin = (-(-hw // stride) if j == 0 else hw), w
        return out
