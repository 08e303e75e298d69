"""Contract checks every registered plug-in gets, as `optuna.testing` gives samplers theirs.

`SPACE_CHECKS` and `SUPERNET_CHECKS` take a space, `STRATEGY_CHECKS` an ask/tell strategy's name and
`SUPERNET_STRATEGY_CHECKS` a supernet strategy's; each raises `AssertionError` when the plug-in breaks the
contract. `tests/test_contracts.py` runs them over everything the registry holds, entry-point plug-ins
included, and `python -m nas.testing --space NAME --strategy NAME` runs them from the command line, so a
third-party package gets them by registering. Strategies are checked on `ToyBlockSpace` (three blocks of one
or two convolutions, two entry states: block-wise strategies run on it too) scored by `ToyScore` (a made-up
accuracy from the architecture's layers, no training), on a NAS-Bench-201 table slice when the table is at
hand, and supernet strategies by training on a few synthetic images.
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from nas import registry
from nas.blockwise import BlockPaths, BlockSpace, Path as BlockPath
from nas.costs import CostModel
from nas.evaluate import Evaluation, Evaluator
from nas.graph import ArchGraph, GraphBuilder
from nas.layers import conv_bn_act
from nas.objectives import Objective
from nas.ops import Conv2d, Flatten, GlobalAvgPool, Linear
from nas.space import Architecture, ArchitectureError, Choice, SearchSpace, Value

SAMPLES = 6


# -- the toy space and score -----------------------------------------------------------------------------------
TOY_OPS = "abc"
TOY_PATHS = tuple(p for p in (*TOY_OPS, *(a + b for a in TOY_OPS for b in TOY_OPS)) if p.count("c") <= 1)


class ToyBlocks(BlockPaths):
    """`ToyBlockSpace`'s block-wise view: blocks of 1-2 layers entered at 8x8, or at 4x4 after an op "c"."""

    num_blocks = 3
    input_shape = (1, 8, 8)

    def initial_state(self) -> int:
        return 8

    def candidates(self, block: int, entry: Any) -> list[BlockPath]:
        return [tuple(p) for p in TOY_PATHS if entry == 8 or "c" not in p]

    def exit_state(self, block: int, path: BlockPath, entry: Any) -> int:
        return entry // 2 if "c" in path else entry

    def arch_of(self, paths: Sequence[BlockPath]) -> Architecture:
        return Architecture({f"b{k}": "".join(map(str, p)) for k, p in enumerate(paths)})

    def paths_of(self, arch: Architecture) -> list[BlockPath]:
        return [tuple(arch[f"b{k}"]) for k in range(self.num_blocks)]

    def block_of(self, group: str) -> int | None:
        return int(group[5]) if group.startswith("block") else None


class ToyBlockSpace(BlockSpace):
    """Three blocks of 1-2 conv layers on 1x8x8 inputs; ops "a", "b" (3x3 conv, BN, ReLU; own weights each)
    and "c" (the same with stride 2), which halves the map and may appear once."""

    name = "toy_blocks"
    default_input = (1, 8, 8)
    default_classes = 3

    def choices(self) -> list[Choice]:
        return [Choice(f"b{k}", TOY_PATHS, slot=f"b{k}") for k in range(3)]

    def check(self, arch: Mapping[str, Value]) -> None:
        if sum(arch.get(f"b{k}", "").count("c") for k in range(3)) > 1:
            raise ArchitectureError("op 'c' halves the map and may appear once")

    def graph(self, arch: Mapping[str, Value], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None) -> ArchGraph:
        g = GraphBuilder(input_shape or self.default_input)
        g.group = "stem"
        x = g.add("stem_conv", Conv2d(g.shape(g.input)[0], 4, 3, bias=True), g.input)
        for k in range(3):
            for j, op in enumerate(arch[f"b{k}"]):
                g.group = f"block{k}.layer{j}"
                with g.candidate(f"b{k}", op):
                    x = conv_bn_act(g, f"b{k}_l{j}", x, 4, 3, 2 if op == "c" else 1)
        g.group = "head"
        x = g.add("flatten", Flatten(), g.add("pool", GlobalAvgPool(), x))
        return g.finish(g.add("fc", Linear(4, num_classes or self.default_classes), x))

    def block_paths(self, data_shape: tuple[int, ...]) -> ToyBlocks:
        return ToyBlocks()


