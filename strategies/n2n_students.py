"""N2N's view of a network (Ashok et al., "N2N Learning: Network to Network Compression via Policy Gradient
Reinforcement Learning", ICLR 2018): layer descriptors read from an `ArchGraph`, the students its two stages make
by editing them, and the VGG- and ResNet-style teachers it is run on.

Layers: every node with an op except the structural ones (`Add`, `Mul`, `Concat`, `Flatten`, `Identity`), in
graph order. Descriptors, as the official code's: `[type, kernel, stride, outputs, padding]` per layer, raw numbers
(type an index into `LAYER_TYPES`; kernel, stride and padding of convs and pools; outputs of convs and linears;
0 where a layer has no such field). With `skip=True`, two more fields `[skip_start, skip_end]`: for a layer of a
residual block (a group holding an `Add`) its 1-based position from the block's first layer and from its last,
0 0 elsewhere (the paper's 7-number descriptor; the code ships with it off, and so do we by default).

Stage 1 (`remove_layers`): the kept layers in order; a removed layer's readers read its input, and every later layer
is refitted to its new input (a conv's input channels, a batch norm's channels, a linear's input features) keeping
its own outputs, as the code's `resizeToFit`. Never removed (`removal_fixed`, the code's `fixLayers`): the first and
the last layer, strided convs, linears and average pooling; and (ours, for blocks the code has no rule for, e.g.
inverted bottlenecks with squeeze-excite) convs that change the width inside a block whose branches meet. An
activation that comes to read another one runs out of place. Stage 2 (`shrink_layers`): four scales per layer
multiply kernel, stride, outputs and padding (new kernel = max(int(k * s), 1), stride = max(int(s' * s), 1), outputs
= max(int(o * s), 10), padding = int(p * s), as the code's `applyActionsShrinkage`). Fixed in stage 2
(`shrink_fixed`, the code's `fixParams`): strided convs, linears, average pooling, and the last layer; inside a
residual block only the outputs change (the code's `fixBlockLayers`). With `fix_pools` (ours, off by default) max
pooling keeps its kernel, stride and padding too: the code scales them, and halving a pool's stride leaves the
feature map large, so that on 28x28 inputs most VGG students read more than `LINEAR_LIMIT` features. Channels tied
through an `Add` move together: a coupled group takes the outputs chosen for its first shrinkable producer, the
shortcut resized to follow (the code does this by hand for its ResNet blocks, `processBlock`), and keeps its width
where it is tied to a fixed one.

Invalid students raise a one-line `NASError` (N2N's reward -1): shapes that no longer fit (an `Add`'s inputs
differ, a feature map smaller than a kernel), or a linear reading more than `LINEAR_LIMIT` features.

Deviations: outputs are never widened (the code's floor of 10 would widen a layer of fewer than 10 outputs); the
layers of a projection shortcut are in the sequence (the code skips them in stage 1; their strided conv is fixed by
the stride rule either way); any activation other than ReLU/ReLU6 is type 0 ("unknown").
"""
from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import replace

import numpy as np

from nas.graph import ArchGraph, GraphBuilder, Node
from nas.ops import (
    Activation,
    Add,
    AvgPool2d,
    BatchNorm2d,
    Concat,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool,
    Identity,
    Linear,
    MaxPool2d,
    Mul,
    Op,
    ShapeError,
)
from nas.space import NASError
from nas.transforms import channel_group, graph_of, refit_op, shrink_channels

#: the official code's layer types, in its order (a descriptor's first field is an index into this)
LAYER_TYPES = ("unknown", "conv", "maxpool", "relu", "batchnorm", "linear", "dropout", "logsoftmax", "avgpool",
               "l2norm", "softmax")
#: the fields a stage-2 scale multiplies, after the type (descriptor columns 1..4)
SHRINK_FIELDS = ("kernel", "stride", "outputs", "padding")
LINEAR_LIMIT = 50_000  # the code's LINEAR_THRESHOLD: a student whose linear reads more features is invalid
MIN_OUTPUTS = 10  # the code's floor on a shrunk layer's outputs
_STRUCTURAL = (Add, Mul, Concat, Flatten, Identity)


