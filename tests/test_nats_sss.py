"""The NATS-Bench size space: exact published costs, what each width controls, channel strings."""
from __future__ import annotations

import random

import pytest
import torch

from nas import registry
from nas.build import count_macs, count_params
from nas.space import ArchitectureError
from search_spaces.nats_sss import NATSSizeSpace
from search_spaces.nb201 import DATASETS, NB201Space

# NATS-Bench's own cost records (fake_torch_dir fixtures of the official NATS-Bench repository, arch 0, 11, 284):
# per dataset (params in units, "flops" = conv/linear multiply-adds + classifier bias adds)
OFFICIAL = {
    "8:8:8:8:8": {"cifar10": (11714, 4481114), "cifar100": (12524, 4481924), "imagenet16_120": (12704, 1121336)},
    "8:8:8:16:32": {"cifar10": (49202, 6840650), "cifar100": (52172, 6843620), "imagenet16_120": (52832, 1714040)},
    "8:8:40:32:40": {"cifar10": (144834, 21827994), "cifar100": (148524, 21831684),
                     "imagenet16_120": (149344, 5461816)},
}


@pytest.fixture(scope="module")
def space() -> NATSSizeSpace:
    return registry.make_space("nats_sss")


@pytest.mark.parametrize("channels", list(OFFICIAL))
@pytest.mark.parametrize("dataset", list(DATASETS))
def test_costs_equal_nats_bench_records(space, channels, dataset):
    shape, classes = DATASETS[dataset]
    graph = space.graph(space.resolve(channels), shape, classes)
    params, flops = OFFICIAL[channels][dataset]
    assert graph.params() == params
    assert graph.macs() + classes == flops


def test_built_module_matches_graph_and_runs(space):
    arch = space.resolve("16:8:64:8:32")  # every layer changes width
    graph = space.graph(arch)
    model = space.build(arch)
    assert count_params(model) == graph.params()
    assert count_macs(model, (3, 32, 32)) == graph.macs()
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_widths_control_the_official_layers(space):
    graph = space.graph(space.resolve("8:16:24:32:40"))
    shape = {n.name: n.shape for n in graph.nodes()}
    assert shape["stem_bn"][0] == 8 and shape["cell0_n3"] == (8, 32, 32)  # c1: stem and stage-1 cell
    assert shape["cell1_add"] == (16, 16, 16)  # c2: first reduction block
    assert shape["cell2_n3"] == (24, 16, 16)  # c3: stage-2 cell
    assert shape["cell3_add"] == (32, 8, 8)  # c4: second reduction block
    assert shape["cell4_n3"] == (40, 8, 8) and graph.node("classifier").op.in_features == 40  # c5
    # a cell that changes width maps its skip edge through a 1x1 conv + BN
    assert "cell2_e30_skip_conv" in shape and "cell0_e30_skip" in shape


def test_largest_network_is_not_the_topology_network_at_c64(space):
    largest = space.graph(space.resolve("nats_sss_largest")).params()
    assert largest == 713_674
    tss = NB201Space(channels=64)
    assert tss.graph(tss.resolve("nb201_best_cifar100")).params() != largest
    one_cell = NB201Space(channels=64, cells=1)
    assert one_cell.graph(one_cell.resolve("nb201_best_cifar100")).params() != largest  # widths double there


def test_channel_strings(space):
    rng = random.Random(0)
    for _ in range(30):
        arch = space.sample(rng)
        assert space.resolve(space.benchmark_key(arch)) == arch
    assert space.benchmark_key(space.resolve("bossnas_nats_sss")) == "64:40:48:64:56"
    assert space.size() == 32_768
    assert space.benchmark_input("cifar10") == ((3, 32, 32), 10)
    for bad in ("64:40:48:64", "64:40:48:64:60", "a:b:c:d:e"):
        with pytest.raises(ArchitectureError) as err:
            space.resolve(bad)
        assert "\n" not in str(err.value)
    parent = space.resolve("8:8:8:8:8")
    children = [space.mutate(parent, rng) for _ in range(40)]
    assert all(sum(v != 8 for v in child.values()) == 1 for child in children)  # one width redrawn
    assert max(max(child.values()) for child in children) > 16  # from all widths, as NATS-Bench's REA
