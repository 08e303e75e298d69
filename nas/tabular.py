"""A tabular benchmark as an evaluator: an architecture's accuracy is read from a table, instantly.

The table is a CSV file with a header row; the first column holds the architecture's key and the others
one accuracy (%) each, so one file serves several datasets. Three formats are read:

- NAS-Bench-201 / NATS-Bench topology space: `index,arch,cifar10,cifar100,imagenet16_120`, one row per cell,
  `arch` being the standard arch string (`|nor_conv_3x3~0|+|...|`); `index` is ignored.
- NATS-Bench size space: `channels,cifar10`, `channels` being `c1:c2:c3:c4:c5`.
- Any other space: `index,arch,<dataset>`, `arch` being the architecture's JSON object (`Architecture.to_json`;
  keys in any order), e.g. a ground truth trained by `scripts/bench_bossnas_rating.py --table`. The input
  shape and classes its networks saw (for the cost metrics) are read from `<table>.json` beside the CSV
  (`{"input": [1, 16, 16], "classes": 10}`) when it exists, else they are the space's defaults.

The key column is `arch` or `channels`, whichever the header has; an `index` column is skipped; every other
column is a dataset. A row's key is matched against `space.benchmark_key(arch)` for the spaces with a
published benchmark (`TabularSpace`: nb201 with the first format, nats_sss with the second), against the
architecture's JSON for the others. Dataset names are compared in lower case with `-` read as `_`
(`ImageNet16-120` finds `imagenet16_120`).

Every `evaluate` call counts as a query, repeats included (`queries`); `unique_queries` counts distinct
architectures. `best()` is the table's optimum (for regret), `items()` every (key, accuracy) row.

Registered as evaluator `tabular` (`--benchmark PATH --dataset COLUMN`, the default evaluator when a
benchmark is given). Spaces with published tables subclass `TabularSpace`.
"""
from __future__ import annotations

import csv
import json
import math
from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nas.evaluate import Evaluation, Evaluator
from nas.registry import register_evaluator
from nas.space import Architecture, NASError, SearchSpace, Value

KEY_COLUMNS = ("arch", "channels")
SKIPPED_COLUMNS = ("index",)


class TabularSpace(SearchSpace):
    """A space whose architectures have rows in a tabular benchmark (NAS-Bench-201, NATS-Bench)."""

    @abstractmethod
    def benchmark_key(self, arch: Mapping[str, Value]) -> str:
        """The key of `arch` in the benchmark's table."""

    @abstractmethod
    def benchmark_input(self, dataset: str) -> tuple[tuple[int, ...], int]:
        """(input shape, classes) the table's networks were trained with on `dataset`."""


