"""Latency lookup tables: the measured latency of every distinct block of a space, keyed by block content.

A table holds measurements taken under one set of `nas.timing.Conditions` on one machine (CPU model,
library versions: `machine`), so it can only be merged with or extended by measurements that agree on both.
Entries are keyed by `nas.blocks.block_signature` (a block's input shape, ops and wiring, never its
position), so the same layer at another depth, in another architecture or another space is measured once.
Besides the blocks, a table keeps a few whole-model measurements (`models`), from which `nas.latency_model`
fits what the sum of blocks misses.

`build_table` finds the space's block configurations by sampling architectures until `patience` samples in a
row bring no new block (for the spaces we ship that is every configuration the sampler reaches; the report
says when the cap `max_archs` stopped it first, i.e. the table is a sample), measures the missing ones in
`Conditions.rounds` round-robin rounds over all of them, keeping each block's fastest (`measure_in_rounds`),
with a progress bar, and saves the table atomically every few seconds, so an interrupted build resumes
where it stopped (in the middle of a round). Blocks a
table lacks are measured when a prediction needs them (`LatencyTable.extend`).

File format (JSON): {"version", "conditions", "machine", "builds": [what was built from], "blocks":
{signature: {"ms", "rounds", "group", "input_shape", "macs"}}, "models": [{"space", "preset", "arch",
"input_shape", "classes", "ms", "rounds"}]}; "ms" is null until a block's first round.
"""
from __future__ import annotations

import json
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from nas import registry
from nas.blocks import SIGNATURE_VERSION, block_graph, block_names, block_signature, build_block
from nas.graph import ArchGraph
from nas.space import Architecture, NASError, SearchSpace
from nas.timing import Conditions, machine, measure_rounds, prepare

TABLE_VERSION = 1
SAVE_EVERY_SECONDS = 10.0


