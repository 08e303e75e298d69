"""Export a found architecture with its weights as plain PyTorch, a `torch.export` program and ONNX.

    net.py       standalone source: `class Net(nn.Module)` importing only torch (`nas.build.render_source`)
    weights.pt   the state dict, loadable with `torch.load(..., weights_only=True)` (no arbitrary unpickling)
    model.pt2    `torch.export` program with a dynamic batch dimension (any batch size >= 1)
    model.onnx   ONNX (opset 17, dynamic batch), checked against ONNX Runtime when it is installed
    model.int8.onnx  INT8 ONNX by ONNX Runtime static quantization (`nas.quantize`), calibrated on the batches
                 given (a run's training images: `nas.int8.export_run_int8`), only when asked for
    model.ts     TorchScript (traced), only when asked for: TorchScript is deprecated in torch and is
                 kept for consumers that still need it
    arch.json    the architecture, its space and input shape

`DEFAULT_FORMATS` (source, pt2, onnx) are written unless `formats` names others. Usage of the exported
model, with nothing of ours installed:

    import torch, net
    model = net.Net(); model.load_state_dict(torch.load("weights.pt", weights_only=True)); model.eval()

    model = torch.export.load("model.pt2").module()  # or this, without net.py; call it as model(x)
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from nas.build import build_module, render_source
from nas.graph import ArchGraph
from nas.space import Architecture, NASError, one_of

FORMATS = ("source", "pt2", "onnx", "torchscript", "int8", "streaming")
DEFAULT_FORMATS = ("source", "pt2", "onnx")


def export_model(graph: ArchGraph, arch: Architecture, out_dir: str | Path, state_dict: dict | None = None,
                 space: str = "", formats: tuple[str, ...] = DEFAULT_FORMATS,
                 calibration: list | None = None) -> dict[str, Path]:
    """Write the formats named in `formats` (plus arch.json) to `out_dir`; return the written paths. "int8"
    quantizes with `calibration` (input batches as numpy arrays; required for it)."""
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise NASError(f"export format {bad[0]!r} is not one of {one_of(list(FORMATS))}")
    from nas.runs import make_folder

    out = Path(out_dir)
    make_folder(out, "export folder")
    model = build_module(graph)
    if state_dict is not None:
        model.load_state_dict(state_dict)
    model.eval()
    written: dict[str, Path] = {}
    doc = f"Architecture exported by the nas workbench from space {space!r}:\n{arch.to_json()}"
    (out / "arch.json").write_text(json.dumps({"space": space, "arch": dict(arch),
                                               "input_shape": list(graph.input_shape)}, indent=2))
    written["arch"] = out / "arch.json"
    example = torch.randn(2, *graph.input_shape)  # batch 2: a batch of 1 would be specialised to 1
    if "source" in formats:
        written["source"] = out / "net.py"
        written["source"].write_text(render_source(graph, doc=doc))
        written["weights"] = out / "weights.pt"
        torch.save(model.state_dict(), written["weights"])
    if "pt2" in formats:
        written["pt2"] = out / "model.pt2"
        export_pt2(model, example, written["pt2"])
    if "onnx" in formats or "int8" in formats:
        written["onnx"] = out / "model.onnx"
        export_onnx(model, example, written["onnx"])
    if "int8" in formats:
        from nas.quantize import quantize_onnx

        if not calibration:
            raise NASError("the int8 export needs calibration batches (a run's training images)")
        written["int8"] = quantize_onnx(written["onnx"], out / "model.int8.onnx", calibration)
    if "streaming" in formats:  # sequence networks: stream.py runs the weights one token at a time
        from nas.streaming import render_streaming

        written["streaming"] = out / "stream.py"
        written["streaming"].write_text(render_streaming(graph, doc))
        if "weights" not in written:
            written["weights"] = out / "weights.pt"
            torch.save(model.state_dict(), written["weights"])
    if "torchscript" in formats:
        written["torchscript"] = out / "model.ts"
        with torch.no_grad():
            torch.jit.trace(model, example).save(str(written["torchscript"]))
    return written


def export_pt2(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """`torch.export` program with a dynamic batch dimension (batch >= 1), saved with `torch.export.save`."""
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """ONNX through the TorchScript-based exporter, with a dynamic batch dimension."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17,
                          dynamo=False)