class ToyScore(Evaluator):
    """A made-up accuracy in [50, 100): a hash of the architecture, so that good ones differ in every choice."""

    name = "toy_score"

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def evaluate(self, arch: Architecture) -> Evaluation:
        return Evaluation({"accuracy": 50.0 + zlib.crc32(arch.to_json().encode()) % 5000 / 100})


def toy_data(n: int = 48, shape: tuple[int, ...] = (1, 8, 8), classes: int = 3) -> Any:
    """Synthetic images and labels (`nas.data.TensorData`), the last 16 for validation."""
    import torch

    from nas.data import TensorData

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)
    return TensorData("synthetic", x[:n - 16], y[:n - 16], x[n - 16:], y[n - 16:], classes)


# -- spaces ---------------------------------------------------------------------------------------------------
def _samples(space: SearchSpace, n: int = SAMPLES) -> list[Architecture]:
    rng = random.Random(0)
    return [space.sample(rng) for _ in range(n)]


def check_samples_validate(space: SearchSpace) -> None:
    archs = _samples(space, 20)
    for arch in archs:
        space.validate(arch)
        assert space.resolve(arch.to_json()) == arch
    assert len(set(archs)) > 1 or space.size() == 1, "sample() keeps returning the same architecture"


def check_mutations_stay_in_the_space(space: SearchSpace) -> None:
    rng = random.Random(1)
    for arch in _samples(space):
        child = space.mutate(arch, rng)
        space.validate(child)
        assert child != arch, "mutate() returned its parent"
        for neighbour in space.neighbours(arch, rng)[:10]:
            space.validate(neighbour)
            assert neighbour != arch


def check_bad_architectures_are_one_line_errors(space: SearchSpace) -> None:
    arch = _samples(space, 1)[0]
    choice = next(c for c in space.active_choices(arch))
    for bad in ({**arch, "no_such_choice": 1}, {**arch, choice.name: "no-such-value"},
                {k: v for k, v in arch.items() if k != choice.name}):
        try:
            space.validate(bad)
        except ArchitectureError as err:
            assert "\n" not in str(err) and str(err), f"not a one-line error: {err!r}"
        else:
            raise AssertionError(f"validate accepted a bad architecture: {bad}")


def check_encode_decode_round_trip(space: SearchSpace) -> None:
    for arch in _samples(space):
        assert space.decode(space.encode(arch)) == arch


def check_named_architectures_validate(space: SearchSpace) -> None:
    for name, arch in space.reference_archs().items():
        space.validate(arch)
        assert space.resolve(name) == arch


def check_restrict_keeps_samples_inside(space: SearchSpace) -> None:
    choice = next((c for c in space.choices() if c.active is None and len(c.values) > 1), None)
    if choice is None:
        return
    restricted = space.restrict({choice.name: [choice.values[0]]})
    for arch in _samples(restricted):
        assert arch[choice.name] == choice.values[0]
        restricted.validate(arch)


def _built(space: SearchSpace, arch: Architecture) -> tuple[ArchGraph, Any]:
    import torch

    from nas.build import build_module

    torch.manual_seed(0)
    graph = space.graph(arch, space.input_shape_for(arch, space.default_input), space.default_classes)
    return graph, build_module(graph)


def check_graph_counts_equal_the_module(space: SearchSpace) -> None:
    from nas.build import count_macs, count_params

    for arch in _samples(space, 3):
        graph, model = _built(space, arch)
        assert count_params(model) == graph.params(), "graph parameter count differs from the built module's"
        assert count_macs(model, graph.input_shape) == graph.macs(), "graph multiply-adds differ from torch's counter"


def check_forward_and_backward(space: SearchSpace) -> None:
    import torch

    for arch in _samples(space, 2):
        graph, model = _built(space, arch)
        out = model(torch.randn(2, *graph.input_shape))
        assert tuple(out.shape) == (2, space.default_classes) and torch.isfinite(out).all()
        out.square().mean().backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)


