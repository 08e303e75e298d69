"""GM-NAS: the gradient-matching score, the partition, the split tree's cover and its weight inheritance."""
from __future__ import annotations

import itertools
import json
import random

import pytest
import torch
from torch import nn

from nas.objectives import Objective
from nas.space import Architecture, ArchitectureError, NASError
from nas.strategy import SupernetContext
from nas.testing import ToyBlockSpace, toy_data
from strategies.gm_nas import GMNAS, SplitTree, make_config, restricted
from strategies.gm_nas_split import (
    balanced_partitions,
    best_partition,
    cosine_distances,
    gradient_matching_distances,
    matched_parameters,
    pick_edge,
    score_edge,
    splittable_choices,
)


# -- the score on a hand-made two-op example -------------------------------------------------------------------------
class TwoOpSupernet(nn.Module):
    """Edge b0's op acts on the input ("a" and "b": identity, "c": negation), then the edge's own linear layer,
    then a shared head; the head's weights are the ones gradient matching compares."""

    sharing = "separate"

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.weights = nn.ModuleDict({"own": nn.Linear(4, 4), "head": nn.Linear(4, 3)})

    def slot_parameters(self, slot: str) -> list[nn.Parameter]:
        assert slot == "b0"
        return list(self.weights["own"].parameters())

    def forward(self, x: torch.Tensor, arch: Architecture) -> torch.Tensor:
        z = -x if arch["b0"] == "c" else x
        return self.weights["head"](torch.relu(self.weights["own"](z)))


def test_gm_score_of_a_hand_made_two_op_example():
    space = ToyBlockSpace().restrict({"b0": ["a", "b", "c"], "b1": ["a"], "b2": ["a"]})
    net, x, y = TwoOpSupernet(), torch.randn(8, 4), torch.randint(0, 3, (8,))
    assert matched_parameters(net, "b0", "all") == list(net.weights["head"].parameters())
    distances = gradient_matching_distances(net, space, "b0", "b0", iter([(x, y)] * 2), 2, random.Random(0), "all")

    def head_gradient(sign: float) -> torch.Tensor:
        net.zero_grad()
        nn.functional.cross_entropy(net.weights["head"](torch.relu(net.weights["own"](sign * x))), y).backward()
        return torch.cat([p.grad.flatten() for p in net.weights["head"].parameters()])

    g_identity, g_negation = head_gradient(1.0), head_gradient(-1.0)
    expected = 1 - torch.dot(g_identity, g_negation) / (g_identity.norm() * g_negation.norm())
    assert distances.shape == (3, 3)
    assert distances[0, 1].item() == pytest.approx(0.0, abs=1e-6)  # "a" and "b" compute the same function
    assert distances[0, 2].item() == pytest.approx(expected.item(), rel=1e-5) and expected > 0.05
    assert torch.allclose(distances, distances.T) and torch.allclose(distances.diagonal(), torch.zeros(3), atol=1e-6)


def test_cosine_distances_of_known_vectors():
    d = cosine_distances(torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [0.0, 0.0]]))
    assert d[0, 1] == pytest.approx(1.0) and d[0, 2] == pytest.approx(2.0) and d[1, 1] == pytest.approx(0.0)
    assert d[3, 0] == pytest.approx(1.0)  # a zero gradient is orthogonal to everything (eps in the norm)


# -- the partition ---------------------------------------------------------------------------------------------------
def two_clusters(k: int, first: int) -> torch.Tensor:
    """Distances 0.1 inside {0..first-1} and inside the rest, 1.5 across."""
    label = torch.tensor([0] * first + [1] * (k - first))
    return torch.where(label[:, None] == label[None, :], 0.1, 1.5) * (1 - torch.eye(k))


