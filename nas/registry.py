"""Plug-in registry: spaces, strategies, predictors, evaluators and cost models register by name.

Built-in plug-ins register with the decorators when their module is imported; the registry imports the
built-in modules of a kind the first time that kind is asked for (none of them imports torch), then loads
third-party plug-ins from the entry-point groups `nas.spaces`, `nas.strategies`, `nas.predictors`,
`nas.evaluators` and `nas.cost_models`. A plug-in is one file: a class with a register decorator, or an
entry point naming it. A user's own module (not installed) is imported with `load_plugins` (`--plugin MODULE`,
`NAS_PLUGINS=mod1,mod2`), so what it registers can be named on the command line.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, TypeVar

from nas.space import NASError, brief, one_of

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


def plugins_from_env() -> list[str]:
    """The plug-in modules `NAS_PLUGINS` names (comma-separated)."""
    return [name.strip() for name in os.environ.get("NAS_PLUGINS", "").split(",") if name.strip()]


def load_plugins(modules: Iterable[str]) -> None:
    """Import each of a user's plug-in modules, so the spaces, strategies, ... it registers can be looked up: a
    path to a .py file, or a dotted module name importable from the current directory. A module that cannot be
    found or fails to import is a one-line `NASError`."""
    for module in modules:
        if module.endswith(".py") or os.sep in module or "/" in module:
            _import_file(module)
            continue
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # as `python -m` does: the user's modules beside them
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name and (module == err.name or module.startswith(err.name + ".")):  # not one it imports
                raise NASError(f"plug-in {module[:200]!r} is not a module importable from the current directory "
                               f"{os.getcwd()!r}; give a dotted module name or the path of a .py file") from None
            raise _import_error(module, err) from None
        except Exception as err:  # the user's code: whatever it raises is reported in one line
            raise _import_error(module, err) from None


def _import_file(file: str) -> None:
    path = Path(file)
    if path.suffix != ".py" or not path.is_file():
        raise NASError(f"plug-in file {file[:200]!r} does not exist or is not a .py file")
    name = f"nas_plugin_{path.stem}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise NASError(f"plug-in file {file[:200]!r} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the user's code: whatever it raises is reported in one line
        del sys.modules[name]
        raise _import_error(file, err) from None


def _import_error(module: str, err: Exception) -> NASError:
    first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
    return NASError(f"plug-in {module[:200]!r} failed to import: {type(err).__name__}: {first}")


def names(kind: str) -> list[str]:
    return sorted(_load(kind))


def get(kind: str, name: str) -> Any:
    table = _load(kind)
    if name not in table:
        raise NASError(f"unknown {_SINGULAR[kind]} {brief(name)}; accepted: {one_of(sorted(table))} (one of your own: "
                       "--plugin MODULE)")
    return table[name]


def split_space_name(name: str, preset: str | None = None) -> tuple[str, str | None]:
    """("spaceevo", "vnni") from "spaceevo@vnni"; a name without "@" keeps `preset`; a one-line error when both
    name a preset and they differ."""
    if "@" not in name:
        return name, preset
    name, named = name.split("@", 1)
    if preset is not None and preset != named:
        raise NASError(f"space {name}@{named} names preset {named!r} but --preset is {preset!r}; give one of them")
    return name, named


def make_space(name: str, preset: str | None = None, arch_name: str | None = None) -> Any:
    """A space instance; with no preset, the preset holding the named reference architecture, if any.
    "name@preset" names both (`spaceevo@vnni`)."""
    name, preset = split_space_name(name, preset)
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


def construct(what: str, cls: type, options: Mapping[str, Any], *args: Any, **fixed: Any) -> Any:
    """`cls(*args, **fixed, **options)` for a plug-in's user `options` (`--option key=value`); a one-line error
    naming `what` for an option it does not take (listing those it does), a value whose type differs from its
    default's (a number for a number, a whole number for a whole number, a finite one), or one it rejects."""
    params = {n: p for n, p in inspect.signature(cls).parameters.items()
              if n not in fixed and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_any = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(cls).parameters.values())
    for key, value in options.items():
        if key not in params:
            if takes_any:
                continue
            raise NASError(f"{what} has no option {brief(key)}; accepted: "
                           f"{', '.join(n for n in params if n not in ('space', 'objectives')) or 'none'}")
        _check_option(what, key, value, params[key].default)
    try:
        return cls(*args, **fixed, **options)
    except (TypeError, ValueError) as err:
        given = ", ".join(f"{k}={brief(v, 40)}" for k, v in options.items())
        raise NASError(f"{what} rejects {f'its options {given}' if options else 'its settings'}: "
                       f"{(str(err).splitlines() or [''])[0][:200]}") from None


def _check_option(what: str, key: str, value: Any, default: Any) -> None:
    """A one-line error when `value` cannot stand where `default` stood (numbers only; others the plug-in checks)."""
    if isinstance(default, bool) or default is None or default is inspect.Parameter.empty:
        return
    if isinstance(default, (int, float)):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or (isinstance(default, int) and not isinstance(value, int)):
            kind = "a whole number" if isinstance(default, int) else "a finite number"
            raise NASError(f"{what}: option {key}={brief(value, 40)} must be {kind} (default {default})")
