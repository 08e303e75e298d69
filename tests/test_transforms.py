"""N2N graph transforms: removing blocks, shrinking coupled channels, inheriting the old model's weights."""
from __future__ import annotations

import random

import pytest
import torch

from nas.build import build_module, count_params
from nas.graph import ArchGraph, GraphBuilder
from nas.ops import (
    Activation,
    Add,
    BatchNorm2d,
    Concat,
    Conv2d,
    Flatten,
    GlobalAvgPool,
    Linear,
)
from nas.ops.attention import SelfAttention2d
from nas.registry import make_space
from nas.space import NASError
from nas.transforms import (
    channel_group,
    inherit,
    kept_channels,
    removable_groups,
    remove_group,
    shrink_channels,
)

# MBConv "small": stage 2 (SE, stride 2) has two layers, the second residual
ARCH = {"resolution": 32, "width_mult": 1.0, "s1_depth": 1, "s1_l0_k": 3, "s1_l0_e": 3,
        "s2_depth": 2, "s2_l0_k": 3, "s2_l0_e": 4, "s2_l1_k": 5, "s2_l1_e": 4,
        "s3_depth": 1, "s3_l0_k": 3, "s3_l0_e": 3, "s4_depth": 1, "s4_l0_k": 3, "s4_l0_e": 3}
SE_LAYER = ("s2_l1_expand_conv", "s2_l1_expand_bn", "s2_l1_expand_act", "s2_l1_dw_conv", "s2_l1_dw_bn",
            "s2_l1_dw_act", "s2_l1_se_pool", "s2_l1_se_expand", "s2_l1_se_gate", "s2_l1_se_scale")


@pytest.fixture(scope="module")
def mbconv() -> ArchGraph:
    space = make_space("mbconv", "small")
    return space.graph(space.resolve(ARCH))


def model_of(graph: ArchGraph) -> torch.nn.Module:
    """The built module in eval mode, BatchNorm statistics and affine parameters randomised (no zero gammas),
    so a wrong channel anywhere changes the output."""
    torch.manual_seed(0)
    model = build_module(graph).eval()
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point() and tensor.dim() == 1:
                tensor.uniform_(0.5, 1.5)
    return model


def kill_channels(model: torch.nn.Module, graph: ArchGraph, group: list[str], pruned: list[int]) -> None:
    """Make channels `pruned` of `group` dead in `model`: zero filters in the group's convs / linears and zero
    input weights in the layers reading the group, so dropping them leaves the output unchanged."""
    members = set(group)
    with torch.no_grad():
        for node in graph.layers():
            if isinstance(node.op, SelfAttention2d) and node.inputs[0] in members:
                getattr(model, node.name).to_qkv.weight[:, pruned] = 0
            if not isinstance(node.op, (Conv2d, Linear)) or getattr(node.op, "groups", 1) > 1:
                continue
            weight = getattr(model, node.name).weight
            if node.name in members:
                weight[pruned] = 0
            if node.inputs[0] in members:
                weight[:, pruned] = 0


