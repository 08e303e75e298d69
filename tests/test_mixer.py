"""The token-mixer vision space: LSNet-T/S/B are members with their published counts, and every mixer builds,
counts what torch counts and runs."""
from __future__ import annotations

import pytest
import torch

from nas.build import build_module, count_macs, count_params
from search_spaces.lsnet import LSNetSpace
from search_spaces.mixer import MIXERS, MixerSpace


@pytest.mark.parametrize("name, params", [("lsnet_t", 11_409_832), ("lsnet_s", 16_146_304),
                                          ("lsnet_b", 23_313_608)])
def test_lsnet_models_are_members_with_their_published_counts(name: str, params: int) -> None:
    space = MixerSpace("paper")
    graph = space.graph(space.resolve(name))
    reference = LSNetSpace("paper").graph(LSNetSpace("paper").resolve(name))
    assert graph.params() == params and graph.macs() == reference.macs()
    assert MixerSpace.preset_of(name) == "paper"


@pytest.mark.parametrize("mixer", MIXERS)
def test_every_mixer_builds_counts_and_runs(mixer: str) -> None:
    torch.manual_seed(0)
    space = MixerSpace()
    arch = space.resolve({**space.resolve("small_lsnet"), **{f"s{i}_mixer": mixer for i in range(1, 5)}})
    graph = space.graph(arch, space.input_shape_for(arch, (1, 8, 8)), 10)
    model = build_module(graph)
    assert count_params(model) == graph.params() and count_macs(model, graph.input_shape) == graph.macs()
    out = model(torch.randn(2, *graph.input_shape))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    kinds = {type(n.op).__name__ for n in graph.layers()}
    expected = {"lsconv": "SmallKernelAggregation", "attention": "LSNetAttention", "wavemix": "HaarDWT",
                "mbconv": "Conv2d"}[mixer]
    assert expected in kinds


def test_different_mixers_are_different_supernet_candidates() -> None:
    space = MixerSpace()
    base = space.resolve("small_lsnet")
    variants = {n.variant for n in space.graph(base.replace(s2_mixer="wavemix")).layers() if n.slot == "s2"}
    assert variants == {"wavemix_w32"}
