"""One search spread over several worker processes through a shared Optuna storage (SQLite, PostgreSQL): every
architecture is claimed before it is evaluated, so none is evaluated twice whatever the workers' seeds and
strategies, none is lost, and the budget counts the evaluations of all workers (`nas.shared`)."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time

import pytest
from conftest import REPO

TABLE = REPO.parent / "shared/benchmarks/nasbench201/nats_tss_test_accuracy_200ep.csv"
BUDGET = 40
SAME_SEED = (("random", 0), ("random", 0), ("evolution", 0), ("evolution", 0))  # all four propose alike at first
MIXED = (("optuna", 1), ("local_search", 2), ("genetic", 3), ("random", 4))
# A table lookup takes microseconds: the first worker up would evaluate the whole budget before the others have
# imported torch. The workers' evaluations take 0.2 s here (as training takes its time), so they run side by side.
SLOW_TABLE = """
import time

from nas.tabular import TabularEvaluator

_evaluate = TabularEvaluator.evaluate
TabularEvaluator.evaluate = lambda self, arch: (time.sleep(0.2), _evaluate(self, arch))[1]
"""


def _workers(storage: str, tmp_path, workers) -> list:
    """Run one `nas search` per (strategy, seed) at once on `storage`; their run folders."""
    if not TABLE.exists():
        pytest.skip(f"benchmark table {TABLE} is absent")
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(SLOW_TABLE)
    env = dict(os.environ, PYTHONPATH=f"{tmp_path / 'hook'}{os.pathsep}{REPO}", OMP_NUM_THREADS="1")
    folders = [tmp_path / f"worker{i}" for i in range(len(workers))]
    procs = [subprocess.Popen([sys.executable, "-m", "nas.cli", "search", "--space", "nb201", "--strategy", strategy,
                               "--benchmark", str(TABLE), "--dataset", "cifar10", "--budget", str(BUDGET),
                               "--storage", storage, "--seed", str(seed), "--run-dir", str(folder), "--no-progress"],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for (strategy, seed), folder in zip(workers, folders)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    return folders


def _check(storage: str, folders) -> None:
    """The study holds exactly the budget's results, one per canonical key, each the evaluation of the worker
    that claimed it; the workers' histories hold those and no other evaluation; each run folder's best.json is
    the best of its own history."""
    import optuna

    from nas import registry
    from nas.objectives import parse_objectives
    from nas.runs import RunDir
    from nas.search import best_of
    from nas.shared import study_name

    space = registry.make_space("nb201")
    names = {study_name(RunDir(f).settings()) for f in folders}
    assert len(names) == 1  # seeds and strategies differ, the study is one
    trials = optuna.load_study(study_name=names.pop(), storage=storage).get_trials()
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == BUDGET
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    in_study = {t.user_attrs["key"]: t.user_attrs["run_id"] for t in complete}
    assert len(in_study) == BUDGET  # no key completed twice
    evaluated: dict[str, str] = {}
    for folder in folders:
        history = RunDir(folder).history()
        assert [r.index for r in history] == list(range(len(history)))
        own = [r for r in history if r.feasible and not r.info.get("cached")]
        assert own, f"{folder} evaluated nothing"
        for record in own:
            key = space.canonical(record.arch)
            assert key not in evaluated, f"{key} evaluated by {evaluated[key]} and by {folder}"
            evaluated[key] = str(folder.resolve())
        best = json.loads((folder / "best.json").read_text())
        best_record, _ = best_of(history, parse_objectives("accuracy"))
        assert best_record is not None and best["arch"] == dict(best_record.arch)
    assert evaluated == in_study  # none lost, none unclaimed


@pytest.mark.parametrize("workers", [SAME_SEED, pytest.param(MIXED, marks=pytest.mark.slow)],
                         ids=["same-seed", "mixed-strategies"])
def test_four_workers_on_one_sqlite_storage_evaluate_nothing_twice(tmp_path, workers):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    _check(storage, _workers(storage, tmp_path, workers))


@pytest.mark.slow  # four processes on a database server: about 30 s on the idle 2-core machine
def test_four_workers_on_postgresql_evaluate_nothing_twice(tmp_path):
    url = os.environ.get("NAS_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("NAS_TEST_POSTGRES_URL is not set (.ci/run starts PostgreSQL and sets it)")
    import optuna

    def claims_studies() -> set[str]:
        return {n for n in optuna.get_all_study_names(url) if n.startswith("nas-claims-nb201-")}

    for name in claims_studies():  # left by an interrupted run of this test
        optuna.delete_study(study_name=name, storage=url)
    try:
        _check(url, _workers(url, tmp_path, SAME_SEED))
    finally:
        for name in claims_studies():
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name=name, storage=url)


def test_a_dead_workers_claim_is_evaluated_by_another(tmp_path, monkeypatch):
    """A claim whose heartbeats stop (its worker was killed) is failed once its grace period is over, and the
    worker that asked the same architecture evaluates it then: the budget is met, nothing lost or repeated."""
    import optuna
    import sqlalchemy

    from nas import api, registry, session, shared
    from nas.objectives import parse_objectives
    from nas.runs import RunDir
    from strategies.random_search import RandomSearch

    if not TABLE.exists():
        pytest.skip(f"benchmark table {TABLE} is absent")
    monkeypatch.setattr(shared, "GRACE_S", 1)
    monkeypatch.setattr(session, "study_name", lambda settings: "study")
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    space, objectives = registry.make_space("nb201"), parse_objectives("accuracy")
    first = RandomSearch(space, objectives, seed=0).ask()  # what the worker asks first
    dead = shared.SharedClaims(storage, "study", space, objectives, 3, "/a/killed/worker")
    dead_trial = dead._create(first, space.canonical(first))
    dead._stop.set()  # its heartbeats stop; the last one is dated 4 s ahead so that it dies mid-search
    with sqlalchemy.create_engine(storage).begin() as db:
        db.execute(sqlalchemy.text("UPDATE trial_heartbeats SET heartbeat = datetime('now', '+4 seconds')"))
    start = time.perf_counter()
    api.search("nb201", strategy="random", budget=3, run_dir=tmp_path / "w", progress=False, seed=0, storage=storage,
               benchmark=str(TABLE), dataset="cifar10", export=False)
    history = RunDir(tmp_path / "w").history()
    assert [r.arch for r in history][-1] == first and len(history) == 3  # asked first, evaluated once freed
    assert time.perf_counter() - start > 3  # it waited for the claim to go stale
    trials = optuna.load_study(study_name="study", storage=storage).get_trials()
    assert next(t for t in trials if t._trial_id == dead_trial).state == optuna.trial.TrialState.FAIL
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.user_attrs["key"] for t in complete) == sorted(space.canonical(r.arch) for r in history)
    assert {t.user_attrs["run_id"] for t in complete} == {str((tmp_path / "w").resolve())}


def test_a_resumed_worker_takes_back_its_own_claim_at_once(tmp_path, monkeypatch):
    """A worker killed while it evaluated leaves a running claim; `--resume` of its run releases it without waiting
    for the grace period, evaluates that architecture, and completes the shared budget."""
    import optuna

    from nas import api, registry, session, shared
    from nas.objectives import parse_objectives
    from nas.runs import RunDir
    from strategies.random_search import RandomSearch

    if not TABLE.exists():
        pytest.skip(f"benchmark table {TABLE} is absent")
    monkeypatch.setattr(session, "study_name", lambda settings: "study")
    storage, run_dir = f"sqlite:///{tmp_path / 'shared.db'}", tmp_path / "w"
    settings = {"seed": 0, "storage": storage, "benchmark": str(TABLE), "dataset": "cifar10", "export": False}
    api.search("nb201", strategy="random", budget=2, run_dir=run_dir, progress=False, **settings)
    space, objectives = registry.make_space("nb201"), parse_objectives("accuracy")
    random_search = RandomSearch(space, objectives, seed=0)
    third = [random_search.ask() for _ in range(3)][-1]
    killed = shared.SharedClaims(storage, "study", space, objectives, 3, str(run_dir.resolve()))
    killed_trial = killed._create(third, space.canonical(third))  # claimed, then the worker was killed
    killed._stop.set()
    config = json.loads((run_dir / "config.json").read_text())
    config["settings"]["budget"] = 3
    (run_dir / "config.json").write_text(json.dumps(config))
    start = time.perf_counter()
    api.search("nb201", strategy="random", run_dir=run_dir, progress=False)
    assert time.perf_counter() - start < shared.GRACE_S
    assert [r.arch for r in RunDir(run_dir).history()][-1] == third
    trials = optuna.load_study(study_name="study", storage=storage).get_trials()
    released = next(t for t in trials if t._trial_id == killed_trial)
    assert released.state == optuna.trial.TrialState.FAIL and released.user_attrs.get("released")
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) == 3
