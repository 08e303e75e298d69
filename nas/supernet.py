"""Weight-sharing supernets derived from the architecture graph (SPOS, NAS-Bench-201's one-shot baselines,
Once-for-All, BossNAS, GM-NAS).

A `Supernet` holds one store of weights for every layer the architectures of a space can have, and runs an
architecture by executing its graph (`space.graph(arch)`) with the layers taken from that store. The layers
are constructed from the same `op.source()` statements as stand-alone networks (`nas.build`), so every layer
has one definition, and `subnet(arch)` is the stand-alone model with the weights the architecture uses: it
computes what the supernet computes for that architecture.

Weight sharing (`sharing`):
- "separate": one set of weights per node name, candidate (`Node.variant`) and op. Candidates of a searchable
  slot never share weights; the fixed layers (stem, head) are shared by every architecture (SPOS, the
  NAS-Bench-201 one-shot supernet, BossNAS's MixOps).
- "elastic": the Conv2d, BatchNorm2d and Linear layers of one node name share one largest tensor (Once-for-All's
  weight entanglement, `nas.elastic`); other ops stay separate.

The store is made from the graphs of a cover (`space.supernet_cover()`, architectures whose graphs together
hold every layer of the space); an architecture with a layer outside the store is a one-line error. Each
architecture's graph is compiled once into a list of calls (cached), so running a fixed architecture costs
what its stand-alone module costs.

`BlockSupernet` adds the block-wise view of a `BlockSpace` (`nas.blockwise`): run the stem and one block along
a candidate path, and the partition of the weights into stem and blocks (BossNAS).
"""
from __future__ import annotations

import copy
import re
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from functools import cache
from types import SimpleNamespace
from typing import Any, cast

import torch
from torch import nn

from nas.blockwise import BlockPaths, BlockSpace, Path
from nas.build import build_module, call_function, construct, rendered_ops
from nas.elastic import ELASTIC, Elastic, ElasticCall, ElasticConv2d
from nas.graph import INPUT, ArchGraph, Node
from nas.ops import Conv2d, Op
from nas.space import Architecture, NASError, SearchSpace, Value, one_of

SHARING = ("separate", "elastic")
CACHED_PROGRAMS = 512


class Program:
    """One compiled graph: its layers' calls in topological order, each input freed after its last use."""

    def __init__(self, graph: ArchGraph, steps: list[tuple[str, Callable[..., torch.Tensor], Any, tuple[str, ...],
                                                              tuple[str, ...]]]) -> None:
        self.graph = graph
        self.steps = steps

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        values = {INPUT: x}
        for name, fn, holder, inputs, dead in self.steps:
            values[name] = fn(holder, *[values[i] for i in inputs])
            for key in dead:
                del values[key]
        return values[self.graph.output]


def _identifier(text: str) -> str:
    return re.sub(r"\W", "_", text)


