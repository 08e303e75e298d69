"""How well a latency table predicts whole models on this machine: `nas latency validate`.

K random architectures (drawn with another seed than the table's calibration models, which are skipped) are
each measured end to end twice, each time as the table's entries were (`Conditions.rounds` round-robin passes
over all K, keeping each one's fastest), the second time after the first has finished for all K: the second
against the first is the noise floor, the best any predictor can do here. Against the first
pass we report, for the table model (`nas.latency_model.LatencyModel`), the plain sum of its blocks, and the
FLOPs-linear baseline fitted once on the table's calibration models (the same information the table model
had) and once on the K measurements themselves (its best case, in-sample): the share of architectures
within +-10% and the mean absolute percentage error. A scatter plot goes to a PNG.
"""
from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from nas.build import build_module
from nas.latency_model import FlopsLinear, LatencyModel, model_graph, models_of
from nas.latency_table import LatencyTable, input_shape, sample_archs
from nas.space import NASError, SearchSpace
from nas.timing import measure_rounds, prepare


def within(predicted: Sequence[float], measured: Sequence[float], tolerance: float = 0.10) -> float:
    """Share of predictions within +-`tolerance` (relative) of the measurements."""
    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    return float(np.mean(np.abs(p - m) <= tolerance * m))


def mape(predicted: Sequence[float], measured: Sequence[float]) -> float:
    """Mean absolute percentage error."""
    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    return float(100 * np.mean(np.abs(p - m) / m))


def validate(table: LatencyTable, space: SearchSpace, archs: int = 100, seed: int = 1000,
             data_shape: Sequence[int] | None = None, classes: int | None = None, resolution: int | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Measure `archs` random architectures of `space` twice and compare the predictors (module docstring)."""
    calibration = models_of(table, space)
    if len(calibration) < 3:
        raise NASError(f"latency table {str(table.path)!r} has {len(calibration)} whole-model measurements of space "
                       f"{space.name!r}; build it for this space first (`nas latency build`)")
    model = LatencyModel.fit(table, space)
    flops = FlopsLinear.fit([model_graph(m, space).macs() for m in calibration], [m["ms"] for m in calibration])
    shape = tuple(data_shape or calibration[0]["input_shape"])
    classes = classes or calibration[0]["classes"]
    known = {json.dumps(m["arch"], sort_keys=True) for m in calibration}
    drawn = (a for a in sample_archs(space, seed) if json.dumps(dict(a), sort_keys=True) not in known)
    rows: list[dict[str, Any]] = []
    before = len(table.blocks)
    rounds = table.conditions.rounds
    with tempfile.TemporaryDirectory() as tmp:
        runners = []
        for i in tqdm(range(archs), desc="validate: build and predict", unit="arch", disable=not progress):
            arch = next(drawn)
            graph = space.graph(arch, input_shape(space, arch, shape, resolution), classes)
            runners.append(prepare(build_module(graph), tuple(graph.input_shape), table.conditions, Path(tmp) / str(i)))
            features = model.features(graph)
            rows.append({"arch": dict(arch), "macs": graph.macs(), "sum": features[0],
                         "table": model.combine(features), "flops": flops.predict(graph.macs())})
        for key in ("measured", "again"):
            with tqdm(total=archs * rounds, desc=f"validate: {key} ({rounds} rounds)", unit="arch",
                      disable=not progress) as bar:
                for row, ms in zip(rows, measure_rounds(runners, rounds, bar)):
                    row[key] = ms
    measured = [r["measured"] for r in rows]
    in_sample = FlopsLinear.fit([r["macs"] for r in rows], measured)
    for r in rows:
        r["flops_in_sample"] = in_sample.predict(r["macs"])
    report = {"space": space.name, "archs": len(rows), "seed": seed, "conditions": table.conditions.as_dict(),
              "machine": table.machine, "model": model.describe(), "flops_coef": list(flops.coef),
              "blocks_measured_during_validation": len(table.blocks) - before,
              "measured_ms": {"min": min(measured), "median": float(np.median(measured)), "max": max(measured)}}
    for name, key in (("table", "table"), ("sum of blocks", "sum"), ("flops-linear", "flops"),
                      ("flops-linear in-sample", "flops_in_sample"), ("noise floor", "again")):
        values = [r[key] for r in rows]
        report[name] = {"within_10pct": within(values, measured), "mape": mape(values, measured)}
    report["rows"] = rows
    return report


def summary_lines(report: dict[str, Any]) -> list[str]:
    c = report["conditions"]
    lines = [f"{report['archs']} random {report['space']} architectures, {c['runtime']} {c['precision']} on "
             f"{c['device']} ({report['machine'].get('cpu', '?')}), {c['threads']} thread(s), batch {c['batch']}; "
             f"measured {report['measured_ms']['min']:.3g} .. {report['measured_ms']['max']:.3g} ms "
             f"(median {report['measured_ms']['median']:.3g})",
             f"{'predictor':<24}{'within +-10%':>14}{'MAPE':>9}"]
    for name in ("table", "sum of blocks", "flops-linear", "flops-linear in-sample", "noise floor"):
        lines.append(f"{name:<24}{100 * report[name]['within_10pct']:>13.1f}%{report[name]['mape']:>8.2f}%")
    return lines


def plot_validation(report: dict[str, Any], path: str | Path) -> Path:
    """Predicted against measured latency (table model, FLOPs-linear, second measurement), with the +-10% band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    measured = np.array([r["measured"] for r in rows])
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for key, label, marker in (("again", "measured again (noise floor)", "x"), ("flops", "FLOPs-linear", "s"),
                               ("table", "latency table", "o")):
        name = {"again": "noise floor", "flops": "flops-linear", "table": "table"}[key]
        share = 100 * report[name]["within_10pct"]
        ax.scatter(measured, [r[key] for r in rows], s=14, alpha=0.6, marker=marker, label=f"{label}: {share:.0f}%")
    lo, hi = measured.min() * 0.8, measured.max() * 1.2
    grid = np.linspace(lo, hi, 10)
    ax.plot(grid, grid, color="k", lw=1)
    ax.fill_between(grid, grid * 0.9, grid * 1.1, color="grey", alpha=0.2, label="+-10%")
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    c = report["conditions"]
    ax.set_title(f"{report['space']}: {c['runtime']} {c['precision']}, {c['threads']} thread(s)")
    ax.legend(loc="upper left", framealpha=0.7, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
