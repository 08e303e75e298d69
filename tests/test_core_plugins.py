"""Evaluators and cost models as registered plug-ins: lookup, constraints checked before evaluation, the
predictor evaluator, prepared instances through the Python API, one-file plug-ins found by entry point."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO, SHARED, run_nas

from nas import registry
from nas.costs import CostModel, cost_metrics, cost_models_for
from nas.evaluate import Evaluation, Evaluator, TrainEvaluator, evaluator_name
from nas.objectives import Constraint, Objective, parse_objectives
from nas.predictor_evaluator import PredictorEvaluator
from nas.registry import register_cost_model
from nas.runs import RunDir
from nas.search import run_search
from nas.space import NASError
from nas.strategy import StrategyContext
from nas.tabular import TabularEvaluator
from predictors.base import Ensemble, kendall_tau
from predictors.gnn import GNNPredictor
from strategies.bananas import make_predictor

TABLE = SHARED / "benchmarks" / "nasbench201" / "nats_tss_test_accuracy_200ep.csv"
SHAPE, CLASSES = (3, 32, 32), 10


def need_table():
    if not TABLE.is_file():
        pytest.skip(f"shared benchmark table not found at {TABLE}")
    return TABLE


class LayersCost(CostModel):
    """A toy cost model: the number of layers of the graph."""

    metric = "layers"

    def cost(self, graph):
        return float(sum(1 for _ in graph.layers()))


@pytest.fixture
def layers_cost(monkeypatch):
    """`layers` registered for one test only."""
    registry.names("cost_models")
    monkeypatch.setitem(registry._REGISTRIES, "cost_models", dict(registry._REGISTRIES["cost_models"]))
    register_cost_model("layers")(LayersCost)


class Recorder(Evaluator):
    """A table stand-in that records what it was asked to evaluate."""

    name = "recorder"

    def __init__(self):
        self.calls = []

    def evaluate(self, arch):
        self.calls.append(arch)
        return Evaluation({"accuracy": float(len(self.calls))})


def test_builtin_plugins_register_on_first_lookup_without_torch():
    code = ("import json, sys; from nas import registry; "
            "print(json.dumps([registry.names('evaluators'), registry.names('cost_models'), 'torch' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    evaluators, cost_models, torch_imported = json.loads(out.stdout)
    assert {"predictor", "tabular", "train"} <= set(evaluators) and {"macs", "params"} <= set(cost_models)
    assert not torch_imported
    assert registry.get("evaluators", "train") is TrainEvaluator
    with pytest.raises(NASError, match="unknown cost model 'energy'; accepted: 'latency', 'macs', 'params'"):
        registry.get("cost_models", "energy")


def test_cost_models_compute_from_the_graph():
    space = registry.make_space("nb201")
    arch = space.resolve("nb201_all_conv3x3")
    assert cost_metrics(space, arch, SHAPE, CLASSES) == {"params": 1_531_546.0,
                                                         "macs": float(space.graph(arch, SHAPE, CLASSES).macs())}
    assert [m.metric for m in cost_models_for(["accuracy", "macs", "unknown"], space)] == ["params", "macs"]


def test_a_registered_cost_model_is_an_objective_and_a_constraint_checked_before_evaluation(tmp_path, layers_cost):
    need_table()
    assert Objective.parse("layers") == Objective("layers", "minimize")  # its direction, from the cost model
    space = registry.make_space("nb201")
    evaluator = Recorder()
    run = RunDir.create(tmp_path / "run", {"space": "nb201", "strategy": "random", "settings": {}})
    objectives = parse_objectives("accuracy")
    strategy = registry.get("strategies", "random")(space, objectives, seed=0)
    context = StrategyContext(space, objectives, 0, 12, SHAPE, CLASSES, progress=False)
    result = run_search(run, strategy, evaluator, context, [Constraint("layers", 205)])
    infeasible = [r for r in result.records if not r.feasible]
    feasible = [r for r in result.records if r.feasible]
    assert len(feasible) == 12 and infeasible  # the constraint bites
    assert all(r.info["infeasible"]["layers"] > 205 for r in infeasible)
    assert all(r.metrics["layers"] <= 205 for r in feasible)
    assert evaluator.calls == [r.arch for r in feasible]  # never called for an infeasible proposal
    assert all(LayersCost().cost(space.graph(a, SHAPE, CLASSES)) <= 205 for a in evaluator.calls)


@pytest.mark.parametrize("args, message", [
    (["--constraint", "foo<=3"], "constraint on unknown metric 'foo'; known: 'accuracy', 'latency', 'macs', 'params'"),
    (["--objectives", "accuracy,energy:minimize"],
     "objective on unknown metric 'energy'; known: 'accuracy', 'latency'"),
    (["--constraint", "macs<3"], "constraint 'macs<3' is not METRIC<=LIMIT"),
    (["--evaluator", "oracle"], "unknown evaluator 'oracle'; accepted: 'predictor', "),
    (["--evaluator", "predictor"], "evaluator 'predictor' needs --predictor-data"),
    (["--evaluator-option", "samples=5"], "evaluator 'tabular' has no option 'samples'; accepted: none"),
])
def test_bad_plugin_input_gives_one_line_errors(tmp_path, args, message):
    out = run_nas("search", "--space", "nb201", "--strategy", "random", "--benchmark", str(need_table()),
                  "--dataset", "cifar10", "--run-dir", str(tmp_path / "r"), "--no-progress", *args)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args, message", [
    (["--space", "mbconv", "--benchmark", "/no/table.csv"], "benchmark table /no/table.csv does not exist"),
    (["--space", "nb201", "--evaluator", "tabular"], "evaluator 'tabular' needs --benchmark PATH"),
])
def test_table_needs_a_table(tmp_path, args, message):
    out = run_nas("search", "--strategy", "random", "--run-dir", str(tmp_path / "r"), "--no-progress", *args)
    assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_evaluator_defaults():
    assert evaluator_name({"benchmark": "t.csv"}) == "tabular"
    assert evaluator_name({"benchmark": None}) == "train"
    assert evaluator_name({"benchmark": "t.csv", "evaluator": "predictor"}) == "predictor"


def test_predictor_evaluator_from_a_table_predicts_held_out_cells():
    space = registry.make_space("nb201")
    settings = {"seed": 0, "dataset": "cifar10", "predictor_data": str(need_table()),
                "evaluator_options": {"predictor": "rf", "samples": 150, "predictor_options": {"n_estimators": 50}}}
    evaluator = PredictorEvaluator.from_settings(space, settings, None)
    assert evaluator.samples == 150 and (evaluator.input_shape, evaluator.num_classes) == ((3, 32, 32), 10)
    assert evaluator.describe() == {"evaluator": "predictor", "predictor": "rf", "predictor_data": str(TABLE),
                                    "samples": 150, "seed": 0}
    table = TabularEvaluator(space, TABLE, "cifar10")
    held_out = [space.resolve(k) for k, _ in table.items()[::50]]
    predicted = [evaluator.evaluate(a).metrics["accuracy"] for a in held_out]
    truth = [table.lookup(a) for a in held_out]
    assert kendall_tau(predicted, truth) > 0.3 and predicted != truth  # a prediction, not a lookup
    again = PredictorEvaluator.from_settings(space, settings, None)
    assert [again.evaluate(a).metrics["accuracy"] for a in held_out[:5]] == predicted[:5]  # seeded sample and fit


def test_predictor_evaluator_from_a_run_and_through_the_cli(tmp_path):
    need_table()
    measured = tmp_path / "measured"
    out = run_nas("search", "--space", "nb201", "--strategy", "random", "--budget", "30", "--benchmark", str(TABLE),
                  "--dataset", "cifar100", "--run-dir", str(measured), "--no-progress")
    assert out.returncode == 0, out.stderr
    predicted = tmp_path / "predicted"
    out = run_nas("search", "--space", "nb201", "--strategy", "evolution", "--budget", "8", "--evaluator",
                  "predictor", "--predictor-data", str(measured), "--evaluator-option", "predictor=rf",
                  "--evaluator-option", 'predictor_options={"n_estimators": 20}', "--run-dir", str(predicted),
                  "--no-progress")
    assert out.returncode == 0, out.stderr
    described = json.loads((predicted / "evaluator.json").read_text())
    assert described["samples"] == 30 and described["predictor_data"] == str(measured)
    assert described["input_shape"] == [3, 32, 32] and described["num_classes"] == 100  # the measured run's
    history = RunDir(predicted).history()
    assert len(history) == 8 and all(r.metrics["accuracy"] > 0 for r in history)
    again = run_nas("search", "--space", "nb201", "--strategy", "random", "--evaluator", "predictor",
                    "--predictor-data", str(predicted), "--run-dir", str(tmp_path / "x"), "--no-progress")
    assert again.returncode == 2 and "holds predicted accuracies, not measured ones" in again.stderr


def test_prepared_evaluator_instances_through_the_python_api(tmp_path):
    from nas.api import search

    space = registry.make_space("nb201")
    table = TabularEvaluator(space, need_table(), "cifar100")
    report = search(space, strategy="random", budget=5, evaluator=table, run_dir=tmp_path / "t", progress=False)
    assert table.queries == 5 and report.best.metrics["accuracy"] == max(r.metrics["accuracy"] for r in
                                                                          RunDir(tmp_path / "t").history())
    assert RunDir(tmp_path / "t").config()["settings"]["evaluator"] == "tabular"
    recorder = Recorder()  # not registered and not buildable from settings: only an instance will do
    search(space, strategy="evolution", budget=4, evaluator=recorder, run_dir=tmp_path / "r", progress=False,
           export=False)
    assert len(recorder.calls) == 4
    with pytest.raises(NASError, match="evaluator 'recorder' cannot be built from settings"):
        Recorder.from_settings(space, {}, None)


def test_predictors_declare_whether_they_train_their_own_ensemble():
    gnn = make_predictor("gnn", seed=1, ensemble=3, steps=5)
    assert isinstance(gnn, GNNPredictor) and gnn.ensemble == 3
    rf = make_predictor("rf", seed=1, ensemble=2, n_estimators=5)
    assert isinstance(rf, Ensemble) and rf.size == 2
    space = registry.make_space("nb201")
    archs = [space.sample(random.Random(i)) for i in range(6)]
    members = rf.fit(space, archs, list(range(6))).predict_members(space, archs)
    assert members.shape == (2, 6)


PLUGIN = '''
"""A third-party plug-in in one file: a cost model and an evaluator."""
from nas.costs import CostModel
from nas.evaluate import Evaluation, Evaluator


class Convolutions(CostModel):
    """Convolution layers in the graph."""

    metric = "convs"

    def cost(self, graph):
        return float(sum(type(n.op).__name__ == "Conv2d" for n in graph.layers()))


class CellParams(Evaluator):
    """A fake accuracy: fewer parameters score higher."""

    name = "cell_params"

    def __init__(self, space):
        self.space = space

    @classmethod
    def from_settings(cls, space, settings, data):
        return cls(space)

    def evaluate(self, arch):
        return Evaluation({"accuracy": 100 - self.space.graph(arch).params() / 1e5})
'''


def test_a_one_file_plugin_is_found_through_its_entry_points(tmp_path):
    (tmp_path / "toy_plugin.py").write_text(textwrap.dedent(PLUGIN))
    info = tmp_path / "toy_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[nas.cost_models]\nconvs = toy_plugin:Convolutions\n\n"
                                           "[nas.evaluators]\ncell_params = toy_plugin:CellParams\n")
    env = dict(os.environ, PYTHONPATH=f"{REPO}:{tmp_path}")
    run_dir = tmp_path / "run"
    out = subprocess.run([sys.executable, "-m", "nas.cli", "search", "--space", "nb201", "--strategy", "random",
                          "--budget", "6", "--evaluator", "cell_params", "--constraint", "convs<=37",
                          "--objectives", "accuracy,convs", "--run-dir", str(run_dir), "--no-progress"],
                         check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    history = RunDir(run_dir).history()
    assert all(r.metrics["convs"] <= 37 for r in history if r.feasible)
    assert any(r.info.get("infeasible", {}).get("convs", 0) > 37 for r in history)
    described = json.loads((run_dir / "evaluator.json").read_text())
    assert described["evaluator"] == "cell_params"
    assert [m["metric"] for m in described["cost_models"]] == ["params", "macs", "convs"]
