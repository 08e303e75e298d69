"""LMUFormer (Liu et al., ICLR 2024): Legendre Memory Unit blocks behind a convolutional patch embedding.

Built after the official code (zeyuliu1037/LMUFormer, `src/lmu_rnn.py` and `src/blocks/`). A sample is a (C, L)
sequence (SCv2: 128 mel bins by 128 frames); the token axis is the LMU's time axis.

Non-spiking (`lmu_rnn_conv1d`: `Tokenizer`, `LMU`, `ConvFFN`):
- patch embedding: four Conv1d k3 (no bias), each -> ReLU -> BN; then x + Conv1d_k3(x) (positional conv);
- per block: x += proj_BN(proj_conv1x1(LMU(x))) with a ReLU LMU cell of memory `memory`;
  x += MLP(x), MLP = conv1x1 -> BN -> GELU -> conv1x1 -> BN -> ReLU (ratio 4, biased convs);
- head: Linear per token, averaged over tokens.

Spiking (`slmu_rnn_ms_conv1d`, the official default config; `Conv1d4EBMs`, `SLMUMs`, `ConvFFNMs`): the same
layers in the pre-activation order BN -> LIF -> conv: conv0, then (BN -> LIF -> conv) x 3; x + rpe_conv(LIF(BN(x)));
per block x += proj_BN(proj_conv(LMU(LIF_0.5(BN(x))))) with the spiking cell (BN -> LIF on u, m and h) and
x += conv(LIF(BN(conv(LIF(BN(x)))))); BN -> LIF before the head. LIF neurons are `MultiStepLIF` (plain PyTorch).

Choices: `memory` (LMU order d), `theta` (the LMU window as a fraction of the sequence length: the paper uses
theta = N, 1.0), `depth` (blocks), `width` (embedding channels), `spiking`. Presets: "scv2" (128 x 128 input, 35
classes; `lmuformer_scv2` 1,621,796 and `spiking_lmuformer_scv2` 1,689,894 parameters, as the official models)
and "small" (the default: (1, 40) input as MNIST-1D, 10 classes, widths 16-32, for a 2-core CPU).

The psMNIST notebook's models (`LMUFormer_psMNIST.ipynb`: one LMU layer, no patch embedding or blocks) are not
members of the space; `psmnist_lmu` builds them as graphs (166,798 and 166,092 parameters).

Deviations, named: weights keep PyTorch's default initialisation (the official `_init_weights` draws Linear weights,
the LMU's W_u and W_h included, from a truncated normal of std 0.02 with zero biases); the official cell hard-codes
seq_len = theta = 128, ours takes L from the input shape; drop-path is 0 in the official code too.
`nas.streaming` turns a built model into a token-by-token one, and the export's `stream.py` (format "streaming").
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import product

from nas.graph import ArchGraph, GraphBuilder
from nas.ops import Activation, Add, BatchNorm1d, Dropout, Linear
from nas.ops.lmu import LMU
from nas.ops.sequence import LIF, Conv1d, LastToken, TokenLinearMean, TokenMean
from nas.registry import register_space
from nas.space import Architecture, ArchitectureError, Choice, PresetSpace, Value

MLP_RATIO = 4
EMBED_CONVS = 4


@dataclass(frozen=True)
class LMUFormerPreset:
    doc: str
    input_shape: tuple[int, int]
    classes: int
    memories: tuple[int, ...]
    thetas: tuple[float, ...]
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    references: Mapping[str, dict[str, Value]] = field(default_factory=dict)


PRESETS: dict[str, LMUFormerPreset] = {
    "scv2": LMUFormerPreset(
        doc="LMUFormer on Speech Commands V2 (128 mel bins x 128 frames, 35 classes)",
        input_shape=(128, 128), classes=35, memories=(128, 256, 512), thetas=(0.25, 0.5, 1.0), depths=(1, 2, 3),
        widths=(128, 192, 256),
        references={
            "lmuformer_scv2": {"memory": 256, "theta": 1.0, "depth": 1, "width": 256, "spiking": False},
            "spiking_lmuformer_scv2": {"memory": 512, "theta": 1.0, "depth": 1, "width": 256, "spiking": True},
        }),
    "small": LMUFormerPreset(
        doc="small LMUFormer for the built-in sequence datasets ((1, 40) MNIST-1D-style input, 10 classes)",
        input_shape=(1, 40), classes=10, memories=(8, 16, 32), thetas=(0.25, 0.5, 1.0), depths=(1, 2),
        widths=(16, 24, 32),
        references={"lmuformer_small": {"memory": 16, "theta": 1.0, "depth": 1, "width": 32, "spiking": False},
                    "spiking_lmuformer_small": {"memory": 32, "theta": 1.0, "depth": 1, "width": 32,
                                                "spiking": True}}),
}


def patch_embedding(g: GraphBuilder, x: str, width: int, spiking: bool) -> str:
    """Four Conv1d k3 layers and the positional conv x + Conv1d_k3(x) (`Tokenizer` / `Conv1d4EBMs`)."""
    g.group = "patch_embed"
    for i in range(EMBED_CONVS):
        if spiking and i:
            x = g.add(f"embed_bn{i - 1}", BatchNorm1d(width), x)
            x = g.add(f"embed_lif{i - 1}", LIF(), x)
        x = g.add(f"embed_conv{i}", Conv1d(g.shape(x)[0], width, 3), x)
        if not spiking:
            x = g.add(f"embed_relu{i}", Activation("relu"), x)
            x = g.add(f"embed_bn{i}", BatchNorm1d(width), x)
    rpe = x
    if spiking:
        rpe = g.add(f"embed_bn{EMBED_CONVS - 1}", BatchNorm1d(width), rpe)
        rpe = g.add(f"embed_lif{EMBED_CONVS - 1}", LIF(), rpe)
    rpe = g.add("embed_rpe_conv", Conv1d(width, width, 3), rpe)
    return g.add("embed_rpe_add", Add(), x, rpe)


def lmu_block(g: GraphBuilder, p: str, x: str, memory: int, theta: float, spiking: bool) -> str:
    """x += proj_BN(proj_conv1x1(LMU(x))); x += MLP(x) (`Block` with `LMU`/`ConvFFN` or `SLMUMs`/`ConvFFNMs`)."""
    width, length = g.shape(x)
    hidden = MLP_RATIO * width
    a = x
    if spiking:
        a = g.add(f"{p}_prev_bn", BatchNorm1d(width), a)
        a = g.add(f"{p}_prev_lif", LIF(0.5), a)
    a = g.add(f"{p}_lmu", LMU(width, width, memory, theta * length, length, spiking), a)
    a = g.add(f"{p}_proj_conv", Conv1d(width, width, 1, bias=True), a)
    a = g.add(f"{p}_proj_bn", BatchNorm1d(width), a)
    x = g.add(f"{p}_lmu_add", Add(), x, a)
    m = x
    if spiking:
        for i, (cin, cout) in enumerate(((width, hidden), (hidden, width)), start=1):
            m = g.add(f"{p}_fc{i}_bn", BatchNorm1d(cin), m)
            m = g.add(f"{p}_fc{i}_lif", LIF(), m)
            m = g.add(f"{p}_fc{i}_conv", Conv1d(cin, cout, 1, bias=True), m)
    else:
        for i, (cin, cout, act) in enumerate(((width, hidden, "gelu"), (hidden, width, "relu")), start=1):
            m = g.add(f"{p}_fc{i}_conv", Conv1d(cin, cout, 1, bias=True), m)
            m = g.add(f"{p}_fc{i}_bn", BatchNorm1d(cout), m)
            m = g.add(f"{p}_fc{i}_act", Activation(act), m)
    return g.add(f"{p}_mlp_add", Add(), x, m)


def lmuformer(input_shape: tuple[int, ...], num_classes: int, width: int, depth: int, memory: int, theta: float,
              spiking: bool) -> ArchGraph:
    """The LMUFormer graph on a (C, L) input; `theta` is the LMU window as a fraction of L."""
    if len(input_shape) != 2:
        raise ArchitectureError(f"lmuformer takes (channels, length) sequences, not shape {tuple(input_shape)}")
    g = GraphBuilder(input_shape)
    x = patch_embedding(g, g.input, width, spiking)
    for i in range(depth):
        g.group = f"block{i}"
        x = lmu_block(g, f"b{i}", x, memory, theta, spiking)
    g.group = "head"
    if spiking:
        x = g.add("head_bn", BatchNorm1d(width), x)
        x = g.add("head_lif", LIF(), x)
    return g.finish(g.add("head", TokenLinearMean(width, num_classes), x))


def psmnist_lmu(spiking: bool, input_shape: tuple[int, int] = (1, 784), num_classes: int = 10, hidden: int = 346,
                memory: int = 468) -> ArchGraph:
    """The psMNIST notebook models (theta = N = 784): non-spiking, a biased 1x1 Conv1d 1 -> 3 and BN, the ReLU LMU
    cell, the mean over tokens, Dropout 0.4 and a Linear classifier; spiking, the BN-free spiking cell (`norm=False`)
    on the raw pixels, its last hidden state h_n, Dropout 0.5 and the classifier."""
    channels, length = input_shape
    g = GraphBuilder(input_shape)
    x = g.input
    if not spiking:
        x = g.add("conv1", Conv1d(channels, 3, 1, bias=True), x)
        x = g.add("bn1", BatchNorm1d(3), x)
    g.group = "lmu"
    x = g.add("lmu", LMU(g.shape(x)[0], hidden, memory, length, length, spiking, norm=False), x)
    g.group = "head"
    x = g.add("last", LastToken(), x) if spiking else g.add("mean", TokenMean(), x)
    x = g.add("dropout", Dropout(0.5 if spiking else 0.4), x)
    return g.finish(g.add("classifier", Linear(hidden, num_classes), x))


@register_space("lmuformer")
class LMUFormerSpace(PresetSpace):
    """LMUFormer: LMU memory order, window, depth, width and spiking or not (presets scv2, small)."""

    name = "lmuformer"
    PRESETS = PRESETS
    default_preset = "small"
    spec: LMUFormerPreset

    def __init__(self, preset: str | None = None) -> None:
        super().__init__(preset)
        self.default_input = self.spec.input_shape
        self.default_classes = self.spec.classes

    def choices(self) -> list[Choice]:
        f = self.spec
        return [Choice("memory", f.memories, "ordinal", doc="LMU memory order d"),
                Choice("theta", f.thetas, "ordinal", doc="LMU window theta as a fraction of the sequence length"),
                Choice("depth", f.depths, "ordinal", doc="LMU blocks"),
                Choice("width", f.widths, "ordinal", doc="embedding channels"),
                Choice("spiking", (False, True), doc="spiking LIF variant")]

    def reference_archs(self) -> dict[str, Architecture]:
        return {name: Architecture(values) for name, values in self.spec.references.items()}

    def size(self) -> int:
        f = self.spec
        return len(f.memories) * len(f.thetas) * len(f.depths) * len(f.widths) * 2

    def supernet_cover(self) -> list[Architecture]:
        """Every memory x theta x width x spiking combination at the largest depth: each layer's op depends on
        width and spiking, the LMU's on memory and theta as well, and shallower networks are prefixes."""
        f = self.spec
        return [Architecture({"memory": m, "theta": t, "depth": max(f.depths), "width": w, "spiking": s})
                for m, t, w, s in product(f.memories, f.thetas, f.widths, (False, True))]

    def graph(self, arch: Mapping[str, Value], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None) -> ArchGraph:
        return lmuformer(tuple(input_shape or self.default_input), num_classes or self.default_classes,
                         int(arch["width"]), int(arch["depth"]), int(arch["memory"]), float(arch["theta"]),
                         bool(arch["spiking"]))