def layer_type(op: Op) -> int:
    """The index in `LAYER_TYPES` of `op`."""
    if isinstance(op, Conv2d):
        return 1
    if isinstance(op, MaxPool2d):
        return 2
    if isinstance(op, Activation):
        return 3 if op.kind in ("relu", "relu6") else 0
    if isinstance(op, BatchNorm2d):
        return 4
    if isinstance(op, Linear):
        return 5
    if isinstance(op, Dropout):
        return 6
    if isinstance(op, (AvgPool2d, GlobalAvgPool)):
        return 8
    return 0


def policy_layers(graph: ArchGraph) -> list[Node]:
    """The layers N2N's policies see, in graph order (module docstring)."""
    return [n for n in graph.layers() if not isinstance(n.op, _STRUCTURAL)]


def _fields(op: Op) -> tuple[int, int, int, int]:
    """kernel, stride, outputs, padding of `op` (0 where it has none)."""
    if isinstance(op, Conv2d):
        return op.kernel, op.stride, op.out_ch, op.pad
    if isinstance(op, (MaxPool2d, AvgPool2d)):
        return op.kernel, op.stride, 0, op.padding
    if isinstance(op, Linear):
        return 0, 0, op.out_features, 0
    return 0, 0, 0, 0


def residual_groups(graph: ArchGraph) -> set[str]:
    """The groups that hold an `Add` (residual blocks)."""
    return {n.group for n in graph.layers() if isinstance(n.op, Add)}


def descriptors(graph: ArchGraph, skip: bool = False) -> np.ndarray:
    """One row per policy layer: `[type, kernel, stride, outputs, padding]` (+ `[skip_start, skip_end]`)."""
    layers = policy_layers(graph)
    blocks = residual_groups(graph)
    members: dict[str, list[str]] = {}
    for n in layers:
        members.setdefault(n.group, []).append(n.name)
    rows = []
    for n in layers:
        row = [layer_type(n.layer_op), *_fields(n.layer_op)]
        if skip:
            if n.group in blocks:
                names = members[n.group]
                i = names.index(n.name)
                row += [i + 1, len(names) - i]
            else:
                row += [0, 0]
        rows.append(row)
    return np.array(rows, dtype=np.float32).reshape(len(rows), 7 if skip else 5)


# -- which layers the stages may touch -------------------------------------------------------------------------
def _strided_conv(op: Op | None) -> bool:
    return isinstance(op, Conv2d) and op.stride > 1


def _changes_width(node: Node) -> bool:
    op = node.op
    return (isinstance(op, Conv2d) and op.in_ch != op.out_ch) or (isinstance(op, Linear)
                                                                   and op.in_features != op.out_features)


def removal_fixed(graph: ArchGraph) -> list[bool]:
    """Per policy layer, whether stage 1 must keep it: the first and last, strided convs, linears, average pools
    (the code's rule), and, ours, a conv that changes the width inside a block whose branches meet in an `Add`,
    `Mul` or `Concat` (an inverted bottleneck's expand and project convs, a squeeze-excite's): without it the
    branches could no longer meet."""
    layers = policy_layers(graph)
    joined = {n.group for n in graph.layers() if isinstance(n.op, (Add, Mul, Concat))}
    return [i in (0, len(layers) - 1) or _strided_conv(n.op) or isinstance(n.op, (Linear, AvgPool2d, GlobalAvgPool))
            or (n.group in joined and _changes_width(n)) for i, n in enumerate(layers)]


def shrink_fixed(graph: ArchGraph, fix_pools: bool = False) -> np.ndarray:
    """Per policy layer and `SHRINK_FIELDS` field, whether stage 2 must keep it (module docstring)."""
    layers = policy_layers(graph)
    blocks = residual_groups(graph)
    fixed = np.zeros((len(layers), len(SHRINK_FIELDS)), dtype=bool)
    for i, n in enumerate(layers):
        op = n.layer_op
        if i == len(layers) - 1 or _strided_conv(op) or isinstance(op, (Linear, AvgPool2d, GlobalAvgPool)):
            fixed[i] = True
        elif fix_pools and isinstance(op, MaxPool2d):
            fixed[i] = True
        elif not isinstance(op, (Conv2d, MaxPool2d)):
            fixed[i] = True  # nothing to scale
        else:
            fixed[i, 2] = not (isinstance(op, Conv2d) and op.groups == 1)  # outputs: ungrouped convs only
            if n.group in blocks:
                fixed[i, [0, 1, 3]] = True
    return fixed


