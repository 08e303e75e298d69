"""A trained ground truth of NAS-Bench-201 cells on Fashion-MNIST: a table the `tabular` evaluator reads.

    python scripts/build_fashion_nb201_truth.py --cells 200 --seeds 2 --workers 2   # build (resumable), then report
    python scripts/build_fashion_nb201_truth.py --report                            # rewrite the report only

The cells: all 15,625 NB201 cells are enumerated (ops in `OPS` order, edges in arch-string order) and grouped
by `canonical(arch)`, NAS-Bench-201's isomorphism key (6,466 classes); a class's representative is its first
cell in that enumeration. The class keys, sorted, are shuffled with `random.Random(0)` and `--cells N` takes the
first N, so the draw is uniform over the classes (not over cells), has no two isomorphic cells, is the same on
every run, and a larger N extends a smaller one. Each cell is trained with seeds 0 .. `--seeds` - 1 (the seed
sets the initial weights and the batch order; the data are the same for every run).

The recipe (`RECIPE`, fixed; chosen for about 15-25 s per training on one CPU core): the NB201 skeleton with
C=8 and N=1 (cell 8 -> reduction 16 -> cell 16 -> reduction 32 -> cell 32; `NB201Space("small")`), Fashion-MNIST
standardised with the 60,000 training images' statistics and resized bilinearly to 16x16, trained on a fixed
subset of 10,000 training images (`TensorData.subset(seed=0)`) for 4 epochs by the evaluator `nas search` uses
(`nas.evaluate.TrainEvaluator`: SGD + Nesterov 0.9, lr 0.05 cosine, batch 128, label smoothing 0.1, weight
decay 4e-5, no augmentation, float32, BatchNorm recalibrated on 10 batches), then scored on the official
10,000-image test split (top-1 %).

Every finished (cell, seed) is appended as one JSON line to `<out>/runs.jsonl` (a single write, fsynced), so a
rerun skips what is done and a killed build loses only the trainings in flight. `--workers N` processes train
in parallel, one torch thread each, on CUDA when available (`--device`). The report (`--report`, and the end of
every build) writes `table.csv` (`index,arch,fashion_mnist`: the draw position, the arch string, the mean over
the seeds), `README.md` (recipe, command, machine, commit, accuracies, the seed-0 vs seed-1 Kendall tau and
Spearman rho: the noise ceiling of any rating) and `seeds.png`. Writing the report inside the repository from
a tree with uncommitted changes under nas/, scripts/ or search_spaces/ is refused unless `--allow-dirty`.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import hashlib
import itertools
import json
import os
import random
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread per worker process

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from nas.space import Architecture  # noqa: E402
from search_spaces.nb201 import EDGES, OPS, SIZES, arch_string, canonical, edge_name  # noqa: E402

OUT = ROOT / "benchmarks" / "fashion_nb201"
DATASET = "fashion_mnist"
DRAW_SEED = 0
DEVICES = ("auto", "cpu", "cuda")
TREE = ("nas/", "scripts/", "search_spaces/")  # the code the figures come from
#: the one training recipe; its hash tags every run, and runs of another recipe are refused
RECIPE: dict[str, Any] = {
    "space": "nb201", "channels": SIZES["small"][0], "cells_per_stage": SIZES["small"][1],  # the space's small preset
    "input": [1, 16, 16], "classes": 10,
    "data": "fashion_mnist (IDX files, /usr/share/datasets/fashion-mnist), standardised with the statistics of "
            "the 60,000 training images, resized bilinearly from 28x28",
    "train_images": 10_000, "train_subset_seed": 0, "eval": "official test split, 10,000 images, top-1 %",
    "train": {"epochs": 4, "batch_size": 128, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
              "weight_decay": 4e-5, "warmup_epochs": 0.0, "label_smoothing": 0.1, "augment": "none",
              "amp": False, "bn_calibration_batches": 10},
}
RECIPE_ID = hashlib.sha1(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:10]


# -- the cells -----------------------------------------------------------------------------------------------
@functools.cache
def canonical_classes() -> dict[str, Architecture]:
    """Canonical key -> the class's first cell, over all 15,625 cells in enumeration order."""
    classes: dict[str, Architecture] = {}
    for ops in itertools.product(OPS, repeat=len(EDGES)):
        arch = Architecture({edge_name(j, i): op for (j, i), op in zip(EDGES, ops)})
        classes.setdefault(canonical(arch), arch)
    return classes


