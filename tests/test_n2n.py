"""N2N's descriptors, students, reward and REINFORCE (strategies/n2n_students.py, strategies/n2n_policy.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nas.build import build_module, count_params
from nas.ops import Conv2d, Linear, MaxPool2d
from nas.space import NASError
from predictors.base import single_thread
from strategies.n2n_policy import SCALES, Reinforce, RemovalPolicy, ShrinkPolicy, anneal, reward
from strategies.n2n_students import (
    LINEAR_LIMIT,
    descriptors,
    policy_layers,
    rebuild,
    removal_fixed,
    remove_layers,
    resnet_teacher,
    scaled,
    shrink_fixed,
    shrink_layers,
    vgg_teacher,
)

SMALL_VGG = (8, "M", 16, "M")


def runs(graph, batch: int = 2) -> torch.Tensor:
    torch.manual_seed(0)
    return build_module(graph)(torch.randn(batch, *graph.input_shape))


def test_descriptors_of_a_known_vgg() -> None:
    graph = vgg_teacher((1, 8, 8), 10, SMALL_VGG)
    names = [n.name for n in policy_layers(graph)]
    assert names == ["c0_conv", "c0_bn", "c0_relu", "pool1", "c2_conv", "c2_bn", "c2_relu", "pool3", "avgpool", "fc"]
    assert descriptors(graph).tolist() == [
        [1, 3, 1, 8, 1], [4, 0, 0, 0, 0], [3, 0, 0, 0, 0], [2, 2, 2, 0, 0],
        [1, 3, 1, 16, 1], [4, 0, 0, 0, 0], [3, 0, 0, 0, 0], [2, 2, 2, 0, 0],
        [8, 1, 1, 0, 0], [5, 0, 0, 10, 0]]
    assert removal_fixed(graph) == [True] + [False] * 7 + [True, True]


def test_resnet_teacher_is_resnet18_shaped_and_has_skip_fields() -> None:
    graph = resnet_teacher((3, 32, 32), 10, width=64)
    assert 11_100_000 < graph.params() < 11_200_000  # ResNet-18 for CIFAR: 11.17M parameters
    assert graph.params() == count_params(build_module(graph))
    skip = descriptors(graph, skip=True)
    rows = {n.name: r for n, r in zip(policy_layers(graph), skip)}
    assert rows["stem_conv"][5:].tolist() == [0, 0]
    assert rows["s2_b0_a_conv"][5:].tolist() == [1, 8]  # of a_conv a_bn a_relu b_conv b_bn short_conv short_bn relu
    assert rows["s2_b0_relu"][5:].tolist() == [8, 1]
    assert rows["s2_b0_a_conv"][:5].tolist() == [1, 3, 2, 128, 1]


def test_removing_a_conv_refits_the_next_one_and_the_student_runs() -> None:
    graph = vgg_teacher((1, 8, 8), 10, SMALL_VGG)
    keep = [n.name != "c2_conv" for n in policy_layers(graph)]
    student = remove_layers(graph, keep)
    assert "c2_conv" not in student.dag
    assert student.node("c2_bn").layer_op.channels == 8  # the batch norm now reads the first conv's 8 channels
    assert (graph.node("fc").layer_op.in_features, student.node("fc").layer_op.in_features) == (16 * 2 * 2, 8 * 2 * 2)
    assert runs(student).shape == (2, 10)
    assert student.params() < graph.params()


def test_fixed_layers_are_never_removed() -> None:
    graph = resnet_teacher((1, 16, 16), 10, width=8, blocks=(1, 1))
    student = remove_layers(graph, [False] * len(policy_layers(graph)))
    kept = [n.name for n in policy_layers(student)]
    assert kept == ["stem_conv", "s2_b0_a_conv", "s2_b0_short_conv", "gap", "fc"]
    assert runs(student).shape == (2, 10)


def test_a_removal_that_breaks_shapes_or_the_linear_limit_is_invalid() -> None:
    wide = vgg_teacher((1, 28, 28), 10, (128, "M", 128, "M"))
    no_pools = [not isinstance(n.op, MaxPool2d) for n in policy_layers(wide)]
    assert 128 * 28 * 28 > LINEAR_LIMIT
    with pytest.raises(NASError, match="50,000"):
        remove_layers(wide, no_pools)
    graph = resnet_teacher((1, 16, 16), 10, width=8, blocks=(1, 1))
    with pytest.raises(NASError, match="invalid student at layer 's1_b0_add'"):  # branch halved, shortcut not
        rebuild(graph, ops={"s1_b0_a_conv": Conv2d(8, 8, 3, stride=2, padding=1)})
    with pytest.raises(NASError, match="one per policy layer"):
        remove_layers(graph, [True])


def test_shrink_actions_on_a_known_conv() -> None:
    conv = Conv2d(16, 64, 3, stride=1, padding=1)
    op, out = scaled(conv, (0.5, 0.5, 0.25, 0.5), (False, False, False, False))
    assert (op.kernel, op.stride, op.padding, out) == (1, 1, 0, 16)
    _, out = scaled(Conv2d(16, 32, 3), (1.0, 1.0, 0.25, 1.0), (False,) * 4)
    assert out == 10  # the code's floor of 10 outputs
    _, out = scaled(Conv2d(16, 8, 3), (1.0, 1.0, 0.5, 1.0), (False,) * 4)
    assert out == 8  # never widened
    pool, _ = scaled(MaxPool2d(2, 2), (1.0, 0.5, 1.0, 1.0), (False, False, True, False))
    assert (pool.kernel, pool.stride) == (2, 1)
    fixed_op, out = scaled(Linear(8, 4), (0.25,) * 4, (True,) * 4)
    assert fixed_op == Linear(8, 4) and out is None


def test_shrinking_a_vgg_and_a_resnet_keeps_them_valid() -> None:
    graph = vgg_teacher((1, 8, 8), 10, SMALL_VGG)
    scales = np.full((len(policy_layers(graph)), 4), 0.5)
    student = shrink_layers(graph, scales)
    assert student.node("c0_conv").layer_op == Conv2d(1, 8, 1, stride=1, padding=0)  # 8 * 0.5 < 10: floor is 8
    assert student.node("c2_conv").layer_op.out_ch == 10 and student.node("c2_conv").layer_op.kernel == 1
    assert runs(student).shape == (2, 10)
    res = resnet_teacher((1, 16, 16), 10, width=32, blocks=(2, 2))
    layers = policy_layers(res)
    fixed = shrink_fixed(res)
    assert fixed[[n.name for n in layers].index("s1_b0_a_conv")].tolist() == [True, True, False, True]
    student = shrink_layers(res, np.full((len(layers), 4), 0.5))
    # the stem, its identity shortcuts and the blocks' second convs share channels: the stem's choice
    assert {student.node(n).shape[0] for n in ("stem_conv", "s1_b0_b_conv", "s1_b1_b_conv")} == {16}
    assert student.node("s2_b0_a_conv").shape[0] == 64  # strided: fixed
    assert student.node("s2_b0_b_conv").shape[0] == 32 == student.node("s2_b0_short_conv").shape[0]
    assert runs(student).shape == (2, 10) and student.params() < res.params()


def test_fix_pools_keeps_max_pooling_out_of_the_shrink_stage() -> None:
    graph = vgg_teacher((1, 28, 28), 10)
    names = [n.name for n in policy_layers(graph)]
    pools = [i for i, name in enumerate(names) if name.startswith("pool")]
    assert pools and not shrink_fixed(graph)[pools][:, [0, 1, 3]].any()  # the code's rule: kernel, stride, padding
    assert shrink_fixed(graph, fix_pools=True)[pools].all()
    scales = np.full((len(names), 4), 0.5)
    with pytest.raises(NASError, match="50,000"):  # every pool's stride halved: the linear reads 28 x 28 x 256
        shrink_layers(graph, scales)
    student = shrink_layers(graph, scales, fix_pools=True)
    assert all(student.node(names[i]).layer_op.stride == 2 for i in pools)
    assert runs(student).shape == (2, 10) and student.params() < graph.params()


def test_reward_formula_and_the_annealed_penalty() -> None:
    # C = 0.75: C (2 - C) = 0.9375, times 90 / 92
    assert reward(250, 1000, 90.0, 92.0) == pytest.approx(0.9375 * 90 / 92)
    assert reward(1000, 1000, 90.0, 92.0) == -1.0 and reward(2000, 1000, 99.0, 92.0) == -1.0
    assert anneal(0) == 1.0 and anneal(15) == 0.0
    assert anneal(30) == 0.0 and anneal(40) == 0.0  # the code's formula rises again past 15 (1.0 at 30)
    assert anneal(5) == pytest.approx((2 / 3) ** 4)
    r = 0.9375 * 90 / 92
    eps = (1 - 5 / 15) ** 4
    assert reward(250, 1000, 90.0, 92.0, size_limit=100, update=5) == pytest.approx((eps - 1) + eps * r)
    assert reward(250, 1000, 90.0, 92.0, size_limit=100, update=0) == pytest.approx(r)  # soft at first
    assert reward(250, 1000, 90.0, 92.0, acc_limit=91.0, update=15) == pytest.approx(-1.0)
    assert reward(250, 1000, 90.0, 92.0, size_limit=300, acc_limit=89.0, update=15) == pytest.approx(r)


def test_baseline_is_the_codes_running_mean() -> None:
    policy = RemovalPolicy()
    learner = Reinforce(policy, lr=0.0)
    desc = np.ones((3, 5), dtype=np.float32)
    assert learner.baseline == 0.0
    for rewards, expected in (([1.0, 0.0], 0.0), ([0.0, 0.0], 0.25), ([2.0, 2.0], 1 / 6)):
        lps = [policy.sample(desc, [False] * 3)[1] for _ in rewards]
        assert learner.update(lps, rewards)["baseline"] == pytest.approx(expected)
    with pytest.raises(NASError, match="advantage"):
        Reinforce(policy, 0.1, advantage="mean")


@pytest.mark.parametrize("advantage", ["rollout", "batch"])
def test_reinforce_learns_the_best_removal_on_a_toy_bandit(advantage: str) -> None:
    """Reward 1 for removing exactly layers 1 and 3 of five, 0 otherwise; the policy should learn it."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    policy = RemovalPolicy()
    learner = Reinforce(policy, lr=0.03, advantage=advantage)
    desc = descriptors(vgg_teacher((1, 8, 8), 10, (8, "M")))[:5]
    target = [True, False, True, False, True]
    fixed = [True, False, False, False, True]
    with single_thread():  # tiny LSTMs: threads only add overhead
        for _ in range(40 if advantage == "rollout" else 80):  # >= 90% hits after 20 / 40 updates (seed 0)
            samples = [policy.sample(desc, fixed, gen) for _ in range(5)]
            learner.update([lp for _, lp in samples], [float(keep == target) for keep, _ in samples])
    hits = sum(policy.sample(desc, fixed, gen)[0] == target for _ in range(100))
    assert hits >= 80