# -- building a student ------------------------------------------------------------------------------------------
def rebuild(graph: ArchGraph, removed: Set[str] = frozenset(), ops: dict[str, Op] | None = None) -> ArchGraph:
    """`graph` without the `removed` layers and with `ops` replacing layers' ops, every layer refitted to its
    input; a one-line `NASError` where the result is no valid network (module docstring)."""
    ops = ops or {}
    nodes: dict[str, Node] = {}
    alias: dict[str, str] = {}
    for n in graph.nodes():
        if n.op is None:
            nodes[n.name] = n
            continue
        if n.name in removed:
            alias[n.name] = alias.get(n.inputs[0], n.inputs[0])
            continue
        inputs = tuple(alias.get(i, i) for i in n.inputs)
        shapes = [nodes[i].shape for i in inputs]
        node = replace(n, op=ops.get(n.name, n.op), inputs=inputs)
        if isinstance(node.op, Activation) and isinstance(nodes[inputs[0]].op, Activation):
            node = replace(node, op=replace(node.op, inplace=False))  # its input's backward needs that input
        try:
            op = refit_op(node, shapes[0]) if len(inputs) == 1 else node.layer_op
            if isinstance(op, Linear) and op.in_features > LINEAR_LIMIT:
                raise NASError(f"its linear would read {op.in_features:,} features, more than {LINEAR_LIMIT:,}")
            if isinstance(op, (MaxPool2d, AvgPool2d)) and 2 * op.padding > op.kernel:
                raise ShapeError(f"padding {op.padding} is more than half of kernel {op.kernel}")
            nodes[n.name] = replace(node, op=op, shape=op.out_shape(shapes))
        except (ShapeError, NASError, ValueError) as err:
            raise NASError(f"invalid student at layer {n.name!r}: {err}") from None
    return graph_of(list(nodes.values()), alias.get(graph.output, graph.output))


def remove_layers(graph: ArchGraph, keep: Sequence[bool]) -> ArchGraph:
    """Stage 1: the student keeping the policy layers where `keep` is true (and every `removal_fixed` one)."""
    layers = policy_layers(graph)
    if len(keep) != len(layers):
        raise NASError(f"{len(keep)} keep decisions for {len(layers)} layers; accepted: one per policy layer")
    fixed = removal_fixed(graph)
    return rebuild(graph, {n.name for n, k, f in zip(layers, keep, fixed) if not (k or f)})


def scaled(op: Op, scales: Sequence[float], fixed: Sequence[bool]) -> tuple[Op, int | None]:
    """`op` with kernel, stride and padding scaled by `scales` (`SHRINK_FIELDS` order) where not `fixed`, and the
    outputs it asks for (None: unchanged)."""
    k, s, o, p = _fields(op)
    if not fixed[0]:
        k = max(int(k * scales[0]), 1)
    if not fixed[1]:
        s = max(int(s * scales[1]), 1)
    if not fixed[3]:
        p = int(p * scales[3])
    out = None if fixed[2] else min(o, max(int(o * scales[2]), MIN_OUTPUTS))
    if isinstance(op, Conv2d):
        return replace(op, kernel=k, stride=s, padding=p), out
    if isinstance(op, (MaxPool2d, AvgPool2d)):
        return replace(op, kernel=k, stride=s, padding=p), out
    return op, out


