"""SpaceEvo's block-wise quality proxy at our scale (Wang et al., ICCV 2023): a teacher trained here, one
elastic student per (searchable stage, block type) distilled from the teacher's stage with the NSR loss, the
lookup rows of sampled sub-stages (loss, INT8 latency) per (stage, block type, width window), and the INT8
latency of layers on this CPU.

- Teacher: a named MBConv model (default EfficientNet-B0, whose stem and stage strides 2, 1, 2, 2, 2, 1, 2, 1
  are SpaceEvo's macro architecture's; the paper distils from an LSQ+-quantized EfficientNet-B5 trained on
  ImageNet), trained on the run's data at the proxy resolution.
- Student of stage i and block type b (`StageSpace`): a 1x1 input projection from the teacher's stage-(i-1)
  channels to a width of stage i-1's list, the stage's layers of type b over its whole width list (elastic
  weights, `nas.supernet`), a 1x1 output projection to the teacher's stage-i channels. Trained as the official
  code: Adam, the per-stage learning rates 0.005, 0.01, 0.01, 0.01, 0.01, 0.005, weight decay 1e-4, gradient
  values clipped at 1, each step the largest, the smallest and two random sub-stages (sandwich rule), NSR against
  the teacher's output; then `student_lsq_epochs` with LSQ+ quantizers (`nas.lsq`: 8-bit weights and inputs of
  every convolution, learned scales), trained the same way, so the lookup's losses are those of INT8 sub-stages
  (the official code: 5 FP32 epochs, then 1 LSQ+ epoch). Deviations: a cosine schedule over each run's steps;
  BatchNorm statistics recalibrated per sampled sub-stage before its loss is read.
- Lookup rows: per (stage, block type, window), sampled sub-stages with the input width drawn from the previous
  stage's list, depth, kernels and expand ratios uniformly and widths from the window (as the official sampler);
  loss = NSR on held-out images; latency = the sum of the layers' INT8 latency at each deployment resolution
  (`strategies.spaceevo` corrects the sums by a line fitted on whole models).
- Layer latency (`LayerLatency`): INT8 (ONNX Runtime static quantization, one thread) of single layers,
  measured for every distinct layer when `latency_layers` is 0, else for that many drawn at random with a
  random forest (nn-Meter's kernel predictor: scikit-learn, on the layer's shape, MAdds and parameters) predicting
  the rest, in log milliseconds; the fixed stages (first conv and stage 0 at their smallest, the head after the
  smallest last width) are measured as the official code takes them from its minimal network.
"""
from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas import registry
from nas.graph import ArchGraph, GraphBuilder
from nas.layers import conv_bn_act
from nas.ops import Conv2d
from nas.space import Architecture, Choice, NASError, SearchSpace, Value
from search_spaces.spaceevo import BlockType, StageSpec, Superspace, _pick
from strategies.spaceevo_parts import nsr_loss

#: the official block-KD learning rate of stages 1-6 (Adam)
STAGE_LR = (0.005, 0.01, 0.01, 0.01, 0.01, 0.005)


# -- the teacher ---------------------------------------------------------------------------------------------
@dataclass
class Teacher:
    """A trained MBConv model cut at its stage boundaries: `sections[0]` runs the stem and the first layer (the
    output of SpaceEvo's stage 0), `sections[i]` stage i."""

    sections: list[torch.nn.Module]
    accuracy: float

    @torch.no_grad()
    def features(self, x: torch.Tensor, batch: int = 256) -> list[torch.Tensor]:
        """The outputs of stages 0..6 for images `x` (at the proxy resolution), in eval mode."""
        outs: list[list[torch.Tensor]] = [[] for _ in self.sections]
        for start in range(0, len(x), batch):
            h = x[start:start + batch]
            for i, section in enumerate(self.sections):
                h = section.eval()(h)
                outs[i].append(h)
        return [torch.cat(o) for o in outs]


def teacher_sections(graph: ArchGraph) -> list[ArchGraph]:
    """The graph of an MBConv model cut into stem + first layer, then one section per stage."""
    groups: dict[str, list[str]] = {}
    for node in graph.layers():
        key = "stage0" if node.group in ("stem", "first") else node.group.split(".")[0]
        groups.setdefault(key, []).append(node.name)
    stages = sorted((k for k in groups if k.startswith("stage")), key=lambda k: int(k[5:]))
    return [graph.section(groups[k]) for k in stages]


