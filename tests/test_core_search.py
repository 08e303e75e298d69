"""The search loop: strategies, constraints, objectives, run directory and resume."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO

from nas import registry
from nas.costs import cost_metrics
from nas.evaluate import Evaluation, Evaluator
from nas.objectives import Constraint, parse_objectives
from nas.runs import RunDir
from nas.search import run_search
from nas.session import show_run
from nas.space import NASError
from nas.strategy import StrategyContext
from search_spaces.mbconv import MBConvSpace

SHAPE, CLASSES = (1, 8, 8), 10


class CostScore(Evaluator):
    """A fast deterministic stand-in for training: a smooth function of the architecture's cost."""

    name = "cost-score"

    def __init__(self, space):
        self.space, self.calls = space, []

    def evaluate(self, arch):
        self.calls.append(arch)
        cost = cost_metrics(self.space, arch, SHAPE, CLASSES)
        return Evaluation({"accuracy": 100 - abs(cost["macs"] / 1e5 - 40)})


def _search(tmp_path, name, strategy, budget, objectives="accuracy", constraints=(), **options):
    space = MBConvSpace("small")
    run = RunDir(tmp_path / name) if (tmp_path / name).exists() else RunDir.create(
        tmp_path / name, {"space": "mbconv", "strategy": strategy, "settings": {}})
    objs = parse_objectives(objectives)
    strat = registry.get("strategies", strategy)(space, objs, seed=3, **options)
    evaluator = CostScore(space)
    context = StrategyContext(space, objs, 3, budget, SHAPE, CLASSES, run_dir=run.path, progress=False)
    result = run_search(run, strat, evaluator, context, constraints)
    return result, evaluator


@pytest.mark.parametrize("strategy", ["random", "evolution", "optuna"])
def test_resume_continues_exactly_without_reevaluating(tmp_path, strategy):
    whole, _ = _search(tmp_path, "whole", strategy, 14)
    _search(tmp_path, "split", strategy, 6)
    resumed, evaluator = _search(tmp_path, "split", strategy, 14)
    evaluated = [r.arch for r in resumed.records if r.feasible and not r.info.get("cached")]
    assert len(evaluated) == 14 and len(evaluator.calls) == 8  # only the 8 missing ones were evaluated
    assert len(set(evaluated)) == 14
    if strategy != "optuna":  # Optuna's sampler state is not replayed, only its finished trials
        assert [r.arch for r in resumed.records] == [r.arch for r in whole.records]


def test_evolution_beats_random_on_a_smooth_objective(tmp_path):
    best = {}
    for strategy in ("random", "evolution"):
        scores = []
        for seed in range(3):
            result, _ = _search(tmp_path, f"{strategy}{seed}", strategy, 40, population_size=10, sample_size=3) \
                if strategy == "evolution" else _search(tmp_path, f"{strategy}{seed}", strategy, 40)
            scores.append(result.best.metrics["accuracy"])
        best[strategy] = sum(scores) / len(scores)
    assert best["evolution"] >= best["random"]


def test_constraints_are_never_violated_and_not_counted(tmp_path):
    limit = 150_000
    result, evaluator = _search(tmp_path, "c", "evolution", 8, constraints=[Constraint("params", limit)])
    feasible = [r for r in result.records if r.feasible]
    assert len(feasible) == 8 and all(r.metrics["params"] <= limit for r in feasible)
    assert all(cost_metrics(evaluator.space, a, SHAPE, CLASSES)["params"] <= limit for a in evaluator.calls)


def test_impossible_constraints_fail_clearly(tmp_path):
    with pytest.raises(NASError, match="infeasible or repeated"):
        _search(tmp_path, "x", "random", 3, constraints=[Constraint("params", 10)])


def test_two_objectives_give_a_pareto_front(tmp_path):
    result, _ = _search(tmp_path, "mo", "optuna", 12, objectives="accuracy,params")
    front = result.front
    assert front and all(r.feasible for r in front)
    for a in front:  # nothing evaluated dominates a front member
        for b in result.records:
            if b.feasible:
                assert not (b.metrics["accuracy"] > a.metrics["accuracy"] and b.metrics["params"] < a.metrics["params"])


def test_corrupt_run_directories(tmp_path):
    with pytest.raises(NASError, match="has no config.json"):
        RunDir.open(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(NASError, match="config.json is not valid JSON"):
        RunDir.open(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"space": "mbconv", "strategy": "random"}))
    (tmp_path / "history.jsonl").write_text('garbage\n{"index": 0}\n')
    with pytest.raises(NASError, match="history.jsonl line 1 is not a valid record"):
        RunDir.open(tmp_path).history()


def test_torn_last_history_line_is_left_out_by_readers_and_cut_by_a_resume(tmp_path):
    _search(tmp_path, "t", "random", 3)
    history = tmp_path / "t" / "history.jsonl"
    torn = history.read_text() + '{"index": 3, "arch": {"TORN'
    history.write_text(torn)
    assert len(RunDir(tmp_path / "t").history()) == 3
    assert show_run(tmp_path / "t") and history.read_text() == torn  # reading never modifies
    _search(tmp_path, "t", "random", 4)
    assert len(RunDir(tmp_path / "t").history()) == 4 and "TORN" not in history.read_text()


@pytest.mark.parametrize("line", ['[1, 2]', '{"index": "0", "arch": {}, "metrics": {}}', '\x00\xff binary',
                                  '{"index": 0, "arch": {"a": [1]}, "metrics": null}', '{"index": 0}'])
def test_a_complete_line_of_the_wrong_shape_is_a_one_line_error_and_stays(tmp_path, line):
    _search(tmp_path, "w", "random", 2)
    history = tmp_path / "w" / "history.jsonl"
    text = history.read_text() + line + "\n"
    history.write_text(text)
    with pytest.raises(NASError, match="history.jsonl line 3 is not a valid record"):
        RunDir(tmp_path / "w").history()
    with pytest.raises(NASError, match="line 3"):
        show_run(tmp_path / "w")
    assert history.read_text() == text


def test_kill_and_resume_from_the_command_line(tmp_path):
    """A real `nas search` is killed mid-way, then resumed: nothing finished is lost or re-evaluated."""
    run_dir = tmp_path / "killed"
    args = [sys.executable, "-m", "nas.cli", "search", "--space", "mbconv", "--strategy", "evolution", "--budget", "5",
            "--dataset", "synthetic", "--train-subset", "48", "--epochs", "1", "--batch-size", "16", "--no-progress",
            "--no-export", "--run-dir", str(run_dir)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    history = run_dir / "history.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if history.exists() and len(history.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = RunDir(run_dir).history()
    assert 2 <= len(before) < 5, "the search was not killed mid-way"
    done = subprocess.run([sys.executable, "-m", "nas.cli", "search", "--resume", str(run_dir), "--no-progress"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    after = RunDir(run_dir).history()
    assert [(r.arch, r.metrics) for r in after[:len(before)]] == [(r.arch, r.metrics) for r in before]
    evaluated = [r.arch for r in after if r.feasible and not r.info.get("cached")]
    assert len(evaluated) == 5 and len(set(evaluated)) == 5
    assert (run_dir / "best.json").exists() and (run_dir / "search.png").exists()