def check_exported_source_round_trip(space: SearchSpace) -> None:
    import torch

    from nas.build import render_source

    arch = _samples(space, 1)[0]
    graph, model = _built(space, arch)
    namespace: dict[str, Any] = {}
    exec(compile(render_source(graph), "<exported>", "exec"), namespace)  # noqa: S102 - our own generated source
    exported = namespace["Net"]()
    exported.load_state_dict(model.state_dict())
    x = torch.randn(2, *graph.input_shape)
    torch.testing.assert_close(exported.eval()(x), model.eval()(x))


def check_onnx_export_runs_in_onnx_runtime(space: SearchSpace) -> None:
    import numpy as np
    import torch

    from nas.export import export_onnx
    from nas.quantize import onnx_session

    arch = _samples(space, 1)[0]
    graph, model = _built(space, arch)
    x = torch.randn(3, *graph.input_shape)
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        path = Path(tmp) / "model.onnx"
        export_onnx(model.eval(), x[:2], path)
        session = onnx_session(path, threads=1)
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        assert np.abs(got - model(x).numpy()).max() < 1e-4, "ONNX Runtime's output differs from the module's"


def check_blocks_stand_alone_for_latency_tables(space: SearchSpace) -> None:
    import torch

    from nas.blocks import block_graph, block_names, block_signature, build_block

    arch = _samples(space, 1)[0]
    graph, _ = _built(space, arch)
    for group in block_names(graph):
        sub = block_graph(graph, group)
        assert len(block_signature(graph, group)) == 16
        with torch.no_grad():
            out = build_block(graph, group).eval()(torch.randn(1, *sub.input_shape))
        assert tuple(out.shape[1:]) == sub.output_shape, f"block {group!r} gives {tuple(out.shape[1:])}"


SPACE_CHECKS: dict[str, Callable[[SearchSpace], None]] = {
    "samples validate": check_samples_validate,
    "mutations stay in the space": check_mutations_stay_in_the_space,
    "bad architectures are one-line errors": check_bad_architectures_are_one_line_errors,
    "encode/decode round trip": check_encode_decode_round_trip,
    "named architectures validate": check_named_architectures_validate,
    "restrict keeps samples inside": check_restrict_keeps_samples_inside,
    "graph counts equal the module (torch's counter)": check_graph_counts_equal_the_module,
    "forward and backward": check_forward_and_backward,
    "exported source round trip": check_exported_source_round_trip,
    "ONNX export runs in ONNX Runtime": check_onnx_export_runs_in_onnx_runtime,
    "blocks stand alone (latency tables)": check_blocks_stand_alone_for_latency_tables,
}


# -- supernets ------------------------------------------------------------------------------------------------
def check_subnet_reproduces_the_supernet(space: SearchSpace) -> None:
    import torch

    from nas.supernet import Supernet

    torch.manual_seed(0)
    net = Supernet(space, space.default_input, space.default_classes).eval()
    for arch in _samples(space, 3):
        x = torch.randn(2, *net.arch_input_shape(arch))
        with torch.no_grad():
            torch.testing.assert_close(net.subnet(arch).eval()(x), net(x, arch), rtol=1e-5, atol=1e-6)


def check_block_supernet_partitions_the_weights(space: SearchSpace) -> None:
    if not isinstance(space, BlockSpace):
        return
    from nas.supernet import BlockSupernet

    net = BlockSupernet(space, space.default_input, space.default_classes)
    keys = net.stem_state_keys() + [k for b in range(net.num_blocks) for k in net.block_state_keys(b)]
    assert sorted(keys) == sorted(net.state_dict()), "stem and block weights do not partition the supernet"


SUPERNET_CHECKS: dict[str, Callable[[SearchSpace], None]] = {
    "subnet reproduces the supernet": check_subnet_reproduces_the_supernet,
    "block supernet partitions the weights": check_block_supernet_partitions_the_weights,
}


