"""Exports take raw input (issue 18): a run's exported model carries the per-channel standardisation and the
resize it was trained with, so net.py + weights.pt, model.pt2, ONNX and INT8 ONNX, run in a bare interpreter on
the raw digits validation images (as sklearn gives them, divided by 16 as the loader does, not standardised),
reach the run's recorded accuracy; sequences are standardised without a resize (stream.py too); an architecture
exported without data says it takes standardised input."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_nas

from nas.build import build_module
from nas.data import load_dataset, split
from nas.export import export_model
from nas.preprocess import Preprocessing
from nas.space import NASError
from nas.train import resize_inputs

SEED = 0

#: run in `python -I` with the export folder as cwd: none of our packages can be imported; top-1 (%) of each
#: exported format on the raw images x.npy against labels y.npy, written to acc.json
BARE = """
import json, sys
for name in ("nas", "search_spaces", "strategies", "predictors"):
    sys.modules[name] = None
sys.path.insert(0, ".")
import numpy as np, onnxruntime as ort, torch
x, y = np.load({x!r}), np.load({y!r})
acc = {{}}
def top1(logits):
    return 100.0 * float((np.asarray(logits).argmax(1) == y).mean())
if {source!r}:
    import net
    model = net.Net(); model.load_state_dict(torch.load("weights.pt", weights_only=True)); model.eval()
    with torch.no_grad():
        acc["source"] = top1(model(torch.from_numpy(x)).numpy())
    program = torch.export.load("model.pt2").module()
    with torch.no_grad():
        acc["pt2"] = top1(program(torch.from_numpy(x)).numpy())
for name in {onnx!r}:
    session = ort.InferenceSession(name, providers=["CPUExecutionProvider"])
    acc[name] = top1(session.run(None, {{"input": x}})[0])
json.dump(acc, open({out!r}, "w"))
"""


def raw_digits_val() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The raw digits as the loader reads them (sklearn's 0..16 pixels / 16), split as the run split them:
    (train images, validation images, validation labels); nothing standardised."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x_train, _, x_val, y_val = split(x, torch.tensor(bunch.target), 0.2, SEED)
    return x_train.numpy(), x_val.numpy(), y_val.numpy()


def bare_accuracies(folder: Path, tmp: Path, source: bool = True, onnx: tuple[str, ...] = ("model.onnx",)) -> dict:
    _, x_val, y_val = raw_digits_val()
    np.save(tmp / "x.npy", x_val)
    np.save(tmp / "y.npy", y_val)
    script = BARE.format(x=str(tmp / "x.npy"), y=str(tmp / "y.npy"), source=source, onnx=list(onnx),
                         out=str(tmp / "acc.json"))
    done = subprocess.run([sys.executable, "-I", "-c", script], cwd=folder, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads((tmp / "acc.json").read_text())


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished search on digits: one random MBConv architecture (input 16x16 or more: the export resizes),
    trained 3 epochs on 512 images in batches of 32, exported at the end of the search."""
    path = tmp_path_factory.mktemp("raw") / "run"
    out = run_nas("search", "--space", "mbconv", "--strategy", "random", "--budget", "1", "--epochs", "3",
                  "--batch-size", "32", "--train-subset", "512", "--dataset", "digits", "--seed", str(SEED),
                  "--threads", "1", "--no-progress", "--run-dir", str(path))
    assert out.returncode == 0, out.stderr
    return path


def test_a_runs_export_reaches_its_accuracy_on_raw_digits_in_a_bare_interpreter(run_dir: Path, tmp_path: Path):
    recorded = json.loads((run_dir / "best.json").read_text())["metrics"]["accuracy"]
    assert recorded > 60  # well above chance (10%), so raw input fed to an unwrapped network would show
    model = run_dir / "model"
    acc = bare_accuracies(model, tmp_path)
    assert set(acc) == {"source", "pt2", "model.onnx"}
    for name, value in acc.items():
        assert abs(value - recorded) <= 0.5, (name, value, recorded)

    info = json.loads((model / "arch.json").read_text())
    network = info["input"]["network_input_shape"]
    assert info["input_shape"] == [1, 8, 8] and info["input"]["shape"] == ["batch", 1, 8, 8]
    assert info["input"]["preprocessing_inside"] is True and info["input"]["dtype"] == "float32"
    assert network[1] > 8 and info["input"]["resize_to"] == network[1:]  # the architecture's input is larger
    doc = (model / "net.py").read_text().split('"""')[1]
    assert "(batch, 1, 8, 8) holding raw dataset values" in doc and "pixel intensity / 16" in doc
    assert f"resize (align_corners=False) to {network[1]}x{network[2]}" in doc

    # the network's state-dict keys are unchanged: the run's weights load into the exported Net
    assert torch.load(model / "weights.pt", weights_only=True).keys() == \
        torch.load(run_dir / "best_weights.pt", weights_only=True).keys()
    # the recorded statistics are the raw training split's (per channel)
    recorded_prep = json.loads((run_dir / "evaluator.json").read_text())["preprocessing"]
    x_train = raw_digits_val()[0]
    assert recorded_prep["shape"] == [1, 8, 8]
    assert np.allclose(recorded_prep["mean"], [x_train.mean()], atol=1e-6)
    assert np.allclose(recorded_prep["std"], [x_train.std(ddof=1)], atol=1e-6)


