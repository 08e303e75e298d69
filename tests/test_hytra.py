"""HyTra space and its block-wise supernet: fabric rules, published MAdds, cost counts, supernet paths."""
from __future__ import annotations

import random

import pytest
import torch

from nas.build import build_module, count_macs, count_params, render_source
from nas.registry import get, make_space
from nas.space import Architecture, ArchitectureError, NASError
from nas.supernet import BlockSupernet
from search_spaces.hytra import NUM_LAYERS, HyTraSpace, block_paths, candidates, levels_of

SMALL = HyTraSpace("small")
PAPER = HyTraSpace("paper")


def _layers(arch: Architecture) -> list[tuple[int, str]]:
    return [(level, arch.get(f"l{i}_op", "conv")) for i, level in enumerate(levels_of(arch))]


# -- registry and presets ---------------------------------------------------------------------------
def test_registry_presets_and_named_archs():
    assert get("spaces", "hytra") is HyTraSpace
    assert make_space("hytra").preset == "small"
    assert make_space("hytra", arch_name="bossnet_t1").preset == "paper"
    assert HyTraSpace.preset_of("small_t0") == "small" and HyTraSpace.preset_of("nope") is None
    assert {"bossnet_t0", "bossnet_t0_nose", "bossnet_t1"} <= set(PAPER.reference_archs())
    with pytest.raises(ArchitectureError, match="unknown hytra preset 'tiny'"):
        HyTraSpace("tiny")
    assert SMALL.input_shape_for(SMALL.reference_archs()["small_t0"], (1, 8, 8)) == (1, 32, 32)
    assert PAPER.input_shape_for(PAPER.reference_archs()["bossnet_t0"], (3, 64, 64)) == (3, 224, 224)


def test_space_size_matches_released_restriction():
    # first layer at the stem's level or one below, keep-or-halve after: 1,703,991 (reference notes)
    assert SMALL.size() == 1_703_991
    assert PAPER.size() == 1_703_991 * 8  # act x se x last_stride


# -- fabric rules -----------------------------------------------------------------------------------
def _arch(levels: list[int], ops: dict[int, str] | None = None, space: HyTraSpace = SMALL, **style) -> dict:
    values, prev = {}, 0
    for i, level in enumerate(levels):
        values[f"l{i}_res"] = "halve" if level > prev else "keep"
        if level >= 2:
            values[f"l{i}_op"] = (ops or {}).get(i, "conv")
        prev = level
    return dict(values, **style)


def test_halving_below_lowest_level_is_rejected_naming_the_layer():
    arch = _arch([1, 2, 3] + [3] * 13)
    SMALL.validate(Architecture(arch))
    arch["l9_res"] = "halve"
    with pytest.raises(ArchitectureError) as err:
        SMALL.validate(Architecture(arch))
    assert "layer l9 halves the resolution below the lowest level (4x4)" in str(err.value)
    assert "\n" not in str(err.value)


def test_attention_only_at_the_two_lowest_resolutions():
    arch = _arch([0, 1, 1] + [2] * 13)
    arch["l2_op"] = "att"
    with pytest.raises(ArchitectureError) as err:
        SMALL.validate(Architecture(arch))
    assert "layer l2 runs at 16x16, where only ResConv exists" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ArchitectureError, match="layer l0 runs at 56x56"):
        PAPER.validate(Architecture(_arch([0] * 16, space=PAPER, act="relu", se=False, last_stride=2),
                                    l0_op="att"))
    arch = _arch([0, 1, 2] + [2] * 13)
    del arch["l5_op"]
    with pytest.raises(ArchitectureError, match="'l5_op' is missing"):
        SMALL.validate(Architecture(arch))


def test_only_keep_or_halve_so_no_skip_and_no_going_up():
    arch = _arch([1, 2] + [2] * 14)
    for bad in ("skip", "up", "double"):
        with pytest.raises(ArchitectureError, match=f"value '{bad}' for choice 'l4_res' is not accepted"):
            SMALL.validate(Architecture(dict(arch, l4_res=bad)))
    assert [c.values for c in SMALL.choices() if c.name.endswith("_res")] == [("keep", "halve")] * NUM_LAYERS
    with pytest.raises(ArchitectureError, match="starts layer l0 at level 2 after level 0"):
        SMALL.from_encoding([[], [], [0] * 16, []])  # ViT-T starts at 14x14: not in the released fabric


