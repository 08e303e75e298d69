"""A search's settings checked where they enter (CLI flags, the Python API, a resumed run's config.json), so a
bad value is a one-line error naming it before any data is loaded or any model trained."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from nas.data import BUILT_IN
from nas.space import NASError

STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql")


def check_settings(settings: Mapping[str, Any]) -> None:
    """Raise `NASError` for the first setting that cannot work: counts, training hyperparameters, the device,
    objectives and constraints, the storage URL."""
    from nas.objectives import parse_objectives
    from nas.train import TrainConfig

    for key, low in (("budget", 1), ("seed", 0)):
        value = settings.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise NASError(f"{key} {value!r} must be a whole number of at least {low}")
    subset = settings.get("train_subset")
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int) or subset < 1):
        raise NASError(f"train subset {subset!r} must be a whole number of at least 1 (or left out: all images)")
    dataset, path = settings.get("dataset"), settings.get("data_path")
    if path and dataset in BUILT_IN and not settings.get("benchmark"):
        raise NASError(f"dataset {dataset!r} is built in and reads no files: drop --data-path {str(path)[:200]!r}")
    train = dict(settings.get("train") or {})
    try:
        TrainConfig(seed=settings["seed"], **train)
    except TypeError as err:
        raise NASError(f"training settings {sorted(train)} hold an unknown one: {err}") from None
    if not parse_objectives(settings.get("objectives", "accuracy")):
        raise NASError(f"objectives {settings.get('objectives')!r} name no metric; e.g. accuracy or accuracy,macs")
    for metric, limit in (settings.get("constraints") or {}).items():
        if not isinstance(limit, (int, float)) or isinstance(limit, bool) or not math.isfinite(limit):
            raise NASError(f"constraint {metric}<={limit!r}: the limit must be a finite number")
        if metric in ("params", "macs", "latency") and limit <= 0:
            raise NASError(f"constraint {metric}<={limit!r}: the limit must be positive")
    check_storage(settings.get("storage"))


def check_storage(url: str | None) -> None:
    """A one-line error unless `url` is None or an SQLAlchemy URL of a database Optuna can use."""
    if url is None:
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        scheme = make_url(url).get_backend_name()
    except ArgumentError:
        scheme = ""
    if scheme not in STORAGE_SCHEMES:
        raise NASError(f"storage {url[:200]!r} is not a database URL; accepted: "
                       + ", ".join(f"{s}://..." for s in STORAGE_SCHEMES))
    try:
        make_url(url).get_dialect().import_dbapi()
    except ImportError as err:
        raise NASError(f"storage {url[:200]!r} needs the database driver {err.name or str(err)[:80]!r}, which is not "
                       "installed (PostgreSQL: pip install -e '.[postgres]')") from None

