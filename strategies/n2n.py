"""N2N compression (Ashok et al., ICLR 2018) as `nas compress --teacher T --strategy n2n`: two stages of
policy-gradient reinforcement learning turn a teacher network into a smaller student.

Stage 1 samples keep/remove decisions for the teacher's layers from the removal policy, stage 2 samples scale
factors for the best stage-1 student's layers (the teacher's if stage 1 found no valid student) from the shrink
policy (`strategies.n2n_policy`, `strategies.n2n_students`). Each update draws `rollouts` students; each new student
is built from its graph, re-initialised, trained for `student_epochs` by distillation from the teacher's logits (the
code's MSE on logits, `distill="kl"` for Hinton's temperature KL) on the training images and scored on a held-out
split carved from the training set (`held_out` images; the dataset's test split is only used to report the teacher
and the final student). Repeated students reuse their cached accuracy (the reward is recomputed, since a constrained
reward depends on the update). The best student of both stages (highest reward) is then trained for `final_epochs`
and exported like any architecture (`model/`: net.py, weights, model.pt2, model.onnx; taking raw samples).

`--strategy random` runs the same loop with uniformly random actions (keep or remove with probability 1/2, a
uniform draw from the 11 scale entries) and no policy update: the baseline at the same number of students.

Teachers: a run directory of `nas search` (its best architecture and weights, on the run's dataset), or a built-in
"vgg" / "resnet18" (`strategies.n2n_students`; "resnet10" has one block per stage), trained first with cross-entropy
for `teacher_epochs` on the training images (saved in the run folder). `controller`: a `policies.pt` of an earlier
compress run whose policies initialise these (the paper's policy transfer, e.g. from a smaller teacher; the LSTMs
take any number of layers).

The run folder (`--run-dir`) holds config.json, teacher weights, `policies.pt` (policies, optimisers, baselines,
RNG, cache; rewritten after every update, so a killed run resumes from its last update with `--resume`),
`rollouts.json` (every rollout), `rewards.png` (mean and best reward per update), `best.json`, `model/`.

Presets: "paper" (the code's 100 updates of 5 rollouts per stage, 5 distillation epochs per student), "quick"
(ours: minutes on a CPU: 6 + 6 updates of 4 rollouts, 1 epoch on 2,000 images, 500 held out), "tiny" (checks).
The policies' Adam learning rates are the code's (removal 0.003, shrinkage 0.1; `removal_lr`, `shrink_lr`): in our
quick runs 0.1 made the shrink policy deterministic after one update. `fix_pools` (off: the code's behaviour) keeps
max pooling out of stage 2 (see `n2n_students`). Deviations: AdamW (decoupled weight decay
5e-4) where the code uses Adam with L2; its lr 5e-4 in the paper preset, 3e-3 in quick and tiny, whose students take
~30 steps (on 938 digits, one epoch at 5e-4 reached 82.0% held-out, at 3e-3 91.8%, seed 0); the held-out split
above. A teacher run's training subset is not kept: the students learn from the whole training split (less the
held-out images).
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas.graph import ArchGraph
from nas.runs import RunDir, write_atomic
from nas.space import Architecture, NASError, one_of
from strategies.n2n_policy import (
    ADVANTAGES,
    SCALES,
    Reinforce,
    RemovalPolicy,
    ShrinkPolicy,
    reward,
)
from strategies.n2n_students import (
    descriptors,
    policy_layers,
    removal_fixed,
    remove_layers,
    resnet_teacher,
    shrink_fixed,
    shrink_layers,
    vgg_teacher,
)

STRATEGIES = ("n2n", "random")
#: built-in teachers: a graph for (input shape, classes); resnet10 is the small teacher of the transfer experiment
TEACHERS: dict[str, Callable[[tuple[int, ...], int], ArchGraph]] = {
    "vgg": vgg_teacher, "resnet18": resnet_teacher,
    "resnet10": lambda shape, classes: resnet_teacher(shape, classes, blocks=(1, 1, 1, 1))}
STAGES = ("removal", "shrinkage")


@dataclass(frozen=True)
class Preset:
    """What a compression run costs."""

    updates: int  # policy updates per stage
    rollouts: int  # students per update
    student_epochs: float  # distillation epochs of each student
    final_epochs: float  # distillation epochs of the chosen student
    train_images: int | None  # training images the students (and a built-in teacher) learn from; None: all
    held_out: int  # training images kept apart to score the students
    teacher_epochs: float  # cross-entropy epochs of a built-in teacher
    batch_size: int = 64  # the code's MNIST batch
    student_lr: float = 5e-4  # the code's, for its 5 epochs of CIFAR-10 (over 1,000 steps)


PRESETS: dict[str, Preset] = {
    "paper": Preset(100, 5, 5, 30, None, 5000, 30),
    "quick": Preset(6, 4, 1, 5, 2000, 500, 5, student_lr=3e-3),  # ~30 steps a student: a larger step
    "tiny": Preset(2, 2, 0.2, 0.2, 200, 100, 0.5, batch_size=32, student_lr=3e-3),
}


@dataclass(frozen=True)
class Settings:
    """A compression run's settings (config.json's "settings")."""

    teacher: str
    strategy: str = "n2n"
    preset: str = "quick"
    dataset: str | None = None  # default: the teacher run's, or fashion_mnist for a built-in teacher
    data_path: str | None = None
    seed: int = 0
    size_limit: int | None = None
    acc_limit: float | None = None  # held-out accuracy in percent
    distill: str = "mse"
    advantage: str = "rollout"
    controller: str | None = None
    device: str = "auto"
    threads: int = 0  # 0: the cores idle when training starts (nas.threads)
    removal_lr: float = 0.003  # the code's Adam learning rates of the two policies
    shrink_lr: float = 0.1
    fix_pools: bool = False  # ours: stage 2 keeps max pooling as it is (n2n_students); the code scales it

    def check(self) -> None:
        if self.strategy not in STRATEGIES:
            raise NASError(f"compression strategy {self.strategy!r} is not one of {one_of(STRATEGIES)}")
        if self.preset not in PRESETS:
            raise NASError(f"compression preset {self.preset!r} is not one of {one_of(list(PRESETS))}")
        if self.teacher not in TEACHERS and not Path(self.teacher).is_dir():
            raise NASError(f"teacher {self.teacher!r} is neither a run directory of nas search nor one of "
                           f"{one_of(list(TEACHERS))}")
        for name, lr in (("removal", self.removal_lr), ("shrink", self.shrink_lr)):
            if not 0 < lr < 10:
                raise NASError(f"{name} learning rate {lr} must be positive and below 10")
        if self.threads < 0:
            raise NASError(f"threads {self.threads} must be 0 (automatic) or more")
        if self.size_limit is not None and self.size_limit < 1:
            raise NASError(f"size limit {self.size_limit} must be a positive number of parameters")
        if self.acc_limit is not None and not 0 <= self.acc_limit <= 100:
            raise NASError(f"accuracy limit {self.acc_limit} must be a percentage in [0, 100]")
        if self.distill not in ("mse", "kl"):
            raise NASError(f"distillation {self.distill!r} is not one of 'mse', 'kl'")
        if self.advantage not in ADVANTAGES:
            raise NASError(f"advantage {self.advantage!r} is not one of {one_of(ADVANTAGES)}")
        if self.controller is not None and not Path(self.controller).exists():
            raise NASError(f"controller {self.controller!r} does not exist; accepted: an earlier compress run's "
                           "folder or its policies.pt")

    @property
    def budget(self) -> Preset:
        return PRESETS[self.preset]


# -- teacher and data ----------------------------------------------------------------------------------------------
@dataclass
class Problem:
    """The teacher and the data splits a compression run works on."""

    graph: ArchGraph
    module: torch.nn.Module
    data: Any  # TensorData: x_train / y_train the students' images, x_val / y_val the held-out split
    test: tuple[torch.Tensor, torch.Tensor]  # the dataset's own validation/test split, for reporting only
    preprocessing: Any
    description: str


def _split(data: Any, preset: Preset, seed: int, shape: tuple[int, ...]) -> tuple[Any, tuple]:
    """Held-out and training images from the training split (resized to `shape`); the test split apart."""
    from nas.train import resize_inputs

    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data.x_train), generator=g)
    if preset.held_out >= len(order):
        raise NASError(f"the preset holds out {preset.held_out} images of a training split of {len(order)}")
    held, rest = order[:preset.held_out], order[preset.held_out:]
    if preset.train_images is not None:
        rest = rest[:preset.train_images]
    view = replace(data, x_train=resize_inputs(data.x_train[rest], shape), y_train=data.y_train[rest],
                   x_val=resize_inputs(data.x_train[held], shape), y_val=data.y_train[held])
    return view, (resize_inputs(data.x_val, shape), data.y_val)


def load_problem(settings: Settings, run: RunDir) -> Problem:
    """The teacher (loaded, or built and trained once into the run folder) and the data splits."""
    from nas.build import build_module
    from nas.data import load_dataset
    from nas.preprocess import Preprocessing
    from nas.runs import load_state_dict
    from nas.train import CrossEntropy, TrainConfig, train_and_evaluate

    preset = settings.budget
    if settings.teacher in TEACHERS:
        data = load_dataset(settings.dataset or "fashion_mnist", settings.data_path, seed=settings.seed)
        graph = TEACHERS[settings.teacher](data.sample_shape, data.num_classes)
        description = f"built-in {settings.teacher} ({graph.params():,} parameters)"
    else:
        from nas import registry

        source = RunDir.open(settings.teacher)
        stored = source.settings()
        best = source.best()
        if best is None or not source.weights_file.exists():
            raise NASError(f"teacher run {settings.teacher!r} has no best architecture with weights yet: finish it")
        if settings.dataset and settings.dataset != stored.get("dataset"):
            raise NASError(f"teacher run {settings.teacher!r} was trained on {stored.get('dataset')!r}, not "
                           f"{settings.dataset!r}; drop --dataset")
        space = registry.make_space(stored["space"], stored.get("preset"))
        graph = space.graph(space.resolve(dict(best["arch"])), tuple(best["input_shape"]), best["num_classes"])
        data = load_dataset(stored["dataset"], settings.data_path or stored.get("data_path"), seed=stored["seed"])
        description = f"{stored['space']} run {settings.teacher} ({graph.params():,} parameters)"
    view, test = _split(data, preset, settings.seed, tuple(graph.input_shape))
    torch.manual_seed(settings.seed)  # one teacher per seed, whichever strategy compresses it
    module = build_module(graph)
    weights = run.path / "teacher_weights.pt"
    if settings.teacher not in TEACHERS:
        module.load_state_dict(RunDir(settings.teacher).weights())
    elif weights.exists():
        module.load_state_dict(load_state_dict(weights, f"run directory {str(run.path)!r}: teacher_weights.pt"))
    else:
        config = TrainConfig(epochs=preset.teacher_epochs, batch_size=128, seed=settings.seed, device=settings.device,
                             num_threads=settings.threads)
        train_and_evaluate(module, view, config, loss=CrossEntropy(0.1))
        _save_torch(weights, module.state_dict())
    module.eval()
    return Problem(graph, module, view, test, Preprocessing.of(data), description)


def _read_policies(path: Path) -> dict[str, Any]:
    """A policies.pt, loaded without unpickling code; a one-line error when it is not one."""
    import pickle

    try:
        state = torch.load(path, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        why = str(err).splitlines()[0][:100] if str(err) else type(err).__name__
        raise NASError(f"{str(path)!r} is not a policies.pt of nas compress ({why})") from None
    learners = state.get("learners") if isinstance(state, dict) else None
    if not isinstance(learners, dict) or set(learners) != {"removal", "shrinkage"}:
        raise NASError(f"{str(path)!r} is not a policies.pt of nas compress (no removal and shrinkage policies)")
    return state


def _save_torch(path: Path, obj: Any) -> None:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomic(path, buffer.getvalue())


# -- students -----------------------------------------------------------------------------------------------------
def student_key(graph: ArchGraph) -> str:
    """A short id of a student: its layers' names, ops and inputs."""
    text = json.dumps([[n.name, repr(n.op), list(n.inputs)] for n in graph.layers()])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def train_student(student: ArchGraph, problem: Problem, settings: Settings, epochs: float,
                  seed: int) -> tuple[float, torch.nn.Module]:
    """Held-out top-1 (%) of `student`, trained from scratch by distillation from the teacher."""
    from nas.build import build_module
    from nas.train import Distillation, TrainConfig, resolve_device, train_and_evaluate

    torch.manual_seed(seed)
    module = build_module(student)
    config = TrainConfig(epochs=epochs, batch_size=settings.budget.batch_size, optimizer="adamw",
                         lr=settings.budget.student_lr,
                         weight_decay=5e-4, label_smoothing=0.0, seed=seed, device=settings.device,
                         num_threads=settings.threads)
    teacher = problem.module.to(resolve_device(settings.device))
    result = train_and_evaluate(module, problem.data, config, loss=Distillation(teacher, kind=settings.distill))
    return result.accuracy, module