def _assert_fabric(arch: Architecture, space: HyTraSpace) -> None:
    space.validate(arch)
    levels = levels_of(arch)
    assert len(levels) == NUM_LAYERS and levels[0] in (0, 1) and max(levels) <= 3
    assert all(b - a in (0, 1) for a, b in zip(levels, levels[1:]))
    assert all(op == "conv" or level >= 2 for level, op in _layers(arch))


def test_sampling_and_mutation_stay_in_the_fabric():
    rng = random.Random(0)
    archs = [SMALL.sample(rng) for _ in range(200)]
    for arch in archs:
        _assert_fabric(arch, SMALL)
        child = SMALL.mutate(arch, rng)
        _assert_fabric(child, SMALL)
        assert child != arch
    assert len(set(archs)) == 200
    # uniform over the space: P(first layer halves) is the share of archs starting at level 1
    n = SMALL._completions
    expected = n[1][1] / n[0][0]
    share = sum(a["l0_res"] == "halve" for a in (SMALL.sample(rng) for _ in range(2000))) / 2000
    assert abs(share - expected) < 0.04
    for _ in range(20):
        _assert_fabric(PAPER.mutate(PAPER.sample(rng), rng), PAPER)


# -- published models ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name, gmacs", [("bossnet_t0", 3.44), ("bossnet_t0_nose", 3.44), ("bossnet_t1", 7.95)])
def test_bossnet_madds_match_published(name, gmacs):
    graph = PAPER.graph(PAPER.reference_archs()[name])
    assert abs(graph.macs() / 1e9 - gmacs) / gmacs < 0.02
    assert graph.output_shape == (1000,)


