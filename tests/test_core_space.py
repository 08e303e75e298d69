"""Choices, architectures, sampling, mutation and validation."""
from __future__ import annotations

import random

import pytest

from nas.space import Architecture, ArchitectureError, Choice
from search_spaces.mbconv import MBConvSpace


def test_architecture_is_hashable_sorted_and_json_round_trips():
    a = Architecture({"b": 2, "a": 1.5})
    assert list(a) == ["a", "b"]
    assert hash(a) == hash(Architecture(a=1.5, b=2))
    assert Architecture.from_json(a.to_json()) == a
    assert a.replace(b=3)["b"] == 3 and a["b"] == 2


def test_dependent_choices_follow_depth():
    space = MBConvSpace("small")
    rng = random.Random(0)
    for _ in range(50):
        arch = space.sample(rng)
        space.validate(arch)
        for i in range(1, 5):
            depth = arch[f"s{i}_depth"]
            assert f"s{i}_l{depth - 1}_k" in arch
            assert f"s{i}_l{depth}_k" not in arch  # a layer beyond the depth has no choices


def test_mutation_changes_one_choice_and_stays_valid():
    space = MBConvSpace("small")
    rng = random.Random(1)
    arch = space.sample(rng)
    for _ in range(50):
        child = space.mutate(arch, rng)
        space.validate(child)
        assert child != arch
        changed = {k for k in set(arch) | set(child) if arch.get(k) != child.get(k)}
        depth_changed = any(k.endswith("_depth") for k in changed)
        assert len(changed) == 1 or depth_changed
        arch = child


@pytest.mark.parametrize("bad, message", [
    ({"bogus": 1}, "unknown choice 'bogus'"),
    ({"resolution": 33}, "value 33 for choice 'resolution' is not accepted; accepted: 24, 32"),
    ({"s1_l1_k": 3, "s1_depth": 1}, "choice 's1_l1_k' does not apply"),
])
def test_validation_errors_are_one_line_and_name_the_value(bad, message):
    space = MBConvSpace("small")
    arch = dict(space.reference_archs()["small_max"])
    if "s1_depth" in bad:
        for key in [k for k in arch if k.startswith("s1_l")]:
            del arch[key]
        arch["s1_l0_k"], arch["s1_l0_e"] = 3, 3
    arch.update(bad)
    with pytest.raises(ArchitectureError) as err:
        space.validate(arch)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_choice_lists_accepted_values():
    space = MBConvSpace("small")
    arch = dict(space.reference_archs()["small_max"])
    del arch["width_mult"]
    with pytest.raises(ArchitectureError, match="choice 'width_mult' is missing; accepted values: 0.75, 1.0"):
        space.validate(arch)


def test_resolve_accepts_names_and_json_and_rejects_others():
    space = MBConvSpace("mobilenet_v2")
    ref = space.resolve("mobilenet_v2")
    assert space.resolve(ref.to_json()) == ref
    with pytest.raises(ArchitectureError, match="unknown architecture 'resnet50'"):
        space.resolve("resnet50")
    with pytest.raises(ArchitectureError, match="not valid JSON"):
        space.resolve("{oops")


def test_ordinal_neighbours():
    c = Choice("k", (3, 5, 7), "ordinal")
    assert c.neighbours(3) == [5] and sorted(c.neighbours(5)) == [3, 7]
    assert Choice("op", ("a", "b", "c")).neighbours("a") == ["b", "c"]


def test_encode_is_one_hot_per_choice():
    space = MBConvSpace("small")
    arch = space.sample(random.Random(3))
    vec = space.encode(arch)
    assert vec.sum() == len(arch)
    assert len(vec) == sum(len(c.values) for c in space.choices())