def class_order(seed: int = DRAW_SEED) -> list[tuple[str, Architecture]]:
    """Every canonical class (key, representative), sorted by key and shuffled with `seed`."""
    classes = canonical_classes()
    keys = sorted(classes)
    random.Random(seed).shuffle(keys)
    return [(key, classes[key]) for key in keys]


def draw_cells(n: int, seed: int = DRAW_SEED) -> list[Architecture]:
    """The first `n` representatives of `class_order(seed)`: `n` non-isomorphic cells, uniform over classes."""
    order = class_order(seed)
    if not 1 <= n <= len(order):
        raise ValueError(f"--cells {n} is not accepted: give 1 to {len(order)} (the canonical classes)")
    return [arch for _, arch in order[:n]]


# -- runs.jsonl ----------------------------------------------------------------------------------------------
def load_runs(path: Path) -> list[dict[str, Any]]:
    """The records of `runs.jsonl` (none if absent); a cut last line (a killed write) is ignored."""
    if not path.is_file():
        return []
    text = path.read_text()
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines) and not text.endswith("\n"):
                continue  # the last write was cut short
            raise SystemExit(f"{path}: line {number} is not a JSON record ({line[:60]!r}); fix or delete it"
                             ) from None
    foreign = {r.get("recipe") for r in records} - {RECIPE_ID}
    if foreign:
        raise SystemExit(f"{path} holds runs of another recipe ({', '.join(map(str, sorted(foreign, key=str)))}, "
                         f"this script's is {RECIPE_ID}); move it away or give another --out")
    return records