def test_the_int8_export_takes_raw_input_too(run_dir: Path, tmp_path: Path):
    out = run_nas("export", str(run_dir), "--formats", "onnx,int8", "--out", str(tmp_path / "int8"))
    assert out.returncode == 0, out.stderr
    recorded = json.loads((run_dir / "best.json").read_text())["metrics"]["accuracy"]
    report = json.loads((tmp_path / "int8" / "int8.json").read_text())
    assert abs(report["accuracy_fp32"] - recorded) <= 0.5
    acc = bare_accuracies(tmp_path / "int8", tmp_path, source=False, onnx=("model.onnx", "model.int8.onnx"))
    assert abs(acc["model.onnx"] - recorded) <= 0.5
    assert abs(acc["model.int8.onnx"] - report["accuracy_int8"]) <= 0.5  # int8.json measured on the same input
    assert acc["model.int8.onnx"] > recorded - 10  # calibrated on raw images: not broken by the wrapper


def test_a_run_without_recorded_statistics_exports_them_from_its_data(run_dir: Path, tmp_path: Path):
    old = tmp_path / "old"
    shutil.copytree(run_dir, old, ignore=shutil.ignore_patterns("model"))
    described = json.loads((old / "evaluator.json").read_text())
    del described["preprocessing"]  # a run recorded before the statistics were kept
    (old / "evaluator.json").write_text(json.dumps(described))
    out = run_nas("export", str(old), "--formats", "source")
    assert out.returncode == 0, out.stderr
    assert json.loads((old / "model" / "arch.json").read_text())["input"] == \
        json.loads((run_dir / "model" / "arch.json").read_text())["input"]

    described["preprocessing"] = {"mean": [0.3], "std": [0.0], "shape": [1, 8, 8]}
    (old / "evaluator.json").write_text(json.dumps(described))
    out = run_nas("export", str(old), "--formats", "source")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert out.stderr.startswith("nas: error: ") and "evaluator.json" in out.stderr and "std [0.0]" in out.stderr


def test_the_preprocess_module_matches_what_training_feeds():
    data = load_dataset("digits", seed=SEED)
    prep = Preprocessing.of(data)
    assert prep is not None and prep.shape == (1, 8, 8) and prep.values
    raw = torch.from_numpy(raw_digits_val()[1])
    for shape in ((1, 8, 8), (1, 16, 16), (1, 24, 24)):
        assert torch.allclose(prep.module(shape)(raw), resize_inputs(data.x_val, shape), atol=1e-5)
    assert torch.allclose(prep.raw(data.x_val), raw, atol=1e-6)
    # a subset keeps the full training split's statistics
    assert Preprocessing.of(data.subset(train=64)) == prep
    with pytest.raises(NASError, match="cannot feed a network expecting"):
        prep.resize((3, 8, 8))


def test_sequences_are_standardised_without_a_resize_in_every_format(tmp_path: Path):
    import onnxruntime as ort

    from search_spaces.lmuformer import LMUFormerSpace

    space = LMUFormerSpace()
    arch = space.resolve({"memory": 16, "theta": 0.5, "depth": 1, "width": 16, "spiking": True})
    graph = space.graph(arch, (1, 24), 10)
    prep = Preprocessing((0.25,), (2.0,), (1, 24), "test signals")
    torch.manual_seed(0)
    network = build_module(graph)
    with torch.no_grad():
        for _ in range(3):
            network(torch.randn(8, 1, 24))  # non-trivial BatchNorm statistics
    network.eval()
    written = export_model(graph, arch, tmp_path / "out", network.state_dict(), space.name,
                           ("source", "streaming", "onnx"), preprocessing=prep)
    info = json.loads(written["arch"].read_text())["input"]
    assert info["shape"] == ["batch", 1, 24] and info["resize_to"] is None and info["preprocessing_inside"]
    raw = 0.25 + 2.0 * torch.randn(2, 1, 24)
    with torch.no_grad():
        expected = network((raw - 0.25) / 2.0).numpy()
    np.save(tmp_path / "x.npy", raw.numpy())
    script = ("import sys\nsys.path.insert(0, '.')\nimport numpy as np, torch\nfrom stream import Net, streaming\n"
              "import net\nx = torch.from_numpy(np.load({x!r}))\n"
              "whole = net.Net(); whole.load_state_dict(torch.load('weights.pt', weights_only=True)); whole.eval()\n"
              "n = Net(); n.load_state_dict(torch.load('weights.pt', weights_only=True)); n.eval()\n"
              "stream = streaming(n)\nwith torch.no_grad():\n"
              "    outs = [o for t in range(x.shape[-1]) for o in stream.step(x[..., t])] + stream.finish()\n"
              "    np.savez({out!r}, net=whole(x).numpy(), stream=outs[-1].numpy())\n"
              ).format(x=str(tmp_path / "x.npy"), out=str(tmp_path / "y.npz"))
    done = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path / "out", capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    ys = np.load(tmp_path / "y.npz")
    assert np.abs(ys["net"] - expected).max() < 1e-5 and np.abs(ys["stream"] - expected).max() < 1e-5
    session = ort.InferenceSession(str(written["onnx"]), providers=["CPUExecutionProvider"])
    assert np.abs(session.run(None, {"input": raw.numpy()})[0] - expected).max() < 1e-4


def test_an_architecture_exported_without_data_says_it_takes_standardised_input(tmp_path: Path):
    out = run_nas("export", "--space", "mbconv", "--arch", "small_max", "--out", str(tmp_path / "bare"),
                  "--formats", "source")
    assert out.returncode == 0, out.stderr
    info = json.loads((tmp_path / "bare" / "arch.json").read_text())
    assert info["input"]["preprocessing_inside"] is False
    assert info["input_shape"] == info["input"]["network_input_shape"] == info["input"]["shape"][1:]
    source = (tmp_path / "bare" / "net.py").read_text()
    assert "already standardised" in source.split('"""')[1] and "Preprocess" not in source