# -- ask/tell strategies ------------------------------------------------------------------------------------------
#: options that keep the built-in strategies' checks fast (plug-ins pass their own)
FAST_OPTIONS: dict[str, dict[str, Any]] = {
    "bananas": {"num_init": 4, "batch_size": 4, "ensemble": 2, "predictor_options": {"steps": 20}},
    "evolution": {"population_size": 4, "sample_size": 2},
    "genetic": {"population": 4, "top_k": 2, "mutations": 2, "crossovers": 2},
    "optuna": {"n_startup_trials": 4},
    "spos": {"epochs": 1, "batch_size": 16, "bn_images": 16, "search_budget": 4,
             "search_options": {"population": 2, "top_k": 1, "mutations": 1, "crossovers": 1}},
    "gm_nas": {"epochs": 2, "split_epochs": [1], "gm_batches": 1, "batch_size": 16, "bn_images": 16, "val_images": 16,
               "search_budget": 4},
    "qfa": {"epochs": 1, "warmup_epochs": 0.0, "qat_epochs": 1, "qat_warmup_epochs": 0.0, "batch_size": 16,
            "bn_images": 16, "val_images": 16, "calibration_images": 16, "search_budget": 4,
            "search_options": {"population": 2, "top_k": 1, "mutations": 1, "crossovers": 1}},
    "spaceevo": {"resolution": 64, "latency_resolutions": (64,), "latency": "macs", "teacher_epochs": 1.0,
                 "kd_images": 32, "eval_images": 16, "bn_images": 16, "student_epochs": 0.5, "batch_size": 16,
                 "lut_samples": 1, "samples_per_space": 200, "population": 6, "sample_size": 3, "cycles": 12,
                 "search_budget": 3,
                 "search_options": {"population_size": 2, "sample_size": 1}},
    "bossnas": {"train_images": 16, "batch_size": 8, "proj_hidden": 16, "proj_dim": 8, "rating_images": 8,
                "bn_images": 8, "max_rated": 2, "warmup_epochs": 0.0, "population": 3, "sample_size": 2, "cycles": 2},
}


class Killed(Exception):
    """Stands for the process being killed in the middle of an evaluation."""


class Dying(Evaluator):
    """Another evaluator until `lives` evaluations are spent; then the process 'dies'."""

    def __init__(self, inner: Evaluator, lives: int) -> None:
        self.inner, self.lives = inner, lives
        self.metrics = inner.metrics

    def evaluate(self, arch: Architecture) -> Evaluation:
        if self.lives == 0:
            raise Killed
        self.lives -= 1
        return self.inner.evaluate(arch)


