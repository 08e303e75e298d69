"""One search spread over several processes through a shared Optuna storage (SQLite, PostgreSQL)."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import pytest

from conftest import REPO

TABLE = REPO.parent / "shared/benchmarks/nasbench201/nats_tss_test_accuracy_200ep.csv"


def _workers(storage: str, tmp_path, study: str, budget: int = 25) -> None:
    if not TABLE.exists():
        pytest.skip(f"benchmark table {TABLE} is absent")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-m", "nas.cli", "search", "--space", "nb201", "--strategy", "optuna",
                               "--benchmark", str(TABLE), "--dataset", "cifar10", "--budget", str(budget),
                               "--storage", storage, "--option", f"study_name={study}", "--seed", str(seed),
                               "--run-dir", str(tmp_path / f"worker{seed}"), "--no-progress"],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed in (1, 2)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err


def _check_study(storage: str, study: str, tmp_path, budget: int = 25) -> None:
    import optuna

    from nas.runs import RunDir

    trials = optuna.load_study(study_name=study, storage=storage).get_trials(
        states=(optuna.trial.TrialState.COMPLETE,))
    told = 0
    for seed in (1, 2):
        history = RunDir(tmp_path / f"worker{seed}").history()
        assert sum(1 for r in history if r.feasible and not r.info.get("cached")) == budget
        told += sum(1 for r in history if r.feasible)  # repeats are told to the sampler too
    assert len(trials) == told  # both workers wrote every trial into the one study
    workers = {str((tmp_path / f"worker{seed}").resolve()) for seed in (1, 2)}
    assert {t.user_attrs["run_id"] for t in trials} == workers


def test_two_workers_share_a_sqlite_study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    _workers(storage, tmp_path, "shared")
    _check_study(storage, "shared", tmp_path)


def test_two_workers_share_a_postgresql_study(tmp_path):
    url = os.environ.get("NAS_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("NAS_TEST_POSTGRES_URL is not set (.ci/run starts PostgreSQL and sets it)")
    import optuna

    study = f"ci-{os.getpid()}"
    try:
        _workers(url, tmp_path, study)
        _check_study(url, study, tmp_path)
    finally:
        with contextlib.suppress(KeyError):  # the study was never created if the workers failed early
            optuna.delete_study(study_name=study, storage=url)