def append_run(path: Path, record: Mapping[str, Any]) -> None:
    """Append `record` as one JSON line with a single write, then fsync; a cut last line (a killed write) is
    dropped first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            os.truncate(fd, path.read_bytes().rfind(b"\n") + 1)
        os.write(fd, (json.dumps(dict(record), sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def pending(cells: Sequence[Architecture], seeds: int, runs: Iterable[Mapping[str, Any]]) -> list[tuple[str, int]]:
    """The (arch string, seed) pairs not in `runs`, cell by cell, seeds in order."""
    done = {(r["arch"], r["seed"]) for r in runs}
    return [(arch_string(c), s) for c in cells for s in range(seeds) if (arch_string(c), s) not in done]


# -- training ----------------------------------------------------------------------------------------------------
_DATA: Any = None
_DEVICE = "cpu"


def recipe_data() -> Any:
    """The recipe's data: the fixed training subset and the test split, at the recipe's input size."""
    from nas.data import load_dataset
    from nas.train import resize_inputs

    data = load_dataset(DATASET).subset(train=RECIPE["train_images"], seed=RECIPE["train_subset_seed"])
    shape = tuple(RECIPE["input"])
    return dataclasses.replace(data, x_train=resize_inputs(data.x_train, shape).contiguous(),
                               x_val=resize_inputs(data.x_val, shape).contiguous())


def init_worker(device: str) -> None:
    """A training process: one torch thread, the device to train on (data are loaded on first use)."""
    import torch

    global _DEVICE
    torch.set_num_threads(1)
    _DEVICE = device


def device_name(device: str) -> str:
    import torch

    return f"cuda ({torch.cuda.get_device_name(0)})" if device.startswith("cuda") else "cpu"


def train_one(task: tuple[str, int]) -> dict[str, Any]:
    """Train one (arch string, seed) with the recipe; its record for runs.jsonl."""
    import torch

    from nas.evaluate import TrainEvaluator
    from nas.timing import cpu_model
    from nas.train import TrainConfig
    from search_spaces.nb201 import NB201Space, parse_arch_string

    global _DATA
    if _DATA is None:
        _DATA = recipe_data()
    text, seed = task
    arch = parse_arch_string(text)
    space = NB201Space("small")
    config = TrainConfig(**RECIPE["train"], seed=seed, device=_DEVICE, num_threads=1)
    start = time.perf_counter()
    accuracy = TrainEvaluator(space, _DATA, config).evaluate(arch).metrics["accuracy"]
    return {"arch": text, "canonical": canonical(arch), "seed": seed, "accuracy": round(accuracy, 4),
            "seconds": round(time.perf_counter() - start, 2), "torch": torch.__version__,
            "device": device_name(_DEVICE), "cpu": cpu_model(), "cores": os.cpu_count(),
            "threads": torch.get_num_threads()}


def run_tasks(tasks: Sequence[tuple[str, int]], runs_path: Path, workers: int, device: str,
              extra: Mapping[str, Any], train: Callable[[tuple[str, int]], dict[str, Any]] = train_one) -> int:
    """Train `tasks` in `workers` processes (in this one for 1), appending each record (with `extra`) as it
    finishes; returns how many finished."""
    from tqdm import tqdm

    done = 0
    with tqdm(total=len(tasks), desc="fashion_nb201", unit="run") as bar:
        if workers == 1:
            init_worker(device)
            results: Iterable[dict[str, Any]] = map(train, tasks)
            pool = None
        else:
            import multiprocessing

            pool = multiprocessing.get_context("spawn").Pool(workers, init_worker, (device,))
            results = pool.imap_unordered(train, tasks)
        try:
            for record in results:
                append_run(runs_path, {**record, **extra})
                done += 1
                bar.update()
                bar.set_postfix(acc=f"{record['accuracy']:.1f}", s=f"{record['seconds']:.0f}")
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
    return done


# -- the report ------------------------------------------------------------------------------------------------
def tree_state() -> tuple[str, list[str]]:
    """The commit and the changed files under `TREE` (bench_strategies' helper, narrowed)."""
    import bench_strategies as bs

    commit, changed = bs.tree_state()
    return commit, [path for path in changed if path.startswith(TREE) or path.startswith("(")]


def guard_tree(out: Path, allow_dirty: bool) -> tuple[str, list[str]]:
    """The tree's commit and changed files; a one-line refusal to write inside the repository from a changed
    tree unless `allow_dirty`."""
    from bench_strategies import inside_repository

    commit, changed = tree_state()
    if changed and inside_repository(out) and not allow_dirty:
        raise SystemExit(f"refusing to write the report in {out} from a tree with uncommitted changes at {commit} "
                         f"({', '.join(changed[:5])}); commit them, or pass --allow-dirty")
    return commit, changed


def summarize(runs: Sequence[Mapping[str, Any]], seeds: int) -> dict[str, Any]:
    """Per-cell accuracies (cells with every seed < `seeds`, in draw order) and the seed-0 vs seed-1 agreement."""
    import numpy as np
    from scipy.stats import kendalltau, spearmanr

    position = {key: i for i, (key, _) in enumerate(class_order())}
    by_arch: dict[str, dict[int, float]] = {}
    for r in runs:
        by_arch.setdefault(r["arch"], {}).setdefault(int(r["seed"]), float(r["accuracy"]))
    complete = sorted((a for a, acc in by_arch.items() if all(s in acc for s in range(seeds))),
                      key=lambda a: position[canonical_of(a)])
    rows = [(position[canonical_of(a)], a, float(np.mean([by_arch[a][s] for s in range(seeds)]))) for a in complete]
    s0 = np.array([by_arch[a][0] for a in complete])
    s1 = np.array([by_arch[a][1] for a in complete])
    means = np.array([m for _, _, m in rows])
    agree = len(complete) >= 2 and np.ptp(s0) > 0 and np.ptp(s1) > 0
    return {"rows": rows, "seed0": s0, "seed1": s1, "cells": len(complete), "partial": len(by_arch) - len(complete),
            "mean": float(means.mean()) if len(means) else None, "min": float(means.min()) if len(means) else None,
            "max": float(means.max()) if len(means) else None,
            "tau": float(kendalltau(s0, s1)[0]) if agree else None,
            "rho": float(spearmanr(s0, s1)[0]) if agree else None,
            "mean_abs_diff": float(np.abs(s0 - s1).mean()) if len(complete) else None}


def canonical_of(text: str) -> str:
    from search_spaces.nb201 import parse_arch_string

    return canonical(parse_arch_string(text))


def write_table(path: Path, rows: Sequence[tuple[int, str, float]]) -> None:
    """`index,arch,fashion_mnist` (nas.tabular's NAS-Bench-201 format); index is the draw position."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "arch", DATASET])
        for index, arch, accuracy in rows:
            writer.writerow([index, arch, f"{accuracy:.4f}"])


def write_scatter(path: Path, summary: Mapping[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    s0, s1 = summary["seed0"], summary["seed1"]
    ax.scatter(s0, s1, s=10, alpha=0.7)
    if len(s0):
        low, high = min(s0.min(), s1.min()), max(s0.max(), s1.max())
        ax.plot([low, high], [low, high], color="grey", linewidth=0.8)
    ax.set_xlabel("seed 0 test accuracy (%)")
    ax.set_ylabel("seed 1 test accuracy (%)")
    ax.set_title(f"NB201 cells on Fashion-MNIST, {summary['cells']} cells\nKendall tau {_f(summary['tau'])}, "
                 f"Spearman rho {_f(summary['rho'])}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _f(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _values(runs: Sequence[Mapping[str, Any]], key: str) -> str:
    return ", ".join(sorted({str(r.get(key)) for r in runs})) or "none"


def report(out: Path, seeds: int, allow_dirty: bool = False) -> dict[str, Any]:
    """Write table.csv, README.md and seeds.png in `out` from its runs.jsonl; returns the summary."""
    import numpy as np
    from bench_strategies import inside_repository

    commit, changed = guard_tree(out, allow_dirty)
    runs = load_runs(out / "runs.jsonl")
    summary = summarize(runs, seeds)
    if not summary["rows"]:
        raise SystemExit(f"{out / 'runs.jsonl'} has no cell with all of seeds 0-{seeds - 1} yet; build first")
    write_table(out / "table.csv", summary["rows"])
    write_scatter(out / "seeds.png", summary)
    seconds = np.array([float(r["seconds"]) for r in runs])
    cells = max(i for i, _, _ in summary["rows"]) + 1
    rel = out.resolve().relative_to(ROOT) if inside_repository(out) else out
    out_flag = "" if out.resolve() == OUT.resolve() else f" --out {shlex.quote(str(rel))}"
    script = "python scripts/build_fashion_nb201_truth.py"
    train = ", ".join(f"{k}={v}" for k, v in RECIPE["train"].items())
    dirty = f"+dirty ({', '.join(changed[:5])})" if changed else ""
    text = [
        "# NAS-Bench-201 cells trained on Fashion-MNIST", "",
        f"A ground truth for rating NB201 cells: {summary['cells']} cells drawn uniformly among NAS-Bench-201's "
        f"canonical (non-isomorphic) classes, each trained stand-alone with seeds 0-{seeds - 1} by one fixed recipe, "
        "made by `scripts/build_fashion_nb201_truth.py` (its docstring says how the cells are drawn). `table.csv` "
        "holds the mean test accuracy over the seeds (`index` is the cell's position in the draw) in the format "
        f"of `nas.tabular`: `--space nb201 --benchmark {rel}/table.csv --dataset fashion_mnist`.", "",
        "Only the drawn cells are rows (one representative per class; isomorphs are not), so a search that "
        "proposes other cells stops with 'not in the benchmark table': rate the table's cells (`items()`). The "
        "space's cost metrics for this table are those of the standard C=16, N=5 network at 1x16x16, not of the "
        "smaller network trained here.", "",
        f"## Recipe (id {RECIPE_ID})", "",
        *(f"- {k}: {v}" for k, v in RECIPE.items() if k != "train"),
        f"- training (`nas.evaluate.TrainEvaluator` with `nas.train.TrainConfig`): {train}; SGD with Nesterov "
        "momentum, cosine schedule per batch, weight decay off BatchNorm and biases; seed s sets the initial "
        "weights and the batch order; one torch thread per worker process", "",
        "## Reproduce", "",
        f"    {script} --cells {cells} --seeds {seeds} --workers 2{out_flag}   # resumable; ends with the report",
        f"    {script} --report --seeds {seeds}{out_flag}   # the report alone", "",
        "## Provenance", "",
        f"- Report from commit {commit}{dirty}, written {time.strftime('%Y-%m-%d %H:%M')}",
        f"- Runs: {len(runs)} trainings at commits {_values(runs, 'commit')}; devices: {_values(runs, 'device')}; "
        f"CPU: {_values(runs, 'cpu')} ({_values(runs, 'cores')} cores); worker processes: {_values(runs, 'workers')}, "
        "torch threads each: "
        f"{_values(runs, 'threads')}; torch {_values(runs, 'torch')}",
        f"- Seconds per training: mean {seconds.mean():.1f}, median {np.median(seconds):.1f}, "
        f"min {seconds.min():.1f}, max {seconds.max():.1f}", "",
        "## Results", "",
        f"- Cells with all of seeds 0-{seeds - 1}: {summary['cells']} (and {summary['partial']} with only some, "
        "left out)",
        f"- Accuracy (mean over seeds) across cells: mean {_f(summary['mean'], 2)}%, min {_f(summary['min'], 2)}%, "
        f"max {_f(summary['max'], 2)}%",
        f"- Seed 0 vs seed 1 over the cells: Kendall tau {_f(summary['tau'])}, Spearman rho {_f(summary['rho'])}, "
        f"mean absolute difference {_f(summary['mean_abs_diff'], 2)} points. This is the noise ceiling any rating "
        "can reach: no method can be expected to rank the cells closer to one seed's accuracies than another seed "
        "does (`seeds.png`).", "",
    ]
    (out / "README.md").write_text("\n".join(text))
    return summary


# -- command line -------------------------------------------------------------------------------------------
class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block)."""

    def error(self, message: str) -> NoReturn:
        raise SystemExit(f"{self.prog}: {message}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=200, help="cells to train (the draw's first N)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per cell: 0 .. N-1 (at least 2)")
    parser.add_argument("--workers", type=int, default=1, help="training processes, one thread each")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--out", type=Path, default=OUT, help="output folder (runs.jsonl, table.csv, README.md)")
    parser.add_argument("--report", action="store_true", help="only write the report from runs.jsonl")
    parser.add_argument("--allow-dirty", action="store_true", help="report from a tree with uncommitted changes")
    args = parser.parse_args(argv)
    most = len(canonical_classes())
    if not 1 <= args.cells <= most:
        raise SystemExit(f"--cells {args.cells} is not accepted: give 1 to {most} (the canonical classes)")
    if args.seeds < 2:
        raise SystemExit(f"--seeds {args.seeds} is not accepted: give 2 or more (seeds 0 and 1 are compared)")
    if args.workers < 1:
        raise SystemExit(f"--workers {args.workers} is not accepted: give 1 or more")
    if args.device not in DEVICES:
        raise SystemExit(f"--device {args.device!r} is not accepted: give one of {', '.join(DEVICES)}")
    if args.out.exists() and not args.out.is_dir():
        raise SystemExit(f"--out {args.out} is a file, not a folder")
    return args


def resolve(device: str) -> str:
    """cpu or cuda for `--device`; a one-line error when CUDA is asked for and absent."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device cuda: this torch ({torch.__version__}) sees no CUDA device; use auto or cpu")
    return "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.report:
        device = resolve(args.device)
        runs_path = args.out / "runs.jsonl"
        tasks = pending(draw_cells(args.cells), args.seeds, load_runs(runs_path))
        commit, changed = guard_tree(args.out, args.allow_dirty)  # refused now, not after hours of training
        print(f"{args.cells} cells x {args.seeds} seeds: {len(tasks)} trainings to do on {device} "
              f"with {args.workers} worker(s), recipe {RECIPE_ID}, output {args.out}", flush=True)
        run_tasks(tasks, runs_path, args.workers, device,
                  {"recipe": RECIPE_ID, "commit": commit + ("+dirty" if changed else ""), "workers": args.workers})
    summary = report(args.out, args.seeds, args.allow_dirty)
    print(f"{summary['cells']} cells: mean {_f(summary['mean'], 2)}%, seed-0 vs seed-1 Kendall tau "
          f"{_f(summary['tau'])}, Spearman rho {_f(summary['rho'])}; wrote {args.out}/table.csv, README.md, seeds.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