def shrink_layers(graph: ArchGraph, scales: np.ndarray | Sequence[Sequence[float]],
                  fix_pools: bool = False) -> ArchGraph:
    """Stage 2: the student with every policy layer's fields scaled by its row of `scales` (`SHRINK_FIELDS`
    order), `shrink_fixed` fields untouched, coupled channels moving together (module docstring)."""
    layers = policy_layers(graph)
    table = np.asarray(scales, dtype=float)
    if table.shape != (len(layers), len(SHRINK_FIELDS)):
        raise NASError(f"scales of shape {table.shape} for {len(layers)} layers; accepted: one row of "
                       f"{len(SHRINK_FIELDS)} ({', '.join(SHRINK_FIELDS)}) per policy layer")
    fixed = shrink_fixed(graph, fix_pools)
    ops, widths = {}, {}
    for n, row, fix in zip(layers, table, fixed):
        op, out = scaled(n.layer_op, row, fix)
        if op != n.op:
            ops[n.name] = op
        if out is not None and out < n.shape[0]:
            widths[n.name] = out
    student = rebuild(graph, ops=ops)
    done: set[str] = set()
    for name, width in widths.items():
        if name in done:
            continue
        group = channel_group(student, name)
        done.update(group)
        try:
            student = shrink_channels(student, name, width)
        except NASError:
            continue  # tied to a width that cannot change: the group keeps its width
    return student


# -- teachers ------------------------------------------------------------------------------------------------------
def _conv_bn_relu(g: GraphBuilder, name: str, x: str, out: int, stride: int = 1, relu: bool = True) -> str:
    x = g.add(f"{name}_conv", Conv2d(g.shape(x)[0], out, 3, stride=stride, padding=1), x)
    x = g.add(f"{name}_bn", BatchNorm2d(out), x)
    return g.add(f"{name}_relu", Activation("relu"), x) if relu else x


def vgg_teacher(input_shape: tuple[int, ...] = (1, 28, 28), classes: int = 10,
                layout: Sequence[int | str] = (32, "M", 64, "M", 128, 128, "M", 256, 256, "M")) -> ArchGraph:
    """A VGG-style teacher as the N2N code's CIFAR VGG: 3x3 conv + batch norm + ReLU per number of `layout`,
    2x2 max pooling per "M" (skipped once the feature map is 1x1, e.g. on 8x8 digits), a 1x1 average pooling,
    one linear."""
    g = GraphBuilder(input_shape)
    x = g.input
    for i, item in enumerate(layout):
        g.group = f"f{i}"
        if item == "M":
            if min(g.shape(x)[1:]) >= 2:
                x = g.add(f"pool{i}", MaxPool2d(2, 2), x)
        elif isinstance(item, int) and item > 0:
            x = _conv_bn_relu(g, f"c{i}", x, item)
        else:
            raise NASError(f"VGG layout item {item!r} is not accepted; accepted: a positive width or 'M'")
    g.group = "head"
    x = g.add("avgpool", AvgPool2d(1, 1), x)
    x = g.add("flatten", Flatten(), x)
    return g.finish(g.add("fc", Linear(int(np.prod(g.shape(x))), classes), x))


def resnet_teacher(input_shape: tuple[int, ...] = (1, 28, 28), classes: int = 10, width: int = 16,
                   blocks: Sequence[int] = (2, 2, 2, 2)) -> ArchGraph:
    """A ResNet-18-style teacher (the CIFAR ResNet of the N2N code, `width` channels in the first stage): a 3x3
    stem, four stages of basic blocks at widths `width` x (1, 2, 4, 8), strides (1, 2, 2, 2), projection
    shortcuts where the shape changes, global average pooling, one linear."""
    g = GraphBuilder(input_shape)
    g.group = "stem"
    x = _conv_bn_relu(g, "stem", g.input, width)
    for s, count in enumerate(blocks):
        for b in range(count):
            out, stride = width * 2 ** s, 2 if s and not b else 1
            g.group = name = f"s{s + 1}_b{b}"
            y = _conv_bn_relu(g, f"{name}_a", x, out, stride)
            y = _conv_bn_relu(g, f"{name}_b", y, out, relu=False)
            short = x
            if stride != 1 or g.shape(x)[0] != out:
                short = g.add(f"{name}_short_conv", Conv2d(g.shape(x)[0], out, 1, stride=stride, padding=0), x)
                short = g.add(f"{name}_short_bn", BatchNorm2d(out), short)
            x = g.add(f"{name}_relu", Activation("relu"), g.add(f"{name}_add", Add(), y, short))
    g.group = "head"
    x = g.add("flatten", Flatten(), g.add("gap", GlobalAvgPool(), x))
    return g.finish(g.add("fc", Linear(g.shape(x)[0], classes), x))
