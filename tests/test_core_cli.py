"""The command line: listings, inspect, errors without tracebacks, a full search with export, show."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO, run_nas


def test_help_does_not_import_torch():
    code = "import sys; from nas.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("command", [[], ["search"], ["inspect"], ["export"], ["show"], ["spaces"], ["strategies"]])
def test_every_command_has_help(command):
    out = run_nas(*command, "--help")
    assert out.returncode == 0 and "usage: nas" in out.stdout


def test_inspect_mobilenet_v2_json():
    out = run_nas("inspect", "--space", "mbconv", "--arch", "mobilenet_v2", "--json")
    report = json.loads(out.stdout)
    assert report["params"] == 3_504_872 and report["preset"] == "mobilenet_v2"
    assert report["macs"] == 300_774_272


def test_inspect_resolution_and_classes():
    report = json.loads(run_nas("inspect", "--space", "mbconv", "--arch", "mobilenet_v2", "--resolution", "160",
                                "--classes", "10", "--json").stdout)
    assert report["input_shape"] == [3, 160, 160] and report["num_classes"] == 10
    assert report["params"] == 3_504_872 - 1281 * 990


@pytest.mark.parametrize("args, message", [
    (["inspect", "--space", "nope", "--arch", "x"], "unknown space 'nope'; accepted:"),
    (["inspect", "--space", "mbconv", "--arch", "resnet"], "unknown architecture 'resnet'"),
    (["inspect", "--space", "mbconv", "--preset", "small", "--arch", '{"resolution": 31}'],
     "value 31 for choice 'resolution' is not accepted"),
    (["search", "--space", "mbconv", "--strategy", "annealing"], "unknown strategy 'annealing'; accepted:"),
    (["search", "--space", "mbconv", "--strategy", "random", "--dataset", "cifar10", "--data-path", "/no/where"],
     "folder '/no/where' does not exist"),
    (["show", "/no/such/run"], "run directory '/no/such/run' does not exist"),
])
def test_bad_input_gives_one_line_errors(tmp_path, args, message):
    if args[0] == "search":
        args = args + ["--run-dir", str(tmp_path / "r"), "--no-progress"]
    out = run_nas(*args)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_search_show_and_export(tmp_path):
    run_dir = tmp_path / "run"
    out = run_nas("search", "--space", "mbconv", "--strategy", "random", "--budget", "2", "--dataset", "synthetic",
                  "--train-subset", "48", "--epochs", "1", "--batch-size", "16", "--objectives", "accuracy,macs",
                  "--run-dir", str(run_dir), "--no-progress")
    assert out.returncode == 0, out.stderr
    assert "evaluated 2 architectures" in out.stdout
    for name in ("config.json", "history.jsonl", "best.json", "best_weights.pt", "search.png", "summary.txt",
                 "model/net.py", "model/weights.pt", "model/model.pt2", "model/model.onnx"):
        assert (run_dir / name).exists(), name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["seed"] == 0 and "torch" in config["versions"]
    shown = run_nas("show", str(run_dir))
    assert "status: finished" in shown.stdout
    exported = run_nas("export", str(run_dir), "--out", str(tmp_path / "again"), "--formats", "source")
    assert exported.returncode == 0 and (tmp_path / "again" / "net.py").exists()
