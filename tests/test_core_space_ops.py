"""Space operations: `restrict` (GM-NAS sub-spaces), `decode` (DiffusionNAG), block signatures and blocks."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from nas.blocks import block_graph, block_names, block_signature, build_block, render_block
from nas.build import build_module
from nas.graph import GraphBuilder
from nas.ops import Activation, Add, Conv2d
from nas.registry import make_space, names
from nas.space import ArchitectureError, NASError, RestrictedSpace
from search_spaces.hytra import HyTraSpace
from search_spaces.mbconv import MBConvSpace
from search_spaces.nb201 import OPS, NB201Space

GROUP = ("nor_conv_3x3", "skip_connect")


# -- restrict ----------------------------------------------------------------------------------------------
def test_restrict_nb201_edge_keeps_samples_mutations_and_neighbours_inside():
    base = NB201Space()
    space = base.restrict({"edge_2_1": GROUP})
    rng = random.Random(0)
    samples = [space.sample(rng) for _ in range(100)]
    assert all(a["edge_2_1"] in GROUP for a in samples)
    assert {a["edge_2_1"] for a in samples} == set(GROUP)  # both allowed ops are drawn
    assert len({a["edge_1_0"] for a in samples}) == len(OPS)  # other edges untouched
    arch = samples[0]
    for _ in range(100):
        child = space.mutate(arch, rng)
        assert child["edge_2_1"] in GROUP and child != arch
        space.validate(child)
        arch = child
    near = space.neighbours(arch, rng)
    assert near and all(a["edge_2_1"] in GROUP for a in near)
    # 5 other ops on each of 5 edges + the one other allowed op on the restricted edge
    assert len(near) == 5 * 4 + 1
    assert space.size() == 5 ** 5 * 2
    assert len(space.encode(arch)) == len(base.encode(arch)) == 30
    np.testing.assert_array_equal(space.encode(arch), base.encode(arch))


def test_restrict_nb201_delegates_the_rest_to_the_base():
    base = NB201Space()
    space = base.restrict({"edge_3_1": GROUP})
    assert isinstance(space, RestrictedSpace)
    assert (space.name, space.default_input, space.default_classes) == ("nb201", (3, 32, 32), 10)
    assert space.channels == 16 and space.describe() == base.describe()
    ref = base.reference_archs()["nb201_best_cifar10"]
    assert space.benchmark_key(ref) == base.benchmark_key(ref) and space.canonical(ref) == base.canonical(ref)
    assert space.graph(ref).params() == base.graph(ref).params()
    # reference cells: nb201_resnet has 'none' on edge_3_1, so it is not a member
    assert "nb201_resnet" in base.reference_archs() and "nb201_resnet" not in space.reference_archs()
    assert "nb201_best_cifar10" in space.reference_archs()
    assert space.resolve(base.arch_string(ref)) == ref  # the base's arch-string format still resolves
    with pytest.raises(ArchitectureError, match="edge_3_1"):
        space.resolve("nb201_resnet")


def test_restrict_rejects_outside_architectures_naming_the_choice():
    space = NB201Space().restrict({"edge_3_1": GROUP})
    outside = dict(NB201Space().reference_archs()["nb201_resnet"])
    with pytest.raises(ArchitectureError) as err:
        space.validate(outside)
    msg = str(err.value)
    assert "'edge_3_1'" in msg and "'none'" in msg and "'nor_conv_3x3'" in msg and "\n" not in msg
    outside["edge_3_1"] = "bogus"  # the base's own errors still come first
    with pytest.raises(ArchitectureError, match="value 'bogus' for choice 'edge_3_1' is not accepted"):
        space.validate(outside)


@pytest.mark.parametrize("allowed, message", [
    ({"edge_9_9": ["none"]}, "cannot restrict unknown choice 'edge_9_9' of space 'nb201'; choices are: 'edge_1_0'"),
    ({"edge_1_0": []}, "cannot restrict choice 'edge_1_0' to no values; accepted values: 'none', 'skip_connect'"),
    ({"edge_1_0": ["none", "conv_5x5"]}, "cannot restrict choice 'edge_1_0' to 'conv_5x5'; accepted values: 'none'"),
])
def test_restrict_errors_are_one_line(allowed, message):
    with pytest.raises(NASError) as err:
        NB201Space().restrict(allowed)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_nested_restrict_intersects():
    space = NB201Space().restrict({"edge_1_0": ("none", "skip_connect", "nor_conv_1x1"), "edge_3_2": ("none",)})
    inner = space.restrict({"edge_1_0": ("skip_connect", "nor_conv_1x1", "avg_pool_3x3")})
    assert inner.base is space.base  # flattened, not stacked
    assert inner.restriction == {"edge_1_0": ("skip_connect", "nor_conv_1x1"), "edge_3_2": ("none",)}
    assert inner.size() == 5 ** 4 * 2 * 1
    rng = random.Random(3)
    assert all(a["edge_1_0"] in ("skip_connect", "nor_conv_1x1") and a["edge_3_2"] == "none"
               for a in (inner.sample(rng) for _ in range(50)))
    with pytest.raises(NASError) as err:
        space.restrict({"edge_1_0": ("avg_pool_3x3",)})
    assert "leaves no values" in str(err.value) and "'edge_1_0'" in str(err.value) and "\n" not in str(err.value)


def test_restrict_everything_to_one_architecture():
    space = NB201Space().restrict({f"edge_{j}_{i}": "skip_connect" for j in range(1, 4) for i in range(j)})
    assert space.size() == 1
    arch = space.sample(random.Random(0))
    assert set(arch.values()) == {"skip_connect"}
    assert space.neighbours(arch, random.Random(0)) == []
    with pytest.raises(NASError, match="single value"):
        space.mutate(arch, random.Random(0))


def test_restrict_mbconv_kernels_with_dependent_choices():
    base = MBConvSpace("small")
    space = base.restrict({"s3_l2_k": (3, 7), "s3_l0_k": 5})  # s3_l2 exists only when stage 3 has 3 layers
    rng = random.Random(1)
    samples = [space.sample(rng) for _ in range(100)]
    for arch in samples:
        space.validate(arch)
        assert arch["s3_l0_k"] == 5
        assert ("s3_l2_k" in arch) == (arch["s3_depth"] == 3)
        assert arch.get("s3_l2_k", 3) in (3, 7)
    assert {a["s3_depth"] for a in samples} == {1, 2, 3}
    arch = samples[0]
    for _ in range(100):  # depth changes make s3_l2_k appear: sampled from the restriction
        arch = space.mutate(arch, rng)
        space.validate(arch)
        assert arch["s3_l0_k"] == 5 and arch.get("s3_l2_k", 3) in (3, 7)
    # the ordinal kernel choice moves between the allowed values only (3 <-> 7, skipping 5)
    deep = next(a for a in samples if a["s3_depth"] == 3)
    kernels = {n["s3_l2_k"] for n in space.neighbours(deep, rng) if n["s3_depth"] == 3}
    assert kernels == {3, 7}
    assert space.size() is None and space.preset == "small"
    assert len(space.encode(deep)) == len(base.encode(deep))
    assert space.reference_archs() == {}  # small_max uses kernel 7 on s3_l0


def test_restrict_hytra_op_to_attention():
    base = HyTraSpace("small")
    space = base.restrict({"l6_op": "att"})
    rng = random.Random(2)
    samples = [space.sample(rng) for _ in range(200)]
    with_op = [a for a in samples if "l6_op" in a]
    assert len(with_op) > 20 and all(a["l6_op"] == "att" for a in with_op)
    assert len(with_op) < len(samples)  # where layer 6 sits above the attention levels, it has no op
    for arch in samples[:50]:
        space.validate(arch)
        child = space.mutate(arch, rng)
        space.validate(child)
        assert all(n.get("l6_op", "att") == "att" for n in space.neighbours(arch, rng))
    assert space.size() is None
    conv = next(a for a in (base.sample(rng) for _ in range(200)) if a.get("l6_op") == "conv")
    with pytest.raises(ArchitectureError, match="choice 'l6_op' is outside this restricted space; accepted: 'att'"):
        space.validate(conv)


# -- decode ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("space_name", names("spaces"))
def test_decode_inverts_encode_also_with_noise(space_name):
    space = make_space(space_name)
    rng, noise = random.Random(5), np.random.default_rng(5)
    for _ in range(50):
        arch = space.sample(rng)
        vec = space.encode(arch)
        assert space.decode(vec) == arch
        assert space.decode(vec + noise.normal(0, 0.1, vec.shape)) == arch
    assert space.decode(torch.tensor(vec, dtype=torch.float32)) == arch
    with pytest.raises(NASError) as err:
        space.decode(vec[:-1])
    assert f"vector of {len(vec)} numbers" in str(err.value) and "\n" not in str(err.value)


def test_decode_skips_inactive_slices_and_respects_restrictions():
    base = MBConvSpace("small")
    arch = base.reference_archs()["small_max"].replace(s3_depth=1)
    arch = base.complete(arch, random.Random(0))  # drops s3_l1_*, s3_l2_*
    vec = base.encode(arch)
    names_in_order = [c.name for c in base.choices()]
    start = sum(len(c.values) for c in base.choices()[:names_in_order.index("s3_l2_k")])
    vec[start:start + 3] = [9.0, 0.0, 0.0]  # a strong slice for an inactive choice is ignored
    assert base.decode(vec) == arch
    space = NB201Space().restrict({"edge_1_0": GROUP})
    vec = np.zeros(30)
    vec[0:5] = [0.9, 0.1, 0.0, 0.3, 0.8]  # argmax 'none' is outside: the best allowed op wins
    assert space.decode(vec)["edge_1_0"] == "nor_conv_3x3"


def test_decode_raises_for_architectures_breaking_the_space_rules():
    space = HyTraSpace("small")
    vec = np.zeros(sum(len(c.values) for c in space.choices()))
    start = 0
    for c in space.choices():  # ask every layer to halve: below the lowest level after three
        if c.name.endswith("_res"):
            vec[start + c.values.index("halve")] = 1.0
        start += len(c.values)
    with pytest.raises(ArchitectureError, match="halves the resolution below the lowest level") as err:
        space.decode(vec)
    assert "\n" not in str(err.value)


# -- block signatures ----------------------------------------------------------------------------------------
def test_identical_mbconv_layers_share_a_signature_and_differences_change_it():
    space = MBConvSpace("small")
    arch = space.reference_archs()["small_max"].replace(s3_l1_k=5, s3_l1_e=4, s3_l2_k=5, s3_l2_e=4)
    g = space.graph(arch)
    assert block_names(g)[:3] == ["stem", "first", "stage1.layer0"] and block_names(g)[-1] == "head"
    assert block_signature(g, "stage3.layer1") == block_signature(g, "stage3.layer2")
    assert block_signature(g, "stage3.layer0") != block_signature(g, "stage3.layer1")  # stride 2, other width
    other = space.graph(arch.replace(s3_l2_k=7))
    assert block_signature(other, "stage3.layer2") != block_signature(g, "stage3.layer2")
    assert block_signature(other, "stage3.layer1") == block_signature(g, "stage3.layer1")
    expand = space.graph(arch.replace(s3_l2_e=6))
    assert block_signature(expand, "stage3.layer2") != block_signature(g, "stage3.layer2")
    smaller = space.graph(arch.replace(resolution=24))  # same ops, smaller input
    assert block_signature(smaller, "stage3.layer1") != block_signature(g, "stage3.layer1")


def test_nb201_cells_share_signatures_across_cells_of_a_width():
    space = NB201Space()
    g = space.graph(space.reference_archs()["nb201_best_cifar10"])
    sig = {b: block_signature(g, b) for b in block_names(g)}
    assert len(sig) == 1 + 17 + 1
    assert len({sig[f"cells.{k}"] for k in range(5)}) == 1
    assert len({sig[f"cells.{k}"] for k in range(6, 11)}) == 1
    assert len({sig[f"cells.{k}"] for k in (0, 6, 12)}) == 3  # widths 16 / 32 / 64
    assert sig["cells.5"] != sig["cells.11"]  # the two reductions
    other = space.graph(space.reference_archs()["nb201_best_cifar100"])  # differs on edge_3_2 only
    assert block_signature(other, "cells.0") != sig["cells.0"]
    assert block_signature(other, "cells.5") == sig["cells.5"]


def test_signature_sees_wiring_not_names():
    def two_blocks(second_from_input: bool):
        g = GraphBuilder((4, 8, 8))
        x = g.input
        for k in range(2):
            g.group = f"b{k}"
            a = g.add(f"b{k}_conv_a", Conv2d(4, 4, 3), x)
            b = g.add(f"b{k}_conv_b", Conv2d(4, 4, 3), x if k == 1 and second_from_input else a)
            x = g.add(f"b{k}_act", Activation("relu"), g.add(f"b{k}_add", Add(), a, b))
        return g.finish(x)

    chain, fork = two_blocks(False), two_blocks(True)
    assert block_signature(chain, "b0") == block_signature(chain, "b1") == block_signature(fork, "b0")
    assert block_signature(fork, "b1") != block_signature(fork, "b0")  # same ops, other wiring


def test_block_errors_are_one_line():
    g = NB201Space().graph(NB201Space().reference_archs()["nb201_resnet"])
    with pytest.raises(NASError) as err:
        block_graph(g, "cells.99")
    assert "graph has no block 'cells.99'; blocks are: 'stem', 'cells.0'" in str(err.value)
    assert "\n" not in str(err.value)
    b = GraphBuilder((4, 8, 8))
    b.group = "stem"
    x = b.add("conv", Conv2d(4, 4, 3), b.input)
    b.group = "mix"
    y = b.add("add", Add(), b.input, x)  # reads the input and the stem: two outside inputs
    with pytest.raises(NASError, match="block 'mix' cannot stand alone: .*exactly one outside input") as err:
        block_graph(b.finish(y), "mix")
    assert "\n" not in str(err.value)


def _randomize(model: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5 if key.endswith("running_var")
                        else torch.randn(t.shape, generator=gen) * 0.2)


@pytest.mark.parametrize("space", [MBConvSpace("small"), HyTraSpace("small"), NB201Space(channels=8, cells=2)],
                         ids=["mbconv", "hytra", "nb201"])
def test_blocks_build_alone_and_reproduce_the_whole_network(space):
    arch = space.sample(random.Random(7))
    graph = space.graph(arch)
    whole = build_module(graph).eval()
    _randomize(whole, 0)
    weights = whole.state_dict()
    x = torch.randn(2, *graph.input_shape, generator=torch.Generator().manual_seed(1))
    captured: dict[str, torch.Tensor] = {}
    for group in block_names(graph):  # capture block outputs that a module computes inside the whole network
        last = block_graph(graph, group).output
        if hasattr(whole, last):
            getattr(whole, last).register_forward_hook(lambda m, i, o, group=group: captured.setdefault(group, o))
    with torch.no_grad():
        expected = whole(x)
        h = x
        for group in block_names(graph):
            block = build_block(graph, group).eval()
            keys = block.state_dict().keys()
            assert keys <= weights.keys()
            block.load_state_dict({k: weights[k] for k in keys})  # strict: every block key is a whole key
            h = block(h)
            assert h.shape[1:] == block_graph(graph, group).output_shape
            if group in captured:
                assert torch.equal(h, captured[group]), group
            assert "class Block(nn.Module)" in render_block(graph, group)
    assert captured and torch.equal(h, expected)
    assert expected.abs().sum() > 0
