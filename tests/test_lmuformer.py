"""LMUFormer: exact published parameter counts, the LMU cell's parallel and recurrent forms, LIF neurons, sequence
data, ONNX export and token-by-token streaming."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_nas

from nas.build import build_module, count_macs, count_params, render_source
from nas.data import load_dataset
from nas.data.loaders import FASHION_MNIST_DIR
from nas.data.sequences import mnist1d_arrays
from nas.ops.lmu_module import LMUCell, MultiStepLIF
from nas.space import NASError
from nas.streaming import streaming_model
from search_spaces.lmuformer import LMUFormerSpace, psmnist_lmu

pytestmark = pytest.mark.usefixtures("one_thread")


def small_arch(spiking: bool, depth: int = 1) -> dict:
    return {"memory": 16, "theta": 0.5, "depth": depth, "width": 16, "spiking": spiking}


def calibrated(graph, seed: int = 0) -> torch.nn.Module:  # noqa: ANN001
    """The built model with non-trivial BatchNorm running statistics, in eval mode."""
    torch.manual_seed(seed)
    model = build_module(graph)
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, *graph.input_shape))
    return model.eval()


@pytest.mark.parametrize(("name", "params"), [("lmuformer_scv2", 1_621_796), ("spiking_lmuformer_scv2", 1_689_894)])
def test_published_parameter_counts_from_the_graph(name: str, params: int) -> None:
    space = LMUFormerSpace("scv2")
    graph = space.graph(space.resolve(name))
    assert graph.params() == params
    assert graph.input_shape == (128, 128) and graph.output_shape == (35,)
    assert list(graph.group_costs()) == ["patch_embed", "block0", "head"]
    assert LMUFormerSpace.preset_of(name) == "scv2"


@pytest.mark.parametrize(("spiking", "params"), [(False, 166_798), (True, 166_092)])
def test_psmnist_notebook_parameter_counts(spiking: bool, params: int) -> None:
    assert psmnist_lmu(spiking).params() == params
    small = psmnist_lmu(spiking, (1, 20), 10, hidden=8, memory=6)
    model = build_module(small)
    assert count_params(model) == small.params() and count_macs(model, small.input_shape) == small.macs()


@pytest.mark.parametrize("spiking", [False, True])
def test_graph_counts_equal_the_module(spiking: bool) -> None:
    graph = LMUFormerSpace().graph(small_arch(spiking, depth=2))
    model = build_module(graph)
    assert count_params(model) == graph.params()
    assert count_macs(model, graph.input_shape) == graph.macs()
    assert list(graph.group_costs()) == ["patch_embed", "block0", "block1", "head"]


def test_zero_order_hold_matches_scipy() -> None:
    from scipy.signal import cont2discrete

    order, theta = 12, 24.0
    q = np.arange(order, dtype=np.float64)[:, None]
    r = (2 * q + 1) / theta
    i, j = np.meshgrid(q, q, indexing="ij")
    a = r * np.where(i < j, -1, (-1.0) ** (i - j + 1))
    b = r * (-1.0) ** q
    ad, bd, *_ = cont2discrete((a, b, np.ones((1, order)), np.zeros((1,))), dt=1.0, method="zoh")
    abar, bbar = LMUCell.discretised(order, theta)
    np.testing.assert_allclose(abar.numpy(), ad, atol=1e-12)
    np.testing.assert_allclose(bbar.numpy(), bd[:, 0], atol=1e-12)


@pytest.mark.parametrize(("spiking", "norm"), [(False, True), (True, True), (True, False)])
def test_parallel_equals_recurrent(spiking: bool, norm: bool) -> None:
    torch.manual_seed(0)
    cell = LMUCell(6, 10, 12, 30.0, 30, spiking, norm)
    with torch.no_grad():
        cell(torch.randn(16, 6, 30))  # BatchNorm running statistics (spiking)
        cell.eval()
        x = 2 * torch.randn(4, 6, 30)
        parallel = cell(x)
        state = None
        steps = []
        for t in range(x.shape[-1]):
            h, state = cell.step(x[..., t], state)
            steps.append(h)
    recurrent = torch.stack(steps, dim=-1)
    assert recurrent.shape == parallel.shape == (4, 10, 30)
    assert (recurrent - parallel).abs().max() < 1e-5
    if spiking:
        assert set(parallel.unique().tolist()) <= {0.0, 1.0}


def test_lif_spikes_and_hard_reset() -> None:
    lif = MultiStepLIF(1.0)
    # constant input 1.5, tau 2: v = 0.75 (silent), 1.125 (spike, reset to 0), 0.75, 1.125, ...
    out = lif(torch.full((1, 1, 6), 1.5))
    assert out.flatten().tolist() == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    # threshold 0.5 (the LMU-input LIF): 0.75 spikes at once, every step
    assert MultiStepLIF(0.5)(torch.full((1, 1, 4), 1.5)).flatten().tolist() == [1.0] * 4
    # below threshold the potential leaks towards the input and never fires
    assert MultiStepLIF(1.0)(torch.full((1, 1, 20), 0.9)).sum() == 0


def test_lif_surrogate_gradient_is_the_sigmoid_derivative() -> None:
    x = torch.full((1, 1, 1), 1.5, requires_grad=True)
    MultiStepLIF(1.0)(x).sum().backward()
    sg = float(torch.sigmoid(torch.tensor(4 * (0.75 - 1.0))))
    assert x.grad is not None and x.grad.item() == pytest.approx(4 * sg * (1 - sg) / 2, rel=1e-6)


def test_mnist1d_shapes_and_determinism() -> None:
    x, y = mnist1d_arrays(200, seed=3)
    assert x.shape == (200, 1, 40) and x.dtype == np.float32 and set(y.tolist()) == set(range(10))
    again, _ = mnist1d_arrays(200, seed=3)
    other, _ = mnist1d_arrays(200, seed=4)
    assert np.array_equal(x, again) and not np.array_equal(x, other)
    data = load_dataset("mnist1d", n=500)
    assert data.sample_shape == (1, 40) and data.num_classes == 10 and len(data.x_train) == 400
    assert torch.equal(load_dataset("mnist1d", n=500).x_val, data.x_val)


def test_seq_fashion_mnist() -> None:
    with pytest.raises(NASError) as err:
        load_dataset("seq_fashion_mnist", path="/no/such/folder")
    assert "\n" not in str(err.value) and "does not exist" in str(err.value)
    if not Path(FASHION_MNIST_DIR).is_dir():
        pytest.skip(f"{FASHION_MNIST_DIR} is absent")
    data = load_dataset("seq_fashion_mnist")
    assert data.sample_shape == (1, 784) and data.num_classes == 10 and len(data.x_val) == 10_000


def test_exported_source_needs_only_torch() -> None:
    graph = LMUFormerSpace().graph(small_arch(True), (1, 24), 10)
    model = calibrated(graph)
    source = render_source(graph)
    assert "import nas" not in source and "from nas" not in source
    namespace: dict = {}
    exec(compile(source, "<exported>", "exec"), namespace)  # noqa: S102 - our own generated source
    exported = namespace["Net"]()
    exported.load_state_dict(model.state_dict())
    x = torch.randn(2, 1, 24)
    with torch.no_grad():
        torch.testing.assert_close(exported.eval()(x), model(x))


@pytest.mark.parametrize("spiking", [False, True])
def test_onnx_export_runs_in_onnx_runtime(spiking: bool) -> None:
    from nas.export import export_onnx
    from nas.quantize import onnx_session

    graph = LMUFormerSpace().graph(small_arch(spiking), (1, 24), 10)
    model = calibrated(graph)
    x = torch.randn(3, 1, 24)
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        path = Path(tmp) / "model.onnx"
        export_onnx(model, x[:2], path)
        session = onnx_session(path, threads=1)
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        assert np.abs(got - model(x).numpy()).max() < 1e-4


@pytest.mark.parametrize("spiking", [False, True])
def test_streaming_reproduces_the_parallel_model(spiking: bool) -> None:
    graph = LMUFormerSpace().graph(small_arch(spiking, depth=2), (1, 24), 10)
    model = calibrated(graph)
    per_token = []
    model.get_submodule("head").register_forward_hook(lambda m, i, o: per_token.append(o))
    stream = streaming_model(graph, model)
    x = torch.randn(3, 1, 24)
    with torch.no_grad():
        parallel = model(x)
        outputs = []
        for t in range(x.shape[-1]):
            outputs += stream.step(x[..., t])
        assert len(outputs) == 24 - 5  # five k3 convs on the longest path: five tokens of look-ahead
        outputs += stream.finish()
        assert (stream(x) - parallel).abs().max() < 1e-5
    running = per_token[0].cumsum(1) / torch.arange(1, 25)[:, None]
    assert len(outputs) == 24
    assert (torch.stack(outputs, 1) - running).abs().max() < 1e-5
    assert (outputs[-1] - parallel).abs().max() < 1e-5


def test_inspect_lmuformer_scv2_json() -> None:
    out = run_nas("inspect", "--space", "lmuformer", "--arch", "lmuformer_scv2", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["params"] == 1_621_796 and info["preset"] == "scv2" and info["input_shape"] == [128, 128]


def test_the_streaming_export_runs_token_by_token_in_a_bare_interpreter(tmp_path: Path) -> None:
    from nas.export import export_model

    space = LMUFormerSpace()
    arch = space.resolve(small_arch(True, depth=1))
    graph = space.graph(arch, (1, 24), 10)
    model = calibrated(graph)
    written = export_model(graph, arch, tmp_path / "out", model.state_dict(), space.name, ("streaming",))
    x = torch.randn(2, 1, 24)
    np.save(tmp_path / "x.npy", x.numpy())
    script = ("import sys\nsys.path.insert(0, '.')\nimport numpy as np, torch\nfrom stream import Net, streaming\n"
              "net = Net(); net.load_state_dict(torch.load('weights.pt', weights_only=True)); net.eval()\n"
              "stream = streaming(net); x = torch.from_numpy(np.load({!r}))\n"
              "with torch.no_grad():\n    outs = [o for t in range(x.shape[-1]) for o in stream.step(x[..., t])]\n"
              "    outs += stream.finish()\nnp.save({!r}, outs[-1].numpy())\n").format(str(tmp_path / "x.npy"),
                                                                           str(tmp_path / "y.npy"))
    done = subprocess.run([sys.executable, "-I", "-c", script], cwd=written["streaming"].parent,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with torch.no_grad():
        assert np.abs(np.load(tmp_path / "y.npy") - model.eval()(x).numpy()).max() < 1e-5
