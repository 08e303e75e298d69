"""What `nas latency build | validate | merge` do (argument parsing lives in `nas.cli`)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from nas.space import NASError


def build(args: argparse.Namespace) -> None:
    from nas.latency_table import BuildSpec, build_table
    from nas.ops import ShapeError
    from nas.timing import Conditions

    data_shape, classes = None, None
    if args.dataset:
        from nas.data import load_dataset

        data = load_dataset(args.dataset, args.data_path, seed=args.seed)
        data_shape, classes = tuple(data.sample_shape), data.num_classes
    for name in ("patience", "max_archs"):
        if getattr(args, name) < 1:
            raise NASError(f"--{name.replace('_', '-')} {getattr(args, name)} must be at least 1")
    if args.calibrate < 0:
        raise NASError(f"--calibrate {args.calibrate} must be 0 or more")
    if args.resolution is not None and args.resolution < 1:
        raise NASError(f"--resolution {args.resolution} must be at least 1 (default: the space's)")
    conditions = Conditions.make(args.runtime, args.device, precision=args.precision, threads=args.threads,
                                 batch=args.batch)
    spec = BuildSpec(args.space, args.preset, args.resolution, data_shape, classes, args.patience, args.max_archs,
                     args.calibrate, args.seed)
    try:
        table = build_table(spec, conditions, args.out, progress=not args.no_progress)
    except ShapeError as err:
        raise NASError(f"input resolution {args.resolution or 'default'} does not fit space {args.space!r}: {err}") \
            from None
    report = table.builds[-1]
    print(f"latency table {table.path}: {len(table.blocks)} blocks, {len(table.models)} whole models "
          f"({report['blocks_measured_now']} blocks measured now)")
    print(f"block configurations: {report['blocks_found']} found, {report['note']}")
    c = table.conditions
    print(f"conditions: {c.runtime} {c.precision} on {c.device} ({table.machine['cpu']}), {c.threads} thread(s), "
          f"batch {c.batch}")


def validate(args: argparse.Namespace) -> None:
    from nas.latency_table import LatencyTable, space_for
    from nas.latency_validate import plot_validation, summary_lines, validate as run_validation

    table = LatencyTable.load(args.table)
    if args.archs < 1:
        raise NASError(f"--archs {args.archs} must be at least 1")
    build = table.builds[-1] if table.builds else {}
    name = args.space or build.get("space")
    if not name:
        raise NASError(f"latency table {args.table!r} records no build; name the space with --space")
    same = build.get("space") == name
    preset = args.preset if args.preset is not None else (build.get("preset") if same else None)
    resolution = build.get("resolution") if same else None
    space = space_for(name, preset, resolution)
    report = run_validation(table, space, args.archs, args.seed, build.get("data_shape") if same else None,
                            build.get("classes") if same else None, resolution, progress=not args.no_progress)
    out = Path(args.out) if args.out else Path(args.table).with_suffix("")
    out.mkdir(parents=True, exist_ok=True)
    (out / "validate.json").write_text(json.dumps(report, indent=1))
    plot_validation(report, out / "validate.png")
    table.save()  # blocks measured during validation stay in the table
    print("\n".join(summary_lines(report)))
    print(f"written: {out / 'validate.json'}, {out / 'validate.png'}")


def merge(args: argparse.Namespace) -> None:
    from nas.latency_table import LatencyTable

    tables = [LatencyTable.load(path) for path in args.tables]
    merged = tables[0]
    for other in tables[1:]:
        merged = merged.merge(other)
    merged.save(args.out)
    print(f"latency table {args.out}: {len(merged.blocks)} blocks, {len(merged.models)} whole models "
          f"from {len(tables)} tables")