def train_teacher(name: str, data: Any, resolution: int, epochs: float, batch_size: int, seed: int,
                  path: Path) -> Teacher:
    """Train (or load from `path`) the named MBConv model on `data` at `resolution`, cut at its stages."""
    from nas.build import build_module
    from nas.train import TrainConfig, train_and_evaluate

    space = registry.make_space("mbconv", None, name)
    shape = (data.sample_shape[0], resolution, resolution)
    graph = space.graph(space.resolve(name), shape, data.num_classes)
    cut = teacher_sections(graph)
    strides = [s.input_shape[-1] // s.output_shape[-1] for s in cut]
    if strides[1:] != [2, 2, 2, 1, 2, 1]:
        raise NASError(f"teacher {name!r} has stage strides {strides[1:]}; SpaceEvo's students need six stages "
                       "with strides 2, 2, 2, 1, 2, 1 (efficientnet_b0, mobilenet_v2, mnasnet1_0, proxylessnas_mobile)")
    torch.manual_seed(seed)
    model = build_module(graph)
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["model"])
        accuracy = saved["accuracy"]
    else:
        config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=0.1, seed=seed)
        accuracy = train_and_evaluate(model, data, config, input_shape=shape).accuracy
        tmp = path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "accuracy": accuracy}, tmp)
        tmp.replace(path)
    state = model.state_dict()
    sections = []
    for section in cut:
        module = build_module(section)
        module.load_state_dict({k: v for k, v in state.items() if k in module.state_dict()})
        sections.append(module)
    return Teacher(sections, float(accuracy))


# -- a student: one stage of one block type, with projections ----------------------------------------------
class StageSpace(SearchSpace):
    """The sub-stages of stage `index` (1-6) of a superspace with block type `block`, between 1x1 projections
    from / to the teacher's channels: choices `in_w` (the previous stage's widths), `depth`, and per layer
    kernel `l<j>_k`, width `l<j>_w` (the stage's whole list) and expand ratio `l<j>_e`."""

    name = "spaceevo_stage"
    supernet_sharing = "elastic"

    def __init__(self, superspace: Superspace, index: int, block: BlockType, input_shape: tuple[int, ...],
                 out_channels: int) -> None:
        self.superspace, self.index, self.block = superspace, index, block
        self.stage: StageSpec = superspace.stages[index + 1]
        self.previous: StageSpec = superspace.stages[index]
        self.default_input, self.out_channels = tuple(input_shape), out_channels

    @cached_property
    def _choices(self) -> list[Choice]:
        out = [Choice("in_w", self.previous.widths, "ordinal"), Choice("depth", self.stage.depths, "ordinal")]
        for j in range(max(self.stage.depths)):
            when = None if j < min(self.stage.depths) else (lambda a, j=j: a["depth"] > j)
            if len(self.block.kernels) > 1:
                out.append(Choice(f"l{j}_k", self.block.kernels, "ordinal", when, slot=f"l{j}"))
            out.append(Choice(f"l{j}_w", self.stage.widths, "ordinal", when, slot=f"l{j}"))
            if len(self.block.expands) > 1:
                out.append(Choice(f"l{j}_e", self.block.expands, "ordinal", when, slot=f"l{j}"))
        return out

    def choices(self) -> list[Choice]:
        return self._choices

    def layers(self, arch: Mapping[str, Value]) -> list[tuple[int, int, float]]:
        b = self.block
        expand = b.expands[0] if b.expands else 0.0
        return [(arch.get(f"l{j}_k", b.kernels[0]), arch[f"l{j}_w"], arch.get(f"l{j}_e", expand))
                for j in range(arch["depth"])]

    def compose(self, in_width: int, layers: Sequence[tuple[int, int, float]]) -> Architecture:
        values: dict[str, Value] = {"in_w": in_width, "depth": len(layers)}
        for j, (k, w, e) in enumerate(layers):
            values[f"l{j}_w"] = w
            if len(self.block.kernels) > 1:
                values[f"l{j}_k"] = k
            if len(self.block.expands) > 1:
                values[f"l{j}_e"] = e
        return self.declared_values(values)

    def graph(self, arch: Mapping[str, Value], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None) -> ArchGraph:
        g = GraphBuilder(input_shape or self.default_input)
        g.group = "in_proj"
        x = g.add("in_proj", Conv2d(g.shape(g.input)[0], arch["in_w"], 1), g.input)
        for j, (k, w, e) in enumerate(self.layers(arch)):
            g.group = f"layer{j}"
            with g.candidate(f"l{j}", f"k{k}_w{w}_e{e}"):
                x = self.block.build(g, f"l{j}", x, w, k, e, self.stage.stride if j == 0 else 1)
        g.group = "out_proj"
        return g.finish(g.add("out_proj", Conv2d(g.shape(x)[0], self.out_channels, 1), x))

    def extreme(self, largest: bool) -> Architecture:
        pick = (lambda values: values[-1]) if largest else (lambda values: values[0])
        depth = pick(self.stage.depths)
        layers = [(pick(self.block.kernels), pick(self.stage.widths),
                   pick(self.block.expands) if self.block.expands else 0.0)] * depth
        return self.compose(pick(self.previous.widths), layers)

    def sample_in_window(self, widths: Sequence[int], rng: random.Random) -> Architecture:
        """A uniformly drawn sub-stage whose layer widths come from `widths` (a window)."""
        b = self.block
        layers = [(rng.choice(b.kernels), rng.choice(widths), rng.choice(b.expands) if b.expands else 0.0)
                  for _ in range(rng.choice(self.stage.depths))]
        return self.compose(rng.choice(self.previous.widths), layers)

    def supernet_cover(self) -> list[Architecture]:
        """As `SpaceEvoSpace.supernet_cover`, the input width counted as the layer before the first."""
        out = []
        for kernel_index in range(len(self.block.kernels)):
            for mode in ("largest", "alternate", "alternate-shifted"):
                k = self.block.kernels[kernel_index]
                e = self.block.expands[-1] if self.block.expands else 0.0
                layers = [(k, _pick(self.stage.widths, j + 1, mode), e) for j in range(max(self.stage.depths))]
                out.append(self.compose(_pick(self.previous.widths, 0, mode), layers))
        return out