def test_min_cut_partition_of_a_known_similarity_matrix():
    distances = two_clusters(5, 2)
    assert len(list(balanced_partitions(5, 2))) == 10  # NB201's 5 ops: a pair against three, C(5,2) ways
    assert best_partition(distances, 2) == ((0, 1), (2, 3, 4))
    score = score_edge("e", ("p", "q", "r", "s", "t"), distances, 2)
    assert score.groups == (("p", "q"), ("r", "s", "t"))
    assert score.within == pytest.approx(0.1 * (1 + 3)) and score.cut == pytest.approx(1.5 * 6)
    assert sorted(map(len, best_partition(two_clusters(3, 1), 2))) == [1, 2]  # OFA's kernels: 1 + 2
    assert best_partition(two_clusters(3, 1), 3) == ((0,), (1,), (2,))
    big = two_clusters(20, 10)  # too many partitions to enumerate: spectral clustering
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(0))
    found = best_partition(big[perm][:, perm], 2)
    assert sorted(sorted(int(perm[i]) < 10 for i in g) for g in found) == [[False] * 10, [True] * 10]
    with pytest.raises(NASError, match="cannot split 3 ops into 4 groups"):
        best_partition(two_clusters(3, 1), 4)


def test_edge_rules():
    wide = score_edge("wide", "abcde", two_clusters(5, 2), 2)
    tight = score_edge("tight", "abcde", two_clusters(5, 2) * 0.5, 2)
    assert pick_edge([tight, wide], "max_cut").edge == "wide"
    assert pick_edge([wide, tight], "min_within").edge == "tight"
    with pytest.raises(NASError, match="edge rule 'best' is not one of"):
        pick_edge([wide], "best")


def test_splittable_choices_per_space():
    from nas import registry

    nb201 = registry.make_space("nb201")
    assert list(splittable_choices(nb201)) == [c.name for c in nb201.choices()]
    assert list(splittable_choices(nb201.restrict({"edge_1_0": ["none", "skip_connect"]}))) == \
        [c.name for c in nb201.choices()][1:]  # an edge split before is not split again
    mbconv = splittable_choices(registry.make_space("mbconv"), ("*_k",))
    assert mbconv and all(name.endswith("_k") and slot == name[:-2] for name, slot in mbconv.items())
    hytra = splittable_choices(registry.make_space("hytra"), ("l*_op",))
    assert len(hytra) > 8 and all(slot == name[:-3] for name, slot in hytra.items())  # found from the graph


# -- the split tree -------------------------------------------------------------------------------------------------
def grow(tmp_path, **options) -> tuple[GMNAS, SplitTree]:
    options = {"epochs": 3, "split_epochs": [1, 2], "gm_batches": 1, "batch_size": 16, "bn_images": 16,
               "val_images": 16, "search_budget": 4, **options}
    strategy = GMNAS([Objective("accuracy")], seed=0, **options)
    strategy.prepare(SupernetContext(ToyBlockSpace(), toy_data(), [Objective("accuracy")], 0, "quick",
                                     tmp_path, False))
    return strategy, SplitTree(tmp_path / "gm_tree.json")


def toy_archs() -> list[Architecture]:
    space, found = ToyBlockSpace(), []
    for values in itertools.product(*(c.values for c in space.choices())):
        arch = Architecture(dict(zip([c.name for c in space.choices()], values)))
        try:
            space.validate(arch)
        except ArchitectureError:
            continue
        found.append(arch)
    return found


def test_restricted_spaces_cover_the_parent_space_with_no_overlap(tmp_path):
    _, tree = grow(tmp_path)
    leaves = [restricted(ToyBlockSpace(), tree.nodes[i]["restriction"]) for i in tree.leaves()]
    assert len(leaves) == 4 and [len(i) for i in tree.leaves()] == [3] * 4
    archs = toy_archs()
    assert len(archs) == 756  # every valid toy architecture
    assert all(sum(leaf.contains(a) for leaf in leaves) == 1 for a in archs)
    root = tree.nodes["r"]
    assert sorted(v for g in root["groups"] for v in g) == sorted(ToyBlockSpace().choices()[0].values)
    assert root["edge"] in root["scores"] and len(root["scores"]) == 3  # every edge scored at the first split
    assert (tmp_path / "gm_scores_r.png").stat().st_size > 0


