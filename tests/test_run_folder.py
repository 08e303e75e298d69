"""One writer per run folder (run.lock), writes a kill at any moment leaves consistent (history and best weights),
resuming with other settings, and a budget larger than the space (issue 18)."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import REPO

import nas.runs
from nas import registry
from nas.api import search
from nas.cli import main
from nas.evaluate import Evaluation, Evaluator
from nas.objectives import parse_objectives
from nas.runs import RunDir
from nas.search import best_of
from nas.space import Architecture, NASError
from nas.strategy import Record

TABLE = REPO.parent / "shared" / "benchmarks" / "nasbench201" / "nats_tss_test_accuracy_200ep.csv"
ENV = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


def tabular_run(path: Path, budget: int = 3) -> list[str]:
    """The flags of a fast tabular NB201 search into `path`."""
    if not TABLE.exists():
        pytest.skip(f"benchmark table {TABLE} is absent")
    return ["search", "--space", "nb201", "--strategy", "random", "--budget", str(budget), "--benchmark", str(TABLE),
            "--dataset", "cifar10", "--no-progress", "--run-dir", str(path)]


def hold_lock(path: Path) -> subprocess.Popen:
    """Another process holding `path`'s lock (as a running search does) until it is killed."""
    code = ("import sys, time; from nas.runs import RunDir; run = RunDir(sys.argv[1])\n"
            "with run.locked():\n    print('locked', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], env=ENV, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


# -- one writer --------------------------------------------------------------------------------------------------
def test_a_second_writer_is_refused_naming_the_owner_and_a_killed_owners_lock_is_taken_over(tmp_path, capsys):
    path = tmp_path / "run"
    assert main(tabular_run(path)) == 0
    assert not (path / "run.lock").exists(), "the lock outlived the search"
    owner = hold_lock(path)
    try:
        capsys.readouterr()
        # a second --resume, a new search into the same folder, the API: each refuses in one line naming the pid
        assert main(["search", "--resume", str(path), "--no-progress"]) == 2
        assert main(tabular_run(path)) == 2
        errors = capsys.readouterr().err.strip().splitlines()
        assert len(errors) == 2 and all(f"in use by pid {owner.pid}" in e for e in errors), errors
        with pytest.raises(NASError, match=f"in use by pid {owner.pid}"):
            search("nb201", run_dir=path, benchmark=str(TABLE), dataset="cifar10", progress=False)
        assert json.loads((path / "run.lock").read_text())["pid"] == owner.pid
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    assert (path / "run.lock").exists(), "a killed owner leaves its lock file"
    assert main(["search", "--resume", str(path), "--budget", "4", "--no-progress"]) == 0
    assert f"took over the lock of pid {owner.pid}" in capsys.readouterr().err
    assert not (path / "run.lock").exists()
    assert len(RunDir(path).history()) == 4


class Interrupted(Evaluator):
    """Stands for a user's Ctrl-C in the middle of an evaluation."""

    def evaluate(self, arch: Architecture) -> Evaluation:
        raise KeyboardInterrupt


def test_the_lock_is_released_on_errors_and_ctrl_c(tmp_path):
    path = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        search("nb201", "random", run_dir=path, budget=2, evaluator=Interrupted(), progress=False)
    assert (path / "config.json").exists() and not (path / "run.lock").exists()
    with pytest.raises(NASError, match="seed"):  # an error raised under the lock (settings refused)
        search("nb201", "random", run_dir=path, budget=2, evaluator=Interrupted(), seed=3, progress=False)
    assert not (path / "run.lock").exists()
    run = RunDir(path)
    with run.locked(), run.locked():  # nested blocks of one RunDir share the lock
        assert json.loads(run.lock_file.read_text())["pid"] == os.getpid()
    assert not run.lock_file.exists()


# -- kill-safe best weights ----------------------------------------------------------------------------------------
class Killed(BaseException):
    """A kill at one point of `RunDir.append`."""


def _weights(value: float) -> dict[str, torch.Tensor]:
    return {"w": torch.full((3,), value)}


@pytest.mark.parametrize("point", ["before the record", "after the record", "before the rename"])
def test_a_kill_anywhere_in_saving_a_new_best_is_repaired_on_resume(tmp_path, monkeypatch, point):
    """The new best's weights go to a pending file before its record is appended: a kill before the append leaves
    the old best (the orphan pending file is deleted on resume), a kill after it leaves a pending file the resume
    installs; best_weights.pt and best_weights.json then belong to the best record."""
    run = RunDir.create(tmp_path / "run", {"space": "nb201", "strategy": "random", "settings": {}})
    arch = Architecture(edge="a")
    first, second = Record(0, arch, {"accuracy": 1.0}), Record(1, arch.replace(edge="b"), {"accuracy": 2.0})
    run.append(first, _weights(1.0))
    real_write, real_replace, real_atomic = os.write, os.replace, nas.runs.write_atomic

    def write(fd: int, data: bytes) -> int:
        if point == "before the record":
            raise Killed
        return real_write(fd, data)

    def write_atomic(path: Path, data: bytes) -> None:
        if point == "after the record":
            raise Killed
        real_atomic(path, data)

    def replace(src: str | Path, dst: str | Path) -> None:
        if Path(dst) == run.weights_file and point == "before the rename":
            raise Killed
        real_replace(src, dst)

    monkeypatch.setattr(nas.runs.os, "write", write)
    monkeypatch.setattr(nas.runs, "write_atomic", write_atomic)
    monkeypatch.setattr(nas.runs.os, "replace", replace)
    with pytest.raises(Killed):
        run.append(second, _weights(2.0))
    monkeypatch.undo()
    assert list(run.path.glob(".best_weights.*.tmp")), "the kill left no pending weights"
    resumed = RunDir(run.path)
    notes = resumed.repair()
    records = resumed.history()
    best, _ = best_of(records, parse_objectives("accuracy"))
    assert len(records) == (1 if point == "before the record" else 2) and len(notes) == 1
    assert ("deleted" in notes[0]) == (point == "before the record")
    assert best is not None and resumed.weights_index() == best.index
    assert torch.equal(torch.load(resumed.weights_file, weights_only=True)["w"], _weights(best.index + 1.0)["w"])
    assert not list(run.path.glob(".best_weights.*.tmp"))
    assert resumed.repair() == [], "a second repair found something left"



def test_export_refuses_best_weights_of_another_record_than_best_json(tmp_path):
    """A finished run resumed with a larger budget and killed after a new best: best.json still names the old best,
    best_weights.pt holds the new one's weights; the export says so instead of mixing them."""
    from nas.session import export_run

    run = RunDir.create(tmp_path / "run", {"space": "nb201", "strategy": "random", "settings": {}})
    run.append(Record(0, Architecture(edge="a"), {"accuracy": 1.0}))
    run.append(Record(1, Architecture(edge="b"), {"accuracy": 2.0}), _weights(2.0))
    run.write_json("best.json", {"arch": {"edge": "a"}, "metrics": {"accuracy": 1.0}, "index": 0,
                                 "input_shape": [3, 32, 32], "num_classes": 10})
    with pytest.raises(NASError, match="holds record 1's weights but best.json names record 0"):
        export_run(run.path)


# -- resuming with other settings ----------------------------------------------------------------------------------
def test_resume_says_which_given_settings_it_takes_and_refuses_those_that_change_the_records(tmp_path, capsys):
    path = tmp_path / "run"
    assert main(tabular_run(path)) == 0
    before = (path / "history.jsonl").read_bytes()
    capsys.readouterr()
    assert main(["search", "--resume", str(path), "--budget", "3", "--epochs", "2", "--no-progress"]) == 2
    assert main(["search", "--resume", str(path), "--budget", "2", "--seed", "4", "--no-progress"]) == 2
    assert main(["search", "--resume", str(path), "--run-dir", str(path), "--no-progress"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and "epochs 2 (stored 5)" in errors[0] and "budget" not in errors[0].split(":")[0]
    assert "budget 2 (stored 3)" in errors[1] and "seed 4 (stored 0)" in errors[1] and "--run-dir" in errors[2]
    assert (path / "history.jsonl").read_bytes() == before, "a refused resume wrote to the run"
    # the same values given again are kept; a larger budget is taken, saved, and the search goes further
    assert main(["search", "--resume", str(path), "--seed", "0", "--space", "nb201", "--budget", "5",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"resuming {path}: takes budget 5 (stored 3); keeps every other stored setting" in out
    assert RunDir(path).settings()["budget"] == 5 and len(RunDir(path).history()) == 5
    # the API on an existing folder: the same rules, the same line
    with pytest.raises(NASError, match=r"seed 1 \(stored 0\), train_subset 10 \(stored None\)"):
        search("nb201", run_dir=path, seed=1, train_subset=10, progress=False)
    report = search("nb201", run_dir=path, budget=6, benchmark=str(TABLE), progress=False)
    assert "takes budget 6 (stored 5)" in capsys.readouterr().out and len(report.run.history()) == 6


# -- a budget larger than the space ---------------------------------------------------------------------------------
class Score(Evaluator):
    """A fast deterministic stand-in for training."""

    def evaluate(self, arch: Architecture) -> Evaluation:
        return Evaluation({"accuracy": float(sum(map(ord, json.dumps(dict(arch), sort_keys=True))) % 97)})


@pytest.mark.parametrize("strategy", ["random", "evolution", "local_search"])
def test_a_budget_larger_than_the_space_stops_when_it_is_exhausted_and_writes_best_json(tmp_path, capsys, strategy):
    base = registry.make_space("nb201")
    allowed = {c.name: c.values[:1] for c in base.choices()}
    allowed["edge_1_0"] = base.choice_map()["edge_1_0"].values[:3]
    space = base.restrict(allowed)
    assert space.size() == 3
    report = search(space, strategy, run_dir=tmp_path / "run", budget=10, evaluator=Score(), progress=False)
    assert "has only 3 architectures, fewer than the budget 10" in capsys.readouterr().out
    history = report.run.history()
    assert len(history) == 3 and len({r.arch for r in history}) == 3
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert report.best is not None and best["index"] == report.best.index


@pytest.mark.slow  # a thousand repeated proposals are recorded before it stops (about 8 s)
def test_a_space_that_cannot_count_itself_stops_after_many_repeats_and_writes_best_json(tmp_path, capsys):
    base = registry.make_space("mbconv")
    allowed = {c.name: c.values[:1] for c in base.choices()}
    allowed["resolution"] = base.choice_map()["resolution"].values[:2]
    space = base.restrict(allowed)
    assert space.size() is None
    report = search(space, "random", run_dir=tmp_path / "run", budget=5, evaluator=Score(), progress=False)
    assert "stopping after 2 of 5 evaluations" in capsys.readouterr().out
    assert report.best is not None and (tmp_path / "run" / "best.json").exists()


# -- twenty kills at random moments ----------------------------------------------------------------------------------
KILLS, BUDGET = 20, 10
SEARCH = ["search", "--space", "mbconv", "--strategy", "evolution", "--budget", str(BUDGET), "--dataset", "synthetic",
          "--train-subset", "48", "--epochs", "1", "--batch-size", "16", "--threads", "1", "--no-progress",
          "--no-export"]


def _lines(history: Path) -> int:
    return history.read_bytes().count(b"\n") if history.exists() else 0


def _owner(run_dir: Path) -> dict:
    """The pid and host in the run folder's lock file ({} when there is none or it is being written)."""
    try:
        return json.loads((run_dir / "run.lock").read_text() or "{}")
    except (FileNotFoundError, ValueError):
        return {}


def _results(records: list[Record]) -> list[tuple]:
    """What a record means, without its timings."""
    return [(r.index, r.arch, None if r.metrics is None else {k: v for k, v in r.metrics.items() if "seconds" not in k},
             r.info) for r in records]


def _check_after_kill(run_dir: Path, scratch: Path, data: Any) -> tuple[list[Record], list[str]]:
    """What a resume starts from (a copy of the killed run, repaired as a resume does): indices 0..n-1 without
    duplicates, and best_weights.pt (with best_weights.json) belonging to the best record: its index, and the
    record's accuracy when the weights are loaded into its architecture and evaluated again."""
    from nas.train import evaluate_accuracy, resize_inputs

    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(run_dir, scratch)
    run = RunDir(scratch)
    notes = run.repair()
    records = run.history()
    assert [r.index for r in records] == list(range(len(records))), "duplicate or missing indices"
    best, _ = best_of(records, parse_objectives("accuracy"))
    if best is None:
        return records, notes
    assert run.weights_index() == best.index, "best_weights.pt belongs to another record"
    space = registry.make_space("mbconv")
    shape = space.input_shape_for(best.arch, data.sample_shape)
    model = space.build(best.arch, shape, data.num_classes)
    model.load_state_dict(torch.load(run.weights_file, weights_only=True))
    accuracy = evaluate_accuracy(model, resize_inputs(data.x_val, shape), data.y_val)
    assert accuracy == best.feasible_metrics["accuracy"], "best_weights.pt does not give the best record's accuracy"
    return records, notes


@pytest.mark.slow  # twenty process starts (torch imports, data) and a reference run: about 4 min on 2 shared cores
def test_twenty_kills_at_random_moments_lose_nothing_and_end_as_an_uninterrupted_run(tmp_path):
    """A real `nas search` is SIGKILLed 20 times (at any moment, once it holds the folder, or just after a record
    is written), resumed after each; after every kill the run (repaired as a resume does) has indices 0..n-1, keeps
    every record seen before, and its best weights give the best record's accuracy; a resume takes a killed owner's
    lock over; the end equals an uninterrupted run's, best weights included."""
    from nas.session import load_data

    cli = [sys.executable, "-m", "nas.cli"]
    whole = subprocess.Popen([*cli, *SEARCH, "--run-dir", str(tmp_path / "whole")], cwd=REPO, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run_dir, rng = tmp_path / "killed", random.Random(18)
    seen: list[Record] = []
    data, killed_owner, takeovers, repairs = None, None, 0, []
    for kill in range(KILLS):
        resume = (run_dir / "config.json").exists()
        command = [*cli, "search", "--resume", str(run_dir), "--no-progress"] if resume else \
            [*cli, *SEARCH, "--run-dir", str(run_dir)]
        proc = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        lines, started = _lines(run_dir / "history.jsonl"), time.time()
        if kill % 3 == 0:  # any moment: starting, loading, training, writing, finishing
            time.sleep(rng.uniform(0, 6))
        elif kill % 3 == 1:  # any moment once it holds the folder
            while proc.poll() is None and _owner(run_dir).get("pid") != proc.pid and time.time() < started + 90:
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 4))
        else:  # while a new best's weights are pending or just after a record is written
            while (proc.poll() is None and _lines(run_dir / "history.jsonl") == lines and time.time() < started + 90
                   and not list(run_dir.glob(".best_weights.*.tmp"))):
                time.sleep(0.001)
            time.sleep(rng.choice([0, rng.uniform(0, 0.2)]))
        owner = _owner(run_dir)
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        assert "Traceback" not in err and "error" not in err, err
        held = owner.get("pid") == proc.pid and proc.returncode == -signal.SIGKILL
        if held and killed_owner is not None:  # it locked the folder a killed process held
            assert f"took over the lock of pid {killed_owner}" in err
            takeovers += 1
        if held or proc.returncode == 0:  # killed holding the lock, or ended by itself (released it)
            killed_owner = proc.pid if held else None
        if data is None and (run_dir / "config.json").exists():
            data = load_data(RunDir(run_dir).settings())
        records, notes = _check_after_kill(run_dir, tmp_path / "check", data) if data is not None else ([], [])
        repairs += notes
        assert _results(records[:len(seen)]) == _results(seen), f"kill {kill + 1}: a recorded evaluation was lost"
        seen = records
    # how many kills land while the run is unfinished depends on the machine's speed (3 takeovers on CI, 1-11 on
    # this VM); kills 1 and 2 (held folder, then just after a record) make at least one before the run can end
    assert takeovers >= 1 and len(seen) >= BUDGET // 2, (takeovers, len(seen))
    command = [*cli, "search", "--resume", str(run_dir), "--no-progress"]
    done = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert whole.wait(timeout=600) == 0, whole.stderr.read() if whole.stderr else ""
    final, reference = RunDir(run_dir).history(), RunDir(tmp_path / "whole").history()
    assert _results(final) == _results(reference), "the killed and resumed run differs from an uninterrupted one"
    assert _results(seen) == _results(final[:len(seen)])
    assert json.loads((run_dir / "best.json").read_text())["index"] == json.loads(
        (tmp_path / "whole" / "best.json").read_text())["index"]
    ours, theirs = (torch.load(p / "best_weights.pt", weights_only=True) for p in (run_dir, tmp_path / "whole"))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert not list(run_dir.glob(".*.tmp")) and not (run_dir / "run.lock").exists()
    print(f"{KILLS} kills, {takeovers} lock takeovers, {len(seen)} records at the last kill, repairs: {repairs}")


def test_summary_counts_each_kind_of_record() -> None:
    from nas.search import evaluated
    from nas.session import record_counts
    from nas.space import Architecture
    from nas.strategy import Record

    objectives = parse_objectives(["accuracy"])
    arch = Architecture(a=1)
    records = [Record(0, arch, {"accuracy": 90.0}), Record(1, arch, {"accuracy": 90.0}, info={"cached": True}),
               Record(2, arch, None), Record(3, arch, {"rating": 50.0}), Record(4, arch, {"rating": 51.0})]
    assert record_counts(records, evaluated(records, objectives)) == \
        "evaluated 1 architecture, rated 2 on the supernet, 1 infeasible, 1 repeated"
    ratings = records[3:]
    assert record_counts(ratings, evaluated(ratings, objectives)) == "rated 2 architectures on the supernet"
    assert record_counts([], []) == "evaluated 0 architectures"