@dataclass
class LatencyTable:
    conditions: Conditions
    machine: dict[str, str]
    blocks: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)
    builds: list[dict[str, Any]] = field(default_factory=list)
    path: Path | None = None

    @classmethod
    def new(cls, conditions: Conditions, path: str | Path | None = None) -> LatencyTable:
        return cls(conditions, machine(conditions), path=Path(path) if path else None)

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        file = Path(path)
        try:
            data = json.loads(file.read_text())
        except FileNotFoundError:
            raise NASError(f"latency table {str(file)!r} does not exist (build one with `nas latency build`)") from None
        except (OSError, json.JSONDecodeError) as err:
            raise NASError(f"latency table {str(file)!r} is not readable JSON: {err}") from None
        if not isinstance(data, dict) or data.get("version") != TABLE_VERSION or "conditions" not in data:
            raise NASError(f"{str(file)!r} is not a latency table of version {TABLE_VERSION}")
        if data.get("signature") != SIGNATURE_VERSION:
            raise NASError(f"latency table {str(file)!r} keys blocks by {data.get('signature')!r}, this version "
                           f"by {SIGNATURE_VERSION!r}: rebuild it")
        return cls(Conditions(**data["conditions"]), data["machine"], data["blocks"], data["models"],
                   data.get("builds", []), file)

    def save(self, path: str | Path | None = None) -> Path:
        """Write the table atomically (a killed process leaves the previous version whole)."""
        out = Path(path) if path else self.path
        if out is None:
            raise NASError("this latency table has no file to save to")
        out.parent.mkdir(parents=True, exist_ok=True)
        data = {"version": TABLE_VERSION, "signature": SIGNATURE_VERSION, "conditions": self.conditions.as_dict(),
                "machine": self.machine, "builds": self.builds, "blocks": self.blocks, "models": self.models}
        with tempfile.NamedTemporaryFile("w", dir=out.parent, prefix=f".{out.name}.", delete=False) as tmp:
            json.dump(data, tmp, indent=1)
        Path(tmp.name).replace(out)
        self.path = out
        return out

    def mismatch(self, conditions: Conditions, facts: Mapping[str, str]) -> str:
        """Why measurements under `conditions` on a machine with `facts` do not belong here ("" if they do)."""
        if conditions.key() != self.conditions.key():
            diff = {k: (v, conditions.key()[k]) for k, v in self.conditions.key().items() if conditions.key()[k] != v}
            return "measured under other conditions: " + ", ".join(f"{k} {a!r} vs {b!r}" for k, (a, b) in diff.items())
        for key in ("cpu", "gpu", "torch", "onnxruntime"):
            if self.machine.get(key) != facts.get(key):
                return f"measured with another {key}: {self.machine.get(key)!r} vs {facts.get(key)!r}"
        return ""

    def merge(self, other: LatencyTable) -> LatencyTable:
        """A table with both tables' blocks and whole models (self's measurement wins where both have one)."""
        why = self.mismatch(other.conditions, other.machine)
        if why:
            raise NASError(f"cannot merge latency table {str(other.path)!r}: {why}")
        keys = {_identity(m) for m in self.models}
        models = self.models + [m for m in other.models if _identity(m) not in keys]
        return LatencyTable(self.conditions, self.machine, {**other.blocks, **self.blocks}, models,
                            self.builds + [b for b in other.builds if b not in self.builds])

    def check_here(self) -> None:
        """Raise unless this machine can add measurements to the table (same CPU/GPU and libraries)."""
        why = self.mismatch(self.conditions, machine(self.conditions))
        if why:
            raise NASError(f"latency table {str(self.path)!r} was {why}; it cannot be extended on this machine")

    def block_ms(self, graph: ArchGraph, measure_missing: bool = True) -> list[float]:
        """The table's latency of each block of `graph`, measuring (and adding) the blocks it lacks."""
        keys = {group: block_signature(graph, group) for group in block_names(graph)}
        missing = {key: group for group, key in keys.items() if self.blocks.get(key, {}).get("ms") is None}
        if missing:
            if not measure_missing:
                raise NASError(f"latency table {str(self.path)!r} has no entry for {len(missing)} block(s) of this "
                               f"architecture (e.g. {next(iter(missing.values()))!r})")
            self.extend(graph, missing)
        return [float(self.blocks[key]["ms"]) for key in keys.values()]

    def extend(self, graph: ArchGraph, missing: Mapping[str, str], seed: int = 0) -> None:
        """Measure blocks `missing` (signature -> group of `graph`) under the table's conditions and add them
        (saved to the table's file at once when it has one)."""
        self.check_here()
        entries = measure_blocks([(graph, group) for group in missing.values()], self.conditions, seed)
        self.blocks.update(zip(missing, entries))
        if self.path is not None:
            self.save()


def _identity(model: Mapping[str, Any]) -> str:
    """What a whole-model measurement measured (its architecture and input), as text."""
    return json.dumps({k: v for k, v in model.items() if k not in ("ms", "rounds")}, sort_keys=True)


def measure_block(graph: ArchGraph, group: str, conditions: Conditions, seed: int = 0) -> dict[str, Any]:
    """One table entry: block `group` of `graph` built alone and measured at its input shape."""
    return measure_blocks([(graph, group)], conditions, seed)[0]


def measure_blocks(blocks: Sequence[tuple[ArchGraph, str]], conditions: Conditions, seed: int = 0,
                   progress: Any = None) -> list[dict[str, Any]]:
    """Table entries of `blocks` (graph, group), each built alone and measured at its input shape, round-robin
    (`nas.timing.measure_rounds`)."""
    subs = [block_graph(graph, group) for graph, group in blocks]
    with tempfile.TemporaryDirectory() as tmp:
        runners = [prepare(build_block(graph, group), tuple(sub.input_shape), conditions, Path(tmp) / str(i), seed)
                   for i, ((graph, group), sub) in enumerate(zip(blocks, subs))]
        times = measure_rounds(runners, conditions.rounds, progress)
    return [{"ms": round(ms, 6), "rounds": conditions.rounds, "group": group, "input_shape": list(sub.input_shape),
             "macs": sub.macs()} for ms, (_, group), sub in zip(times, blocks, subs)]


