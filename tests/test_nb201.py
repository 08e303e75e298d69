"""The NAS-Bench-201 space: exact published costs, cell semantics, arch strings, the isomorphism key."""
from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nas import registry
from nas.build import build_module, count_macs, count_params
from nas.graph import GraphBuilder
from nas.ops import Conv2d
from nas.space import ArchitectureError, NASError
from search_spaces.nb201 import (
    DATASETS,
    NB201Space,
    add_cell,
    arch_string,
    benchmark_input,
    canonical,
    parse_arch_string,
)

TABLE = (Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "nasbench201"
         / "nats_tss_test_accuracy_200ep.csv")

# NATS-Bench's own cost records (fake_torch_dir fixtures of the official NATS-Bench repository, arch 0, 11, 284):
# per dataset (params in units, "flops" = conv/linear multiply-adds + classifier bias adds)
OFFICIAL = {
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|": {
        "cifar10": (129306, 15647370), "cifar100": (135156, 15653220), "imagenet16_120": (136456, 3919480)},
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|": {
        "cifar10": (802426, 113951370), "cifar100": (808276, 113957220), "imagenet16_120": (809576, 28495480)},
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|none~0|nor_conv_1x1~1|none~2|": {
        "cifar10": (101306, 11715210), "cifar100": (107156, 11721060), "imagenet16_120": (108456, 2936440)},
}


@pytest.fixture(scope="module")
def space() -> NB201Space:
    return registry.make_space("nb201")


def table_archs() -> list[str]:
    if not TABLE.is_file():
        pytest.skip(f"shared NAS-Bench-201 table not found at {TABLE}")
    with TABLE.open() as handle:
        return [row["arch"] for row in csv.DictReader(handle)]


def test_all_conv3x3_has_the_published_parameter_count(space):
    assert space.graph(space.resolve("nb201_all_conv3x3")).params() == 1_531_546


@pytest.mark.parametrize("arch", list(OFFICIAL))
@pytest.mark.parametrize("dataset", list(DATASETS))
def test_costs_equal_nats_bench_records(space, arch, dataset):
    shape, classes = DATASETS[dataset]
    graph = space.graph(space.resolve(arch), shape, classes)
    params, flops = OFFICIAL[arch][dataset]
    assert graph.params() == params
    assert graph.macs() + classes == flops


def test_built_module_matches_graph_costs_and_runs(space):
    arch = space.resolve("nb201_resnet")
    shape, classes = DATASETS["imagenet16_120"]
    graph = space.graph(arch, shape, classes)
    model = space.build(arch, shape, classes)
    assert count_params(model) == graph.params()
    assert count_macs(model, shape) == graph.macs()
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, *shape))
    assert out.shape == (2, classes) and torch.isfinite(out).all()
    assert count_params(space.build(space.resolve("nb201_all_conv3x3"))) == 1_531_546


def test_cell_computes_the_official_cell_function():
    """A cell with every op kind, checked against a direct functional computation of the same weights."""
    arch = parse_arch_string(
        "|skip_connect~0|+|skip_connect~0|nor_conv_3x3~1|+|none~0|avg_pool_3x3~1|nor_conv_1x1~2|")
    g = GraphBuilder((4, 6, 6))
    model = build_module(g.finish(add_cell(g, "c", g.input, arch, 4)))
    model.eval()
    x = torch.randn(2, 4, 6, 6)  # negative values: the ReLUs must rectify their conv branch only

    def relu_conv_bn(prefix: str, h: torch.Tensor) -> torch.Tensor:
        conv, bn = getattr(model, f"{prefix}_conv"), getattr(model, f"{prefix}_bn")
        return bn(conv(F.relu(h)))

    with torch.no_grad():
        n1 = x
        n2 = x + relu_conv_bn("c_e21", n1)
        n3 = 0 * x + F.avg_pool2d(n1, 3, 1, 1, count_include_pad=False) + relu_conv_bn("c_e32", n2)
        assert torch.allclose(model(x.clone()), n3, atol=1e-6)
    assert model.c_e21_conv.bias is None and model.c_e21_bn.affine


def test_arch_string_round_trip(space):
    rng = random.Random(1)
    for _ in range(50):
        arch = space.sample(rng)
        text = space.arch_string(arch)
        assert space.resolve(text) == arch
        assert space.benchmark_key(arch) == text == arch_string(arch)
    text = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
    assert space.resolve(text) == space.resolve("nb201_resnet")
    assert space.resolve(space.resolve(text).to_json()) == space.resolve(text)


def test_table_strings_round_trip(space):
    archs = table_archs()
    assert len(archs) == space.size() == 15_625
    assert all(space.arch_string(space.resolve(a)) == a for a in archs)