def _column(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def read_table(path: str | Path, dataset: str) -> dict[str, float]:
    """Key -> accuracy for `dataset` from a benchmark CSV; one-line `NASError`s for every bad input."""
    path = Path(path)
    if not path.is_file():
        raise NASError(f"benchmark table {str(path)[:200]} {'is a folder' if path.is_dir() else 'does not exist'} "
                       "(give the path of a NAS-Bench-201 or NATS-Bench CSV)")
    try:
        return _read_rows(path, dataset)
    except (UnicodeDecodeError, csv.Error) as err:
        raise NASError(f"benchmark table {path} is not a CSV text file ({type(err).__name__}: "
                       f"{str(err)[:80]})") from None


def _read_rows(path: Path, dataset: str) -> dict[str, float]:
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = [_column(h) for h in next(reader, [])]
        keys = [c for c in header if c in KEY_COLUMNS]
        if len(keys) != 1:
            raise NASError(f"benchmark table {path} is malformed: its header needs exactly one key column "
                           f"({' or '.join(KEY_COLUMNS)}), got {','.join(header)[:120]!r}")
        datasets = [c for c in header if c not in KEY_COLUMNS + SKIPPED_COLUMNS]
        if _column(dataset) not in datasets:
            raise NASError(f"dataset {dataset!r} is not a column of {path}; its datasets: "
                           f"{', '.join(datasets) or 'none'}")
        key_at, value_at = header.index(keys[0]), header.index(_column(dataset))
        table: dict[str, float] = {}
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise NASError(f"benchmark table {path} is malformed: line {line} has {len(row)} fields, "
                               f"the header {len(header)}")
            try:
                value = float(row[value_at])
            except ValueError:
                raise NASError(f"benchmark table {path} is malformed: line {line} has {row[value_at]!r} "
                               f"for {dataset}, not a number") from None
            if not math.isfinite(value):
                raise NASError(f"benchmark table {path} is malformed: line {line} has {row[value_at]!r} for "
                               f"{dataset}, not a finite accuracy")
            if row[key_at] in table:
                raise NASError(f"benchmark table {path} is malformed: line {line} repeats {row[key_at]!r}")
            table[row[key_at]] = value
    if not table:
        raise NASError(f"benchmark table {path} has no rows")
    return table


def table_input(path: Path) -> tuple[tuple[int, ...] | None, int | None]:
    """(input shape, classes) from `<table>.json` beside a CSV, (None, None) without one."""
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        return None, None
    try:
        meta = json.loads(meta_path.read_text())
        shape, classes = tuple(int(n) for n in meta["input"]), int(meta["classes"])
    except (ValueError, KeyError, TypeError) as err:
        raise NASError(f"{meta_path} is malformed ({type(err).__name__}: {str(err)[:80]}); it needs "
                       '{"input": [channels, height, width], "classes": N}') from None
    return shape, classes


@register_evaluator("tabular")
class TabularEvaluator(Evaluator):
    """Accuracy (%) of an architecture from a benchmark table, looked up by its `key`."""

    name = "tabular"

    def __init__(self, space: SearchSpace, path: str | Path, dataset: str = "cifar10") -> None:
        self.space = space
        self.path = Path(path)
        self.dataset = _column(dataset)
        self.table = read_table(self.path, dataset)
        first = next(iter(self.table))
        try:
            space.resolve(first)
        except NASError:
            raise NASError(f"benchmark table {self.path} does not belong to space {space.name!r}: its first key "
                           f"{first[:80]!r} is not one of that space's architectures") from None
        if isinstance(space, TabularSpace):
            self.input_shape, self.num_classes = space.benchmark_input(self.dataset)  # what the table's nets saw
        else:  # keys: the architectures' JSON, written in one order whatever order the file has
            self.table = {space.resolve(key).to_json(): value for key, value in self.table.items()}
            self.input_shape, self.num_classes = table_input(self.path)
        self.queries = 0
        self.seen: set[str] = set()

    @classmethod
    def from_settings(cls, space: SearchSpace, settings: Mapping[str, Any], data: Any) -> TabularEvaluator:
        if not settings.get("benchmark"):
            raise NASError("evaluator 'tabular' needs --benchmark PATH (a NAS-Bench-201 or NATS-Bench CSV)")
        return cls(space, settings["benchmark"], settings["dataset"])

    @property
    def unique_queries(self) -> int:
        return len(self.seen)

    def key(self, arch: Architecture) -> str:
        """The table key of `arch`: the benchmark's for a `TabularSpace`, else the architecture's JSON."""
        return self.space.benchmark_key(arch) if isinstance(self.space, TabularSpace) else Architecture(arch).to_json()

    def lookup(self, arch: Architecture) -> float:
        """The accuracy of `arch`, without counting a query."""
        key = self.key(arch)
        if key not in self.table:
            raise NASError(f"architecture {key} is not in the benchmark table {self.path}")
        return self.table[key]

    def evaluate(self, arch: Architecture) -> Evaluation:
        accuracy = self.lookup(arch)
        self.queries += 1
        self.seen.add(self.key(arch))
        return Evaluation({"accuracy": accuracy})

    def best(self) -> tuple[str, float]:
        """The table's best (key, accuracy); the first such row when several tie."""
        key = max(self.table, key=self.table.__getitem__)
        return key, self.table[key]

    def items(self) -> list[tuple[str, float]]:
        """Every (key, accuracy) row, in file order."""
        return list(self.table.items())

    def describe(self) -> dict[str, Any]:
        return {"evaluator": self.name, "benchmark": str(self.path), "dataset": self.dataset}