def test_bossnet_t0_layout_and_params():
    arch = PAPER.reference_archs()["bossnet_t0"]
    layers = _layers(arch)
    assert [lv for lv, _ in layers] == [0, 1] + [2] * 5 + [3] * 9
    assert sum(op == "att" for _, op in layers) == 9
    assert PAPER.paths_of(arch) == [(5, 4, 3, 3), (3, 2, 3, 0), (0, 0, 1, 0), (0, 0, 0, 0)]
    t0, nose = (PAPER.graph(PAPER.reference_archs()[n]) for n in ("bossnet_t0", "bossnet_t0_nose"))
    # boss_madds.py: 37.2M without SE (it adds SE to every layer; boss_models puts it on ResConv only)
    assert abs(nose.params() / 1e6 - 37.2) < 0.4
    assert t0.params() - nose.params() == sum(
        2 * w * (w // 16) + w // 16 + w for w in (256, 512, 1024, 1024, 1024, 1024, 2048))
    t1 = PAPER.graph(PAPER.reference_archs()["bossnet_t1"])
    assert t1.node("l15_out_act").shape == (2048, 14, 14) and t0.node("l15_out_act").shape == (2048, 7, 7)


def test_paper_graph_counts_equal_torch_counter():
    arch = PAPER.reference_archs()["bossnet_t0"]
    graph = PAPER.graph(arch, (3, 64, 64), 10)  # same layers as at 224, cheaper to count on a CPU
    model = build_module(graph)
    assert graph.params() == count_params(model)
    assert graph.macs() == count_macs(model, (3, 64, 64))
    assert "class MultiHeadSelfAttention2d" in render_source(graph)


def test_small_random_archs_counts_equal_module_and_torch_counter():
    rng = random.Random(1)
    for _ in range(3):
        arch = SMALL.sample(rng)
        graph = SMALL.graph(arch, (1, 32, 32), 10)
        model = build_module(graph)
        assert graph.params() == count_params(model)
        assert graph.macs() == count_macs(model, (1, 32, 32))


def test_attention_macs_count_both_matrix_products():
    from nas.ops.attention import SelfAttention2d

    op = SelfAttention2d(32, 4, 8)
    n = 8 * 8
    assert op.macs([(32, 8, 8)]) == n * 32 * 96 + 2 * n * n * 32
    assert op.out_shape([(32, 8, 8)]) == (32, 8, 8)


def test_small_forward_pass_and_arch_ending_above_lowest_level():
    model = SMALL.build(SMALL.reference_archs()["small_t0"], (1, 32, 32), 10)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    high = Architecture(_arch([0] * 8 + [1] * 8))
    graph = SMALL.graph(high, (1, 32, 32), 10)
    assert graph.node("tail3_conv").shape == (256, 4, 4)
    assert SMALL.build(high, (1, 32, 32), 10)(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_input_not_divisible_is_a_one_line_error():
    with pytest.raises(ArchitectureError, match="input 36x36 gives a 36x36 map after the stem"):
        SMALL.graph(SMALL.reference_archs()["small_t0"], (1, 36, 36))


# -- the block supernet -----------------------------------------------------------------------------
def test_candidate_counts_per_entry():
    assert [len(candidates(e)) for e in range(4)] == [51, 99, 80, 16]
    assert (4, 2, 0, 0) in candidates(0) and (5, 5, 5, 5) in candidates(0) and (3, 3, 3, 3) not in candidates(0)
    assert (2, 0, 0, 0) in candidates(1) and (0, 0, 0, 0) not in candidates(1)
    for entry in range(4):
        for path in block_paths(entry):
            assert len(set(path)) >= 1 and len(path) == 4
    with pytest.raises(NASError, match="entered at a level 0..3"):
        candidates(4)


@pytest.fixture(scope="module")
def supernet():
    torch.manual_seed(0)
    net = BlockSupernet(SMALL, (1, 32, 32), 10)
    for m in net.modules():  # non-trivial BN so every branch shows in the output
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def test_supernet_candidates_states_and_shapes(supernet):
    assert supernet.num_blocks == 4 and supernet.initial_state() == 0
    rng = random.Random(2)
    x = supernet.stem(torch.randn(2, 1, 32, 32))
    entry = supernet.initial_state()
    with torch.no_grad():
        for block in range(4):
            cands = supernet.candidates(block, entry)
            assert len(cands) == [51, 99, 80, 16][entry]
            path = rng.choice(cands)
            y = supernet.forward_block(block, path, x, entry)
            assert tuple(y.shape[1:]) == supernet.output_shape(block, path, entry)
            entry, x = supernet.exit_state(block, path, entry), y
    with pytest.raises(NASError, match="is not a candidate of block 1 entered in state 0"):
        supernet.forward_block(1, (0, 0, 0, 0), torch.zeros(1, 32, 32, 32), 0)


def test_supernet_path_equals_standalone_search_model(supernet):
    levels = [0, 1, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3]  # every entry variant: first, same, down
    arch = Architecture(_arch(levels, {3: "att", 4: "att", 6: "att", 9: "att"}))
    paths = supernet.paths_of(arch)
    assert supernet.arch_of(paths) == arch
    model = build_module(SMALL.graph(arch, (1, 32, 32), 10)).eval()
    missing, unexpected = model.load_state_dict(supernet.subnet_state_dict(arch), strict=False)
    assert missing == ["classifier.weight", "classifier.bias"] and unexpected == []
    outs = {}
    for i in (3, 15):
        model.get_submodule(f"l{i}_out_act").register_forward_hook(lambda m, a, o, i=i: outs.__setitem__(i, o.clone()))
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        model(x)
        torch.testing.assert_close(supernet.forward_paths(x, paths[:1]), outs[3])
        torch.testing.assert_close(supernet.forward_paths(x, paths), outs[15])


def test_arch_paths_round_trip():
    rng = random.Random(3)
    for space in (SMALL, PAPER):
        for _ in range(30):
            arch = space.sample(rng)
            paths = space.paths_of(arch)
            back = space.arch_of(paths)
            assert all(back[k] == arch[k] for k in arch if k[1].isdigit())
    assert PAPER.arch_of(PAPER.paths_of(PAPER.reference_archs()["bossnet_t0"])) == PAPER.reference_archs()["bossnet_t0"]
    with pytest.raises(NASError, match="one path per block"):
        SMALL.arch_of([(5, 5, 5, 5)])


def test_paper_supernet_shapes_on_meta_device():
    with torch.device("meta"):
        net = BlockSupernet(PAPER, PAPER.default_input, 1000)
        paths = PAPER.paths_of(PAPER.reference_archs()["bossnet_t0"])
        y = net.forward_paths(torch.zeros(2, 3, 224, 224), paths)
    assert tuple(y.shape) == (2, 2048, 7, 7)
    assert net.output_shape(0, paths[0], 0) == (1024, 14, 14)


def test_export_round_trip_with_attention(tmp_path):
    import importlib.util

    import numpy as np
    import onnxruntime

    from nas.export import export_model

    arch = SMALL.reference_archs()["small_t0"]
    written = export_model(SMALL.graph(arch, (1, 32, 32), 10), arch, tmp_path, space="hytra")
    spec = importlib.util.spec_from_file_location("exported_hytra", written["source"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # torch-only source: the attention class is inlined
    net = module.Net()
    net.load_state_dict(torch.load(written["weights"]))
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        expected = net.eval()(x).numpy()
    got = onnxruntime.InferenceSession(str(written["onnx"])).run(None, {"input": x.numpy()})[0]
    assert np.abs(expected - got).max() < 1e-4