def space_for(name: str, preset: str | None, resolution: int | None) -> SearchSpace:
    """The registered space, restricted to input resolution `resolution` when it searches over resolutions."""
    space = registry.make_space(name, preset)
    if resolution is not None and any(c.name == "resolution" for c in space.choices()):
        space = space.restrict({"resolution": [resolution]})
    return space


def input_shape(space: SearchSpace, arch: Architecture, data_shape: Sequence[int], resolution: int | None
                ) -> tuple[int, ...]:
    """The input shape of `arch` for data of `data_shape`, at `resolution` for spaces without that choice."""
    shape = tuple(data_shape)
    if resolution is not None and not any(c.name == "resolution" for c in space.choices()):
        shape = (shape[0], resolution, resolution)
    return tuple(space.input_shape_for(arch, shape))


def sample_archs(space: SearchSpace, seed: int) -> Iterator[Architecture]:
    """Distinct random architectures of `space` in a fixed order (seeded)."""
    rng, seen = random.Random(seed), set()
    misses = 0
    while misses < 1000:
        arch = space.sample(rng)
        if arch in seen:
            misses += 1
            continue
        misses = 0
        seen.add(arch)
        yield arch


@dataclass
class BuildSpec:
    """What `build_table` measures: which space, at which input, how thoroughly."""

    space: str
    preset: str | None = None
    resolution: int | None = None
    data_shape: tuple[int, ...] | None = None  # default: the space's default input
    classes: int | None = None  # default: the space's default number of classes
    patience: int = 200
    max_archs: int = 5000
    calibrate: int = 24  # whole random models for the correction (why 24: BENCHMARKS.md, latency tables)
    seed: int = 0

    def describe(self) -> dict[str, Any]:
        return {"space": self.space, "preset": self.preset, "resolution": self.resolution,
                "data_shape": list(self.data_shape) if self.data_shape else None, "classes": self.classes,
                "seed": self.seed}


def find_blocks(space: SearchSpace, spec: BuildSpec) -> tuple[dict[str, tuple[ArchGraph, str]], dict[str, Any]]:
    """Every block configuration random sampling reaches (signature -> a graph holding it and its group),
    and how the enumeration ended."""
    shape = spec.data_shape or space.default_input
    classes = spec.classes or space.default_classes
    found: dict[str, tuple[ArchGraph, str]] = {}
    quiet, sampled = 0, 0
    for arch in sample_archs(space, spec.seed):
        sampled += 1
        graph = space.graph(arch, input_shape(space, arch, shape, spec.resolution), classes)
        new = 0
        for group in block_names(graph):
            key = block_signature(graph, group)
            if key not in found:
                found[key] = (graph, group)
                new += 1
        quiet = 0 if new else quiet + 1
        if quiet >= spec.patience or sampled >= spec.max_archs:
            break
    saturated = quiet >= spec.patience or sampled < spec.max_archs
    return found, {"archs_sampled": sampled, "blocks_found": len(found), "complete": saturated,
                   "note": (f"no new block in the last {quiet} of {sampled} sampled architectures" if saturated else
                            f"stopped at {sampled} architectures with new blocks still appearing: a sample")}