@pytest.mark.parametrize("bad", [
    "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|",  # two nodes
    "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|",  # node 3 lacks an edge
    "|conv~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",  # unknown op
    "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~0|+|skip_connect~0|none~1|skip_connect~2|",  # repeated source
    "|nor_conv_3x3~1|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",  # source not before
    "|nor_conv_3x3|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",  # no ~i
])
def test_malformed_arch_strings_give_one_line_errors(space, bad):
    with pytest.raises(ArchitectureError) as err:
        space.resolve(bad)
    assert "\n" not in str(err.value)


def test_canonical_identifies_isomorphic_cells(space):
    # node 1 is a copy of the input, so ops reading node 0 or node 1 compute the same thing
    a = space.resolve("|skip_connect~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|skip_connect~2|")
    b = space.resolve("|skip_connect~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|skip_connect~2|")
    assert a != b and space.canonical(a) == space.canonical(b)
    # a sum does not depend on the order of its terms
    f = space.resolve("|skip_connect~0|+|none~0|none~1|+|nor_conv_3x3~0|nor_conv_1x1~1|none~2|")
    g = space.resolve("|skip_connect~0|+|none~0|none~1|+|nor_conv_1x1~0|nor_conv_3x3~1|none~2|")
    assert f != g and space.canonical(f) == space.canonical(g)
    # a zero node makes every op leaving it zero
    c = space.resolve("|none~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|avg_pool_3x3~1|skip_connect~2|")
    d = space.resolve("|none~0|+|nor_conv_3x3~0|none~1|+|nor_conv_3x3~0|none~1|skip_connect~2|")
    assert space.canonical(c) == space.canonical(d)
    # different ops are different cells
    e = space.resolve("|skip_connect~0|+|none~0|nor_conv_1x1~1|+|none~0|none~1|skip_connect~2|")
    assert space.canonical(a) != space.canonical(e)


def test_table_has_6466_isomorphism_classes(space):
    assert len({canonical(parse_arch_string(a)) for a in table_archs()}) == 6466


def test_choices_and_references(space):
    assert [c.name for c in space.choices()] == ["edge_1_0", "edge_2_0", "edge_2_1", "edge_3_0", "edge_3_1",
                                                 "edge_3_2"]
    for name, arch in space.reference_archs().items():
        space.validate(arch)
        assert space.arch_string(arch) == NB201Space.REFERENCES[name]


def test_mutation_follows_nas_bench_201_rea(space):
    """A node is drawn uniformly, then one of its edges: node 1's edge changes in 1/3 of mutations."""
    rng, parent = random.Random(0), space.resolve("nb201_resnet")
    changed = {c.name: 0 for c in space.choices()}
    for _ in range(900):
        child = space.mutate(parent, rng)
        diff = [k for k in child if child[k] != parent[k]]
        assert len(diff) == 1
        changed[diff[0]] += 1
    assert 250 < changed["edge_1_0"] < 350  # expected 300 (uniform edges would give 150)
    assert all(60 < changed[f"edge_3_{i}"] < 140 for i in range(3))  # expected 100 each


def test_benchmark_input(space):
    assert space.benchmark_input("ImageNet16-120") == ((3, 16, 16), 120)
    assert space.benchmark_input("cifar100") == ((3, 32, 32), 100)
    assert space.benchmark_input("Fashion-MNIST") == ((1, 16, 16), 10)  # this project's table
    with pytest.raises(NASError, match="not one of"):
        space.benchmark_input("svhn")
    with pytest.raises(NASError, match="not one of"):  # the module function knows NAS-Bench-201's own only
        benchmark_input("fashion_mnist")


def test_small_preset_is_the_fashion_tables_skeleton(space):
    """Preset "small" is the C=8, N=1 network of `benchmarks/fashion_nb201/` (cell 8 -> reduction 16 -> cell 16
    -> reduction 32 -> cell 32); named cells default to the benchmark's C=16, N=5 network."""
    small = registry.make_space("nb201", "small")
    assert (small.channels, small.cells, small.preset) == (8, 1, "small")
    assert NB201Space(channels=8, cells=1).preset == "small" and NB201Space(channels=64).preset is None
    graph = small.graph(small.resolve("nb201_all_conv3x3"), (1, 16, 16), 10)
    convs = [n.op for n in graph.layers() if isinstance(n.op, Conv2d)]
    assert [c.out_ch for c in convs][:1] == [8] and max(c.out_ch for c in convs) == 32
    assert len([n for n in graph.layers() if n.name.endswith("_e32_conv")]) == 3  # one cell per stage
    assert graph.params() < space.graph(space.resolve("nb201_all_conv3x3"), (1, 16, 16), 10).params() / 10
    assert registry.make_space("nb201", None, "nb201_resnet").preset == "nb201"
    assert registry.make_space("nb201", None, NB201Space.REFERENCES["nb201_resnet"]).preset == "nb201"  # arch string
    with pytest.raises(ArchitectureError, match="unknown nb201 preset 'huge'; accepted: 'nb201', 'small'"):
        registry.make_space("nb201", "huge")
