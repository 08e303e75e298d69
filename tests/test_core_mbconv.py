"""The MBConv space rebuilds the published models exactly; graph costs equal the built module's."""
from __future__ import annotations

import random

import pytest

from nas.build import build_module, count_macs, count_params
from search_spaces.mbconv import FAMILIES, MBConvSpace

PUBLISHED_PARAMS = {  # torchvision's counts (1000 classes); ProxylessNAS from the official release
    "mobilenet_v2": 3_504_872,
    "mobilenet_v3_large": 5_483_032,
    "mobilenet_v3_small": 2_542_856,
    "efficientnet_b0": 5_288_548,
    "mnasnet1_0": 4_383_312,
    "proxylessnas_mobile": 4_080_512,
}
REFERENCES = [(preset, name) for preset, fam in FAMILIES.items() for name in fam.references]


@pytest.mark.parametrize("name, params", PUBLISHED_PARAMS.items())
def test_reference_models_have_published_parameter_counts(name, params):
    space = MBConvSpace(MBConvSpace.preset_of(name))
    graph = space.graph(space.resolve(name))
    assert graph.params() == params


@pytest.mark.parametrize("preset, name", REFERENCES)
def test_graph_costs_equal_built_module_and_torch_flop_counter(preset, name):
    space = MBConvSpace(preset)
    graph = space.graph(space.resolve(name))
    model = build_module(graph)
    assert count_params(model) == graph.params()
    assert count_macs(model, graph.input_shape) == graph.macs()


def test_published_multiply_adds_of_mobilenet_v2():
    space = MBConvSpace("mobilenet_v2")
    assert 299e6 < space.graph(space.resolve("mobilenet_v2")).macs() < 302e6  # "300M MAdds" (Sandler et al.)


@pytest.mark.parametrize("preset", ["small", "ofa_mbv3"])
def test_random_archs_costs_match_module(preset):
    space = MBConvSpace(preset)
    rng = random.Random(0)
    for _ in range(3):
        arch = space.sample(rng)
        shape = space.input_shape_for(arch, (3, 32, 32))
        graph = space.graph(arch, shape, 10)
        model = build_module(graph)
        assert count_params(model) == graph.params()
        assert count_macs(model, shape) == graph.macs()


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown mbconv preset 'mbv9'; accepted: 'ofa_mbv3'"):
        MBConvSpace("mbv9")