def build_table(spec: BuildSpec, conditions: Conditions, out: str | Path, progress: bool = True) -> LatencyTable:
    """Measure every block configuration of `spec`'s space (resuming the table at `out` when it exists and
    agrees on conditions and machine), then `spec.calibrate` whole random models; saved to `out`."""
    path = Path(out)
    table = LatencyTable.load(path) if path.exists() else LatencyTable.new(conditions, path)
    why = table.mismatch(conditions, machine(conditions))
    if why:
        raise NASError(f"latency table {str(path)!r} exists and was {why}: give another --out to build a new one")
    space = space_for(spec.space, spec.preset, spec.resolution)
    found, report = find_blocks(space, spec)
    rounds = table.conditions.rounds
    pending = {key: found[key] for key in found if table.blocks.get(key, {}).get("rounds", 0) < rounds}
    for key, (graph, group) in pending.items():
        sub = block_graph(graph, group)
        table.blocks.setdefault(key, {"ms": None, "rounds": 0, "group": group, "input_shape": list(sub.input_shape),
                                      "macs": sub.macs()})
    with tempfile.TemporaryDirectory() as tmp:
        runners = [prepare(build_block(graph, group), tuple(block_graph(graph, group).input_shape), table.conditions,
                           Path(tmp) / str(i), spec.seed)
                   for i, (graph, group) in enumerate(tqdm(pending.values(), desc=f"build {spec.space} blocks",
                                                           unit="block", disable=not progress))]
        entries = [table.blocks[key] for key in pending]
        with tqdm(total=sum(rounds - e["rounds"] for e in entries), unit="block", disable=not progress,
                  desc=f"latency of {spec.space} blocks ({rounds} rounds)") as bar:
            measure_in_rounds(entries, runners, rounds, table.save, bar)
    measure_models(table, space, spec, progress)
    build = {**spec.describe(), **report, "blocks_measured_now": len(pending)}
    table.builds = [b for b in table.builds if {k: b.get(k) for k in spec.describe()} != spec.describe()] + [build]
    table.save()
    return table


def measure_in_rounds(entries: Sequence[dict[str, Any]], runners: Sequence[Callable[[], float]], rounds: int,
                      save: Callable[..., Any], bar: Any = None) -> None:
    """Make each entry's "ms" the fastest of `rounds` measurements by its runner, taken round-robin
    (`nas.timing.measure_rounds`) from the rounds the entry already has; "rounds" counts those taken. `save`
    runs every `SAVE_EVERY_SECONDS` and at the end: a killed build keeps its rounds."""
    last = time.monotonic()

    def record(i: int, ms: float) -> None:
        nonlocal last
        entry = entries[i]
        entry["ms"] = round(ms if entry["ms"] is None else min(entry["ms"], ms), 6)
        entry["rounds"] += 1
        if time.monotonic() - last > SAVE_EVERY_SECONDS:
            save()
            last = time.monotonic()

    measure_rounds(runners, rounds, bar, taken=[e["rounds"] for e in entries], record=record)
    save()


def model_record(space: SearchSpace, spec: BuildSpec, arch: Architecture) -> dict[str, Any]:
    shape = spec.data_shape or space.default_input
    return {"space": spec.space, "preset": spec.preset, "arch": dict(arch),
            "input_shape": list(input_shape(space, arch, shape, spec.resolution)),
            "classes": spec.classes or space.default_classes}


def measure_models(table: LatencyTable, space: SearchSpace, spec: BuildSpec, progress: bool = True) -> None:
    """Measure `spec.calibrate` whole random architectures (seeded apart from validation's) into `table`, in
    rounds as the blocks (`measure_in_rounds`)."""
    from nas.build import build_module

    archs = sample_archs(space, spec.seed + 1)
    wanted = [model_record(space, spec, next(archs)) for _ in range(spec.calibrate)]
    for record in wanted:
        if not any(all(m.get(k) == v for k, v in record.items()) for m in table.models):
            table.models.append({**record, "ms": None, "rounds": 0})
    rounds = table.conditions.rounds
    pending = [m for m in table.models if m["space"] == spec.space and m["rounds"] < rounds]
    graphs = [space.graph(Architecture(m["arch"]), tuple(m["input_shape"]), m["classes"]) for m in pending]
    for graph in graphs:
        table.block_ms(graph)  # blocks of the calibration models are in the table too
    with tempfile.TemporaryDirectory() as tmp, \
            tqdm(total=sum(rounds - m["rounds"] for m in pending), desc="whole models", unit="model",
                 disable=not progress) as bar:
        runners = [prepare(build_module(g), tuple(g.input_shape), table.conditions, Path(tmp) / str(i), spec.seed)
                   for i, g in enumerate(graphs)]
        measure_in_rounds(pending, runners, rounds, table.save, bar)
