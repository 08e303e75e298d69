"""Export round trip: standalone source in a fresh interpreter without our packages, TorchScript, ONNX Runtime."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch

from nas.build import build_module
from nas.export import export_model
from search_spaces.mbconv import MBConvSpace

FRESH = """
import sys
for name in ("nas", "search_spaces", "strategies", "predictors"):
    sys.modules[name] = None  # importing any of our packages now fails
sys.path.insert(0, {folder!r})
import numpy as np, torch, net
model = net.Net()
model.load_state_dict(torch.load({weights!r}, weights_only=True))
model.eval()
x = torch.from_numpy(np.load({inputs!r}))
with torch.no_grad():
    np.save({outputs!r}, model(x).numpy())
"""


def _trained_like(model: torch.nn.Module) -> None:
    """Non-trivial weights and BatchNorm statistics, so a wrong load would show."""
    torch.manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)


def test_export_round_trip(tmp_path):
    import onnxruntime as ort

    space = MBConvSpace("mobilenet_v3_small")
    arch = space.resolve("mobilenet_v3_small")
    graph = space.graph(arch, (3, 96, 96), 10)
    model = build_module(graph)
    _trained_like(model)
    model.eval()
    written = export_model(graph, arch, tmp_path / "out", model.state_dict(), "mbconv")
    x = torch.randn(3, 3, 96, 96)
    with torch.no_grad():
        expected = model(x).numpy()

    np.save(tmp_path / "x.npy", x.numpy())
    script = FRESH.format(folder=str(tmp_path / "out"), weights=str(written["weights"]),
                          inputs=str(tmp_path / "x.npy"), outputs=str(tmp_path / "y.npy"))
    subprocess.run([sys.executable, "-I", "-c", script], check=True, cwd=tmp_path)
    assert np.abs(np.load(tmp_path / "y.npy") - expected).max() < 1e-5

    session = ort.InferenceSession(str(written["onnx"]), providers=["CPUExecutionProvider"])
    assert np.abs(session.run(None, {"input": x.numpy()})[0] - expected).max() < 1e-5

    scripted = torch.jit.load(str(written["torchscript"]))
    with torch.no_grad():
        assert np.abs(scripted(x).numpy() - expected).max() < 1e-5


def test_exported_source_imports_only_torch(tmp_path):
    space = MBConvSpace("small")
    arch = space.resolve("small_max")
    written = export_model(space.graph(arch, (1, 32, 32), 10), arch, tmp_path, None, "mbconv", ("source",))
    imports = [line for line in written["source"].read_text().splitlines() if line.startswith(("import", "from"))]
    assert imports == ["import torch", "from torch import nn", "import torch.nn.functional as F"]


def test_in_place_activations_never_clobber_a_tensor_read_elsewhere():
    from nas.graph import GraphBuilder
    from nas.ops import Activation, Add, Identity

    g = GraphBuilder((2, 3, 3))
    alias = g.add("alias", Identity(), g.input)
    other = g.add("other", Identity(), g.input)
    relu = g.add("relu", Activation("relu"), alias)  # its input aliases `input`, which `other` also reads
    out = g.add("sum", Add(), relu, other)
    model = build_module(g.finish(out))
    x = torch.randn(1, 2, 3, 3)
    assert torch.equal(model(x.clone()), torch.relu(x) + x)