def train_student(space: StageSpace, x: torch.Tensor, y: torch.Tensor, epochs: float, batch_size: int,
                  seed: int, variance_of: str = "teacher", progress: Callable[[], None] | None = None,
                  lsq_epochs: float = 0.0) -> Any:
    """An elastic supernet of `space` distilled to map teacher features `x` to `y` for `epochs`, then with LSQ+
    quantizers (`nas.lsq.quantize_supernet`) for `lsq_epochs` more (see the module docstring). Every BatchNorm
    starts with scale 1, as the official block-KD students do (only its supernet training zeroes the scale that
    ends a residual branch, as the space's graphs do)."""
    from nas.lsq import quantize_supernet
    from nas.supernet import Supernet

    torch.manual_seed(seed)
    net = Supernet(space, space.default_input, 1)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(module.weight)
    _distil(net, space, x, y, epochs, batch_size, seed, variance_of, progress)
    if lsq_epochs > 0:
        _distil(quantize_supernet(net), space, x, y, lsq_epochs, batch_size, seed + 1, variance_of, progress)
    return net.eval()


def _distil(net: Any, space: StageSpace, x: torch.Tensor, y: torch.Tensor, epochs: float, batch_size: int,
            seed: int, variance_of: str, progress: Callable[[], None] | None) -> None:
    """One training run of a student (its own Adam and cosine schedule, as each of the official scripts)."""
    optimizer = torch.optim.Adam(net.parameters(), lr=STAGE_LR[space.index - 1], weight_decay=1e-4, foreach=True)
    steps = student_steps(epochs, len(x), batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    rng, generator = random.Random(seed), torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=generator)
    net.train()
    for step in range(steps):
        start = (step * batch_size) % len(x)
        if start + batch_size > len(x):
            order = torch.randperm(len(x), generator=generator)
            start = 0
        idx = order[start:start + batch_size]
        optimizer.zero_grad()
        for arch in (space.extreme(True), space.extreme(False), space.sample(rng), space.sample(rng)):
            nsr_loss(net(x[idx], arch), y[idx], variance_of).backward()
        torch.nn.utils.clip_grad_value_(net.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if progress is not None:
            progress()


def student_steps(epochs: float, images: int, batch_size: int) -> int:
    """Optimizer steps of one student training run (none for 0 epochs, else at least one)."""
    return max(1, math.ceil(epochs * images / batch_size)) if epochs > 0 else 0


@torch.no_grad()
def sub_stage_loss(net: Any, arch: Architecture, x_bn: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                   variance_of: str = "teacher") -> float:
    """NSR of sub-stage `arch` (fake-quantized when the student has LSQ+ quantizers) on held-out features, after
    its BatchNorm statistics are re-estimated on `x_bn`."""
    from nas.lsq import quantized_subnet
    from nas.train import recalibrate_batchnorm

    model = quantized_subnet(net, arch) if net.quantized_bits else net.subnet(arch)
    recalibrate_batchnorm(model, x_bn, 64, math.ceil(len(x_bn) / 64), torch.Generator().manual_seed(0))
    return float(nsr_loss(model.eval()(x), y, variance_of))


# -- INT8 latency of layers ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerSpec:
    """One layer at its deployment input: block type (index in the superspace), input channels and size,
    output width, kernel, expand ratio and stride."""

    block: int
    in_ch: int
    hw: int
    width: int
    kernel: int
    expand: float
    stride: int

    @property
    def key(self) -> str:
        return f"{self.block}/{self.in_ch}x{self.hw}/{self.width}/k{self.kernel}/e{self.expand:g}/s{self.stride}"

    def graph(self, superspace: Superspace) -> ArchGraph:
        g = GraphBuilder((self.in_ch, self.hw, self.hw))
        block = superspace.blocks[self.block]
        return g.finish(block.build(g, "layer", g.input, self.width, self.kernel, self.expand, self.stride))

    def features(self, superspace: Superspace) -> list[float]:
        graph = self.graph(superspace)
        onehot = [float(self.block == b) for b in range(len(superspace.blocks))]
        return onehot + [self.in_ch, self.hw, self.width, self.kernel, self.expand, self.stride,
                         math.log(graph.macs() + 1), math.log(graph.params() + 1)]


def fixed_graphs(superspace: Superspace, resolution: int, in_channels: int = 3) -> list[ArchGraph]:
    """The fixed stages of the official minimal network: first conv and one stage-0 layer at their smallest
    widths, and the head after the smallest stage-6 width."""
    stem, stage0, last = superspace.stages[0], superspace.stages[1], superspace.stages[-1]
    g = GraphBuilder((in_channels, resolution, resolution))
    x = conv_bn_act(g, "stem", g.input, stem.widths[0], 3, stem.stride, "relu")
    front = g.finish(superspace.stage0.build(g, "s0_l0", x, stage0.widths[0], 3, superspace.stage0.expands[0], 1))
    hw = resolution // 32
    h = GraphBuilder((last.widths[0], hw, hw))
    from nas.ops import Flatten, GlobalAvgPool, Linear

    y = conv_bn_act(h, "final_expand", h.input, superspace.final_width, 1, act=superspace.head_act)
    y = conv_bn_act(h, "feature_mix", h.add("pool", GlobalAvgPool(), y), superspace.mix_width, 1,
                    act=superspace.head_act)
    y = h.add("classifier", Linear(superspace.mix_width, 1000), h.add("flatten", Flatten(), y))
    return [front, h.finish(y)]


class LayerLatency:
    """INT8 (or FP32) latency of layers on this machine, measured and cached in `path` (JSON: key -> ms), with a
    random forest for layers not measured (see the module docstring)."""

    def __init__(self, superspace: Superspace, path: Path, precision: str = "int8", rounds: int = 1) -> None:
        self.superspace, self.path = superspace, path
        self.measured: dict[str, float] = json.loads(path.read_text()) if path.exists() else {}
        self.precision, self.rounds = precision, rounds
        self.model: Any = None

    def measure(self, named: Mapping[str, ArchGraph], progress: bool = True) -> None:
        """Measure the graphs not measured yet (round-robin, fastest of `rounds`), saving after each round."""
        import tempfile

        from tqdm.auto import tqdm

        from nas.build import build_module
        from nas.timing import Conditions, measure_rounds, prepare

        todo = [(k, g) for k, g in named.items() if k not in self.measured]
        if not todo:
            return
        conditions = Conditions.make(precision=self.precision, rounds=self.rounds)
        with tempfile.TemporaryDirectory() as tmp:
            runners = []
            for i, (_, graph) in enumerate(tqdm(todo, desc="export layers", disable=not progress)):
                runners.append(prepare(build_module(graph), graph.input_shape, conditions, Path(tmp) / str(i)))
            with tqdm(total=len(todo) * self.rounds, desc=f"{self.precision} latency", disable=not progress) as bar:
                times = measure_rounds(runners, self.rounds, bar)
        self.measured.update({k: ms for (k, _), ms in zip(todo, times)})
        tmp_path = self.path.with_suffix(".tmp")
        tmp_path.write_text(json.dumps(self.measured, indent=0))
        tmp_path.replace(self.path)

    def fit(self, layers: Sequence[LayerSpec], seed: int) -> None:
        """Fit the random forest on the measured layers among `layers` (log milliseconds)."""
        from sklearn.ensemble import RandomForestRegressor

        known = [s for s in layers if s.key in self.measured]
        if len(known) < len(set(layers)) and known:
            x = np.array([s.features(self.superspace) for s in known])
            y = np.log([self.measured[s.key] for s in known])
            self.model = RandomForestRegressor(n_estimators=200, random_state=seed).fit(x, y)

    def ms(self, layers: Sequence[LayerSpec]) -> np.ndarray:
        """Measured where measured, else predicted."""
        out = np.array([self.measured.get(s.key, np.nan) for s in layers])
        missing = np.isnan(out)
        if missing.any():
            features = np.array([layers[i].features(self.superspace) for i in np.flatnonzero(missing).tolist()])
            out[missing] = np.exp(self.model.predict(features))
        return out
