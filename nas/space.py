"""Choices, architectures and the `SearchSpace` interface every space implements.

An architecture is a plain mapping from choice names to values (`Architecture`): hashable, ordered by
name, JSON-able. A space declares its choices in order; a choice may depend on earlier ones through an
`active` predicate (e.g. the kernel of layer 3 exists only when the stage depth is at least 4), so
sampling, mutation and validation all follow the same declaration.
"""
from __future__ import annotations

import json
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch.nn as nn

    from nas.graph import ArchGraph

Value = Any


class NASError(ValueError):
    """A user-facing error whose message is one line naming the bad value and what is accepted."""


class ArchitectureError(NASError):
    """An architecture that does not belong to its space."""


def one_of(values: Sequence[Any]) -> str:
    """Format accepted values for an error message."""
    return ", ".join(repr(v) if isinstance(v, str) else str(v) for v in values)


@dataclass(frozen=True)
class Choice:
    """One decision of a space.

    `kind` is "categorical" (unordered) or "ordinal" (values ordered, mutation moves to a neighbour).
    `active(partial_arch)` tells whether the choice exists given the values chosen before it.
    """

    name: str
    values: tuple[Value, ...]
    kind: str = "categorical"
    active: Callable[[Mapping[str, Value]], bool] | None = field(default=None, compare=False)
    doc: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("categorical", "ordinal"):
            raise ValueError(f"choice kind {self.kind!r} is not one of 'categorical', 'ordinal'")
        if not self.values:
            raise ValueError(f"choice {self.name!r} has no values")

    def is_active(self, partial: Mapping[str, Value]) -> bool:
        return self.active is None or bool(self.active(partial))

    def neighbours(self, value: Value) -> list[Value]:
        """Values a mutation may move to: adjacent ones for ordinal choices, all others for categorical."""
        if self.kind == "ordinal" and value in self.values:
            i = self.values.index(value)
            return [self.values[j] for j in (i - 1, i + 1) if 0 <= j < len(self.values)]
        return [v for v in self.values if v != value]


