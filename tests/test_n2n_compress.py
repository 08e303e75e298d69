"""`nas compress` (strategies/n2n.py): a run from a search's run directory exported and loaded in a bare
interpreter, resume after an interruption, the random baseline, policy transfer, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_export_raw_input import bare_accuracies

from nas.cli import main
from nas.space import NASError
from strategies import n2n
from strategies.n2n import Compression, Settings, compress, load_problem

TINY = ["--preset", "tiny", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished MBConv search on digits (one architecture, 3 epochs on 512 images)."""
    path = tmp_path_factory.mktemp("teacher") / "run"
    assert main(["search", "--space", "mbconv", "--strategy", "random", "--budget", "1", "--epochs", "3",
                 "--batch-size", "32", "--train-subset", "512", "--dataset", "digits", "--threads", "1",
                 "--no-progress", "--no-export", "--run-dir", str(path)]) == 0
    return path


@pytest.mark.slow  # a search, then a compression: about 80 s
def test_compressing_a_search_run_exports_a_smaller_student_that_runs_bare(teacher_run: Path, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "c"
    assert main(["compress", "--teacher", str(teacher_run), "--run-dir", str(run), *TINY]) == 0
    assert "smaller" in capsys.readouterr().out
    best = json.loads((run / "best.json").read_text())
    assert best["student_params"] < best["teacher_params"] and best["compression"] > 1
    preset = n2n.PRESETS["tiny"]  # the teacher run trained on 512 images; the students get the preset's count
    assert best["images"] == {"train": preset.train_images, "held_out": preset.held_out, "test": 359}
    rollouts = json.loads((run / "rollouts.json").read_text())
    assert len(rollouts) == 2 * preset.updates * preset.rollouts
    assert {r["stage"] for r in rollouts} == {"removal", "shrinkage"}
    assert (run / "rewards.png").stat().st_size > 0
    acc = bare_accuracies(run / "model", tmp_path)  # raw digits, the dataset's validation split
    assert abs(acc["source"] - best["test"]["student"]) <= 0.5 and abs(acc["model.onnx"] - acc["source"]) <= 0.5


def test_an_interrupted_compression_resumes_where_it_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The random strategy's actions do not depend on rewards: the resumed run's rollouts equal an uninterrupted
    run's, action for action."""
    settings = Settings("vgg", "random", "tiny", "digits", seed=3, threads=1)
    compress(settings, tmp_path / "whole", progress=False)
    calls = {"n": 0}
    score = Compression.score

    def dying(self, graph, actions, index):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return score(self, graph, actions, index)

    monkeypatch.setattr(Compression, "score", dying)
    with pytest.raises(KeyboardInterrupt):
        compress(settings, tmp_path / "cut", progress=False)
    monkeypatch.setattr(Compression, "score", score)
    assert len(json.loads((tmp_path / "cut" / "rollouts.json").read_text())) == 2  # the first update was saved
    assert main(["compress", "--resume", "--run-dir", str(tmp_path / "cut"), "--no-progress"]) == 0
    whole, cut = (json.loads((tmp_path / d / "rollouts.json").read_text()) for d in ("whole", "cut"))
    strip = [{k: r.get(k) for k in ("stage", "update", "keep", "scales", "key")} for r in whole]
    assert [{k: r.get(k) for k in ("stage", "update", "keep", "scales", "key")} for r in cut] == strip


def test_policy_transfer_starts_from_the_earlier_policies(tmp_path: Path) -> None:
    first = tmp_path / "first"
    compress(Settings("vgg", "n2n", "tiny", "digits", threads=1), first, progress=False)
    settings = Settings("vgg", "n2n", "tiny", "digits", controller=str(first), threads=1)
    from nas.runs import RunDir

    run = RunDir(tmp_path / "second")
    run.path.mkdir()
    job = Compression(settings, run, load_problem(settings, run), progress=False)
    job.transfer(str(first))
    saved = torch.load(first / "policies.pt", weights_only=True)["learners"]
    for name, learner in job.learners.items():
        for key, value in learner.policy.state_dict().items():
            assert torch.equal(value, saved[name]["policy"][key])
    (tmp_path / "junk.pt").write_bytes(b"not a pickle")
    with pytest.raises(NASError, match="is not a policies.pt of nas compress"):
        job.transfer(str(tmp_path / "junk.pt"))


@pytest.mark.parametrize("args, message", [
    (["--teacher", "alexnet"], "teacher 'alexnet' is neither a run directory of nas search nor one of 'vgg'"),
    (["--teacher", "vgg", "--strategy", "ppo"], "compression strategy 'ppo' is not one of 'n2n', 'random'"),
    (["--teacher", "vgg", "--preset", "huge"], "compression preset 'huge' is not one of"),
    (["--teacher", "vgg", "--size-limit", "0"], "size limit 0 must be a positive number"),
    (["--teacher", "vgg", "--acc-limit", "120"], "accuracy limit 120.0 must be a percentage"),
    (["--teacher", "vgg", "--distill", "l1"], "distillation 'l1' is not one of"),
    (["--teacher", "vgg", "--controller", "nowhere"], "controller 'nowhere' does not exist"),
    (["--teacher", "vgg", "--shrink-lr", "0"], "shrink learning rate 0.0 must be positive"),
    ([], "nas compress needs --teacher"),
])
def test_bad_compress_arguments_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str],
                                                     message: str) -> None:
    run = tmp_path / "run"
    assert main(["compress", "--run-dir", str(run), "--dataset", "digits", *TINY, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not run.exists()