def test_reinforce_learns_the_best_shrink_scale() -> None:
    """Reward = 1 - |outputs scale - 0.25| for one conv: the policy should come to pick 0.25."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    policy = ShrinkPolicy()
    learner = Reinforce(policy, lr=0.1)
    desc = np.array([[1, 3, 1, 64, 1]], dtype=np.float32)
    fixed = np.array([[True, True, False, True]])
    before = np.mean([policy.sample(desc, fixed, gen)[0][0, 2] for _ in range(200)])
    for _ in range(60):
        samples = [policy.sample(desc, fixed, gen) for _ in range(5)]
        learner.update([lp for _, lp in samples], [1 - abs(s[0, 2] - 0.25) for s, _ in samples])
    picks = [policy.sample(desc, fixed, gen)[0][0, 2] for _ in range(100)]
    assert before > 0.5 and np.mean(np.isclose(picks, SCALES[0])) >= 0.8


def test_a_policy_transfers_to_a_longer_teacher_and_resumes() -> None:
    small = resnet_teacher((1, 16, 16), 10, width=8, blocks=(1, 1))
    large = resnet_teacher((1, 16, 16), 10, width=8, blocks=(2, 2, 2, 2))
    policy = RemovalPolicy()
    learner = Reinforce(policy, lr=0.01)
    keep, lp = policy.sample(descriptors(small), removal_fixed(small))
    learner.update([lp], [0.5])
    transferred = RemovalPolicy()
    transferred.load_state_dict(policy.state_dict())
    keep, _ = transferred.sample(descriptors(large), removal_fixed(large))
    assert len(keep) == len(policy_layers(large))
    resumed = Reinforce(RemovalPolicy(), lr=0.01)
    resumed.load_state_dict(learner.state_dict())
    assert resumed.batch_means == [0.5] and resumed.baseline == 0.25
