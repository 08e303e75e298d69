"""Plug-in registry: spaces, strategies, predictors, evaluators and cost models register by name.

Built-in plug-ins register with the decorators when their module is imported; the registry imports the
built-in modules of a kind the first time that kind is asked for (none of them imports torch), then loads
third-party plug-ins from the entry-point groups `nas.spaces`, `nas.strategies`, `nas.predictors`,
`nas.evaluators` and `nas.cost_models`. A plug-in is one file: a class with a register decorator, or an
entry point naming it.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeVar

from nas.space import NASError, one_of

T = TypeVar("T")
#: kind -> the modules whose import registers the built-in plug-ins of that kind
_BUILTIN_MODULES = {"spaces": ("search_spaces",), "strategies": ("strategies",), "predictors": ("predictors",),
                    "evaluators": ("nas.evaluate", "nas.tabular", "nas.predictor_evaluator", "nas.inherited"),
                    "cost_models": ("nas.costs", "nas.latency_model")}
_SINGULAR = {"spaces": "space", "strategies": "strategy", "predictors": "predictor", "evaluators": "evaluator",
             "cost_models": "cost model"}
_REGISTRIES: dict[str, dict[str, Any]] = {kind: {} for kind in _BUILTIN_MODULES}
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


def register_evaluator(name: str) -> Callable[[T], T]:
    """Register an `nas.evaluate.Evaluator` subclass; `--evaluator NAME` builds it with `from_settings`."""
    return _register("evaluators", name)


def register_cost_model(metric: str) -> Callable[[T], T]:
    """Register an `nas.costs.CostModel` subclass under the metric it computes (its `metric` attribute)."""
    def deco(cls: T) -> T:
        if getattr(cls, "metric", None) != metric:
            raise ValueError(f"cost model {cls!r} computes {getattr(cls, 'metric', None)!r}, registered as {metric!r}")
        return _register("cost_models", metric)(cls)
    return deco


def _load(kind: str) -> dict[str, Any]:
    if kind not in _loaded:
        _loaded.add(kind)
        for module in _BUILTIN_MODULES[kind]:
            importlib.import_module(module)
        for ep in entry_points(group=f"nas.{kind}"):
            _REGISTRIES[kind].setdefault(ep.name, ep.load())
    return _REGISTRIES[kind]


def names(kind: str) -> list[str]:
    return sorted(_load(kind))


def get(kind: str, name: str) -> Any:
    table = _load(kind)
    if name not in table:
        raise NASError(f"unknown {_SINGULAR[kind]} {name!r}; accepted: {one_of(sorted(table))}")
    return table[name]


def make_space(name: str, preset: str | None = None, arch_name: str | None = None) -> Any:
    """A space instance; with no preset, the preset holding the named reference architecture, if any."""
    cls = get("spaces", name)
    presets = cls.presets
    if preset is None and arch_name and presets:
        preset = cls.preset_of(arch_name)
        if preset is None:
            named = sorted(a for p in presets for a in cls(p).reference_archs())
            raise NASError(f"unknown architecture {arch_name!r} for space {name!r}; named ones: {one_of(named)}; "
                           "or give a JSON object")
    if preset is not None and not presets:
        raise NASError(f"space {name!r} has no presets; drop --preset {preset!r}")
    return cls(preset) if presets else cls()