def assert_same_function(old_graph: ArchGraph, old: torch.nn.Module, new_graph: ArchGraph, keep) -> torch.nn.Module:
    new = build_module(new_graph).eval()
    new.load_state_dict(inherit(old_graph, new_graph, old.state_dict(), keep))
    x = torch.randn(2, *old_graph.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(new(x), old(x), rtol=1e-4, atol=1e-5)
    return new


# -- removing a block --------------------------------------------------------------------------------------
def test_removing_second_layer_of_a_stage_drops_exactly_its_parameters(mbconv):
    small = remove_group(mbconv, "stage2.layer1")
    removed = sum(n.op.params() for n in mbconv.layers() if n.group == "stage2.layer1")
    assert removed > 0 and mbconv.params() - small.params() == removed
    assert not any(n.group == "stage2.layer1" for n in small.layers())
    assert small.node("s3_l0_expand_conv").inputs == ("s2_l0_project_bn",)
    model = build_module(small)
    assert count_params(model) == small.params()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_removing_a_stride2_first_layer_is_a_one_line_error(mbconv):
    with pytest.raises(NASError, match=r"'stage2\.layer0': its input shape \(24, 16, 16\) differs from its "
                                       r"output shape \(32, 8, 8\)") as err:
        remove_group(mbconv, "stage2.layer0")
    assert "\n" not in str(err.value)


def test_removable_groups_and_unknown_group(mbconv):
    assert removable_groups(mbconv) == ["first", "stage2.layer1"]
    with pytest.raises(NASError, match=r"no group 'stage9\.layer0'; accepted: 'stem', 'first', 'stage1\.layer0'"):
        remove_group(mbconv, "stage9.layer0")


def test_removing_a_residual_layer_keeps_the_other_layers_weights(mbconv):
    small = remove_group(mbconv, "stage2.layer1")
    old = model_of(mbconv).state_dict()
    new = inherit(mbconv, small, old)
    assert sorted(new) == sorted(k for k in old if not k.startswith("s2_l1_"))
    assert all(torch.equal(new[k], old[k]) for k in new)
    build_module(small).load_state_dict(new)  # strict: every key present, every shape right


# -- shrinking channels --------------------------------------------------------------------------------------
def test_shrinking_an_se_expand_conv_keeps_the_graph_valid(mbconv):
    assert channel_group(mbconv, "s2_l1_expand_conv") == list(SE_LAYER)
    small = shrink_channels(mbconv, "s2_l1_expand_conv", 40)
    assert all(small.node(n).shape[0] == 40 for n in SE_LAYER)
    assert small.node("s2_l1_se_reduce").op.in_ch == small.node("s2_l1_project_conv").op.in_ch == 40
    assert small.node("s2_l1_dw_conv").op.groups == 40
    # per channel of 128 -> 40: expand (32 in), 2 BNs, depthwise 5x5, SE reduce (32 out), SE expand (32 + bias),
    # project (32 out)
    assert mbconv.params() - small.params() == (128 - 40) * (32 + 2 + 25 + 2 + 32 + 33 + 32)
    model = build_module(small)
    assert count_params(model) == small.params()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("keep", ["first", "l1"])
def test_inherited_model_equals_old_model_with_pruned_channels_dead(mbconv, keep):
    small = shrink_channels(mbconv, "s2_l1_expand_conv", 40)
    pruned = list(range(40, 128)) if keep == "first" else sorted(random.Random(1).sample(range(128), 88))
    old = model_of(mbconv)
    kill_channels(old, mbconv, list(SE_LAYER), pruned)
    kept = kept_channels(mbconv, small, old.state_dict(), keep)
    assert kept["s2_l1_expand_conv"] == sorted(set(range(128)) - set(pruned))
    assert all(kept[n] == kept["s2_l1_expand_conv"] for n in SE_LAYER)
    new = assert_same_function(mbconv, old, small, keep)
    assert_same_function(mbconv, old, small, kept)  # the recorded indices give the same model
    torch.testing.assert_close(new.s2_l1_dw_bn.running_var, old.s2_l1_dw_bn.running_var[kept["s2_l1_dw_bn"]])


def test_shrinking_a_conv_that_meets_an_add_shrinks_the_other_branch(mbconv):
    group = channel_group(mbconv, "s2_l1_project_conv")
    assert group == ["s2_l0_project_conv", "s2_l0_project_bn", "s2_l1_project_conv", "s2_l1_project_bn", "s2_l1_add"]
    small = shrink_channels(mbconv, "s2_l1_project_conv", 24)
    assert small.node("s2_l0_project_conv").op.out_ch == 24
    assert small.node("s2_l1_expand_conv").op.in_ch == small.node("s3_l0_expand_conv").op.in_ch == 24
    assert count_params(build_module(small)) == small.params()
    old = model_of(mbconv)
    kill_channels(old, mbconv, group, pruned := [1, 4, 9, 16, 20, 25, 30, 31])
    assert all(i not in kept_channels(mbconv, small, old.state_dict(), "l1")["s2_l0_project_bn"] for i in pruned)
    assert_same_function(mbconv, old, small, "l1")


def test_nb201_cell_skip_edges_tie_a_conv_to_the_stem():
    space = make_space("nb201")
    graph = space.graph(space.resolve("nb201_resnet"))
    group = channel_group(graph, "cell0_e21_conv")
    assert {"stem_conv", "cell4_e21_conv", "cell4_e10_conv", "cell4_n3"} <= set(group)
    small = shrink_channels(graph, "cell0_e21_conv", 8)
    assert small.node("stem_conv").op.out_ch == small.node("cell5_a_conv").op.in_ch == 8
    assert small.node("cell5_short_conv").op.in_ch == 8
    assert count_params(build_module(small)) == small.params()
    old = model_of(graph)
    kill_channels(old, graph, group, list(range(8, 16)))
    assert_same_function(graph, old, small, "first")


def test_hytra_shrink_feeds_attention_and_couples_residual_layers():
    space = make_space("hytra", "small")
    graph = space.graph(space.resolve("small_t0"))
    att = next(n for n in graph.layers() if isinstance(n.op, SelfAttention2d))
    conv1 = att.name.replace("_att", "_conv1")
    small = shrink_channels(graph, conv1, 8)
    assert small.node(att.name).op.channels == 8
    assert {"l2_short_conv", "l3_conv3", "l6_conv3"} <= set(channel_group(graph, "l3_conv3"))
    old = model_of(graph)
    keep = sorted(random.Random(2).sample(range(att.op.channels), 8))
    kill_channels(old, graph, channel_group(graph, conv1), [c for c in range(att.op.channels) if c not in keep])
    assert kept_channels(graph, small, old.state_dict(), "l1")[conv1] == keep
    assert_same_function(graph, old, small, "l1")
    with pytest.raises(NASError, match=rf"cannot shrink '{att.name}': it is a SelfAttention2d layer"):
        shrink_channels(graph, att.name, 8)


def tiny(skip_from_input: bool) -> ArchGraph:
    g = GraphBuilder((8, 6, 6))
    x = g.add("conv", Conv2d(8, 8, 3), g.input)
    x = g.add("bn", BatchNorm2d(8), x)
    if skip_from_input:
        x = g.add("add", Add(), g.input, x)
    x = g.add("act", Activation("relu"), x)
    x = g.add("pool", GlobalAvgPool(), x)
    x = g.add("flatten", Flatten(), x)
    return g.finish(g.add("fc", Linear(8, 3), x))


def test_refusals_are_one_line_errors_naming_the_value():
    with pytest.raises(NASError, match=r"cannot shrink 'conv': Add 'add' ties its channels to 'input' "
                                       r"\(the network input\), whose width is fixed"):
        shrink_channels(tiny(True), "conv", 4)
    graph = tiny(False)
    with pytest.raises(NASError, match=r"cannot shrink 'fc': it is the network output"):
        shrink_channels(graph, "fc", 2)
    with pytest.raises(NASError, match=r"out_channels 9 for 'conv' is not accepted; accepted: an integer 1\.\.8"):
        shrink_channels(graph, "conv", 9)
    with pytest.raises(NASError, match=r"graph has no layer 'conv9'"):
        channel_group(graph, "conv9")
    small = shrink_channels(graph, "conv", 4)
    with pytest.raises(NASError, match=r"keep 'l2' is not accepted; accepted: 'first', 'l1'"):
        inherit(graph, small, build_module(graph).state_dict(), "l2")
    with pytest.raises(NASError, match=r"keep gives 1 choice\(s\) of \[2\] channels for the group of 'conv'"):
        inherit(graph, small, build_module(graph).state_dict(), {"bn": [0, 5]})


def test_concat_and_flatten_shift_the_readers_channels():
    g = GraphBuilder((3, 4, 4))
    a = g.add("a", Conv2d(3, 4, 3), g.input)
    b = g.add("b", Conv2d(3, 6, 1), g.input)
    x = g.add("cat", Concat(), a, b)
    x = g.add("c", Conv2d(10, 5, 3), x)
    x = g.add("flatten", Flatten(), x)
    graph = g.finish(g.add("fc", Linear(5 * 16, 3), x))
    small = shrink_channels(shrink_channels(graph, "a", 2), "c", 3)
    assert small.node("c").op.in_ch == 8 and small.node("fc").op.in_features == 3 * 16
    kept = kept_channels(graph, small, keep="first")
    assert kept["cat"] == [0, 1, 4, 5, 6, 7, 8, 9] and kept["flatten"] == list(range(48))
    old = model_of(graph)
    kill_channels(old, graph, ["a"], [2, 3])
    kill_channels(old, graph, ["c"], [3, 4])
    assert_same_function(graph, old, small, "first")


@pytest.mark.parametrize("keep", ["first", "l1"])
def test_a_chain_of_transforms_inherits_as_its_steps_do(mbconv, keep):
    removed = remove_group(mbconv, "stage2.layer1")
    narrow = shrink_channels(shrink_channels(removed, "s2_l0_expand_conv", 1), "s2_l0_project_conv", 16)
    assert narrow.node("s2_l0_dw_conv").op.groups == 1  # depthwise at one channel: a plain 1-channel conv
    old = model_of(mbconv).state_dict()
    direct = inherit(mbconv, narrow, old, keep)
    stepwise = inherit(removed, narrow, inherit(mbconv, removed, old, keep), keep)
    assert direct.keys() == stepwise.keys()
    assert all(torch.equal(direct[k], stepwise[k]) for k in direct)
    build_module(narrow).load_state_dict(direct)


def test_a_grouped_conv_reader_is_refused():
    g = GraphBuilder((8, 6, 6))
    x = g.add("conv", Conv2d(8, 8, 3), g.input)
    graph = g.finish(g.add("grouped", Conv2d(8, 4, 3, groups=2), x))
    with pytest.raises(NASError, match=r"'grouped' is a Conv2d with groups=2 and cannot take 6 input channels"):
        shrink_channels(graph, "conv", 6)