# -- the loop -----------------------------------------------------------------------------------------------------
class Compression:
    """One compression run: both stages' rollouts and updates, checkpointed after every update."""

    def __init__(self, settings: Settings, run: RunDir, problem: Problem, progress: bool = True) -> None:
        self.settings, self.run, self.problem, self.progress = settings, run, problem, progress
        self.teacher_params = problem.graph.params()
        self.teacher_acc = 0.0
        self.cache: dict[str, dict[str, float]] = {}
        self.rollouts: list[dict[str, Any]] = []
        self.stage, self.update = 0, 0
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.rng = np.random.default_rng(settings.seed)
        self.learners = {"removal": Reinforce(RemovalPolicy(), settings.removal_lr, settings.advantage),
                         "shrinkage": Reinforce(ShrinkPolicy(), settings.shrink_lr, settings.advantage)}
        self.stage1: dict[str, Any] | None = None  # the best stage-1 rollout

    # -- state --------------------------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.run.path / "policies.pt"

    def save(self) -> None:
        _save_torch(self.state_file, {"learners": {k: v.state_dict() for k, v in self.learners.items()},
                                      "stage": self.stage, "update": self.update, "cache": self.cache,
                                      "generator": self.generator.get_state(), "rng": self.rng.bit_generator.state,
                                      "teacher_acc": self.teacher_acc, "stage1": self.stage1})
        self.run.write_json("rollouts.json", self.rollouts)

    def load(self) -> bool:
        if not self.state_file.exists():
            return False
        state = _read_policies(self.state_file)
        for name, learner in self.learners.items():
            learner.load_state_dict(state["learners"][name])
        self.stage, self.update, self.cache = state["stage"], state["update"], state["cache"]
        self.generator.set_state(state["generator"])
        self.rng.bit_generator.state = state["rng"]
        self.teacher_acc, self.stage1 = state["teacher_acc"], state["stage1"]
        self.rollouts = self.run.read_json("rollouts.json") or []
        return True

    def transfer(self, path: str) -> None:
        """Initialise the policies from an earlier run's policies.pt (policy transfer)."""
        file = Path(path)
        if file.is_dir():
            file = file / "policies.pt"
        if not file.is_file():
            raise NASError(f"controller {path!r} is no policies.pt of a compress run (nor a folder holding one)")
        state = _read_policies(file)
        try:
            for name, learner in self.learners.items():
                learner.policy.load_state_dict(state["learners"][name]["policy"])
        except RuntimeError as err:  # torch lists every mismatched key on its own line
            raise NASError(f"controller {path!r} does not fit these policies (descriptors of another width?): "
                           f"{str(err).splitlines()[0][:120]}") from None

    # -- one stage --------------------------------------------------------------------------------------------------
    def base(self) -> ArchGraph:
        """The graph this stage edits: the teacher, or the best stage-1 student."""
        if self.stage == 0 or self.stage1 is None:
            return self.problem.graph
        return remove_layers(self.problem.graph, self.stage1["keep"])

    def sample(self, graph: ArchGraph) -> tuple[dict[str, Any], torch.Tensor | None]:
        """One rollout's actions (and their log-probability for n2n)."""
        learner = self.learners[STAGES[self.stage]]
        if self.stage == 0:
            fixed = removal_fixed(graph)
            if self.settings.strategy == "random":
                keep = [bool(k) or f for k, f in zip(self.rng.integers(0, 2, len(fixed)), fixed)]
                return {"keep": keep}, None
            keep, lp = learner.policy.sample(descriptors(graph), fixed, self.generator)  # type: ignore[operator]
            return {"keep": keep}, lp
        fixed_fields = shrink_fixed(graph, self.settings.fix_pools)
        if self.settings.strategy == "random":
            scales = np.where(fixed_fields, 1.0, np.array(SCALES)[self.rng.integers(0, len(SCALES),
                                                                                    fixed_fields.shape)])
            return {"scales": scales.tolist()}, None
        scales, lp = learner.policy.sample(descriptors(graph), fixed_fields, self.generator)  # type: ignore[operator]
        return {"scales": scales.tolist()}, lp

    def student(self, graph: ArchGraph, actions: Mapping[str, Any]) -> ArchGraph:
        if "keep" in actions:
            return remove_layers(graph, actions["keep"])
        return shrink_layers(graph, np.array(actions["scales"]), self.settings.fix_pools)

    def score(self, graph: ArchGraph, actions: Mapping[str, Any], index: int) -> dict[str, Any]:
        """Build, train (or look up) and reward one rollout's student."""
        record: dict[str, Any] = {"stage": STAGES[self.stage], "update": self.update, "rollout": index, **actions}
        try:
            student = self.student(graph, actions)
        except NASError as err:
            return {**record, "reward": -1.0, "invalid": str(err)}
        key, params = student_key(student), student.params()
        record.update(key=key, params=params)
        if params >= self.teacher_params:
            return {**record, "reward": -1.0, "invalid": "no smaller than the teacher"}
        cached = key in self.cache
        if not cached:
            seed = self.settings.seed * 1000 + len(self.cache)
            acc, _ = train_student(student, self.problem, self.settings, self.settings.budget.student_epochs, seed)
            self.cache[key] = {"accuracy": acc, "params": params}
        acc = self.cache[key]["accuracy"]
        r = reward(params, self.teacher_params, acc, self.teacher_acc, self.settings.size_limit,
                   self.settings.acc_limit, self.update)
        return {**record, "accuracy": acc, "reward": r, "cached": cached}

    def run_stages(self) -> None:
        from tqdm.auto import tqdm

        preset = self.settings.budget
        while self.stage < len(STAGES):
            graph = self.base()
            name = STAGES[self.stage]
            bar = tqdm(total=preset.updates, initial=self.update, desc=f"n2n {name}", disable=not self.progress)
            while self.update < preset.updates:
                samples = [self.sample(graph) for _ in range(preset.rollouts)]
                records = [self.score(graph, actions, i) for i, (actions, _) in enumerate(samples)]
                rewards = [r["reward"] for r in records]
                if self.settings.strategy == "n2n":
                    self.learners[name].update([lp for _, lp in samples], rewards)  # type: ignore[misc]
                self.rollouts.extend(records)
                valid = [r for r in self.rollouts if r["stage"] == "removal" and "accuracy" in r]
                if self.stage == 0 and valid:
                    best = max(valid, key=lambda r: r["reward"])
                    self.stage1 = {"keep": best["keep"], "reward": best["reward"]}
                self.update += 1
                self.save()
                bar.update(1)
                bar.set_postfix(mean=f"{np.mean(rewards):.3f}", best=f"{max(r['reward'] for r in self.rollouts):.3f}")
            bar.close()
            self.stage, self.update = self.stage + 1, 0
            self.save()

    def best(self) -> dict[str, Any]:
        valid = [r for r in self.rollouts if "accuracy" in r]
        if not valid:
            raise NASError("no valid student was found; a longer preset or a looser constraint may find one")
        return max(valid, key=lambda r: (r["reward"], -r["params"]))

    def graph_of(self, record: Mapping[str, Any]) -> ArchGraph:
        """The student of a rollout record."""
        if record["stage"] == "removal":
            return remove_layers(self.problem.graph, record["keep"])
        stage1 = remove_layers(self.problem.graph, self.stage1["keep"]) if self.stage1 else self.problem.graph
        return shrink_layers(stage1, np.array(record["scales"]), self.settings.fix_pools)