class Supernet(nn.Module):
    """Every layer of a space's architectures in one weight store; `forward(x, arch)` runs one of them."""

    def __init__(self, space: SearchSpace, data_shape: tuple[int, ...], num_classes: int,
                 sharing: str | None = None, cover: Iterable[Mapping[str, Value]] | None = None,
                 kernel_transform: bool = True) -> None:
        super().__init__()
        sharing = sharing or space.supernet_sharing
        if sharing not in SHARING:
            raise NASError(f"supernet sharing {sharing!r} is not one of {one_of(SHARING)}")
        self.space = space
        self.data_shape = tuple(data_shape)
        self.num_classes = num_classes
        self.sharing = sharing
        self.weights = nn.ModuleDict()  # store key -> module holding weights
        self.stateless = nn.ModuleDict()  # activations, pools, dropout: one module per op, no state
        self._store_keys: dict[Hashable, str] = {}  # sharing key -> store key
        self._stateless_keys: dict[Any, str] = {}
        self._nodes_of: dict[str, list[Node]] = {}  # store key -> the nodes that use it (from the cover)
        self._programs: OrderedDict[Hashable, Program] = OrderedDict()
        self.quantized_bits = 0  # LSQ+ bits once `nas.lsq.quantize_supernet` wrapped its layers (0: float)
        graphs = [self.graph(arch) for arch in (space.supernet_cover() if cover is None else cover)]
        self._build_store([node for graph in graphs for node in self._stored_layers(graph)], kernel_transform)

    # -- the store --------------------------------------------------------------------------------------
    def _stored_layers(self, graph: ArchGraph) -> Iterable[Node]:
        """The layers of a cover graph that get weights in the store (all of them here)."""
        return graph.layers()

    def _sharing_key(self, node: Node) -> Hashable:
        if self.sharing == "elastic" and type(node.op) in ELASTIC:
            return node.name
        return node.name, node.variant, node.op

    def _build_store(self, nodes: Sequence[Node], kernel_transform: bool) -> None:
        by_key: dict[Hashable, list[Node]] = {}
        for node in nodes:
            if stateful(node.op):
                by_key.setdefault(self._sharing_key(node), []).append(node)
        per_name: dict[str, list[Hashable]] = {}
        for key, group in by_key.items():
            per_name.setdefault(group[0].name, []).append(key)
        for name, keys in per_name.items():
            variants = [by_key[k][0].variant for k in keys]
            for j, key in enumerate(keys):
                group = by_key[key]
                label = name
                if len(keys) > 1:
                    label += "__" + _identifier(group[0].variant or "fixed")
                    if variants.count(group[0].variant) > 1:
                        label += f"_{j}"
                ops = list(dict.fromkeys(n.layer_op for n in group))
                if not isinstance(key, str):
                    module = construct(ops[0])
                    assert module is not None  # the group's op is stateful: its module holds weights
                elif isinstance(ops[0], Conv2d):  # a node is the same kind of layer in every architecture
                    module = ElasticConv2d(cast("list[Conv2d]", ops), kernel_transform)
                else:
                    module = ELASTIC[type(ops[0])](ops)
                self.weights[label] = module
                self._store_keys[key] = label
                self._nodes_of[label] = group

    def store_key(self, node: Node) -> str | None:
        """The store key of a layer's weights; None for a layer without state."""
        if not stateful(node.op):
            return None
        key = self._store_keys.get(self._sharing_key(node))
        if key is None:
            raise NASError(f"the supernet has no weights for layer {node.name!r} ({node.op}); the space's "
                           "supernet_cover() misses an architecture that has it")
        return key

    def _callable(self, node: Node, op: Any) -> Any:
        """What a layer's call reads as its module: a stored module, an elastic view of one, or a stateless one."""
        if op.source() is None:
            return None
        if not stateful(op):
            key = self._stateless_keys.setdefault(op, f"m{len(self._stateless_keys)}")
            if key not in self.stateless:
                self.stateless[key] = construct(op).train(self.training)  # type: ignore[union-attr]
            return self.stateless[key]
        stored = self.store_key(node)
        assert stored is not None  # a stateful op has weights in the store
        module = self.weights[stored]
        return ElasticCall(cast(Elastic, module), node.layer_op) if isinstance(self._sharing_key(node), str) else module

    # -- architectures ----------------------------------------------------------------------------------
    def arch_input_shape(self, arch: Mapping[str, Value]) -> tuple[int, ...]:
        """The input `arch`'s model takes for this supernet's data (e.g. its resolution choice)."""
        return tuple(self.space.input_shape_for(arch, self.data_shape))

    def graph(self, arch: Mapping[str, Value]) -> ArchGraph:
        return self.space.graph(arch, self.arch_input_shape(arch), self.num_classes)

    def compile_graph(self, graph: ArchGraph) -> Program:
        """The calls that run `graph` with this supernet's weights."""
        last_use = {src: node.name for node in graph.nodes() for src in node.inputs}
        steps = []
        for name, op in rendered_ops(graph).items():
            node = graph.node(name)
            module = self._callable(node, op)
            dead = tuple(dict.fromkeys(s for s in node.inputs if last_use[s] == name and s != graph.output))
            steps.append((name, call_function(op, len(node.inputs)), SimpleNamespace(m=module), node.inputs, dead))
        return Program(graph, steps)

    def program(self, key: Hashable, make: Callable[[], ArchGraph]) -> Program:
        """The compiled program cached under `key` (the graph made by `make` on a miss)."""
        program = self._programs.get(key)
        if program is None:
            program = self._programs[key] = self.compile_graph(make())
            if len(self._programs) > CACHED_PROGRAMS:
                self._programs.popitem(last=False)
        else:
            self._programs.move_to_end(key)
        return program

    def forget_programs(self) -> None:
        """Drop the compiled programs (after the store's modules were replaced, e.g. by quantized ones)."""
        self._programs.clear()

    def forward(self, x: torch.Tensor, arch: Mapping[str, Value]) -> torch.Tensor:
        arch = Architecture(arch)
        return self.program(arch, lambda: self.graph(arch))(x)

    def __deepcopy__(self, memo: dict[int, Any]) -> Supernet:
        """A copy with its own weights (BossNAS's target network). What describes the space (the space, its
        block paths, the nodes behind each stored layer) is read-only and shared; compiled programs, which call
        the original's modules, are rebuilt on demand. Copying all of it took 5.7 s for HyTra's supernet."""
        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        for name, value in self.__dict__.items():
            if name in ("space", "paths", "_nodes_of"):
                clone.__dict__[name] = value
            elif name == "_programs":
                clone.__dict__[name] = OrderedDict()
            elif name in ("_store_keys", "_stateless_keys"):
                clone.__dict__[name] = dict(value)
            else:
                clone.__dict__[name] = copy.deepcopy(value, memo)
        return clone

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the compiled programs (functions made by `eval`); they are rebuilt on demand."""
        state = self.__dict__.copy()
        state["_programs"] = OrderedDict()
        return state

    # -- weights of one architecture, one slot ------------------------------------------------------------
    def subnet_state_dict(self, arch: Mapping[str, Value]) -> dict[str, torch.Tensor]:
        """The weights `arch` uses, keyed as its stand-alone model (`space.build(arch)`) names them (a block
        supernet has no head: load its part with `strict=False`)."""
        state: dict[str, torch.Tensor] = {}
        for node in self._stored_layers(self.graph(arch)):
            key = self.store_key(node)
            if key is None:
                continue
            module = self.weights[key]
            elastic = isinstance(self._sharing_key(node), str)  # an elastic module (ModuleDict types it nn.Module)
            part = cast(Elastic, module).state_for(node.op) if elastic else module.state_dict()
            state.update({f"{node.name}.{k}": v.detach().clone() for k, v in part.items()})
        return state

    def subnet(self, arch: Mapping[str, Value]) -> nn.Module:
        """The stand-alone model of `arch` with the weights it has in the supernet (for fine-tuning)."""
        model = build_module(self.graph(arch))
        model.load_state_dict(self.subnet_state_dict(arch))
        return model

    def slot_parameters(self, slot: str, variant: str | None = None) -> list[nn.Parameter]:
        """The parameters of the layers of searchable `slot` (of one candidate `variant`, if given), e.g. every
        cell's ops on one NB201 edge (GM-NAS matches gradients of the weights outside such a slot)."""
        keys = [k for k, nodes in self._nodes_of.items()
                if any(n.slot == slot and (variant is None or n.variant == variant) for n in nodes)]
        if not keys:
            slots = sorted({n.slot for nodes in self._nodes_of.values() for n in nodes if n.slot})
            raise NASError(f"supernet has no weights for slot {slot!r}"
                           + (f" variant {variant!r}" if variant is not None else "")
                           + f"; slots: {one_of(slots)[:200]}")
        return list(dict.fromkeys(p for k in keys for p in self.weights[k].parameters()))

    def state_keys(self, store_keys: Iterable[str]) -> list[str]:
        """The state-dict keys of the given store entries."""
        return [f"weights.{key}.{name}" for key in store_keys for name in self.weights[key].state_dict()]


