"""scripts/build_fashion_nb201_truth.py: the canonical cell draw, runs.jsonl resuming, the report's table and
seed agreement (no network is trained)."""
from __future__ import annotations

import itertools
import json
from collections import Counter

import pytest
from conftest import load_script
from scipy.stats import kendalltau

from nas.space import Architecture
from nas.tabular import TabularEvaluator, read_table
from search_spaces.nb201 import EDGES, OPS, NB201Space, arch_string, canonical, edge_name


@pytest.fixture(scope="module")
def truth():
    return load_script("build_fashion_nb201_truth")


def test_draw_is_canonical_unique_deterministic_and_uniform_over_classes(truth):
    cells = truth.draw_cells(200)
    keys = [canonical(c) for c in cells]
    assert len(set(keys)) == 200  # no two isomorphic cells
    assert truth.draw_cells(200) == cells  # same draw every time
    assert truth.draw_cells(50) == cells[:50]  # a larger draw extends a smaller one
    order = truth.class_order()
    assert len(order) == 6466 and len({k for k, _ in order}) == 6466  # a shuffle of all classes, one cell each
    assert all(canonical(arch) == key for key, arch in order)
    assert [k for k, _ in truth.class_order(1)] != [k for k, _ in order]
    # uniform over classes, not cells: a drawn cell's class has 15,625 / 6,466 = 2.4 members on average (a draw
    # uniform over cells would favour big classes: 36 on average; the largest have 275)
    size = Counter(canonical(Architecture({edge_name(j, i): op for (j, i), op in zip(EDGES, ops)}))
                   for ops in itertools.product(OPS, repeat=len(EDGES)))
    drawn = [size[k] for seed in range(20) for k, _ in truth.class_order(seed)[:200]]
    assert 2.0 < sum(drawn) / len(drawn) < 3.0


def record(truth, arch: str, seed: int, accuracy: float) -> dict:
    return {"arch": arch, "canonical": truth.canonical_of(arch), "seed": seed, "accuracy": accuracy, "seconds": 1.0,
            "torch": "x", "device": "cpu", "cpu": "test", "threads": 1, "workers": 1, "recipe": truth.RECIPE_ID,
            "commit": "abc"}


def test_resuming_trains_only_missing_pairs_and_survives_a_cut_line(truth, tmp_path):
    cells = truth.draw_cells(3)
    runs = tmp_path / "runs.jsonl"
    truth.append_run(runs, record(truth, arch_string(cells[0]), 0, 80.0))
    with runs.open("a") as handle:  # a killed write: half a line, no newline
        handle.write('{"arch": "|none~0|+')
    assert len(truth.load_runs(runs)) == 1
    tasks = truth.pending(cells, 2, truth.load_runs(runs))
    assert tasks == [(arch_string(cells[0]), 1)] + [(arch_string(c), s) for c in cells[1:] for s in (0, 1)]
    trained = []

    def fake_train(task):
        trained.append(task)
        return {k: v for k, v in record(truth, task[0], task[1], 70.0 + task[1]).items() if k not in ("recipe",)}

    assert truth.run_tasks(tasks, runs, 1, "cpu", {"recipe": truth.RECIPE_ID}, train=fake_train) == 5
    assert trained == tasks
    done = truth.load_runs(runs)
    assert len(done) == 6 and truth.pending(cells, 2, done) == []
    assert [json.loads(line)["seed"] for line in runs.read_text().splitlines()] == [0, 1, 0, 1, 0, 1]  # cut line gone
    assert truth.run_tasks(truth.pending(cells, 2, done), runs, 1, "cpu", {}, train=fake_train) == 0


def test_runs_of_another_recipe_are_refused(truth, tmp_path):
    runs = tmp_path / "runs.jsonl"
    runs.write_text(json.dumps({"arch": "a", "seed": 0, "recipe": "other"}) + "\n")
    with pytest.raises(SystemExit, match="another recipe"):
        truth.load_runs(runs)


def test_report_table_is_read_by_the_tabular_evaluator(truth, tmp_path):
    cells = [arch_string(c) for c in truth.draw_cells(5)]
    seed0 = [80.0, 82.0, 84.0, 86.0, 88.0]
    seed1 = [81.0, 80.0, 85.0, 88.0, 86.0]
    for arch, a, b in zip(cells, seed0, seed1):
        truth.append_run(tmp_path / "runs.jsonl", record(truth, arch, 0, a))
        truth.append_run(tmp_path / "runs.jsonl", record(truth, arch, 1, b))
    truth.append_run(tmp_path / "runs.jsonl", record(truth, arch_string(truth.draw_cells(6)[5]), 0, 50.0))  # partial
    summary = truth.report(tmp_path, 2)
    table = read_table(tmp_path / "table.csv", "fashion_mnist")
    assert list(table) == cells  # draw order, the partial cell left out
    assert table[cells[1]] == pytest.approx(81.0)
    assert summary["mean"] == pytest.approx((sum(seed0) + sum(seed1)) / 10)
    assert summary["tau"] == pytest.approx(kendalltau(seed0, seed1)[0]) == pytest.approx(0.6)
    assert summary["partial"] == 1
    evaluator = TabularEvaluator(NB201Space(), tmp_path / "table.csv", "fashion_mnist")
    assert evaluator.input_shape == tuple(truth.RECIPE["input"]) and evaluator.num_classes == truth.RECIPE["classes"]
    assert evaluator.lookup(NB201Space().resolve(cells[4])) == pytest.approx(87.0)
    readme = (tmp_path / "README.md").read_text()
    assert "Kendall tau 0.600" in readme and truth.RECIPE_ID in readme
    assert (tmp_path / "seeds.png").stat().st_size > 0


@pytest.mark.parametrize("argv, message", [
    (["--cells", "0"], "--cells 0 is not accepted: give 1 to 6466"),
    (["--seeds", "1"], "--seeds 1 is not accepted"),
    (["--workers", "0"], "--workers 0 is not accepted"),
    (["--device", "tpu"], "--device 'tpu' is not accepted: give one of auto, cpu, cuda"),
])
def test_bad_arguments_give_one_line_errors(truth, argv, message):
    with pytest.raises(SystemExit, match=message):
        truth.parse_args(argv)
