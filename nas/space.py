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
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from math import prod
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from nas.graph import ArchGraph

Value = Any


class NASError(ValueError):
    """A user-facing error whose message is one line naming the bad value and what is accepted."""


class ArchitectureError(NASError):
    """An architecture that does not belong to its space."""


def brief(value: Any, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters, for one-line errors about values of any size."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def same_value(declared: Value, given: Value) -> bool:
    """Equal, and both booleans or neither (Python's True == 1 must not make `true` a depth of 1)."""
    return bool(declared == given) and isinstance(declared, bool) == isinstance(given, bool)


def one_of(values: Sequence[Any], limit: int | None = None) -> str:
    """Format accepted values for an error message, cut to `limit` characters (with "...") when given."""
    text = ", ".join(repr(v) if isinstance(v, str) else str(v) for v in values)
    return text if limit is None or len(text) <= limit else text[:limit - 3] + "..."


@dataclass(frozen=True)
class Choice:
    """One decision of a space.

    `kind` is "categorical" (unordered) or "ordinal" (values ordered, mutation moves to a neighbour).
    `active(partial_arch)` tells whether the choice exists given the values chosen before it. `slot` names
    the searchable layer whose candidate the choice picks, alone (an NB201 edge) or with others (an MBConv
    layer's kernel and expand ratio share the slot "s1_l0"); choices without one are global (a width
    multiplier, a resolution, a depth). A supernet's cover takes every combination of a slot's values.
    """

    name: str
    values: tuple[Value, ...]
    kind: str = "categorical"
    active: Callable[[Mapping[str, Value]], bool] | None = field(default=None, compare=False)
    doc: str = ""
    slot: str = ""

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

    __slots__ = ("_hash", "_items")

    def __init__(self, items: Mapping[str, Value] | None = None, **kwargs: Value) -> None:
        merged = dict(items or {}, **kwargs)
        self._items: tuple[tuple[str, Value], ...] = tuple(sorted(merged.items()))
        try:
            self._hash = hash(self._items)
        except TypeError:
            name, value = next((k, v) for k, v in self._items if not isinstance(v, Hashable))
            raise ArchitectureError(f"value {brief(value)} of choice {brief(name)} is not a single value (a number, "
                                    "string or boolean)") from None

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
    #: named variants of the space (a constructor argument); empty when it has none
    presets: tuple[str, ...] = ()
    #: this instance's preset (None for a space without presets)
    preset: str | None = None
    #: how a one-shot supernet of the space shares weights ("separate" or "elastic", `nas.supernet`)
    supernet_sharing: str = "separate"

    @classmethod
    def preset_of(cls, arch_name: str) -> str | None:
        """The preset whose named architectures include `arch_name` (None: no such preset)."""
        return None

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
                raise ArchitectureError(f"unknown architecture {arch!r} for space {self.name!r}; named ones: {names}; "
                                        "or give a JSON object")
            arch = Architecture.from_json(arch)
        arch = self.declared_values(arch)
        self.validate(arch)
        return arch

    def declared_values(self, arch: Mapping[str, Value]) -> Architecture:
        """`arch` with each value replaced by the equal one its choice declares (JSON's 1.0 for 1; `true` stays
        `true`, so validation rejects it where 1 is declared)."""
        known = self.choice_map()
        out = {}
        for name, value in Architecture(arch).items():
            declared = known[name].values if name in known else ()
            out[name] = next((v for v in declared if same_value(v, value)), value)
        return Architecture(out)

    def validate(self, arch: Mapping[str, Value]) -> None:
        """Raise a one-line `ArchitectureError` naming the first bad choice or value."""
        known = self.choice_map()
        for name in arch:
            if name not in known:
                raise ArchitectureError(
                    f"unknown choice {brief(name)} in space {self.name!r}; choices are: {one_of(list(known), 160)}")
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
                if not any(same_value(v, value) for v in choice.values):
                    raise ArchitectureError(f"value {brief(value)} for choice {choice.name!r} is not accepted; "
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

    def decode(self, vector: Any) -> Architecture:
        """The inverse of `encode`, for generative models that emit encodings (DiffusionNAG).

        Accepts noisy or continuous vectors (a sequence, numpy array or torch tensor): each active choice
        takes the value at the argmax of its slice (the first on ties); a choice inactive given the values
        decoded before it is skipped whatever its slice holds. Raises a one-line `NASError` for a vector of
        the wrong length and `ArchitectureError` when the decoded values break a rule the choices cannot
        express (`check`, e.g. HyTra halving below its lowest level): a generator's invalid sample. A space
        that overrides `encode` must override this too.
        """
        arch = decode_one_hot(self.choices(), {}, vector, self.name)
        self.check(arch)
        return arch

    def build(self, arch: Mapping[str, Value], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None) -> nn.Module:
        """A `torch.nn.Module` built from `graph(arch)`."""
        from nas.build import build_module

        return build_module(self.graph(arch, input_shape, num_classes))

    def size(self) -> int | None:
        """The number of architectures when it is cheap to count; None otherwise."""
        return None

    def extreme(self, largest: bool) -> Architecture:
        """The largest (smallest) member: every active choice at its last (first) value, as the sandwich rule
        of slimmable networks, BigNAS and AlphaNet takes it; a seeded sample when that breaks `check`."""
        rng = random.Random(0)
        values: dict[str, Value] = {}
        for choice in self.choices():
            if choice.is_active(values):
                values[choice.name] = choice.values[-1 if largest else 0]
        arch = self.complete(values, rng)
        try:
            self.check(arch)
        except ArchitectureError:
            return self.sample(rng)
        return arch

    def supernet_cover(self) -> list[Architecture]:
        """Architectures whose graphs together hold every layer a supernet of this space needs (`nas.supernet`).

        Bases: the largest and the smallest member (every active choice at its last / first value; a sample
        when that breaks `check`) and the largest with one global choice (one without a `Choice.slot`: a
        width multiplier, a resolution, a depth) moved to each other value. Every base whose graph has a
        layer (name, candidate, op) no earlier base had (another width multiplier; not another resolution or
        depth) is taken with the choices of each slot set to every combination of their values (a global
        choice to each of its values), newly active choices sampled; and where moving one slot's choices
        changes the layers of another slot (a width feeding the next layer's convolution), with every
        combination of both. Spaces whose layers depend on longer chains of choices (HyTra: a layer's ops
        depend on the levels of all layers before it) override it; an architecture outside the cover is a
        one-line error when a supernet runs it.
        """
        import itertools

        rng = random.Random(0)

        def valid(values: Mapping[str, Value]) -> Architecture | None:
            arch = self.complete(values, rng)
            try:
                self.check(arch)
            except ArchitectureError:
                return None
            return arch

        def layers(arch: Architecture) -> dict[str, set]:
            out: dict[str, set] = {}
            for node in self.graph(arch).layers():
                out.setdefault(node.slot, set()).add((node.name, node.variant, node.op))
            return out

        def combos(*groups: list[Choice]) -> Iterator[dict[str, Value]]:
            chosen = [c for group in groups for c in group]
            for values in itertools.product(*(c.values for c in chosen)):
                yield {c.name: v for c, v in zip(chosen, values)}

        largest = self.extreme(largest=True)
        bases = [largest, self.extreme(largest=False)] + [
            a for c in self.active_choices(largest) if not c.slot for v in c.values
            if v != largest[c.name] and (a := valid({**largest, c.name: v}))]
        cover: dict[Architecture, None] = {}
        seen: set[tuple] = set()
        for base in bases:
            cover[base] = None
            base_layers = layers(base)
            if set().union(*base_layers.values()) <= seen:
                continue
            seen |= set().union(*base_layers.values())
            slots: dict[str, list[Choice]] = {}
            for choice in self.active_choices(base):
                slots.setdefault(choice.slot or choice.name, []).append(choice)
            pairs = []
            for name, group in slots.items():
                probe = valid({**base, **{c.name: c.values[0] for c in group}})
                if probe is not None and probe != base:
                    moved = layers(probe)
                    pairs += [(group, other) for key, other in slots.items()
                              if key != name and moved.get(key) != base_layers.get(key)]
            for values in [v for group in slots.values() for v in combos(group)] + \
                    [v for a, b in pairs for v in combos(a, b)]:
                child = valid({**base, **values})
                if child is not None and all(child.get(k) == v for k, v in values.items()):
                    cover[child] = None
        return list(cover)

    def restrict(self, allowed: Mapping[str, Iterable[Value]]) -> RestrictedSpace:
        """This space with some choices limited to a subset of their values (see `RestrictedSpace`).

        GM-NAS few-shot supernets split a space this way: each sub-supernet is the space with one edge's
        ops restricted to a group. `space.restrict({"edge_1_0": ["nor_conv_3x3", "skip_connect"]})`.
        """
        return RestrictedSpace(self, allowed)

    def describe(self) -> str:
        first = (self.__doc__ or "").strip().splitlines()
        return first[0] if first else self.name


def decode_one_hot(layout: Sequence[Choice], allowed: Mapping[str, Sequence[Value]], vector: Any,
                   space: str) -> Architecture:
    """Decode `vector` laid out as `encode` lays out `layout` (see `SearchSpace.decode`); a choice named in
    `allowed` takes the argmax over those values only. No `check`: callers run it."""
    import numpy as np

    if hasattr(vector, "detach"):  # a torch tensor, possibly on a GPU or requiring grad
        vector = vector.detach().cpu()
    try:
        vec = np.asarray(vector, dtype=np.float64)
    except (TypeError, ValueError):
        raise NASError(f"cannot decode {type(vector).__name__} as a {space!r} encoding; "
                       "give a vector of numbers") from None
    width = sum(len(c.values) for c in layout)
    if vec.shape != (width,):
        raise NASError(f"a {space!r} encoding is a vector of {width} numbers (one per value of every choice), "
                       f"got shape {vec.shape}")
    if not np.isfinite(vec).all():
        raise NASError(f"cannot decode a {space!r} encoding holding NaN or infinite entries")
    values: dict[str, Value] = {}
    start = 0
    for choice in layout:
        part = vec[start:start + len(choice.values)]
        start += len(choice.values)
        if choice.is_active(values):
            candidates = allowed.get(choice.name, choice.values)
            values[choice.name] = max(candidates, key=lambda v: part[choice.values.index(v)])
    return Architecture(values)


def _overrides(space: SearchSpace, method: str) -> bool:
    """Whether `space`'s class replaces the generic `SearchSpace.<method>`."""
    return getattr(type(space), method) is not getattr(SearchSpace, method)



class PresetSpace(SearchSpace):
    """A space made from one of its class's named presets: `PRESETS` maps each name to a spec with a `doc` and
    `references` (that preset's named architectures); the constructor takes one (`default_preset` when None)
    and keeps its spec as `self.spec`."""

    PRESETS: ClassVar[Mapping[str, Any]] = {}
    default_preset: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.presets = tuple(cls.PRESETS)

    def __init__(self, preset: str | None = None) -> None:
        preset = preset or self.default_preset
        if preset not in self.PRESETS:
            raise ArchitectureError(f"unknown {self.name} preset {brief(preset)}; accepted: "
                                    f"{one_of(list(self.PRESETS))}")
        self.preset = preset
        self.spec = self.PRESETS[preset]

    def describe(self) -> str:
        return str(self.spec.doc)

    @classmethod
    def preset_of(cls, arch_name: str) -> str | None:
        """The preset whose named architectures include `arch_name`."""
        return next((p for p, spec in cls.PRESETS.items() if arch_name in spec.references), None)


class RestrictedSpace(SearchSpace):
    """A space with some choices limited to a subset of their values (GM-NAS sub-supernets).

    The architectures are the base space's members whose restricted choices (where active) take allowed
    values. The graph, `check`, input shapes, `canonical`, `describe`, `name`, defaults and any
    space-specific extra (`benchmark_key`, `preset`, ...) come from the base; `choices()` carries the
    restricted values, so the generic `complete`, `neighbours` and `mutate` follow them. `encode` keeps the
    base's vector layout (predictors trained on the full space apply) and `decode` reads it, taking each
    restricted choice's argmax over its allowed values only. Restricting again intersects.

    Where the base overrides a method, it is delegated and filtered, never trusted blindly:
    - `sample`: a base that overrides it (HyTra: uniform over the space) is redrawn until the draw is
      inside, at most `TRIES` times, which keeps its distribution conditioned on the restriction (uniform
      stays uniform); if all miss, the generic draw over the restricted choices is used (uniform per
      choice, not over architectures). Bases with the generic `sample` draw per choice from the allowed
      values directly.
    - `mutate`: likewise (NB201's REA mutation, conditioned on landing inside; if `TRIES` children all
      fall outside, the generic point mutation over the restricted choices).
    - `validate`: the base's (HyTra's fabric errors first), then a one-line `ArchitectureError` naming a
      restricted choice whose value is outside.
    `size()` is the product of the allowed value counts when the base counts its space as the product of
    independent choices (NB201, NATS size space); None otherwise.
    """

    TRIES = 100

    def __init__(self, base: SearchSpace, allowed: Mapping[str, Iterable[Value]]) -> None:
        restriction: dict[str, tuple[Value, ...]] = {}
        if isinstance(base, RestrictedSpace):  # intersect with the earlier restriction
            restriction, base = dict(base.restriction), base.base
        known = base.choice_map()
        for name, values in allowed.items():
            if name not in known:
                raise NASError(f"cannot restrict unknown choice {name!r} of space {base.name!r}; "
                               f"choices are: {one_of(list(known), 160)}")
            choice = known[name]
            wanted = [values] if isinstance(values, str) or not isinstance(values, Iterable) else list(values)
            foreign = [v for v in wanted if v not in choice.values]
            if foreign or not wanted:
                what = f"to {foreign[0]!r}" if foreign else "to no values"
                raise NASError(f"cannot restrict choice {name!r} {what}; accepted values: {one_of(choice.values)}")
            before = restriction.get(name, choice.values)
            kept = tuple(v for v in choice.values if v in wanted and v in before)
            if not kept:
                raise NASError(f"restricting choice {name!r} to {one_of(wanted)} leaves no values: it is already "
                               f"restricted to {one_of(before)}")
            restriction[name] = kept
        self.base: SearchSpace = base
        self.restriction: dict[str, tuple[Value, ...]] = restriction
        self._choices = [replace(c, values=restriction[c.name]) if c.name in restriction else c
                         for c in base.choices()]

    def __getattr__(self, name: str) -> Any:
        if name == "base" or name.startswith("__"):  # not yet set (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.base, name)

    def __repr__(self) -> str:
        return f"RestrictedSpace({self.base.name!r}, {self.restriction})"

    # -- from the base ------------------------------------------------------------------------
    @property
    def name(self) -> str:  # type: ignore[override]
        return self.base.name

    @property
    def default_input(self) -> tuple[int, ...]:  # type: ignore[override]
        return self.base.default_input

    @property
    def default_classes(self) -> int:  # type: ignore[override]
        return self.base.default_classes

    @property
    def preset(self) -> str | None:  # type: ignore[override]
        return self.base.preset

    @property
    def supernet_sharing(self) -> str:  # type: ignore[override]
        return self.base.supernet_sharing

    def supernet_cover(self) -> list[Architecture]:
        """The base's cover moved inside the restriction (a restricted choice outside takes its first allowed
        value) where the base has its own cover (HyTra), else the generic cover of the restricted choices."""
        if not _overrides(self.base, "supernet_cover"):
            return super().supernet_cover()
        rng = random.Random(0)
        out: dict[Architecture, None] = {}
        for arch in self.base.supernet_cover():
            moved = self.complete({k: v if k not in self.restriction or v in self.restriction[k]
                                   else self.restriction[k][0] for k, v in arch.items()}, rng)
            try:
                self.validate(moved)
            except ArchitectureError:
                continue
            out[moved] = None
        return list(out)

    def choices(self) -> list[Choice]:
        return self._choices

    def graph(self, arch: Mapping[str, Value], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None) -> ArchGraph:
        return self.base.graph(arch, input_shape, num_classes)

    def build(self, arch: Mapping[str, Value], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None) -> nn.Module:
        return self.base.build(arch, input_shape, num_classes)

    def check(self, arch: Mapping[str, Value]) -> None:
        self.base.check(arch)

    def input_shape_for(self, arch: Mapping[str, Value], data_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.base.input_shape_for(arch, data_shape)

    def canonical(self, arch: Mapping[str, Value]) -> str:
        return self.base.canonical(arch)

    def describe(self) -> str:
        return self.base.describe()

    def encode(self, arch: Mapping[str, Value]) -> np.ndarray:
        return self.base.encode(arch)

    def decode(self, vector: Any) -> Architecture:
        arch = decode_one_hot(self.base.choices(), self.restriction, vector, self.name)
        self.check(arch)
        return arch

    # -- membership ---------------------------------------------------------------------------
    def contains(self, arch: Mapping[str, Value]) -> bool:
        """Whether every restricted choice of `arch` (where present) takes an allowed value."""
        return all(arch[name] in values for name, values in self.restriction.items() if name in arch)

    def validate(self, arch: Mapping[str, Value]) -> None:
        self.base.validate(arch)
        for name, values in self.restriction.items():
            if name in arch and arch[name] not in values:
                raise ArchitectureError(f"value {brief(arch[name])} for choice {name!r} is outside this restricted "
                                        f"space; accepted: {one_of(values)}")

    def resolve(self, arch: str | Mapping[str, Value]) -> Architecture:
        resolved = self.base.resolve(arch)  # the base's names and string formats (NB201 arch strings)
        self.validate(resolved)
        return resolved

    def reference_archs(self) -> dict[str, Architecture]:
        return {name: arch for name, arch in self.base.reference_archs().items() if self.contains(arch)}

    # -- sampling and mutation ----------------------------------------------------------------
    def sample(self, rng: random.Random) -> Architecture:
        if _overrides(self.base, "sample"):
            for _ in range(self.TRIES):
                arch = self.base.sample(rng)
                if self.contains(arch):
                    return arch
        return super().sample(rng)

    def mutate(self, arch: Mapping[str, Value], rng: random.Random) -> Architecture:
        if not any(len(c.values) > 1 for c in self.active_choices(arch)):
            raise NASError(f"cannot mutate in {self!r}: every choice of this architecture has a single value")
        if _overrides(self.base, "mutate"):
            for _ in range(self.TRIES):
                child = self.base.mutate(arch, rng)
                if self.contains(child):
                    return child
        return super().mutate(arch, rng)

    def neighbours(self, arch: Mapping[str, Value], rng: random.Random) -> list[Architecture]:
        if _overrides(self.base, "neighbours"):
            return [a for a in self.base.neighbours(arch, rng) if self.contains(a)]
        return super().neighbours(arch, rng)

    def size(self) -> int | None:
        base = self.base.choices()
        independent = all(c.active is None for c in base) and not _overrides(self.base, "check")
        if not independent or self.base.size() != prod(len(c.values) for c in base):
            return None
        return prod(len(c.values) for c in self._choices)
