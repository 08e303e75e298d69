"""Plug-in registry: spaces, strategies and predictors register by name.

Built-in plug-ins register with the decorators when their package is imported; third-party packages
add theirs through the entry-point groups `nas.spaces`, `nas.strategies` and `nas.predictors`.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeVar

from nas.space import NASError, one_of

T = TypeVar("T")
_REGISTRIES: dict[str, dict[str, Any]] = {"spaces": {}, "strategies": {}, "predictors": {}}
_BUILTIN_PACKAGES = {"spaces": "search_spaces", "strategies": "strategies", "predictors": "predictors"}
_loaded: set[str] = set()


def _register(kind: str, name: str) -> Callable[[T], T]:
    def deco(obj: T) -> T:
        _REGISTRIES[kind][name] = obj
        return obj
    return deco


def register_space(name: str) -> Callable[[T], T]:
    return _register("spaces", name)


def register_strategy(name: str) -> Callable[[T], T]:
    return _register("strategies", name)


def register_predictor(name: str) -> Callable[[T], T]:
    return _register("predictors", name)


def _load(kind: str) -> dict[str, Any]:
    if kind not in _loaded:
        _loaded.add(kind)
        importlib.import_module(_BUILTIN_PACKAGES[kind])
        for ep in entry_points(group=f"nas.{kind}"):
            _REGISTRIES[kind].setdefault(ep.name, ep.load())
    return _REGISTRIES[kind]


def names(kind: str) -> list[str]:
    return sorted(_load(kind))


def get(kind: str, name: str) -> Any:
    table = _load(kind)
    if name not in table:
        raise NASError(f"unknown {kind[:-1] if kind != 'strategies' else 'strategy'} {name!r}; "
                       f"accepted: {one_of(sorted(table))}")
    return table[name]


def make_space(name: str, preset: str | None = None, arch_name: str | None = None) -> Any:
    """A space instance; with no preset, the preset holding the named reference architecture, if any."""
    cls = get("spaces", name)
    presets = getattr(cls, "presets", ())
    if preset is None and arch_name and hasattr(cls, "preset_of"):
        preset = cls.preset_of(arch_name)
        if preset is None:
            named = sorted(a for p in presets for a in cls(p).reference_archs())
            raise NASError(f"unknown architecture {arch_name!r} for space {name!r}; named ones: {one_of(named)}; "
                           "or give a JSON object")
    if preset is not None and not presets:
        raise NASError(f"space {name!r} has no presets; drop --preset {preset!r}")
    return cls(preset) if presets else cls()
