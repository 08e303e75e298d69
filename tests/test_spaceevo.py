"""SpaceEvo's hyperspace and spaces: the released models and random subnets of every block type count what the
official code's models count, the hyperspace's size, point encodings and the mutation operators."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from nas import registry
from nas.space import NASError
from search_spaces.spaceevo import (
    NAMED_SPACES,
    SEQNETS,
    SUPERSPACES,
    SpaceEvoSpace,
    SpacePoint,
    mutate_block,
    mutate_window,
    sample_point,
    uniform_points,
)

OFFICIAL = json.loads((Path(__file__).parent / "data" / "spaceevo_official_counts.json").read_text())["rows"]


def test_released_models_and_random_subnets_of_every_block_type_count_as_the_official_code() -> None:
    """Parameters (quantizer scales excluded) and multiply-adds of the official static subnets, written by
    `scripts/spaceevo_official_counts.py` from microsoft/Moonlit@348a402."""
    covered = set()
    for row in OFFICIAL:
        space = SpaceEvoSpace(row["space"])
        arch = space.from_subnet_encoding(row["subnet"])
        graph = space.graph(arch)
        assert (graph.params(), graph.macs()) == (row["params"], row["madds"]), row["subnet"]
        if "name" in row:
            assert SEQNETS[row["name"]] == (SpaceEvoSpace.preset_of(row["name"]), row["subnet"])
            assert registry.make_space("spaceevo", None, row["name"]).resolve(row["name"]) == arch
        covered |= {(space.superspace.name, b) for b in space.point.blocks}
    assert covered == {(s, b) for s, sup in SUPERSPACES.items() for b in range(len(sup.blocks))}
    assert sum("name" in row for row in OFFICIAL) == len(SEQNETS) == 10


def test_hyperspace_sizes_are_the_published_ones() -> None:
    assert SUPERSPACES["onnxw"].size() == 6 ** 6 * 2048
    assert SUPERSPACES["mobilew"].size() == 7 ** 6 * 10080


def test_the_vnni_space_is_the_released_search_result() -> None:
    space = registry.make_space("spaceevo@vnni")
    assert space.point == SpacePoint("onnxw", (1, 5, 1, 1, 2, 2), (0, 2, 3, 2, 3, 1))
    assert space.describe() == ("onnxw-151122-023231: mbv2_res [32, 48], fused_mbconv [64, 80], "
                                "mbv2_res [112, 128, 144], mbv2_res [144, 160, 176], mbv3_res [240, 256, 272, 288, "
                                "304], mbv3_res [320, 336, 352, 368, 384, 400, 416]")
    assert sorted(space.reference_archs()) == [f"SEQnet@vnni-A{i}" for i in range(5)]
    assert registry.make_space("spaceevo", "onnxw-151122-023231").choices() == space.choices()


@pytest.mark.parametrize("bad", ["onnxw-15112-023231", "onnxw-151122-0232a1", "onnxw-171122-023231",
                                 "onnxw-151122-093231", "tflite-151122-023231", "vnni2"])
def test_bad_space_names_are_one_line_errors(bad: str) -> None:
    with pytest.raises(NASError) as err:
        SpaceEvoSpace(bad)
    assert "\n" not in str(err.value) and bad in str(err.value)


def test_a_resolution_suffix_changes_only_the_input() -> None:
    small, published = registry.make_space("spaceevo@vnni+r48,32"), registry.make_space("spaceevo@vnni")
    assert small.resolutions == (32, 48) and small.choice_map()["resolution"].values == (32, 48)
    assert [c for c in small.choices() if c.name != "resolution"] == \
        [c for c in published.choices() if c.name != "resolution"]
    a0, published_a0 = small.reference_archs()["SEQnet@vnni-A0"], published.reference_archs()["SEQnet@vnni-A0"]
    assert a0["resolution"] == 48 and a0.replace(resolution=published_a0["resolution"]) == published_a0
    assert small.graph(a0).input_shape == (3, 48, 48)
    for bad in ("vnni+r", "vnni+r8", "vnni+r32;64"):
        with pytest.raises(NASError, match="integers 16..1024"):
            SpaceEvoSpace(bad)


def test_space_name_and_preset_must_agree() -> None:
    with pytest.raises(NASError, match="names preset 'vnni' but --preset is 'pixel4'"):
        registry.make_space("spaceevo@vnni", "pixel4")


@pytest.mark.parametrize("superspace", list(SUPERSPACES))
def test_mutations_change_one_stage_and_keep_windows_valid(superspace: str) -> None:
    rng = random.Random(0)
    sup = SUPERSPACES[superspace]
    for _ in range(200):
        point = sample_point(superspace, rng)
        for child, changed, same in ((mutate_block(point, rng), "blocks", "windows"),
                                     (mutate_window(point, rng), "windows", "blocks")):
            assert getattr(child, same) == getattr(point, same)
            assert sum(a != b for a, b in zip(getattr(child, changed), getattr(point, changed))) == 1
            assert all(0 <= w < s.windows for w, s in zip(child.windows, sup.searchable))
            assert SpacePoint.parse(child.encoding) == child


@pytest.mark.parametrize("superspace", list(SUPERSPACES))
def test_uniform_initial_points(superspace: str) -> None:
    sup = SUPERSPACES[superspace]
    points = uniform_points(superspace)
    assert len(points) == len(set(points)) == len(sup.blocks) * max(s.windows for s in sup.searchable)
    assert all(len(set(p.blocks)) == 1 for p in points)
    assert {p.windows[-1] for p in points} == set(range(sup.searchable[-1].windows))


@pytest.mark.parametrize("preset", list(NAMED_SPACES))
def test_every_released_space_builds_its_largest_and_smallest_member(preset: str) -> None:
    space = SpaceEvoSpace(preset)
    cover = space.supernet_cover()
    for arch in cover:
        space.validate(arch)
    widest = cover[0]
    stages = space.stage_blocks(space.point)
    assert all(widest[f"s{i}_depth"] == max(stage.depths) for i, (stage, _, _) in enumerate(stages))


@pytest.mark.parametrize("superspace", list(SUPERSPACES))
def test_one_elastic_supernet_runs_every_block_type_as_its_stand_alone_subnet(superspace: str) -> None:
    """For each block type (all stages of that type): the supernet built from the cover computes, for random
    members, what the stand-alone subnet with the weights it hands out computes (64x64 inputs keep it fast)."""
    import torch

    from nas.supernet import Supernet

    rng = random.Random(0)
    for b in range(len(SUPERSPACES[superspace].blocks)):
        space = SpaceEvoSpace(f"{superspace}-{str(b) * 6}-{'0' * 6}")
        torch.manual_seed(b)
        net = Supernet(space, space.default_input, 10).eval()
        for module in net.modules():  # residual branches start at 0: give every BatchNorm a random scale
            if isinstance(module, torch.nn.BatchNorm2d):
                torch.nn.init.uniform_(module.weight, 0.5, 1.5)
        for arch in (space.sample(rng), space.sample(rng)):
            x = torch.randn(2, 3, 64, 64)
            with torch.no_grad():
                torch.testing.assert_close(net.subnet(arch).eval()(x), net(x, arch), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("superspace", list(SUPERSPACES))
def test_residual_branches_start_at_zero_as_in_the_official_supernet(superspace: str) -> None:
    """The official `zero_last_gamma`: the last BatchNorm of each residual block's branch has scale 0 (so the
    block starts as its shortcut), in stand-alone networks and in the supernet; MBv2 without forced residual
    (`mobilew`'s stage 0) and MBv1-dual (a ReLU follows its last BatchNorm: at scale 0 it would never train)
    keep scale 1."""
    import torch

    from nas.supernet import Supernet

    def zero_scaled(model: torch.nn.Module) -> set[str]:
        return {name.replace(".bn", "") for name, m in model.named_modules()
                if isinstance(m, torch.nn.BatchNorm2d) and not m.weight.any()}

    rng = random.Random(0)
    for b in range(len(SUPERSPACES[superspace].blocks)):
        space = SpaceEvoSpace(f"{superspace}-{str(b) * 6}-{'0' * 6}")
        arch = space.sample(rng)
        blocks = [f"s{i}_l{j}" for i in range(7) for j in range(int(arch[f"s{i}_depth"]))]
        dual = SUPERSPACES[superspace].blocks[b].name == "mbv1_dual"
        residual = [p for p in blocks if (superspace == "onnxw" if p.startswith("s0_") else not dual)]
        ends = zero_scaled(space.build(arch, (3, 64, 64), 10))
        assert sorted(p for p in residual if not any(e.startswith(p + "_") for e in ends)) == []
        assert len(ends) == len(residual)
        assert len(zero_scaled(Supernet(space, space.default_input, 10))) >= len(residual)


def test_nsr_loss_on_known_tensors() -> None:
    import torch

    from strategies.spaceevo_parts import nsr_loss

    teacher = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 2, 2)  # unbiased variance 5/3
    student = 2 * teacher  # MSE (1 + 4 + 9 + 16) / 4 = 7.5, variance 20/3
    assert float(nsr_loss(student, teacher)) == pytest.approx(7.5 / (5 / 3))
    assert float(nsr_loss(student, teacher, variance_of="student")) == pytest.approx(7.5 / (20 / 3))
    pair = torch.cat([teacher, student], dim=1)  # a second channel the student gets right: mean of 4.5 and 0
    assert float(nsr_loss(torch.cat([student, student], dim=1), pair)) == pytest.approx(2.25)
    with pytest.raises(NASError, match="at least 2 pixels"):
        nsr_loss(torch.ones(2, 3, 1, 1), torch.ones(2, 3, 1, 1))


def test_qt_score_on_a_hand_checked_example() -> None:
    from strategies.spaceevo_parts import qt_score

    losses, latencies = [0.5, 0.2, 0.9, 0.4], [10.0, 30.0, 5.0, 12.0]
    # C = 15: three of four meet it, P = 0.75 + 1e-5; the best two losses 0.4 and 0.5 -> L = 0.9 / (2 + 1e-5)
    one = qt_score(losses, latencies, [15.0], top=2, t=0.9, a=0.01)
    share, top_loss = 0.75 + 1e-5, 0.9 / (2 + 1e-5)
    penalty = (0.9 / share) ** 0.01
    assert penalty > 1 and one.latency_penalty == pytest.approx(penalty)
    assert one.top_loss == pytest.approx(top_loss) and one.score == pytest.approx(1 / (top_loss * penalty))
    relaxed = qt_score(losses, latencies, [15.0], top=2)  # t = 0.1 < P: no penalty
    assert relaxed.latency_penalty == 1.0
    none = qt_score(losses, latencies, [1.0], top=2)  # nobody meets 1 ms: the code's loss of 1e5
    assert none.top_loss == 1e5 and none.latency_penalty == pytest.approx((0.1 / 1e-5) ** 0.01)
    both = qt_score(losses, latencies, [15.0, 1.0], top=2)
    assert both.score == pytest.approx(relaxed.score + none.score)


@pytest.mark.parametrize("superspace", list(SUPERSPACES))
def test_the_superspace_preset_holds_every_point_and_its_members(superspace: str) -> None:
    """A superspace's architectures choose their point: the released models count as in their own space, random
    members build the graph of the same layers in the point's own preset, and restricting the block and window
    choices to a point keeps samples inside it."""
    hyper = SpaceEvoSpace(superspace)
    for name, arch in hyper.reference_archs().items():
        own = registry.make_space("spaceevo", None, name)
        assert hyper.point_of(arch) == own.point
        assert hyper.graph(arch).params() == own.graph(own.resolve(name)).params()
    rng = random.Random(0)
    for arch in (hyper.sample(rng) for _ in range(10)):
        point = hyper.point_of(arch)
        own = SpaceEvoSpace(point.encoding)
        layers = [[hyper.layer(arch, i, j) for j in range(arch[f"s{i}_depth"])] for i in range(7)]
        same = own.compose(point, arch["resolution"], arch["stem_w"], layers)
        assert hyper.graph(arch).macs() == own.graph(same).macs()
        assert hyper.compose(point, arch["resolution"], arch["stem_w"], layers) == arch
    point = sample_point(superspace, rng)
    names = [b.name for b in SUPERSPACES[superspace].blocks]
    inside = hyper.restrict({**{f"s{i}_block": [names[b]] for i, b in enumerate(point.blocks, 1)},
                             **{f"s{i}_window": [w] for i, w in enumerate(point.windows, 1)}})
    assert all(hyper.point_of(inside.sample(rng)) == point for _ in range(10))


def test_an_aligned_preset_gives_each_stage_one_kernel_width_and_expand() -> None:
    """`+align` (the official --align_sample): a stage's layers share their choices; the graph is the one of the
    same layers in the unaligned space, whose architectures with unequal layers the aligned one refuses; its
    supernet runs its members as their stand-alone subnets and needs no projection shortcut inside a stage."""
    import torch

    from nas.space import ArchitectureError
    from nas.supernet import Supernet

    aligned, full = SpaceEvoSpace("vnni+align+r32"), SpaceEvoSpace("vnni+r32")
    assert len(aligned.choices()) < len(full.choices()) and aligned.reference_archs() == {}
    rng = random.Random(0)
    for arch in (aligned.sample(rng) for _ in range(10)):
        layers = [[aligned.layer(arch, i, j) for j in range(arch[f"s{i}_depth"])] for i in range(7)]
        assert all(len(set(stage)) == 1 for stage in layers)
        same = full.compose(full.point, arch["resolution"], arch["stem_w"], layers)
        assert aligned.graph(arch).macs() == full.graph(same).macs()
        assert aligned.compose(aligned.point, arch["resolution"], arch["stem_w"], layers) == arch
    full_arch = full.sample(random.Random(3))
    stages = [[full.layer(full_arch, i, j) for j in range(full_arch[f"s{i}_depth"])] for i in range(7)]
    assert any(len(set(stage)) > 1 for stage in stages)
    with pytest.raises(ArchitectureError, match="one kernel, width and expand ratio per stage"):
        aligned.compose(aligned.point, full_arch["resolution"], full_arch["stem_w"], stages)
    torch.manual_seed(0)
    net = Supernet(aligned, (3, 32, 32), 10).eval()
    shortcuts = {name.split(".")[1].split("_down")[0] for name in net.state_dict() if "_down" in name}
    assert shortcuts and all(slot.endswith("_l0") for slot in shortcuts)  # a projection at a stage's entry only
    for arch in (aligned.sample(rng), aligned.extreme(largest=False)):
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(net.subnet(arch).eval()(x), net(x, arch), rtol=1e-4, atol=1e-5)
    with pytest.raises(NASError, match="'\\+align'"):
        SpaceEvoSpace("onnxw+align")
