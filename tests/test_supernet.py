"""Supernets from the graph: one store of weights, subnets equal to supernet paths, sharing modes, slots."""
from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from nas.registry import make_space
from nas.space import Architecture, NASError
from nas.supernet import BlockSupernet, Supernet


@pytest.fixture(autouse=True)
def one_thread():  # noqa: ANN201
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def randomise_bn(net: nn.Module) -> None:
    """Non-trivial BN (and zero-initialised gammas made non-zero) so every branch shows in the output."""
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)


CASES = [("nb201", None, None, (3, 8, 8)), ("mbconv", "small", "elastic", (3, 32, 32)),
         ("mbconv", "small", "separate", (3, 32, 32)), ("hytra", "small", None, (1, 16, 16))]


@pytest.mark.parametrize(("name", "preset", "sharing", "shape"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_subnet_computes_what_the_supernet_computes(name: str, preset: str | None, sharing: str | None,
                                                    shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    space = make_space(name, preset)
    net = Supernet(space, shape, 10, sharing=sharing)
    randomise_bn(net)
    rng = random.Random(1)
    for _ in range(3):
        arch = space.sample(rng)
        x = torch.randn(2, *net.arch_input_shape(arch))
        sub = net.subnet(arch)
        assert sum(p.numel() for p in sub.parameters()) == net.graph(arch).params()
        net.eval(), sub.eval()
        with torch.no_grad():
            torch.testing.assert_close(sub(x), net(x, arch), rtol=1e-5, atol=1e-6)
        net.train(), sub.train()  # batch statistics too (the same dropout masks from the same seed)
        torch.manual_seed(5)
        expected = sub(x)
        torch.manual_seed(5)
        torch.testing.assert_close(expected, net(x, arch), rtol=1e-4, atol=1e-5)


def test_separate_weights_per_candidate_and_shared_fixed_layers() -> None:
    space = make_space("nb201")
    net = Supernet(space, (3, 8, 8), 10)
    a = space.resolve("nb201_all_conv3x3")
    b = Architecture(dict(a, edge_1_0="nor_conv_1x1"))
    grads = []
    for arch in (a, b):
        net.zero_grad(set_to_none=True)
        net(torch.randn(2, 3, 8, 8), arch).sum().backward()
        grads.append({n for n, p in net.named_parameters() if p.grad is not None})
    shared = grads[0] & grads[1]
    assert any(n.startswith("weights.stem_conv") for n in shared)  # the stem is shared
    assert not any("e10" in n for n in shared)  # edge 1<-0 takes another candidate: nothing shared there
    assert any("e21" in n for n in shared)  # the other edges keep their op: shared
    # 5 ops on 6 edges in 15 cells: a conv op has conv + BN, avg-pool / skip / none no weights in a cell
    conv_keys = [k for k in net.weights if k.startswith("cell0_e10_")]
    assert sorted(conv_keys) == sorted(["cell0_e10_conv__nor_conv_1x1", "cell0_e10_conv__nor_conv_3x3",
                                        "cell0_e10_bn__nor_conv_1x1", "cell0_e10_bn__nor_conv_3x3"])


def test_elastic_layers_share_the_largest_tensor_with_kernel_transforms() -> None:
    space = make_space("mbconv", "small")
    net = Supernet(space, (3, 32, 32), 10)  # the space's default: elastic (Once-for-All)
    assert net.sharing == "elastic"
    dw = net.weights["s1_l0_dw_conv"]
    assert dw.depthwise and dw.kernels == [3, 5, 7] and set(dw.transforms) == {"7to5", "5to3"}
    assert dw.conv.weight.shape[0] == max(n.op.out_ch for n in net._nodes_of["s1_l0_dw_conv"])
    # a 3x3 kernel is the transformed centre of the transformed 5x5 centre of the 7x7
    small = next(n.op for n in net._nodes_of["s1_l0_dw_conv"] if n.op.kernel == 3)
    with torch.no_grad():
        dw.transforms["7to5"].add_(0.1 * torch.randn(25, 25))
        dw.transforms["5to3"].add_(0.1 * torch.randn(9, 9))
        w = dw.conv.weight[:small.out_ch, :1, 1:6, 1:6]
        w = (w.reshape(-1, 25) @ dw.transforms["7to5"].t()).reshape(w.shape)[:, :, 1:4, 1:4]
        expected = (w.reshape(-1, 9) @ dw.transforms["5to3"].t()).reshape(w.shape[0], 1, 3, 3)
        torch.testing.assert_close(dw.weight_for(small), expected)
    # both architectures train the same tensor
    rng = random.Random(0)
    a, b = space.sample(rng), space.sample(rng)
    for arch in (a, b):
        net.zero_grad(set_to_none=True)
        net(torch.randn(2, *net.arch_input_shape(arch)), arch).sum().backward()
        assert dw.conv.weight.grad is not None


def test_slot_parameters_address_one_choice_in_every_cell() -> None:
    net = Supernet(make_space("nb201"), (3, 8, 8), 10)
    conv3 = net.slot_parameters("edge_2_1", "nor_conv_3x3")
    assert len(conv3) == 3 * 15  # per cell: the conv's weight, the BN's weight and bias
    everything = net.slot_parameters("edge_2_1")
    assert set(map(id, conv3)) < set(map(id, everything))
    assert all(p.dim() in (1, 4) for p in everything)
    with pytest.raises(NASError, match="no weights for slot 'edge_9_9'"):
        net.slot_parameters("edge_9_9")


def test_an_architecture_outside_the_cover_is_a_one_line_error() -> None:
    space = make_space("nb201")
    net = Supernet(space, (3, 8, 8), 10, cover=[space.resolve("nb201_all_conv3x3")])
    with pytest.raises(NASError, match="no weights for layer .*supernet_cover"):
        net(torch.zeros(1, 3, 8, 8), Architecture(dict(space.resolve("nb201_all_conv3x3"), edge_1_0="nor_conv_1x1")))
    with pytest.raises(NASError, match="sharing 'tied' is not one of"):
        Supernet(space, (3, 8, 8), 10, sharing="tied")


def test_block_supernets_have_the_official_weight_counts() -> None:
    """The graph-derived block supernets hold exactly the weights of the hand-written ones they replace
    (13,253,872 for HyTra small: one set per layer, op and level, input variants sharing the body; 2,891,632
    for MBConv small: one per layer slot and (kernel, expand), as BossNAS's MixOps)."""
    hytra = BlockSupernet(make_space("hytra", "small"), (1, 32, 32), 10)
    assert sum(p.numel() for p in hytra.parameters()) == 13_253_872 and len(hytra.state_dict()) == 2822
    mbconv = BlockSupernet(make_space("mbconv", "small"), (3, 32, 32), 10, sharing="separate")
    assert sum(p.numel() for p in mbconv.parameters()) == 2_891_632 and len(mbconv.state_dict()) == 1728
    with pytest.raises(NASError, match="has no head"):
        hytra(torch.zeros(1, 1, 32, 32), make_space("hytra", "small").reference_archs()["small_t0"])


def test_a_supernet_pickles_and_copies_without_its_compiled_programs() -> None:
    import copy
    import pickle

    space = make_space("nb201")
    net = Supernet(space, (3, 8, 8), 10).eval()
    arch, x = space.resolve("nb201_resnet"), torch.randn(2, 3, 8, 8)
    expected = net(x, arch)
    for other in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        assert not other._programs  # rebuilt on demand, on the copy's own weights
        torch.testing.assert_close(other(x, arch), expected)
        other.weights[next(iter(other.weights))].weight.data.zero_()  # the copy's weights, not the original's
    torch.testing.assert_close(net(x, arch), expected)


def test_initial_weights_do_not_depend_on_what_was_built_before():
    """Same seed, same initial supernet, whether or not its ops were seen before (a cached check once drew from
    torch's generator the first time it met an op, so a resumed run started from other weights)."""
    from nas import supernet as supernet_module

    space = make_space("nb201")
    supernet_module.stateful.cache_clear()
    torch.manual_seed(0)
    first = Supernet(space, (3, 8, 8), 10).state_dict()
    torch.manual_seed(0)
    second = Supernet(space, (3, 8, 8), 10).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
