"""Export round trip: standalone source and the `torch.export` program in a fresh interpreter without our
packages, ONNX Runtime, opt-in TorchScript; pt2 export of MBConv, HyTra and NB201 with a dynamic batch."""
from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from nas.build import build_module
from nas.export import DEFAULT_FORMATS, FORMATS, export_model
from nas.registry import make_space
from nas.space import NASError
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

FRESH_PT2 = """
model = torch.export.load({program!r}).module()  # appended to FRESH, so nothing of ours can be imported
inputs = np.load({inputs!r})
with torch.no_grad():
    np.savez({outputs!r}, **{{k: model(torch.from_numpy(inputs[k])).numpy() for k in inputs.files}})
"""


def _jit_deprecations(records: list[warnings.WarningMessage]) -> list[str]:
    return [str(r.message) for r in records if issubclass(r.category, DeprecationWarning)
            and ("jit" in str(r.message) or "/torch/jit/" in r.filename.replace("\\", "/"))]


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
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        written = export_model(graph, arch, tmp_path / "out", model.state_dict(), "mbconv")
    assert not _jit_deprecations(records)  # the default formats use no TorchScript
    assert set(written) == {"arch", "source", "weights", "pt2", "onnx"}
    x = torch.randn(3, 3, 96, 96)
    x1 = torch.randn(1, 3, 96, 96)

    # one bare interpreter: net.py + weights.pt, then model.pt2 at batch 3 and 1 (the exported example had 2);
    # it runs while this process checks ONNX and TorchScript
    np.save(tmp_path / "x.npy", x.numpy())
    np.savez(tmp_path / "xs.npz", x=x.numpy(), x1=x1.numpy())
    script = FRESH.format(folder=str(tmp_path / "out"), weights=str(written["weights"]),
                          inputs=str(tmp_path / "x.npy"), outputs=str(tmp_path / "y.npy"))
    script += FRESH_PT2.format(program=str(written["pt2"]), inputs=str(tmp_path / "xs.npz"),
                               outputs=str(tmp_path / "ys.npz"))
    with subprocess.Popen([sys.executable, "-I", "-c", script], cwd=tmp_path / "out") as bare:
        with torch.no_grad():
            expected = model(x).numpy()
            expected1 = model(x1).numpy()

        session = ort.InferenceSession(str(written["onnx"]), providers=["CPUExecutionProvider"])
        assert np.abs(session.run(None, {"input": x.numpy()})[0] - expected).max() < 1e-5
        assert np.abs(session.run(None, {"input": x1.numpy()})[0] - expected1).max() < 1e-5

        # TorchScript is opt-in now, and torch warns that it is deprecated
        with pytest.warns(DeprecationWarning, match="jit"):
            written.update(export_model(graph, arch, tmp_path / "ts", model.state_dict(), "mbconv", ("torchscript",)))
        with pytest.warns(DeprecationWarning, match="jit"):
            scripted = torch.jit.load(str(written["torchscript"]))
        with torch.no_grad():
            assert np.abs(scripted(x).numpy() - expected).max() < 1e-5
        assert bare.wait(timeout=300) == 0
    assert np.abs(np.load(tmp_path / "y.npy") - expected).max() < 1e-5
    ys = np.load(tmp_path / "ys.npz")
    assert ys["x"].shape == (3, 10) and ys["x1"].shape == (1, 10)
    assert np.abs(ys["x"] - expected).max() < 1e-5 and np.abs(ys["x1"] - expected1).max() < 1e-5


SMALL_ARCHS = {
    "mbconv": ("small", {"resolution": 24, "width_mult": 0.75, **{f"s{s}_depth": 1 for s in (1, 2, 3, 4)},
                         **{f"s{s}_l0_{c}": 3 for s in (1, 2, 3, 4) for c in "ke"}}),
    "hytra": ("small", "small_t0"),  # attention at 8x8 and 4x4 (MultiHeadSelfAttention2d)
    "nb201": (None, "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"),  # all 5 ops
}


@pytest.mark.parametrize("space_name", sorted(SMALL_ARCHS))
def test_pt2_export_has_a_dynamic_batch(tmp_path, space_name):
    preset, arch_text = SMALL_ARCHS[space_name]
    space = make_space(space_name, preset)
    arch = space.resolve(arch_text)
    shape = space.input_shape_for(arch, space.default_input)
    graph = space.graph(arch, shape, space.default_classes)
    model = build_module(graph)
    _trained_like(model)
    model.eval()
    written = export_model(graph, arch, tmp_path, model.state_dict(), space_name, ("pt2",))
    assert set(written) == {"arch", "pt2"}
    program = torch.export.load(str(written["pt2"])).module()
    for batch in (1, 3):
        x = torch.randn(batch, *shape)
        with torch.no_grad():
            assert torch.allclose(program(x), model(x), atol=1e-5, rtol=0)


def test_formats():
    assert DEFAULT_FORMATS == ("source", "pt2", "onnx") and set(FORMATS) == {*DEFAULT_FORMATS, "torchscript", "int8",
                                                                          "streaming"}


def test_unknown_format_is_a_one_line_error(tmp_path):
    space = MBConvSpace("small")
    arch = space.resolve("small_max")
    with pytest.raises(NASError, match="export format 'tflite' is not one of 'source', 'pt2'") as info:
        export_model(space.graph(arch, (3, 32, 32), 10), arch, tmp_path / "out", None, "mbconv", ("pt2", "tflite"))
    assert "\n" not in str(info.value) and not (tmp_path / "out").exists()


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