def plot_rewards(rollouts: list[dict[str, Any]], path: Path, title: str) -> None:
    """Mean and best reward per update, both stages one after the other."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    offset = 0
    for stage in STAGES:
        rows = [r for r in rollouts if r["stage"] == stage]
        if not rows:
            continue
        updates = sorted({r["update"] for r in rows})
        means = [np.mean([r["reward"] for r in rows if r["update"] == u]) for u in updates]
        best = np.maximum.accumulate([max(r["reward"] for r in rows if r["update"] == u) for u in updates])
        xs = [offset + u + 1 for u in updates]
        ax.plot(xs, means, marker=".", label=f"{stage}: mean reward")
        ax.plot(xs, best, linestyle="--", label=f"{stage}: best so far")
        offset = xs[-1]
    ax.set_xlabel("policy update")
    ax.set_ylabel("reward")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compress(settings: Settings | None, run_dir: str | Path, resume: bool = False, progress: bool = True) -> str:
    """Run (or resume, `settings` then None: the stored ones) a compression; the summary it prints."""

    start = time.perf_counter()
    if settings is not None and not resume:
        settings.check()  # before the folder is touched
    run = RunDir(run_dir)
    try:
        with run.locked():
            return _compress(settings, run, resume, progress, start)
    except NASError:
        if not resume:
            run.discard_unstarted()
        raise


def _compress(settings: Settings | None, run: RunDir, resume: bool, progress: bool, start: float) -> str:
    from nas.export import export_model
    from nas.train import evaluate_accuracy

    if resume or settings is None:
        stored = RunDir.open(run.path).config()
        if stored.get("command") != "compress":
            raise NASError(f"run directory {str(run.path)!r} holds a search, not a compression")
        settings = Settings(**stored["settings"])
    else:
        run.start({"command": "compress", "space": "n2n", "strategy": settings.strategy,
                   "settings": asdict(settings)})
    problem = load_problem(settings, run)
    job = Compression(settings, run, problem, progress)
    if not job.load():
        if settings.controller:
            job.transfer(settings.controller)
        job.teacher_acc = evaluate_accuracy(problem.module, problem.data.x_val, problem.data.y_val)
        job.save()
    job.run_stages()
    best = job.best()
    graph = job.graph_of(best)
    acc, module = train_student(graph, problem, settings, settings.budget.final_epochs, settings.seed)
    x_test, y_test = problem.test
    test = {"teacher": evaluate_accuracy(problem.module, x_test, y_test),
            "student": evaluate_accuracy(module, x_test, y_test)}
    actions = {k: best[k] for k in ("keep", "scales") if k in best}
    arch = Architecture({"teacher": settings.teacher, "stage": best["stage"], "actions": json.dumps(actions)})
    export_model(graph, arch, run.model_dir, copy.deepcopy(module.state_dict()), "n2n",
                 preprocessing=problem.preprocessing)
    plot_rewards(job.rollouts, run.path / "rewards.png", f"N2N ({settings.strategy}) on {problem.description}")
    summary = {"teacher": problem.description, "teacher_params": job.teacher_params,
               "student_params": graph.params(), "compression": job.teacher_params / graph.params(),
               "held_out": {"teacher": job.teacher_acc, "student_search": best["accuracy"], "student_final": acc},
               "test": test, "reward": best["reward"], "students_trained": len(job.cache),
               "images": {"train": len(problem.data.x_train), "held_out": len(problem.data.x_val),
                          "test": len(problem.test[0])},
               "rollouts": len(job.rollouts), "seconds": time.perf_counter() - start,
               "arch": dict(arch), "input_shape": list(graph.input_shape), "num_classes": graph.output_shape[0],
               "metrics": {"accuracy": test["student"], "params": graph.params()},
               "layers": [n.name for n in policy_layers(graph)]}
    run.write_json("best.json", summary)
    return (f"teacher: {problem.description}, test {test['teacher']:.2f}%\n"
            f"student: {graph.params():,} parameters ({summary['compression']:.1f}x smaller), test "
            f"{test['student']:.2f}% after {settings.budget.final_epochs:g} epochs; reward {best['reward']:.3f} "
            f"({best['stage']})\n"
            f"students trained: {len(job.cache)} of {len(job.rollouts)} rollouts; {summary['seconds']:.0f} s\n"
            f"exported: {run.model_dir}\nplot: {run.path / 'rewards.png'}")
