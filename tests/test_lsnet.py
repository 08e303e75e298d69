"""LSNet (CVPR 2025): published parameter counts (plain and BN-fused), SKA against a naive loop, deploy-time
fusion equal to the unfused model, ONNX export run by ONNX Runtime, and `nas inspect`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nas.build import build_module, count_macs, count_params
from nas.cli import main as cli_main
from nas.fusion import fuse, fuse_graph
from nas.graph import ArchGraph, GraphBuilder
from nas.ops import BatchNorm1d, BatchNorm2d, Conv2d
from nas.ops.lsnet import LSNetAttention
from nas.ops.lsnet_module import LSNetAttention as LSNetAttentionModule, SmallKernelAggregation
from nas.space import NASError
from search_spaces.lsnet import LSNetSpace, add_lsnet_block

#: name: (parameters of the official code, after its `replace_batchnorm` fusion) from the facts file
PUBLISHED = {"lsnet_t": (11_409_832, 11_370_488), "lsnet_s": (16_146_304, 16_098_232),
             "lsnet_b": (23_313_608, 23_249_320)}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_parameter_counts_plain_and_fused(name: str) -> None:
    space = LSNetSpace("paper")
    graph = space.graph(space.resolve(name))
    plain, fused = PUBLISHED[name]
    assert graph.params() == plain
    assert fuse_graph(graph).params() == fused
    assert graph.input_shape == (3, 224, 224) and graph.output_shape == (1000,)


def test_lsnet_t_module_has_the_graph_count() -> None:
    space = LSNetSpace("paper")
    model = build_module(space.graph(space.resolve("lsnet_t")))
    assert count_params(model) == 11_409_832


def naive_ska(x: torch.Tensor, w: torch.Tensor, groups: int = 8) -> torch.Tensor:
    """SKA with explicit loops over channels and the 3x3 offsets: out[c] = sum_k x[c shifted by k] w[c mod C/8, k]."""
    b, c, h, width = x.shape
    wc = c // groups
    kernels = w.reshape(b, wc, 3, 3, h, width)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    out = torch.zeros_like(x)
    for ch in range(c):
        for dy in range(3):
            for dx in range(3):
                out[:, ch] += padded[:, ch, dy:dy + h, dx:dx + width] * kernels[:, ch % wc, dy, dx]
    return out


def test_ska_matches_a_naive_loop_forward_and_backward() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 24, 5, 7, generator=g, requires_grad=True)
    w = torch.randn(2, 27, 5, 7, generator=g, requires_grad=True)
    out = SmallKernelAggregation(8)(x, w)
    ref = naive_ska(x, w)
    torch.testing.assert_close(out, ref)
    grad = torch.randn(out.shape, generator=g)
    torch.testing.assert_close(torch.autograd.grad(out, (x, w), grad), torch.autograd.grad(ref, (x, w), grad))


def trained_small_lsnet() -> tuple[ArchGraph, torch.nn.Module]:
    """small_t (every block kind, attention included) with random affine norms and attention biases and running
    statistics from a few training-mode forwards, in eval mode."""
    space = LSNetSpace()
    graph = space.graph(space.resolve("small_t"))
    torch.manual_seed(0)
    model = build_module(graph)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d, torch.nn.GroupNorm)):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
            if isinstance(module, LSNetAttentionModule):
                module.attention_biases.normal_()
        for _ in range(3):
            model(torch.randn(16, *graph.input_shape) * 2 + 0.5)
    return graph, model.eval()


def test_fused_model_equals_the_unfused_one() -> None:
    graph, model = trained_small_lsnet()
    fused_graph, state = fuse(graph, model.state_dict())
    fused = build_module(fused_graph)
    fused.load_state_dict(state)
    fused.eval()
    assert count_params(fused) == fused_graph.params() < graph.params()
    ops = [n.layer_op for n in fused_graph.layers()]
    assert not any(isinstance(op, BatchNorm1d) for op in ops)
    assert all(n.name.endswith("_ska_bn") for n in fused_graph.layers() if isinstance(n.op, BatchNorm2d))
    assert all(op.fused for op in ops if isinstance(op, LSNetAttention))
    x = torch.randn(8, *graph.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=0, atol=1e-5)


def test_repvgg_dw_fuses_to_one_biased_3x3_depthwise_conv() -> None:
    g = GraphBuilder((16, 6, 6))
    g.group = "block"
    out = add_lsnet_block(g, "b", g.input, 0)
    convs = [n.op for n in fuse_graph(g.finish(out)).layers() if isinstance(n.op, Conv2d)]
    assert Conv2d(16, 16, 3, groups=16, bias=True) in convs and not any(c.kernel == 1 and c.groups == 16 for c in convs)


def test_graph_macs_equal_torchs_counter_with_attention() -> None:
    space = LSNetSpace()
    graph = space.graph(space.resolve("small_t"))
    assert any(isinstance(n.op, LSNetAttention) for n in graph.layers())
    assert count_macs(build_module(graph), graph.input_shape) == graph.macs()


def test_onnx_export_runs_in_onnxruntime(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from nas.export import export_onnx

    graph, model = trained_small_lsnet()
    fused_graph, state = fuse(graph, model.state_dict())
    fused = build_module(fused_graph)
    fused.load_state_dict(state)
    x = torch.randn(3, *graph.input_shape)
    for name, net in (("plain", model), ("fused", fused.eval())):
        path = tmp_path / f"{name}.onnx"
        export_onnx(net, torch.randn(2, *graph.input_shape), path)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (out,) = session.run(None, {"input": x.numpy()})
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(out), model(x), rtol=1e-4, atol=1e-4)


def test_block_builder_is_reusable_and_checks_its_mixer() -> None:
    g = GraphBuilder((32, 4, 4))
    g.group = "attention_block"
    out = add_lsnet_block(g, "a", g.input, 1, mixer="attention", heads=2)
    graph = g.finish(out)
    assert graph.output_shape == (32, 4, 4) and {n.group for n in graph.layers()} == {"attention_block"}
    with pytest.raises(NASError, match="mixer 'conv' is not one of 'ls', 'attention'"):
        add_lsnet_block(GraphBuilder((32, 4, 4)), "b", "input", 1, mixer="conv")


def test_small_preset_resizes_tiny_data_and_keeps_larger() -> None:
    space = LSNetSpace()
    arch = space.resolve("small_t")
    assert space.input_shape_for(arch, (1, 8, 8)) == (1, 16, 16)
    assert space.input_shape_for(arch, (1, 28, 28)) == (1, 28, 28)
    assert LSNetSpace("paper").input_shape_for(arch, (1, 28, 28)) == (1, 224, 224)


def test_inspect_lsnet_t(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["inspect", "--space", "lsnet", "--arch", "lsnet_t", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["preset"] == "paper" and report["params"] == 11_409_832
    assert report["input_shape"] == [3, 224, 224] and report["num_classes"] == 1000
    assert report["groups"]["stage4.block1"]["layers"] == 8  # attention, add, FFN (conv, BN, ReLU, conv, BN, add)