def run_ask_tell(name: str, folder: Path, space: SearchSpace, evaluator: Evaluator, budget: int, seed: int = 0,
                 options: Mapping[str, Any] | None = None, constraints: Sequence[Any] = (),
                 cost_models: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    """A search of strategy `name` in run directory `folder` (resumed when it exists); its history."""
    from nas.runs import RunDir
    from nas.search import run_search
    from nas.strategy import StrategyContext

    run = RunDir.open(folder) if folder.exists() else RunDir.create(folder, {"space": space.name, "strategy": name,
                                                                             "settings": {}})
    objectives = [Objective("accuracy")]
    opts = dict(FAST_OPTIONS.get(name, {}) if options is None else options)
    strategy = registry.get("strategies", name)(space, objectives, seed=seed, **opts)
    context = StrategyContext(space, objectives, seed, budget, space.default_input, space.default_classes,
                              run_dir=run.path, progress=False)
    run_search(run, strategy, evaluator, context, constraints, cost_models)
    return [(r.arch, r.metrics, r.info.get("cached", False)) for r in run.history()]


class MadeUpLatency(CostModel):
    """A `latency` cost made up from each block's multiply-adds (0.01 + MAdds / 1e5 per block): nothing is
    measured, every architecture of any space has one."""

    metric = "latency"

    def cost(self, graph: ArchGraph) -> float:
        from nas.blocks import block_graph, block_names

        return sum(0.01 + block_graph(graph, group).macs() / 1e5 for group in block_names(graph))


def made_up_latency(space: SearchSpace) -> tuple[Any, float]:
    """A made-up `latency` cost model (`MadeUpLatency`) and the median latency of 20 random architectures."""
    cost = MadeUpLatency()
    rng = random.Random(0)
    samples = [cost.cost(space.graph(a, space.default_input, space.default_classes))
               for a in (space.sample(rng) for _ in range(20))]
    return cost, sorted(samples)[len(samples) // 2]


def check_latency_limit_is_respected(name: str, options: Mapping[str, Any] | None = None) -> None:
    """With `latency <= the median of random architectures` (a hand-made table), every evaluated architecture
    meets it, some proposals were rejected before evaluation, and the search still fills its budget."""
    from nas.objectives import Constraint

    space = ToyBlockSpace()
    cost, limit = made_up_latency(space)
    with tempfile.TemporaryDirectory() as tmp:
        history = run_ask_tell(name, Path(tmp) / "run", space, ToyScore(space), 8, options=options,
                               constraints=[Constraint("latency", limit)], cost_models=[cost])
    evaluated = [m for _, m, cached in history if m is not None and not cached]
    assert len(evaluated) == 8 and all(m["latency"] <= limit for m in evaluated), "an evaluation broke the limit"
    assert any(m is None for _, m, _ in history), "no proposal was rejected: the check did not test the limit"


def check_proposals_are_valid(name: str, options: Mapping[str, Any] | None = None) -> None:
    """On the toy space and on MBConv's small preset (choices that exist only at some depths)."""
    for space in (ToyBlockSpace(), registry.make_space("mbconv", "small")):
        with tempfile.TemporaryDirectory() as tmp:
            history = run_ask_tell(name, Path(tmp) / "run", space, ToyScore(space), 16, options=options)
        assert len([h for h in history if h[1] is not None and not h[2]]) == 16
        for arch, _, _ in history:
            space.validate(arch)


def check_resume_equals_an_uninterrupted_run(name: str, options: Mapping[str, Any] | None = None) -> None:
    space = ToyBlockSpace()
    with tempfile.TemporaryDirectory() as tmp:
        whole = run_ask_tell(name, Path(tmp) / "whole", space, ToyScore(space), 10, options=options)
        try:
            run_ask_tell(name, Path(tmp) / "split", space, Dying(ToyScore(space), 6), 10, options=options)
            raise AssertionError("the dying evaluator did not kill the search")
        except Killed:
            pass
        resumed = run_ask_tell(name, Path(tmp) / "split", space, ToyScore(space), 10, options=options)
    assert resumed == whole, "a killed and resumed search differs from an uninterrupted one"


def check_same_seed_same_history_with_1_and_2_threads(name: str, options: Mapping[str, Any] | None = None) -> None:
    import torch

    space, before = ToyBlockSpace(), torch.get_num_threads()
    histories = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i, threads in enumerate((1, 2, 1)):
                torch.set_num_threads(threads)
                histories.append(run_ask_tell(name, Path(tmp) / str(i), space, ToyScore(space), 8, options=options))
    finally:
        torch.set_num_threads(before)
    assert histories[0] == histories[2], "the same seed gave another history"
    assert histories[0] == histories[1], "2 threads gave another history than 1"


def check_several_asks_before_tells(name: str, options: Mapping[str, Any] | None = None) -> None:
    space = ToyBlockSpace()
    opts = dict(FAST_OPTIONS.get(name, {}) if options is None else options)
    strategy = registry.get("strategies", name)(space, [Objective("accuracy")], seed=0, **opts)
    with tempfile.TemporaryDirectory() as tmp:
        from nas.strategy import StrategyContext

        strategy.setup(StrategyContext(space, [Objective("accuracy")], 0, 8, space.default_input, 3,
                                       run_dir=Path(tmp), progress=False))
        asked = [strategy.ask() for _ in range(3)]
        for arch in asked:
            space.validate(arch)
            strategy.tell(arch, ToyScore(space).evaluate(arch).metrics)
        strategy.close()
    assert len(set(asked)) == 3, f"three pending asks proposed repeats: {asked}"


def check_searches_a_table_slice(name: str, options: Mapping[str, Any] | None = None) -> None:
    from nas.tabular import TabularEvaluator

    table = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "nasbench201" / \
        "nats_tss_test_accuracy_200ep.csv"
    if not table.is_file():
        return  # the table is not shipped with the package; tests run this where it is
    space = registry.make_space("nb201")
    evaluator = TabularEvaluator(space, table, "cifar10")
    with tempfile.TemporaryDirectory() as tmp:
        history = run_ask_tell(name, Path(tmp) / "run", space, evaluator, 12, options=options)
    best = max(m["accuracy"] for _, m, _ in history if m is not None)
    assert 0 <= evaluator.best()[1] - best < 100 and evaluator.unique_queries >= 12


STRATEGY_CHECKS: dict[str, Callable[..., None]] = {
    "proposals are valid": check_proposals_are_valid,
    "resume equals an uninterrupted run": check_resume_equals_an_uninterrupted_run,
    "same seed, same history (1 and 2 threads)": check_same_seed_same_history_with_1_and_2_threads,
    "several asks before tells": check_several_asks_before_tells,
    "searches a NAS-Bench-201 table slice": check_searches_a_table_slice,
    "a latency limit is respected": check_latency_limit_is_respected,
}


# -- supernet strategies ---------------------------------------------------------------------------------------
def contract_space(name: str) -> SearchSpace:
    """The space supernet strategy `name` is checked on: its own `contract_space()` when it is made for one
    space family (SpaceEvo's superspaces), else the toy block space."""
    own = getattr(registry.get("strategies", name), "contract_space", None)
    return own() if own is not None else ToyBlockSpace()


def run_supernet_strategy(name: str, folder: Path, seed: int = 0, options: Mapping[str, Any] | None = None,
                          dying_after: int | None = None, constraints: Sequence[Any] = (),
                          cost_models: Sequence[Any] | None = None) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
    """Train strategy `name`'s supernet on synthetic data and search its ratings, in `folder` (resumed when it
    exists); the history of ratings and the trained weights (state-dict of the evaluator's supernet, if any)."""
    from nas.runs import RunDir
    from nas.search import run_search
    from nas.strategy import StrategyContext, SupernetContext, rating_objectives

    space, data = contract_space(name), toy_data()
    opts = dict(FAST_OPTIONS.get(name, {}) if options is None else options)
    strategy = registry.get("strategies", name)([Objective("accuracy")], seed=seed, **opts)
    folder.mkdir(parents=True, exist_ok=True)
    plan = strategy.prepare(SupernetContext(space, data, [Objective("accuracy")], seed, "quick",
                                            folder / "checkpoints", False, constraints=list(constraints)))
    run = RunDir.open(folder / "run") if (folder / "run").exists() else \
        RunDir.create(folder / "run", {"space": space.name, "strategy": name, "settings": {}})
    objectives = rating_objectives([Objective("accuracy")])
    evaluator = plan.evaluator if dying_after is None else Dying(plan.evaluator, dying_after)
    run_search(run, plan.search, evaluator, StrategyContext(space, objectives, seed, plan.budget, data.sample_shape,
                                                            data.num_classes, data, run_dir=run.path, progress=False),
               [*constraints, *plan.constraints], cost_models)
    history = [(r.arch, {k: v for k, v in r.metrics.items() if not k.endswith("seconds")} if r.metrics else None)
               for r in run.history()]
    supernet = getattr(plan.evaluator, "supernet", None)
    return history, ({} if supernet is None else supernet.state_dict())


def check_trains_and_rates_on_a_toy_space(name: str, options: Mapping[str, Any] | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        history, _ = run_supernet_strategy(name, Path(tmp), options=options)
    rated = [m for _, m in history if m is not None]
    assert rated and all(math.isfinite(m["rating"]) for m in rated)


def check_supernet_resume_equals_an_uninterrupted_run(name: str, options: Mapping[str, Any] | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        whole, _ = run_supernet_strategy(name, Path(tmp) / "whole", options=options)
        try:
            run_supernet_strategy(name, Path(tmp) / "split", options=options, dying_after=1)
            raise AssertionError("the dying evaluator did not kill the search")
        except Killed:
            pass
        resumed, _ = run_supernet_strategy(name, Path(tmp) / "split", options=options)
    assert resumed == whole, "a resumed supernet search differs from an uninterrupted one"


def check_supernet_same_seed_with_1_and_2_threads(name: str, options: Mapping[str, Any] | None = None) -> None:
    """Bit-equal with one thread; with two, torch's CPU kernels may sum in another order, so the trained weights
    may differ in the last bits (checked to 1e-4) while the search's history must still be the same."""
    import torch

    before = torch.get_num_threads()
    runs = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i, threads in enumerate((1, 1, 2)):
                torch.set_num_threads(threads)
                runs.append(run_supernet_strategy(name, Path(tmp) / str(i), options=options))
    finally:
        torch.set_num_threads(before)
    (one, weights), (again, weights_again), (two, weights_two) = runs
    assert one == again and all(torch.equal(weights[k], weights_again[k]) for k in weights), \
        "the same seed gave another result"
    for key, value in weights.items():
        torch.testing.assert_close(weights_two[key], value, rtol=1e-4, atol=1e-4)
    assert [a for a, _ in one] == [a for a, _ in two], "2 threads searched other architectures than 1"


def check_supernet_search_respects_a_latency_limit(name: str, options: Mapping[str, Any] | None = None) -> None:
    """The search over supernet ratings rates only architectures within the limit (`made_up_latency`)."""
    from nas.objectives import Constraint

    cost, limit = made_up_latency(contract_space(name))
    with tempfile.TemporaryDirectory() as tmp:
        history, _ = run_supernet_strategy(name, Path(tmp), options=options,
                                           constraints=[Constraint("latency", limit)], cost_models=[cost])
    rated = [m for _, m in history if m is not None]
    assert rated and all(m["latency"] <= limit for m in rated), "a rated architecture broke the latency limit"


SUPERNET_STRATEGY_CHECKS: dict[str, Callable[..., None]] = {
    "trains and rates on a toy space": check_trains_and_rates_on_a_toy_space,
    "resume equals an uninterrupted run": check_supernet_resume_equals_an_uninterrupted_run,
    "same seed, same result (1 and 2 threads)": check_supernet_same_seed_with_1_and_2_threads,
    "the rating search respects a latency limit": check_supernet_search_respects_a_latency_limit,
}


def checks_for_strategy(name: str) -> dict[str, Callable[..., None]]:
    """The checks a registered strategy gets: ask/tell or supernet ones."""
    from nas.strategy import SupernetStrategy

    return SUPERNET_STRATEGY_CHECKS if issubclass(registry.get("strategies", name), SupernetStrategy) \
        else STRATEGY_CHECKS


# -- the command line ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """`python -m nas.testing --space NAME --strategy NAME`: run the contract checks, one line each."""
    parser = argparse.ArgumentParser(prog="python -m nas.testing", description=main.__doc__)
    parser.add_argument("--space", action="append", default=[], help="a registered space (repeatable)")
    parser.add_argument("--strategy", action="append", default=[], help="a registered strategy (repeatable)")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import your module first, as `nas --plugin` does (repeatable; also NAS_PLUGINS)")
    args = parser.parse_args(argv)
    registry.load_plugins(registry.plugins_from_env() + args.plugin)
    failed = passed = 0
    jobs: list[tuple[str, str, Callable[[], None]]] = []
    for name in args.space:
        space = registry.make_space(name)
        jobs += [(name, check, partial(fn, space)) for check, fn in {**SPACE_CHECKS, **SUPERNET_CHECKS}.items()]
    for name in args.strategy:
        jobs += [(name, check, partial(fn, name)) for check, fn in checks_for_strategy(name).items()]
    for plugin, check, run in jobs:
        try:
            run()
            passed += 1
            print(f"ok      {plugin}: {check}")
        except Exception as err:  # noqa: BLE001 - report every failing check, whatever it raised
            failed += 1
            print(f"FAILED  {plugin}: {check}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    print(f"{passed} checks passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
