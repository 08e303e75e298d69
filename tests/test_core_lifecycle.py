"""Strategy lifecycle: setup(context) before the first ask, saved states that make resume restore instead of
replay (and continue exactly as an uninterrupted run), and several asks before their tells."""
from __future__ import annotations

import json
from typing import ClassVar

import pytest
from conftest import SHARED

from nas import registry
from nas.evaluate import Evaluator
from nas.objectives import Objective
from nas.runs import RunDir
from nas.search import STATE_FILE, run_search
from nas.strategy import StrategyContext
from nas.tabular import TabularEvaluator
from predictors.sklearn_models import RandomForestPredictor
from strategies.random_search import RandomSearch

TABLE = SHARED / "benchmarks" / "nasbench201" / "nats_tss_test_accuracy_200ep.csv"
ACC = [Objective("accuracy", "maximize")]
SHAPE, CLASSES = (3, 32, 32), 10
OPTIONS = {"random": {}, "evolution": {"population_size": 6, "sample_size": 3},
           "bananas": {"predictor": "rf", "ensemble": 2, "predictor_options": {"n_estimators": 30}, "num_init": 5,
                       "batch_size": 5},
           "genetic": {"population": 6, "top_k": 3, "mutations": 3, "crossovers": 2}}


@pytest.fixture(scope="module")
def table():
    if not TABLE.is_file():
        pytest.skip(f"shared benchmark table not found at {TABLE}")
    return TabularEvaluator(registry.make_space("nb201"), TABLE, "cifar10")


class Killed(Exception):
    """Stands for a kill in the middle of an evaluation."""


class Dying(Evaluator):
    """The table, until `lives` evaluations are spent; then the process 'dies'."""

    def __init__(self, table: TabularEvaluator, lives: int) -> None:
        self.table, self.lives = table, lives

    def evaluate(self, arch):
        if self.lives == 0:
            raise Killed
        self.lives -= 1
        return self.table.evaluate(arch)


def search(path, name: str, evaluator: Evaluator, budget: int = 20):
    run = RunDir(path) if path.exists() else RunDir.create(path, {"space": "nb201", "strategy": name, "settings": {}})
    strategy = registry.get("strategies", name)(registry.make_space("nb201"), ACC, seed=1, **OPTIONS[name])
    context = StrategyContext(strategy.space, ACC, 1, budget, SHAPE, CLASSES, run_dir=run.path, progress=False)
    run_search(run, strategy, evaluator, context)
    return strategy, [(r.arch, r.metrics, r.info) for r in run.history()]


@pytest.fixture
def fits(monkeypatch) -> list:
    """Every random-forest fit (BANANAS' predictor in these tests)."""
    calls: list = []
    fit = RandomForestPredictor.fit

    def counting(self, *args):
        calls.append(1)
        return fit(self, *args)

    monkeypatch.setattr(RandomForestPredictor, "fit", counting)
    return calls


@pytest.mark.parametrize("name", ["random", "evolution", "bananas", "genetic"])
@pytest.mark.parametrize("saved", [True, False], ids=["restored", "replayed"])
def test_a_killed_and_resumed_search_equals_an_uninterrupted_one(tmp_path, table, fits, name, saved):
    whole_strategy, whole = search(tmp_path / "whole", name, table)
    with pytest.raises(Killed):
        search(tmp_path / "split", name, Dying(table, 12))
    state = json.loads((tmp_path / "split" / STATE_FILE).read_text())
    assert state["strategy"] == name and state["records"] == 12 == len(RunDir(tmp_path / "split").history())
    if not saved:  # a state that does not match the history is not used: the history is replayed
        state["records"] = 11
        (tmp_path / "split" / STATE_FILE).write_text(json.dumps(state))
    fits.clear()
    resumed_strategy, resumed = search(tmp_path / "split", name, table)
    assert resumed == whole
    if name == "bananas":  # rounds propose at asks 6, 11 and 16; the kill came after 12 records
        assert whole_strategy.rounds == resumed_strategy.rounds == 3
        assert len(fits) == (1 if saved else 3) * 2  # restored: only round 3 fits its ensemble of 2


class Probe(RandomSearch):
    """Random search that records its lifecycle calls."""

    name = "probe"
    seen_calls: ClassVar[list] = []

    def setup(self, context):
        self.seen_calls.append(("setup", context))

    def load_state(self, state):
        self.seen_calls.append("load_state")
        super().load_state(state)

    def restore(self, records):
        self.seen_calls.append(("restore", len(records)))
        super().restore(records)

    def ask(self):
        self.seen_calls.append("ask")
        return super().ask()


