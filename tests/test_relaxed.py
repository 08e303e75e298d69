"""The continuous relaxation of mixed ops (nas.relaxed) and GM-NAS's DARTS/SNAS pairings (strategies.gm_nas_relaxed)."""
from __future__ import annotations

import json
import random

import pytest
import torch

from nas.objectives import Objective
from nas.registry import make_space
from nas.relaxed import ArchitectureWeights, MixedProgram, mixed_choices
from nas.space import NASError
from nas.strategy import SupernetContext
from nas.supernet import Supernet
from nas.testing import ToyBlockSpace, toy_data
from nas.train import Batch, EpochCheckpoint, TrainProgress
from strategies.gm_nas import GMNAS, SplitTree, make_config, restricted
from strategies.gm_nas_relaxed import RelaxedTraining
from strategies.gm_nas_split import gradient_matching_distances


def nb201_supernet(shape: tuple[int, ...] = (1, 8, 8)) -> tuple[object, Supernet]:
    torch.manual_seed(0)
    space = make_space("nb201@small")
    return space, Supernet(space, shape, 3)


def one_hot(program: MixedProgram, arch) -> dict[str, torch.Tensor]:
    return {c: torch.tensor([1.0 if v == arch[c] else 0.0 for v in values]) for c, values in program.choices.items()}


@pytest.mark.parametrize("training", [False, True])
def test_one_hot_mixture_computes_the_single_path(training):
    space, supernet = nb201_supernet()
    supernet.train(training)
    program = MixedProgram(supernet, space)
    assert list(program.choices) == [c.name for c in space.choices()]  # every NB201 edge is a mixed op
    x = torch.randn(4, 1, 8, 8)
    for seed in range(4):
        arch = space.sample(random.Random(seed))
        assert torch.allclose(program(x, one_hot(program, arch)), supernet(x, arch), atol=1e-6)


def test_mixed_op_is_the_weighted_sum_of_its_candidates():
    """Every edge fixed but edge_1_0, whose output is the cell's node 1: that node's value under a mixture is the
    theta-weighted sum of its values under each single op."""
    space, supernet = nb201_supernet()
    supernet.eval()
    sub = space.restrict({c.name: [c.values[3]] for c in space.choices() if c.name != "edge_1_0"})
    program = MixedProgram(supernet, sub)
    assert list(program.choices) == ["edge_1_0"]
    x = torch.randn(2, 1, 8, 8)
    values = program.choices["edge_1_0"]
    singles = [first_mixed_value(program, x, torch.tensor([1.0 if u == v else 0.0 for u in values]))
               for v in values]
    weights = torch.softmax(torch.randn(len(values)), 0)
    mixed = first_mixed_value(program, x, weights)
    assert torch.allclose(mixed, sum(w * s for w, s in zip(weights, singles)), atol=1e-5)
    assert not torch.allclose(singles[1], singles[3])  # skip and conv 3x3 differ: the check is not vacuous


