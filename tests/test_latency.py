"""Latency tables, the table model, INT8 export and latency in searches (`nas.timing`, `nas.latency_table`,
`nas.latency_model`, `nas.quantize`, `nas.int8`)."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from nas import latency_table
from nas.blocks import block_names, block_signature
from nas.cli import main
from nas.latency_model import FlopsLinear, LatencyCost, LatencyModel
from nas.latency_table import BuildSpec, LatencyTable, build_table
from nas.space import Architecture, NASError
from nas.testing import ToyBlockSpace
from nas.timing import Conditions

#: quick, noisy measurements: the tests check bookkeeping, not speed
FAST = Conditions(runtime="torch", warmup=1, repeats=2, sample_ms=0.0, rounds=1)


def toy_graph(arch: dict[str, str]):  # noqa: ANN201
    space = ToyBlockSpace()
    return space.graph(Architecture(arch), space.default_input, space.default_classes)


def test_same_block_content_at_different_positions_has_one_key_and_one_entry() -> None:
    graph = toy_graph({"b0": "a", "b1": "b", "b2": "c"})  # "a" and "b": the same layers with their own weights
    keys = {group: block_signature(graph, group) for group in block_names(graph)}
    assert keys["block0.layer0"] == keys["block1.layer0"] != keys["block2.layer0"]
    table = LatencyTable.new(FAST)
    ms = table.block_ms(graph)
    assert len(table.blocks) == len(set(keys.values())) == len(keys) - 1
    assert ms[1] == ms[2]  # the two "a" blocks read the one entry


def test_prediction_on_a_hand_made_two_block_table_is_what_the_model_defines() -> None:
    graph = toy_graph({"b0": "a", "b1": "c", "b2": "a"})
    names = block_names(graph)
    table = LatencyTable(FAST, {"cpu": "made up"}, {block_signature(graph, g): {"ms": 1.0 + i} for i, g in
                                                    enumerate(names)})
    distinct = {block_signature(graph, g): table.blocks[block_signature(graph, g)]["ms"] for g in names}
    assert len(distinct) == 5  # stem, "a" at 8x8, "c" at 8x8, "a" at 4x4, head
    total = sum(table.blocks[block_signature(graph, g)]["ms"] for g in names)
    model = LatencyModel(table, (2.0, 0.5, 0.1), measure_missing=False)
    assert model.predict(graph) == pytest.approx(2.0 * total + 0.5 * len(names) + 0.1)
    assert LatencyModel(table, measure_missing=False).predict(graph) == pytest.approx(total)  # plain sum


def test_the_correction_is_fitted_on_whole_models_and_flops_linear_on_multiply_adds() -> None:
    space = ToyBlockSpace()
    table = LatencyTable.new(FAST)
    archs = [space.sample(random.Random(i)) for i in range(6)]
    for arch in archs:
        graph = space.graph(arch, space.default_input, space.default_classes)
        total = sum(table.block_ms(graph))
        table.models.append({"space": space.name, "arch": dict(arch), "input_shape": list(space.default_input),
                             "classes": space.default_classes, "ms": 0.5 * total + 0.2})
    model = LatencyModel.fit(table, space)
    assert model.coef[0] == pytest.approx(0.5, rel=1e-3) and model.coef[2] + 5 * model.coef[1] == pytest.approx(0.2)
    few = LatencyTable(FAST, {}, table.blocks, table.models[:3])
    assert LatencyModel.fit(few, space).coef[1:] == (0.0, 0.0)  # three measurements: the scale alone
    line = FlopsLinear.fit([1e6, 2e6, 3e6], [1.0, 2.0, 3.0])
    assert line.predict(4e6) == pytest.approx(4.0)


def test_a_correction_driven_below_zero_falls_back_to_the_scale_alone() -> None:
    """Found by CI: a correction fitted on three models predicted -0.42 ms, which met a 1e-9 ms limit."""
    graph = toy_graph({"b0": "a", "b1": "c", "b2": "a"})
    table = LatencyTable(FAST, {}, {block_signature(graph, g): {"ms": 1.0} for g in block_names(graph)})
    model = LatencyModel(table, (0.5, -1.0, 0.0), measure_missing=False, ratio=0.8)
    assert model.predict(graph) == pytest.approx(0.8 * len(block_names(graph)))


def test_merge_unions_blocks_and_refuses_other_conditions() -> None:
    a, b = LatencyTable.new(FAST), LatencyTable.new(FAST)
    a.block_ms(toy_graph({"b0": "a", "b1": "a", "b2": "a"}))
    b.block_ms(toy_graph({"b0": "c", "b1": "c", "b2": "c"}))
    merged = a.merge(b)
    assert set(merged.blocks) == set(a.blocks) | set(b.blocks) and len(merged.blocks) > len(a.blocks)
    assert all(merged.blocks[k] == v for k, v in a.blocks.items())
    other = LatencyTable.new(Conditions(runtime="torch", threads=2))
    with pytest.raises(NASError, match="threads 1 vs 2"):
        a.merge(other)


def test_an_interrupted_build_resumes_without_measuring_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """Killed in the middle of its first round, a build keeps what it measured; resumed, it takes exactly the
    measurements an uninterrupted build takes, less those it kept."""
    spec = BuildSpec("nb201", patience=2, max_archs=3, calibrate=3)
    conditions = replace(FAST, rounds=2)
    calls = [0]
    dying = [-1]
    real = latency_table.prepare

    def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - a runner that dies at call `dying[0]`
        run = real(*args, **kwargs)

        def measure() -> float:
            calls[0] += 1
            if calls[0] == dying[0]:
                raise KeyboardInterrupt
            return run()

        return measure

    monkeypatch.setattr(latency_table, "prepare", counted)
    monkeypatch.setattr(latency_table, "SAVE_EVERY_SECONDS", 0.0)
    build_table(spec, conditions, tmp_path / "whole.json", progress=False)
    uninterrupted, calls[0], dying[0] = calls[0], 0, 7
    with pytest.raises(KeyboardInterrupt):
        build_table(spec, conditions, tmp_path / "split.json", progress=False)
    saved = json.loads((tmp_path / "split.json").read_text())["blocks"]
    kept = {k: v for k, v in saved.items() if v["rounds"] == 1}
    assert len(kept) == 6  # the six measurements before the kill were saved
    calls[0], dying[0] = 0, -1
    table = build_table(spec, conditions, tmp_path / "split.json", progress=False)
    assert calls[0] == uninterrupted - 6
    assert all(table.blocks[k]["ms"] <= v["ms"] for k, v in kept.items())  # the fastest of both rounds
    assert all(v["rounds"] == 2 for v in table.blocks.values()) and len(table.models) == 3
    assert set(table.blocks) == set(json.loads((tmp_path / "whole.json").read_text())["blocks"])
    calls[0] = 0
    again = build_table(spec, conditions, tmp_path / "split.json", progress=False)  # complete: nothing to measure
    assert calls[0] == 0 and again.builds[-1]["blocks_measured_now"] == 0


def test_a_table_refuses_measurements_under_other_conditions(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    LatencyTable.new(FAST, out).save()
    with pytest.raises(NASError, match="give another --out"):
        build_table(BuildSpec("nb201", patience=1, max_archs=1, calibrate=0), Conditions(runtime="torch", batch=4),
                    out, progress=False)


@pytest.mark.parametrize(("given", "message"), [
    ({"precision": "int4"}, "latency precision 'int4' is not one of"),
    ({"runtime": "torch", "precision": "int8"}, "INT8 latency is measured with ONNX Runtime"),
    ({"threads": 0}, "latency threads 0 must be at least 1"),
])
def test_bad_conditions_are_one_line_errors(given: dict, message: str) -> None:
    with pytest.raises(NASError, match=message) as err:
        Conditions(**{"runtime": "onnxruntime", **given})
    assert "\n" not in str(err.value)


def test_cli_builds_validates_and_merges(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    table = tmp_path / "t.json"
    assert main(["latency", "build", "--space", "nb201", "--runtime", "torch", "--patience", "2", "--max-archs",
                 "3", "--calibrate", "3", "--out", str(table), "--no-progress"]) == 0
    assert "blocks" in capsys.readouterr().out
    assert main(["latency", "validate", "--table", str(table), "--archs", "3", "--no-progress",
                 "--out", str(tmp_path / "v")]) == 0
    out = capsys.readouterr().out
    assert "noise floor" in out and (tmp_path / "v" / "validate.png").stat().st_size > 0
    report = json.loads((tmp_path / "v" / "validate.json").read_text())
    assert report["archs"] == 3 and {"table", "flops-linear", "noise floor"} <= set(report)
    assert main(["latency", "merge", str(table), str(table), "--out", str(tmp_path / "m.json")]) == 0
    assert main(["latency", "validate", "--table", str(tmp_path / "missing.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_int8_blocks_are_measured_with_onnx_runtime() -> None:
    table = LatencyTable.new(Conditions.make(precision="int8", warmup=1, repeats=2, sample_ms=0.0, rounds=1))
    ms = table.block_ms(toy_graph({"b0": "a", "b1": "b", "b2": "c"}))
    assert all(v > 0 for v in ms) and table.conditions.runtime == "onnxruntime"


def test_int8_export_loads_in_a_bare_interpreter_with_onnx_runtime(tmp_path: Path) -> None:
    from nas.export import export_model

    space = ToyBlockSpace()
    arch = Architecture({"b0": "ab", "b1": "c", "b2": "a"})
    graph = space.graph(arch, space.default_input, 3)
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((8, *space.default_input)).astype(np.float32) for _ in range(2)]
    written = export_model(graph, arch, tmp_path / "out", None, space.name, ("int8",), batches)
    assert written["int8"].name == "model.int8.onnx"
    script = ("import numpy as np, onnxruntime as ort\n"
              "s = ort.InferenceSession('model.int8.onnx', providers=['CPUExecutionProvider'])\n"
              "ops = {n.op_type for n in __import__('onnx').load('model.int8.onnx').graph.node}\n"
              "assert 'QLinearConv' in ops, ops\n"
              "y = s.run(None, {s.get_inputs()[0].name: np.zeros((3, 1, 8, 8), np.float32)})[0]\n"
              "assert y.shape == (3, 3), y.shape\n")
    subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path / "out", check=True, timeout=300)
    with pytest.raises(NASError, match="needs calibration batches"):
        export_model(graph, arch, tmp_path / "other", None, space.name, ("int8",))


def test_a_search_with_a_latency_limit_and_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Through the command line: a table built for the search's data, a limit, accuracy and latency objectives;
    the summary prints each chosen model's predicted latency beside the latency measured now."""
    table = tmp_path / "t.json"
    assert main(["latency", "build", "--space", "mbconv", "--preset", "small", "--dataset", "synthetic",
                 "--runtime", "torch", "--patience", "3", "--calibrate", "3", "--out", str(table),
                 "--no-progress"]) == 0
    cost = LatencyCost.from_settings(latency_table.space_for("mbconv", "small", None),
                                     {"latency_table": str(table)})
    assert cost.model is not None and cost.model.describe()["fitted_on"] == 3
    run = tmp_path / "run"
    assert main(["search", "--space", "mbconv", "--preset", "small", "--strategy", "random", "--budget", "3",
                 "--dataset", "synthetic", "--epochs", "1", "--objectives", "accuracy,latency", "--latency-table",
                 str(table), "--latency-max", "1000", "--run-dir", str(run), "--no-progress", "--no-export"]) == 0
    out = capsys.readouterr().out
    assert "latency of the best: predicted" in out and "measured now" in out
    best = json.loads((run / "best.json").read_text())
    assert best["latency_check"][0]["predicted_ms"] == pytest.approx(best["metrics"]["latency"])
    assert (run / "search.png").exists()
    assert main(["search", "--space", "mbconv", "--preset", "small", "--strategy", "random", "--budget", "3",
                 "--latency-max", "1e-9", "--dataset", "synthetic", "--epochs", "1", "--latency-table", str(table),
                 "--run-dir", str(tmp_path / "tight"), "--no-progress"]) == 2
    assert "infeasible" in capsys.readouterr().err
