"""Export a found architecture with its weights as plain PyTorch, a `torch.export` program and ONNX.

    net.py       standalone source: `class Net(nn.Module)` importing only torch (`nas.build.render_source`)
    weights.pt   the state dict, loadable with `torch.load(..., weights_only=True)` (no arbitrary unpickling)
    model.pt2    `torch.export` program with a dynamic batch dimension (any batch size >= 1)
    model.onnx   ONNX (opset 17, dynamic batch), checked against ONNX Runtime when it is installed
    model.int8.onnx  INT8 ONNX by ONNX Runtime static quantization (`nas.quantize`), calibrated on the batches
                 given (a run's training images: `nas.int8.export_run_int8`), only when asked for
    model.ts     TorchScript (traced), only when asked for: TorchScript is deprecated in torch and is
                 kept for consumers that still need it
    arch.json    the architecture, its space and the input the exported model expects ("input": shape, dtype,
                 values, whether the preprocessing is inside; "input_shape" is that sample shape)

Given the run's `preprocessing` (`nas.preprocess.Preprocessing`: the training split's per-channel mean and std
and the dataset's sample shape), every format takes raw samples of the dataset's own size: the network is built
with its preprocessing inside (`Net.preprocess`: standardisation, then the bilinear resize to the network's input
that training did; buffers outside the state dict, so weights.pt keeps the network's own keys). Without it (an
architecture exported without data) the model takes already-standardised input at the network's input shape;
net.py's docstring and arch.json say which.

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
from nas.preprocess import Preprocessing, describe_input, input_doc
from nas.space import Architecture, NASError, one_of

FORMATS = ("source", "pt2", "onnx", "torchscript", "int8", "streaming")
DEFAULT_FORMATS = ("source", "pt2", "onnx")


def export_model(graph: ArchGraph, arch: Architecture, out_dir: str | Path, state_dict: dict | None = None,
                 space: str = "", formats: tuple[str, ...] = DEFAULT_FORMATS,
                 calibration: list | None = None, preprocessing: Preprocessing | None = None,
                 weights_name: str = "the weights") -> dict[str, Path]:
    """Write the formats named in `formats` (plus arch.json) to `out_dir`; return the written paths. With
    `preprocessing` every format takes raw samples (module docstring). "int8" quantizes with `calibration`
    (batches of the exported model's input as numpy arrays; required for it). `weights_name` names the weights
    in the error when they do not fit the graph."""
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise NASError(f"export format {bad[0]!r} is not one of {one_of(list(FORMATS))}")
    from nas.runs import make_folder

    model = build_module(graph, preprocessing)
    if state_dict is not None:
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as err:  # torch lists every key on its own line
            details = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
            raise NASError(f"{weights_name} do not fit the architecture: {(details or [''])[0][:160]}") from None
    model.eval()
    out = Path(out_dir)
    make_folder(out, "export folder")
    written: dict[str, Path] = {}
    doc = (f"Architecture exported by the nas workbench from space {space!r}:\n{arch.to_json()}\n\n"
           + input_doc(graph.input_shape, preprocessing))
    shape = preprocessing.shape if preprocessing is not None else graph.input_shape
    (out / "arch.json").write_text(json.dumps({"space": space, "arch": dict(arch), "input_shape": list(shape),
                                               "input": describe_input(graph.input_shape, preprocessing)}, indent=2))
    written["arch"] = out / "arch.json"
    example = torch.randn(2, *shape)  # batch 2: a batch of 1 would be specialised to 1
    if "source" in formats:
        written["source"] = out / "net.py"
        written["source"].write_text(render_source(graph, doc=doc, preprocessing=preprocessing))
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
        written["streaming"].write_text(render_streaming(graph, doc, preprocessing))
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
