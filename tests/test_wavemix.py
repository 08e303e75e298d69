"""WaveMix / WaveMix-Lite: the Haar DWT op, the transposed conv op, the blocks, and the published models' counts."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from nas.build import build_module, count_macs, count_params, render_source
from nas.cli import main as cli_main
from nas.graph import ArchGraph, GraphBuilder
from nas.ops.core import ShapeError
from nas.ops.wavemix import ChannelSlice, ConvTranspose2d, HaarDWT
from nas.ops.wavemix_module import HaarDWT2d
from nas.space import Architecture, ArchitectureError, NASError
from search_spaces.wavemix import WaveMixSpace, add_wavemix_block, add_wavemix_head, add_wavemix_stem

#: name -> (parameters in the facts file, input side, classes)
PUBLISHED = {
    "wavemix_cifar10_94_58": (3_042_550, 32, 10),
    "wavemix_cifar10_95_37": (17_073_610, 32, 10),
    "wavemix_cifar100_77_82": (10_954_084, 32, 100),
    "wavemix_cifar100_78_81": (13_611_492, 32, 100),
    "wavemix_tinyimagenet_62_51": (16_294_600, 64, 200),
    "wavemix_imagenet_71_18": (12_494_536, 224, 1000),
    "wavemix_imagenet_75_06": (27_857_608, 224, 1000),
    "wavemix_imagenet_73_0": (49_416_808, 224, 1000),
    "wavemix_imagenet_70_42": (62_764_776, 256, 1000),
    "wavemix_places365_54_94": (28_449_261, 256, 365),
    "wavemix_galaxy10_95_42": (27_666_538, 256, 10),
}


@pytest.fixture(autouse=True)
def one_thread():  # noqa: ANN201 - small models on a shared machine
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- the DWT ------------------------------------------------------------------------------------------------------
def naive_haar(x: torch.Tensor) -> torch.Tensor:
    """Pixel by pixel from pywt's db1 filters (dec_lo = [s, s], dec_hi = [-s, s]), as pytorch_wavelets applies
    them (time-reversed, correlated along W then along H, stride 2, mode 'zero' padding nothing for even sizes),
    laid out as WaveMix does: (N, C, 4, h, w) -> LL = [:, :, 0], highs = [:, :, 1:] reshaped to 3C channels."""
    s = 1 / math.sqrt(2)
    lo, hi = [s, s], [s, -s]  # the reversed dec_lo / dec_hi
    n, c, height, width = x.shape
    out = torch.zeros(n, c, 4, height // 2, width // 2, dtype=x.dtype)
    for k, (fh, fw) in enumerate(((lo, lo), (hi, lo), (lo, hi), (hi, hi))):  # (along H, along W): LL, LH, HL, HH
        for i in range(height // 2):
            for j in range(width // 2):
                out[:, :, k, i, j] = sum(fh[p] * fw[q] * x[:, :, 2 * i + p, 2 * j + q] for p in (0, 1) for q in (0, 1))
    return torch.cat([out[:, :, 0], out[:, :, 1:].reshape(n, 3 * c, height // 2, width // 2)], 1)


def filter_bank_haar(x: torch.Tensor) -> torch.Tensor:
    """The official pipeline in miniature: grouped stride-2 convs with [lo, hi] per channel along W, then along H."""
    s = 1 / math.sqrt(2)
    c = x.shape[1]
    h = torch.tensor([[s, s], [s, -s]], dtype=x.dtype)
    rows = F.conv2d(x, h.reshape(2, 1, 1, 2).repeat(c, 1, 1, 1), stride=(1, 2), groups=c)
    y = F.conv2d(rows, h.reshape(2, 1, 2, 1).repeat(2 * c, 1, 1, 1), stride=(2, 1), groups=2 * c)
    y = y.reshape(x.shape[0], c, 4, x.shape[2] // 2, x.shape[3] // 2)
    return torch.cat([y[:, :, 0], y[:, :, 1:].flatten(1, 2)], 1)


def test_dwt_equals_the_naive_reference_and_the_filter_bank() -> None:
    x = torch.randn(2, 3, 6, 8, dtype=torch.float64)
    y = HaarDWT2d()(x)
    assert y.shape == (2, 12, 3, 4)
    torch.testing.assert_close(y, naive_haar(x))
    torch.testing.assert_close(y, filter_bank_haar(x))
    torch.testing.assert_close(y[:, :3], x.unfold(2, 2, 2).unfold(3, 2, 2).sum((-1, -2)) / 2)  # LL = sum / 2
    torch.testing.assert_close(y.square().sum(), x.square().sum())  # orthonormal


def test_dwt_equals_pytorch_wavelets_when_installed() -> None:
    pw = pytest.importorskip("pytorch_wavelets")
    x = torch.randn(2, 3, 8, 8)
    low, (high,) = pw.DWTForward(J=1, wave="db1", mode="zero")(x)
    torch.testing.assert_close(HaarDWT2d()(x), torch.cat([low, high.reshape(2, 9, 4, 4)], 1))


def test_dwt_has_no_state_and_moves_with_to() -> None:
    dwt = HaarDWT2d()
    assert not list(dwt.parameters()) and not list(dwt.buffers())
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    y = dwt.to(torch.float64)(x)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, naive_haar(x))
    assert dwt.to("meta")(x.to("meta")).shape == (1, 8, 2, 2)  # any device: nothing is pinned to one
    model = WaveMixSpace().build(WaveMixSpace().reference_archs()["wavemix_lite_small"]).to(torch.float64)
    assert model(torch.randn(2, 1, 8, 8, dtype=torch.float64)).dtype == torch.float64


def test_dwt_op_shapes_and_errors() -> None:
    op = HaarDWT(4)
    assert op.out_shape([(4, 8, 6)]) == (16, 4, 3) and op.params() == 0 and op.macs([(4, 8, 6)]) == 0
    with pytest.raises(ShapeError, match="even"):
        op.out_shape([(4, 7, 6)])
    with pytest.raises(ShapeError, match="4 channels"):
        op.out_shape([(5, 8, 8)])
    assert ChannelSlice(0, 4).out_shape([(16, 4, 4)]) == (4, 4, 4)
    with pytest.raises(ShapeError):
        ChannelSlice(2, 20).out_shape([(16, 4, 4)])


@pytest.mark.parametrize("kw", [dict(kernel=4, stride=2, padding=1), dict(kernel=3, stride=2, padding=1,
                                                                          output_padding=1, groups=2, bias=False)])
def test_conv_transpose_op_counts_equal_torch(kw: dict) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from nas.build import construct

    op = ConvTranspose2d(6, 4, **kw)
    module = construct(op)
    assert module is not None
    x = torch.zeros(1, 6, 5, 7)
    with FlopCounterMode(display=False) as counter:
        y = module(x)
    assert tuple(y.shape[1:]) == op.out_shape([(6, 5, 7)])
    assert count_params(module) == op.params() and counter.get_total_flops() // 2 == op.macs([(6, 5, 7)])


# -- blocks -------------------------------------------------------------------------------------------------------
def tiny_net(level: int, side: int = 16, width: int = 16, depth: int = 2, stem: str = "strided") -> ArchGraph:
    """Stem (stride 1 or 2x2 patches), `depth` blocks with ff_channel 8, head of 5 classes, on 3 x side x side."""
    g = GraphBuilder((3, side, side))
    g.group = "stem"
    x = add_wavemix_stem(g, g.input, width, stem, 1, 2)
    for i in range(depth):
        g.group = f"block{i}"
        x = add_wavemix_block(g, f"b{i}", x, level, mult=2, ff_channel=8)
    g.group = "head"
    return g.finish(add_wavemix_head(g, x, 5))


@pytest.mark.parametrize("level", [2, 3])
def test_multi_level_block_shapes(level: int) -> None:
    graph = tiny_net(level)
    shape = {n.name: n.shape for n in graph.layers()}
    for j in range(1, level + 1):
        assert shape[f"b0_dwt{j}"] == (16, 16 >> j, 16 >> j)  # [LL; highs] of the C/4 reduction = C channels
        assert shape[f"b0_ff{j}_up"] == ((16 if j == 1 else 8), 16 >> (j - 1), 16 >> (j - 1))
    for j in range(1, level):
        assert shape[f"b0_cat{j}"] == (24, 16 >> j, 16 >> j)  # C + C/2
        assert shape[f"b0_ll{j}"] == (4, 16 >> j, 16 >> j)
    assert shape["b0_add"] == shape["b1_add"] == (16, 16, 16)
    assert list(dict.fromkeys(n.group for n in graph.layers())) == ["stem", "block0", "block1", "head"]
    model = build_module(graph).eval()
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 5)


def test_block_rejects_bad_widths_and_sizes() -> None:
    g = GraphBuilder((6, 8, 8))
    with pytest.raises(NASError, match="divisible by 4"):
        add_wavemix_block(g, "b", g.input)
    g = GraphBuilder((8, 12, 12))
    with pytest.raises(NASError, match="divisible by 8"):
        add_wavemix_block(g, "b", g.input, level=3)


def test_graph_counts_equal_the_module_on_a_published_model() -> None:
    space = WaveMixSpace("paper")
    graph = space.graph(space.resolve("wavemix_cifar10_94_58"))
    torch.manual_seed(0)
    model = build_module(graph)
    assert count_params(model) == graph.params() == 3_042_550
    assert count_macs(model, graph.input_shape) == graph.macs()


def test_graph_counts_equal_the_module_multi_level_patchify() -> None:
    graph = tiny_net(3, side=32, stem="patchify")
    model = build_module(graph)
    assert count_params(model) == graph.params() and count_macs(model, graph.input_shape) == graph.macs()


def test_onnx_export_runs_in_onnxruntime() -> None:
    ort = pytest.importorskip("onnxruntime")
    import tempfile
    from pathlib import Path

    from nas.export import export_onnx

    torch.manual_seed(0)
    model = build_module(tiny_net(2)).eval()
    x = torch.randn(3, 3, 16, 16)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wavemix.onnx"
        export_onnx(model, x[:1], path)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (out,) = session.run(None, {"input": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(out), model(x).detach(), rtol=1e-4, atol=1e-5)


def test_exported_source_inlines_the_dwt_module() -> None:
    source = render_source(tiny_net(2))
    assert "class HaarDWT2d(nn.Module)" in source and "nn.ConvTranspose2d(8, 8, 4, stride=2, padding=1" in source


# -- the space ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_parameter_counts_are_exact(name: str) -> None:
    space = WaveMixSpace("paper")
    params, side, classes = PUBLISHED[name]
    assert WaveMixSpace.preset_of(name) == "paper"
    graph = space.graph(space.resolve(name))
    assert graph.params() == params
    assert graph.input_shape == (3, side, side) and graph.output_shape == (classes,)
    assert space.input_shape_for(space.resolve(name), (3, 500, 500)) == (3, side, side)


def test_paper_names_are_exactly_the_published_ones() -> None:
    assert set(WaveMixSpace("paper").reference_archs()) == set(PUBLISHED)


def test_inspect_prints_the_published_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["inspect", "--space", "wavemix", "--arch", "wavemix_places365_54_94", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["preset"] == "paper" and report["params"] == 28_449_261
    assert report["input_shape"] == [3, 256, 256] and report["num_classes"] == 365


def test_num_classes_overrides_the_published_head() -> None:
    space = WaveMixSpace("paper")
    graph = space.graph(space.resolve("wavemix_cifar10_94_58"), None, 100)
    assert graph.params() == 3_042_550 + 90 * 144 + 90


def test_paper_check_rejects_sizes_the_blocks_cannot_halve() -> None:
    space = WaveMixSpace("paper")
    arch = space.resolve("wavemix_imagenet_70_42").replace(resolution=224)
    with pytest.raises(ArchitectureError, match="not divisible by 2\\^level = 16") as err:
        space.validate(arch)
    assert "\n" not in str(err.value)


def test_small_preset_fits_digits_and_fashion_mnist() -> None:
    space = WaveMixSpace()
    assert space.preset == "small" and space.default_input == (1, 8, 8) and space.default_classes == 10
    lite = space.resolve("wavemix_lite_small")
    assert space.input_shape_for(lite, (1, 8, 8)) == (1, 8, 8)
    arch = space.resolve(Architecture({k: v for k, v in lite.items() if k != "stem_stride"}, stem="patchify",
                                      level=2, patch=2))
    assert space.input_shape_for(arch, (1, 28, 28)) == (1, 32, 32)  # 28 rounded up to a multiple of 2 * 2^2
    for data in ((1, 8, 8), (1, 28, 28)):
        graph = space.graph(arch, space.input_shape_for(arch, data))
        assert build_module(graph).eval()(torch.randn(2, *graph.input_shape)).shape == (2, 10)


def official_key(key: str) -> str:
    """Our state-dict key for a key of the official `wavemix.classification.WaveMix`."""
    stem = {"conv.0": "stem_conv1", "conv.1": "stem_conv2", "conv.2": "stem_patch", "conv.4": "stem_bn"}
    mlp = {"0": "fc1", "3": "fc2", "4": "up", "5": "bn"}
    parts = key.split(".")
    if parts[0] == "conv":
        return f"{stem['.'.join(parts[:2])]}.{parts[2]}"
    if parts[0] == "pool":
        return f"classifier.{parts[2]}"
    block = f"b{parts[1]}"
    if parts[2] == "reduction":
        return f"{block}_reduce.{parts[3]}"
    level = parts[2].removeprefix("feedforward") or "1"
    return f"{block}_ff{level}_{mlp[parts[3]]}.{parts[4]}"


@pytest.mark.parametrize(("level", "stem"), [(1, "strided"), (2, "patchify"), (3, "strided"), (4, "strided")])
def test_same_function_as_the_official_wavemix_when_installed(level: int, stem: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The `wavemix` 0.2.4 model with the same weights gives the same logits (skipped without the package; it
    imports `numpy.lib.function_base`, gone in NumPy 2, for nothing it uses, so the test provides that name)."""
    import sys
    import types

    import numpy

    pytest.importorskip("pywt")
    monkeypatch.setitem(sys.modules, "numpy.lib.function_base", types.SimpleNamespace(hamming=numpy.hamming))
    official_module = pytest.importorskip("wavemix.classification")
    torch.manual_seed(0)
    official = official_module.WaveMix(num_classes=5, depth=2, mult=2, ff_channel=8, final_dim=16, dropout=0.5,
                                       level=level, initial_conv="pachify" if stem == "patchify" else stem,
                                       patch_size=2, stride=1).eval()
    ours = build_module(tiny_net(level, side=32, stem=stem)).eval()
    state = {official_key(k): v for k, v in official.state_dict().items()}
    assert sorted(state) == sorted(ours.state_dict())
    ours.load_state_dict(state)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), official(x), rtol=1e-4, atol=1e-5)