class Architecture(Mapping[str, Value]):
    """An immutable, hashable mapping of choice names to values, sorted by name."""

    __slots__ = ("_items", "_hash")

    def __init__(self, items: Mapping[str, Value] | None = None, **kwargs: Value) -> None:
        merged = dict(items or {}, **kwargs)
        self._items: tuple[tuple[str, Value], ...] = tuple(sorted(merged.items()))
        self._hash = hash(self._items)

    def __getitem__(self, key: str) -> Value:
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Architecture):
            return self._items == other._items
        if isinstance(other, Mapping):
            return dict(self._items) == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"Architecture({self.to_json()})"

    def replace(self, **changes: Value) -> Architecture:
        return Architecture(dict(self._items, **changes))

    def to_json(self) -> str:
        return json.dumps(dict(self._items), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Architecture:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ArchitectureError(f"architecture {text[:60]!r} is not valid JSON ({err.msg})") from None
        if not isinstance(data, dict):
            raise ArchitectureError(f"architecture {text[:60]!r} is not a JSON object of choice: value")
        return cls(data)


class SearchSpace(ABC):
    """A family of architectures.

    Subclasses declare `choices()` and `graph(arch, ...)`; sampling, mutation, validation, encoding
    and building all follow from them. Named reference architectures come from `reference_archs()`.
    """

    name: str = "space"
    #: default input shape (C, H, W) or (C, L) and number of classes for `graph`/`build`
    default_input: tuple[int, ...] = (3, 224, 224)
    default_classes: int = 1000

    # -- declaration -------------------------------------------------------------------------
    @abstractmethod
    def choices(self) -> list[Choice]:
        """All choices in declaration order (a choice's `active` may only read earlier ones)."""

    @abstractmethod
    def graph(self, arch: Mapping[str, Value], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None) -> ArchGraph:
        """The concrete layer DAG of `arch`."""

    def reference_archs(self) -> dict[str, Architecture]:
        """Published members of the space, by name."""
        return {}

    def check(self, arch: Mapping[str, Value]) -> None:
        """Raise `ArchitectureError` for combinations the choices alone cannot rule out."""

    def input_shape_for(self, arch: Mapping[str, Value], data_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The input shape the model of `arch` sees, given the dataset's sample shape."""
        return data_shape

    # -- derived -----------------------------------------------------------------------------
    def choice_map(self) -> dict[str, Choice]:
        return {c.name: c for c in self.choices()}

    def active_choices(self, arch: Mapping[str, Value]) -> list[Choice]:
        return [c for c in self.choices() if c.is_active(arch)]

    def sample(self, rng: random.Random) -> Architecture:
        """A uniformly random value for every active choice, in declaration order."""
        values: dict[str, Value] = {}
        for choice in self.choices():
            if choice.is_active(values):
                values[choice.name] = rng.choice(choice.values)
        arch = Architecture(values)
        try:
            self.check(arch)
        except ArchitectureError:
            return self.sample(rng)
        return arch

    def complete(self, values: Mapping[str, Value], rng: random.Random) -> Architecture:
        """Keep the given values where still active, drop inactive ones, sample newly active ones."""
        out: dict[str, Value] = {}
        for choice in self.choices():
            if choice.is_active(out):
                out[choice.name] = values[choice.name] if choice.name in values else rng.choice(choice.values)
        return Architecture(out)

    def mutate(self, arch: Mapping[str, Value], rng: random.Random) -> Architecture:
        """Change one active choice to a neighbouring value (Real et al. 2019 style point mutation)."""
        active = [c for c in self.active_choices(arch) if len(c.values) > 1]
        for _ in range(100):
            choice = rng.choice(active)
            child = self._changed(arch, choice.name, rng.choice(choice.neighbours(arch[choice.name])), rng)
            if child is not None:
                return child
        return self.sample(rng)

    def _changed(self, arch: Mapping[str, Value], name: str, value: Value,
                 rng: random.Random) -> Architecture | None:
        """`arch` with choice `name` set to `value` (newly active choices sampled), or None when invalid."""
        child = self.complete({**arch, name: value}, rng)
        try:
            self.check(child)
        except ArchitectureError:
            return None
        return child

    def canonical(self, arch: Mapping[str, Value]) -> str:
        """A key shared by architectures that compute the same function; spaces that know their isomorphisms
        override it (NAS-Bench-201), the default tells every architecture apart."""
        return Architecture(arch).to_json()

    def neighbours(self, arch: Mapping[str, Value], rng: random.Random) -> list[Architecture]:
        """Every valid architecture one `mutate` step away: each active choice moved to each of its
        neighbouring values (choices that become active are sampled with `rng`), without repeats, in order."""
        out: dict[Architecture, None] = {}
        for choice in self.active_choices(arch):
            for value in choice.neighbours(arch[choice.name]):
                child = self._changed(arch, choice.name, value, rng)
                if child is not None:
                    out[child] = None
        out.pop(Architecture(arch), None)
        return list(out)

    def resolve(self, arch: str | Mapping[str, Value]) -> Architecture:
        """An architecture from a reference name, a JSON text or a mapping; validated."""
        if isinstance(arch, str):
            refs = self.reference_archs()
            if arch in refs:
                return refs[arch]
            if not arch.lstrip().startswith("{"):
                names = one_of(sorted(refs)) or "none"
                raise ArchitectureError(
                    f"unknown architecture {arch!r} for space {self.name!r}; named ones: {names}; or give a JSON object")
            arch = Architecture.from_json(arch)
        arch = Architecture(arch)
        self.validate(arch)
        return arch

    def validate(self, arch: Mapping[str, Value]) -> None:
        """Raise a one-line `ArchitectureError` naming the first bad choice or value."""
        known = self.choice_map()
        for name in arch:
            if name not in known:
                raise ArchitectureError(
                    f"unknown choice {name!r} in space {self.name!r}; choices are: {one_of(list(known))[:300]}")
        seen: dict[str, Value] = {}
        for choice in self.choices():
            active = choice.is_active(seen)
            if active and choice.name not in arch:
                raise ArchitectureError(f"choice {choice.name!r} is missing; accepted values: {one_of(choice.values)}")
            if not active and choice.name in arch:
                raise ArchitectureError(f"choice {choice.name!r} does not apply to this architecture "
                                        "(a choice it depends on rules it out)")
            if active:
                value = arch[choice.name]
                if value not in choice.values:
                    raise ArchitectureError(f"value {value!r} for choice {choice.name!r} is not accepted; "
                                            f"accepted: {one_of(choice.values)}")
                seen[choice.name] = value
        self.check(arch)

    def encode(self, arch: Mapping[str, Value]) -> np.ndarray:
        """One-hot encoding of every choice (all zeros for an inactive one), in declaration order."""
        import numpy as np

        parts = []
        for choice in self.choices():
            vec = np.zeros(len(choice.values), dtype=np.float32)
            if choice.name in arch:
                vec[choice.values.index(arch[choice.name])] = 1.0
            parts.append(vec)
        return np.concatenate(parts)

    def build(self, arch: Mapping[str, Value], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None) -> nn.Module:
        """A `torch.nn.Module` built from `graph(arch)`."""
        from nas.build import build_module

        return build_module(self.graph(arch, input_shape, num_classes))

    def size(self) -> int | None:
        """The number of architectures when it is cheap to count; None otherwise."""
        return None

    def describe(self) -> str:
        first = (self.__doc__ or "").strip().splitlines()
        return first[0] if first else self.name