@cache
def stateful(op: Op) -> bool:
    """Whether an op's module holds parameters or buffers (False for functional ops, activations, pools). The
    module is built on the meta device, so this (cached) check draws nothing from torch's random generator: a
    supernet's initial weights do not depend on which ops earlier code happened to check."""
    with torch.device("meta"):
        module = construct(op)
    return module is not None and any(True for _ in module.state_dict())


class BlockSupernet(Supernet):
    """A supernet cut into the blocks of a `BlockSpace` (BossNAS): the stem and the blocks' layers only (the
    head is never trained block-wise, so it has no weights here)."""

    def __init__(self, space: BlockSpace, data_shape: tuple[int, ...], num_classes: int,
                 sharing: str = "separate", kernel_transform: bool = True) -> None:
        if not isinstance(space, BlockSpace):
            raise NASError(f"space {space.name!r} has no block-wise view; block-wise supernets need a BlockSpace")
        self.paths: BlockPaths = space.block_paths(tuple(data_shape))
        super().__init__(space, data_shape, num_classes, sharing, self.paths.cover(), kernel_transform)
        self.num_blocks = self.paths.num_blocks
        self.input_shape = self.paths.input_shape  # the block view's fixed input

    def arch_input_shape(self, arch: Mapping[str, Value]) -> tuple[int, ...]:
        return self.paths.input_shape
    def _parts(self, graph: ArchGraph) -> tuple[list[str], list[list[str]]]:
        """The stem's layers (before block 0) and each block's layers, by name."""
        stem: list[str] = []
        blocks: list[list[str]] = [[] for _ in range(self.paths.num_blocks)]
        for node in graph.layers():
            block = self.paths.block_of(node.group)
            if block is not None:
                blocks[block].append(node.name)
            elif not any(blocks):
                stem.append(node.name)
        return stem, blocks

    def _stored_layers(self, graph: ArchGraph) -> Iterable[Node]:
        stem, blocks = self._parts(graph)
        return [graph.node(n) for n in stem + [n for names in blocks for n in names]]

    # -- the block-wise protocol, delegated to the space's view ------------------------------------------
    def initial_state(self) -> Hashable:
        return self.paths.initial_state()

    def candidates(self, block: int, entry: Hashable) -> list[Path]:
        return self.paths.candidates(block, entry)

    def exit_state(self, block: int, path: Path, entry: Hashable) -> Hashable:
        return self.paths.exit_state(block, path, entry)

    def arch_of(self, paths: Sequence[Path]) -> Architecture:
        return self.paths.arch_of(paths)

    def paths_of(self, arch: Mapping[str, Value]) -> list[Path]:
        return self.paths.paths_of(Architecture(arch))

    # -- running blocks ----------------------------------------------------------------------------------
    def _block_program(self, block: int, path: Path, entry: Hashable) -> Program:
        def make() -> ArchGraph:
            self.paths.check_path(block, path, entry)
            graph = self.graph(self.paths.arch_of(self.paths.completion(block, entry, path)))
            return graph.section(self._parts(graph)[1][block])
        return self.program(("block", block, tuple(path), repr(entry)), make)

    def _stem_program(self) -> Program:
        def make() -> ArchGraph:
            graph = self.graph(self.paths.arch_of(self.paths.completion(0, self.initial_state(),
                                                                        self.candidates(0, self.initial_state())[0])))
            return graph.section(self._parts(graph)[0])
        return self.program(("stem",), make)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self._stem_program()(x)

    def forward_block(self, block: int, path: Path, x: torch.Tensor, entry: Hashable) -> torch.Tensor:
        """Run block `block` along `path` on the output of the blocks before it (entered in `entry`)."""
        return self._block_program(block, tuple(path), entry)(x)

    def output_shape(self, block: int, path: Path, entry: Hashable) -> tuple[int, ...]:
        return self._block_program(block, tuple(path), entry).graph.output_shape

    def forward_paths(self, x: torch.Tensor, paths: Sequence[Path]) -> torch.Tensor:
        """The stem and blocks 0..len(paths)-1 along `paths`; the last block's output."""
        entry = self.initial_state()
        x = self.stem(x)
        for block, path in enumerate(paths):
            x = self.forward_block(block, path, x, entry)
            entry = self.exit_state(block, path, entry)
        return x

    # -- the partition of the weights ----------------------------------------------------------------------
    def _keys_where(self, keep: Callable[[Node], bool]) -> list[str]:
        return [key for key, nodes in self._nodes_of.items() if keep(nodes[0])]

    def path_state_keys(self, block: int, path: Path, entry: Hashable) -> list[str]:
        """State-dict keys of the weights one candidate `path` of `block` (entered in `entry`) uses."""
        graph = self._block_program(block, tuple(path), entry).graph
        return self.state_keys(dict.fromkeys(k for n in graph.layers() if (k := self.store_key(n)) is not None))

    def stem_state_keys(self) -> list[str]:
        """State-dict keys of the stem's weights."""
        return self.state_keys(self._keys_where(lambda n: self.paths.block_of(n.group) is None))

    def block_state_keys(self, block: int) -> list[str]:
        """State-dict keys of the weights any candidate of `block` may use."""
        return self.state_keys(self._keys_where(lambda n: self.paths.block_of(n.group) == block))

    def forward(self, x: torch.Tensor, arch: Mapping[str, Value]) -> torch.Tensor:  # noqa: ARG002
        raise NASError("a block supernet has no head: run blocks with forward_paths, or use a Supernet")