def test_setup_gets_the_context_before_resume_and_the_first_ask(tmp_path, table, monkeypatch):
    from nas.api import search as api_search

    registry.names("strategies")
    monkeypatch.setitem(registry._REGISTRIES["strategies"], "probe", Probe)
    monkeypatch.setattr(Probe, "seen_calls", [])
    storage = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    settings = {"benchmark": str(TABLE), "dataset": "cifar100", "storage": storage, "device": "cpu"}
    api_search("nb201", strategy="probe", budget=3, run_dir=tmp_path / "p", progress=False, **settings)
    (_, context), *rest = Probe.seen_calls
    assert rest == [("restore", 0), "ask", "ask", "ask"]
    assert (context.budget, context.input_shape, context.num_classes) == (3, (3, 32, 32), 100)
    assert context.data is None and context.device == "cpu" and context.storage == storage
    assert context.run_dir == tmp_path / "p" and context.checkpoint_dir == tmp_path / "p" / "checkpoints"
    Probe.seen_calls.clear()
    config = RunDir(tmp_path / "p").config()
    config["settings"]["budget"] = 5
    (tmp_path / "p" / "config.json").write_text(json.dumps(config))
    api_search("nb201", strategy="probe", run_dir=tmp_path / "p", progress=False)
    assert [c if isinstance(c, str) else c[0] for c in Probe.seen_calls] == ["setup", "load_state", "ask", "ask"]


def test_optuna_opens_its_study_in_the_run_directory(tmp_path, table):
    import optuna

    from nas.api import search as api_search

    api_search("nb201", strategy="optuna", budget=4, benchmark=str(TABLE), dataset="cifar10", run_dir=tmp_path / "o",
               progress=False)
    study = optuna.load_study(study_name="nas", storage=f"sqlite:///{tmp_path / 'o' / 'study.db'}")
    assert len(study.trials) == 4
    assert {t.user_attrs["run_id"] for t in study.trials} == {str((tmp_path / "o").resolve())}


# -- several asks before their tells ---------------------------------------------------------------------
def test_random_search_never_repeats_a_pending_ask(table):
    strategy = RandomSearch(table.space, ACC, seed=0)
    first = [strategy.ask() for _ in range(30)]
    assert len(set(first)) == 30 and strategy.proposals.pending == first
    for arch in reversed(first[:15]):
        strategy.tell(arch, table.evaluate(arch).metrics)
    more = [strategy.ask() for _ in range(10)]
    assert len(set(first + more)) == 40 and len(strategy.proposals.pending) == 25


def test_evolution_with_pending_asks(table):
    space = table.space
    strategy = registry.get("strategies", "evolution")(space, ACC, seed=0, population_size=10)
    founders = [strategy.ask() for _ in range(14)]  # the population is empty: all random
    assert len(set(founders)) == 14
    for arch in founders[:12]:
        strategy.tell(arch, table.evaluate(arch).metrics)
    members = [arch for arch, _ in strategy.population]
    assert members == founders[2:12]
    children = [strategy.ask() for _ in range(8)]
    assert len(set(children)) == 8 and not set(children) & set(founders)
    assert all(min(sum(c[k] != m[k] for k in c) for m in members) == 1 for c in children)  # mutants of members


def test_bananas_batches_exclude_pending_asks(table):
    space = table.space
    strategy = registry.get("strategies", "bananas")(space, ACC, seed=0, **OPTIONS["bananas"])
    start = [strategy.ask() for _ in range(7)]
    for arch in start:
        strategy.tell(arch, table.evaluate(arch).metrics)
    asked = [strategy.ask() for _ in range(8)]  # more than a batch: round 2 proposes while 5 are pending
    keys = [space.canonical(a) for a in asked]
    assert strategy.rounds == 2 and len(set(keys)) == 8 and not set(keys) & strategy.seen_keys
    for arch in reversed(asked):
        strategy.tell(arch, table.evaluate(arch).metrics)
    assert not strategy.pending and len(strategy.history) == 15


def test_optuna_trials_run_side_by_side(table):
    import optuna

    strategy = registry.get("strategies", "optuna")(table.space, ACC, seed=0, n_startup_trials=3)
    for _ in range(3):
        arch = strategy.ask()
        strategy.tell(arch, table.evaluate(arch).metrics)
    asked = [strategy.ask() for _ in range(6)]
    assert len(set(asked)) == 6
    for arch in reversed(asked):
        strategy.tell(arch, table.evaluate(arch).metrics)
    trials = strategy.study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 9
    assert all(t.values[0] == table.lookup(t.params) for t in trials)  # each value went to its own trial