def first_mixed_value(program: MixedProgram, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The value of the program's first mixed op (the steps run up to it)."""
    target = next(step[0] for step in program.steps if step[1] is None)
    program_steps, program.steps = program.steps, []
    for step in program_steps:
        program.steps.append((step[0], step[1], step[2], step[3], ()))
        if step[0] == target:
            break
    program.output, output = target, program.output
    try:
        return program(x, {"edge_1_0": weights})
    finally:
        program.steps, program.output = program_steps, output


def test_restriction_renormalises_and_derives_inside():
    space, supernet = nb201_supernet()
    sub = space.restrict({"edge_1_0": ["skip_connect", "nor_conv_3x3"], "edge_2_0": ["none"]})
    program = MixedProgram(supernet, sub)
    assert program.choices["edge_1_0"] == ("skip_connect", "nor_conv_3x3") and "edge_2_0" not in program.choices
    weights = ArchitectureWeights(mixed_choices(space))
    with torch.no_grad():
        weights.alpha[weights.keys["edge_1_0"]].copy_(torch.tensor([0.0, 0.1, 0.0, 0.2, 5.0]))  # avg_pool highest
    theta = weights.theta(program.choices)
    assert theta["edge_1_0"].shape == (2,) and torch.isclose(theta["edge_1_0"].sum(), torch.tensor(1.0))
    derived = weights.derive(sub)
    assert derived["edge_1_0"] == "nor_conv_3x3" and derived["edge_2_0"] == "none"  # argmax among the allowed
    assert weights.derive(space)["edge_1_0"] == "avg_pool_3x3"
    snas = weights.theta(program.choices, "snas", tau=0.5)
    assert torch.isclose(snas["edge_3_2"].sum(), torch.tensor(1.0))


@pytest.mark.parametrize("space, message", [
    ("mbconv@small", "sharing is 'elastic'"),
    ("toy", "not a mixed op"),
])
def test_spaces_without_mixed_ops_are_refused(space, message):
    if space == "toy":
        sp = ToyBlockSpace()
        supernet = Supernet(sp, (1, 8, 8), 3)
    else:
        sp = make_space(space)
        supernet = Supernet(sp, (3, 32, 32), 10)
    with pytest.raises(NASError, match=message) as error:
        MixedProgram(supernet, sp)
    assert "\n" not in str(error.value)


def relaxed_training(relaxation: str, learn_from: int = 0) -> tuple[RelaxedTraining, Supernet]:
    space, supernet = nb201_supernet()
    data = toy_data(64)
    batches = iter([(data.x_train[:16], data.y_train[:16])] * 10)
    return RelaxedTraining(supernet, space, relaxation, arch_lr=0.05, arch_weight_decay=0.0, tau=(1.0, 0.1),
                           learn_from=learn_from, epochs=5, seed=0, alpha_batches=batches), supernet


def test_darts_steps_alpha_on_its_own_batch_and_leaves_the_weights_alone():
    training, supernet = relaxed_training("darts")
    before = {k: v.detach().clone() for k, v in training.arch.alpha.items()}
    data = toy_data(64)
    logits = training.forward(Batch(data.x_train[16:32], data.y_train[16:32], 0, 0, None))
    assert any(not torch.equal(before[k], v) for k, v in training.arch.alpha.items())  # alpha moved
    assert all(p.grad is None for p in supernet.parameters())  # the alpha step left no gradient on the weights
    torch.nn.functional.cross_entropy(logits, data.y_train[16:32]).backward()
    assert all(p.grad is None for p in training.arch.parameters())  # the weights' loss does not reach alpha


def test_darts_alpha_waits_for_the_warm_up():
    training, _ = relaxed_training("darts", learn_from=2)
    before = {k: v.detach().clone() for k, v in training.arch.alpha.items()}
    data = toy_data(64)
    training.forward(Batch(data.x_train[:16], data.y_train[:16], 0, 1, None))
    assert all(torch.equal(before[k], v) for k, v in training.arch.alpha.items())


def test_snas_learns_alpha_from_the_weights_loss_and_anneals_tau():
    training, _ = relaxed_training("snas")
    assert training.tau(0) == 1.0 and training.tau(4) == pytest.approx(0.1) and training.tau(2) == pytest.approx(0.55)
    before = {k: v.detach().clone() for k, v in training.arch.alpha.items()}
    data = toy_data(64)
    batch = Batch(data.x_train[:16], data.y_train[:16], 0, 0, None)
    torch.nn.functional.cross_entropy(training.forward(batch), batch.y).backward()
    training.after_step(0, 1)
    assert any(not torch.equal(before[k], v) for k, v in training.arch.alpha.items())


def test_relaxed_gradient_matching_matrix():
    training, supernet = relaxed_training("darts")
    space = supernet.space
    data = toy_data(64)
    batches = iter([(data.x_train[:16], data.y_train[:16])] * 4)
    d = gradient_matching_distances(supernet, space, "edge_2_1", "edge_2_1", batches, 2, random.Random(0),
                                    relaxed=training.gm_forward("edge_2_1"))
    assert d.shape == (5, 5) and torch.allclose(d, d.T, atol=1e-6) and torch.all(d.diagonal() == 0)
    assert d[0, 1:].min() > 0  # 'none' gives the shared weights another gradient than any real op


def test_checkpoint_keeps_alpha_and_its_optimizer(tmp_path):
    training, supernet = relaxed_training("darts")
    data = toy_data(64)
    training.forward(Batch(data.x_train[:16], data.y_train[:16], 0, 0, None))
    optimizer = torch.optim.SGD(supernet.parameters(), lr=0.1)
    EpochCheckpoint(tmp_path / "c.pt", supernet, training.state()).save(TrainProgress(3, 1, [1.0]), optimizer)
    other, other_net = relaxed_training("darts")
    progress, _ = EpochCheckpoint(tmp_path / "c.pt", other_net, other.state()).load()
    assert progress.epoch == 1
    assert all(torch.equal(a, b) for a, b in zip(training.arch.parameters(), other.arch.parameters()))
    assert other.optimizer.state_dict()["state"].keys() == training.optimizer.state_dict()["state"].keys()


@pytest.mark.parametrize("relaxation, mode, leaf_count", [("darts", "gm", 4), ("snas", "gm", 4),
                                                          ("darts", "few_shot", 5)])
def test_gm_nas_with_a_relaxation_derives_one_architecture_per_leaf(tmp_path, relaxation, mode, leaf_count):
    """GM's leaves, and few-shot's whose split edge keeps one op (no alpha gradient there)."""
    space = make_space("nb201@small")
    options = {"relaxation": relaxation, "mode": mode, "epochs": 3, "split_epochs": [1, 2], "gm_batches": 1,
               "batch_size": 16, "bn_images": 16, "val_images": 16}
    strategy = GMNAS([Objective("accuracy")], seed=0, **options)
    plan = strategy.prepare(SupernetContext(space, toy_data(96), [Objective("accuracy")], 0, "quick", tmp_path,
                                            False))
    tree = SplitTree(tmp_path / "gm_tree.json")
    leaves = tree.leaves()
    assert len(leaves) == leaf_count and plan.budget == leaf_count
    for leaf in leaves:
        node = tree.nodes[leaf]
        derived = node["derived"]
        assert restricted(space, node["restriction"]).contains(derived)
        alpha = node["alpha"]
        assert set(alpha) == {c.name for c in space.choices()} and all(len(a) == 5 for a in alpha.values())
    proposed = {json.dumps(dict(plan.search.ask()), sort_keys=True) for _ in range(plan.budget)}
    assert proposed == {json.dumps(tree.nodes[i]["derived"], sort_keys=True) for i in leaves}  # one per leaf


def test_derived_search_needs_a_relaxation():
    with pytest.raises(NASError, match="search 'derived' reads alpha"):
        make_config("quick", search="derived")
    assert make_config("quick").search_method == "random" and \
        make_config("quick", relaxation="darts").search_method == "derived"


def test_alpha_needs_a_warm_up_that_ends_within_the_epochs_in_every_mode():
    """One-shot has no split, yet alpha learns from split_epochs[-1]: a warm-up past the end would leave alpha at
    its initial values, so it is refused rather than silently never learning."""
    with pytest.raises(NASError, match="alpha learns from the warm-up's end split_epochs\\[-1\\]") as error:
        make_config("quick", mode="one_shot", relaxation="darts", epochs=6, split_epochs=[2, 8])
    assert "split_epochs [2, 8]" in str(error.value) and "\n" not in str(error.value)
    assert make_config("quick", mode="one_shot", relaxation="snas", epochs=6, split_epochs=[5]).splits == ()