@pytest.mark.parametrize("restart_final", [True, False])
def test_weight_inheritance_at_a_split(tmp_path, monkeypatch, restart_final):
    """At the intermediate split both children start from the parent's weights, optimizer state and place in
    the schedule; at the final split they start afresh (restart_final) or inherit too."""
    starts: dict[str, dict] = {}
    ends: dict[str, dict] = {}
    original = GMNAS._train

    def spy(self, supernet, space, node_id, data, cfg, state_file, fresh, stop, progress):
        starts[node_id] = torch.load(state_file, weights_only=True) if state_file.exists() else {}
        original(self, supernet, space, node_id, data, cfg, state_file, fresh, stop, progress)
        ends[node_id] = torch.load(state_file, weights_only=True)

    monkeypatch.setattr(GMNAS, "_train", spy)
    grow(tmp_path, restart_final=restart_final)
    assert starts["r"] == {} and ends["r"]["progress"][1] == 1 and ends["r"]["optimizer"]["state"]  # momentum
    for parent, children in (("r", ("r0", "r1")), ("r0", ("r00", "r01")), ("r1", ("r10", "r11"))):
        for child in children:
            if parent != "r" and restart_final:
                assert starts[child] == {}  # re-initialised at the final split
                continue
            assert starts[child]["progress"] == ends[parent]["progress"]
            assert all(torch.equal(starts[child]["supernet"][k], v) for k, v in ends[parent]["supernet"].items())
            assert starts[child]["optimizer"]["state"].keys() == ends[parent]["optimizer"]["state"].keys()
    assert ends["r00"]["progress"][1] == (1 if restart_final else 3)  # a fresh schedule of 3 - 2 epochs, or to 3
    tree = json.loads((tmp_path / "gm_tree.json").read_text())["nodes"]
    assert tree["r0"]["restriction"].keys() == {tree["r"]["edge"]} and len(tree["r00"]["restriction"]) == 2


def test_genetic_search_on_top_routes_to_the_leaves(tmp_path):
    from nas.testing import FAST_OPTIONS, run_supernet_strategy

    options = {**FAST_OPTIONS["gm_nas"], "search": "genetic", "search_budget": 6,
               "search_options": {"population": 3, "top_k": 1, "mutations": 1, "crossovers": 1}}
    history, _ = run_supernet_strategy("gm_nas", tmp_path, options=options)
    rated = [m for _, m in history if m is not None]
    assert len(rated) == 6 and {m["sub_supernet"] for m in rated} <= {0.0, 1.0}
    assert all(0 <= m["rating"] <= 100 for m in rated)


def test_modes_give_the_baselines(tmp_path):
    _, one_shot = grow(tmp_path / "one", mode="one_shot")
    assert one_shot.leaves() == ["r"]
    _, few_shot = grow(tmp_path / "few", mode="few_shot", few_shot_edge="b1")
    assert len(few_shot.leaves()) == len(ToyBlockSpace().choices()[1].values) and few_shot.nodes["r"]["edge"] == "b1"


@pytest.mark.parametrize("option, message", [
    ({"split_epochs": [2, 1]}, "split_epochs \\[2, 1\\] must rise strictly within 1..5"),
    ({"mode": "darts"}, "mode 'darts' is not one of"),
    ({"grad_scope": "stem"}, "grad_scope 'stem' is not one of"),
    ({"split_epochs": [6]}, "must rise strictly within 1..5"),
])
def test_bad_options_are_one_line_errors(option, message):
    with pytest.raises(NASError, match=message) as error:
        make_config("quick", **option)
    assert "\n" not in str(error.value)


def test_a_kill_while_scoring_edges_resumes_to_the_same_tree(tmp_path, monkeypatch):
    """Killed after the first edge's GM matrix at the root's split, the run resumes from the scores and the
    epoch checkpoint it saved and ends with the tree and leaf weights of an uninterrupted run."""
    import strategies.gm_nas as gm

    grow(tmp_path / "whole")
    calls = []
    real = gm.gradient_matching_distances

    def dying(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(gm, "gradient_matching_distances", dying)
    with pytest.raises(KeyboardInterrupt):
        grow(tmp_path / "killed")
    saved = json.loads((tmp_path / "killed" / "gm_tree.json").read_text())["nodes"]["r"]
    assert list(saved["scores"]) == calls[:1] and saved["status"] == "train"
    monkeypatch.setattr(gm, "gradient_matching_distances", real)
    grow(tmp_path / "killed")
    trees = [json.loads((tmp_path / d / "gm_tree.json").read_text()) for d in ("whole", "killed")]
    assert trees[0] == trees[1]
    for leaf in SplitTree(tmp_path / "whole" / "gm_tree.json").leaves():
        weights = [torch.load(tmp_path / d / f"gm_{leaf}_leaf.pt", weights_only=True)["state"]
                   for d in ("whole", "killed")]
        assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
