"""Search quality on tabular benchmarks: regret of the best architecture found vs. number of queries.

Each strategy runs ask/tell directly against a `TabularEvaluator` (every query counts, repeats included)
for `--budget` queries, for `--seeds` seeds, on NAS-Bench-201 (CIFAR-10, CIFAR-100, ImageNet16-120 test
accuracy after 200 epochs) and on the NATS-Bench size space (CIFAR-10). Regret = the table's best accuracy
minus the best accuracy found so far, in accuracy points; "optimum" is the share of runs whose regret is 0
(a cell tying the best counts). Writes `benchmarks/strategies.md` and `benchmarks/regret_<space>_<dataset>.png`
and prints the table.

    python scripts/bench_strategies.py                      # all benchmarks, 20 seeds, budget 200
    python scripts/bench_strategies.py --strategies random,evolution --seeds 50 --jobs 2
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas import registry  # noqa: E402
from nas.objectives import Objective  # noqa: E402
from nas.tabular import TabularEvaluator  # noqa: E402

SHARED = ROOT.parent / "shared" / "benchmarks"
TABLES = {"nb201": SHARED / "nasbench201" / "nats_tss_test_accuracy_200ep.csv",
          "nats_sss": SHARED / "nats_sss" / "nats_sss_cifar10_accuracy.csv"}
BENCHMARKS = (("nb201", "cifar10"), ("nb201", "cifar100"), ("nb201", "imagenet16_120"), ("nats_sss", "cifar10"))
DEFAULT_STRATEGIES = ("random", "evolution", "optuna")
OPTIONAL_STRATEGIES = ("bananas",)
#: measured earlier on this machine, nb201 cifar10, 100 queries: (mean regret, share of runs at the optimum)
EARLIER = {"random": (0.52, 0.01), "evolution": (0.12, 0.42), "optuna": (0.09, 0.50)}

EARLIER_NOTE = """The earlier run's settings were not recorded with its figures. The evolution gap is the
tournament size, not a fault. Evolution here runs with NAS-Bench-201's own REA settings (population 10,
sample 3, NATS-Bench's "R-EA-SS3"). With NASLib's NAS-Bench-201 settings (population 30, sample 10) the
same loop gives 0.10 regret (53% at the optimum) on seeds 0-99 and 0.11 (44%) on 1,000 seeds, matching the
earlier figure; population 10, sample 3 gives 0.27 (19%) on 1,000 seeds. Measured on this table and ruled
out as causes (300-1,000 seeds, regret at 100 queries, population 10, sample 3): the mutation (always
one edge to another op; the base class's uniform edge choice instead of NAS-Bench-201's node-first one:
0.22 vs 0.27, 19% at the optimum both), evaluating repeated children again as NAS-Bench-201's code does (0.28), a tournament drawn
without replacement (0.22, 21%), treating isomorphic cells as already seen (0.24, 21%). Founders count in
the budget and the fittest is picked with the right sign (`tests/test_evolution.py`)."""
PUBLISHED = """No published regret-per-query figure on these test-accuracy tables was found to set beside ours.
NAS-Bench-201 and NATS-Bench run their baselines (e.g. the official `exps/NATS-algos/regularized_ea.py`:
population 10, sample 3, as our evolution defaults) until a simulated training-time budget is spent
(`--time_budget`, 20,000 s by default), guided by 12-epoch validation accuracy by default (`--use_proxy 1`),
and report the chosen architecture's test accuracy: they count time, not queries, and mix proxy noise in.
Checked against published facts instead (in `tests/test_tabular.py`): the tables' optima (94.37 / 73.51 /
47.31 on NAS-Bench-201, 93.65 on the size-space table, as the shared READMEs state) and BossNAS' anchor on
the size space (64:40:48:64:56 scores 93.29, rank 65)."""

_evaluators: dict[tuple[str, str], TabularEvaluator] = {}


def evaluator_for(space_name: str, dataset: str, tables: dict[str, Path]) -> TabularEvaluator:
    key = (space_name, dataset)
    if key not in _evaluators:
        _evaluators[key] = TabularEvaluator(registry.make_space(space_name), tables[space_name], dataset)
    return _evaluators[key]


Task = tuple[str, str, str, int, int, dict[str, Path]]


def run_one(task: Task) -> tuple[tuple[str, str, str, int], np.ndarray, float]:
    """One search: the best accuracy found after each query, and the seconds it took."""
    space_name, dataset, strategy_name, seed, budget, tables = task
    evaluator = evaluator_for(space_name, dataset, tables)
    space = evaluator.space
    factory = registry.get("strategies", strategy_name)  # imports happen before the clock starts
    start = time.perf_counter()
    strategy = factory(space, [Objective("accuracy", "maximize")], seed=seed)
    best = np.empty(budget)
    top = -np.inf
    for i in range(budget):
        arch = strategy.ask()
        metrics = evaluator.evaluate(arch).metrics
        strategy.tell(arch, metrics)
        top = max(top, metrics["accuracy"])
        best[i] = top
    strategy.close()
    return (space_name, dataset, strategy_name, seed), best, time.perf_counter() - start


def strategies_to_run(requested: str | None) -> list[str]:
    known = registry.names("strategies")
    if requested:
        names = [s.strip() for s in requested.split(",") if s.strip()]
        for name in names:
            registry.get("strategies", name)  # a one-line error for an unknown name
        return names
    return [*DEFAULT_STRATEGIES, *(s for s in OPTIONAL_STRATEGIES if s in known)]


def plot(path: Path, title: str, curves: dict[str, np.ndarray]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, regrets in curves.items():
        x = np.arange(1, regrets.shape[1] + 1)
        mean = regrets.mean(0)
        se = regrets.std(0, ddof=1) / np.sqrt(len(regrets)) if len(regrets) > 1 else np.zeros_like(mean)
        ax.plot(x, mean, label=name)
        ax.fill_between(x, np.maximum(mean - se, 1e-3), mean + se, alpha=0.2)
    ax.set_yscale("log")
    ax.set_xlabel("queries")
    ax.set_ylabel("regret (accuracy points, mean ± s.e.)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", help="comma-separated names (default: random, evolution, optuna, "
                                             "and bananas when registered)")
    parser.add_argument("--benchmarks", default=",".join(f"{s}/{d}" for s, d in BENCHMARKS),
                        help="comma-separated space/dataset pairs")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--checkpoints", default="50,100,200")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--nb201-table", type=Path, default=TABLES["nb201"])
    parser.add_argument("--nats-sss-table", type=Path, default=TABLES["nats_sss"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    args = parser.parse_args(argv)

    tables = {"nb201": args.nb201_table, "nats_sss": args.nats_sss_table}
    benchmarks = [tuple(b.strip().split("/", 1)) for b in args.benchmarks.split(",") if b.strip()]
    strategies = strategies_to_run(args.strategies)
    checkpoints = [c for c in (int(c) for c in args.checkpoints.split(",")) if c <= args.budget]
    tasks = [(s, d, name, seed, args.budget, tables) for s, d in benchmarks for name in strategies
             for seed in range(args.seeds)]
    results: dict[tuple[str, str, str], list[np.ndarray]] = {}
    seconds: dict[tuple[str, str, str], list[float]] = {}
    start = time.perf_counter()
    collected = []
    progress = tqdm(total=len(tasks), desc="searches", unit="run", file=sys.stderr)
    with ExitStack() as stack:
        if args.jobs > 1:
            from multiprocessing import get_context

            outcomes = stack.enter_context(get_context("spawn").Pool(args.jobs)).imap_unordered(run_one, tasks)
        else:
            outcomes = map(run_one, tasks)
        for outcome in outcomes:
            collected.append(outcome)
            progress.update()
    progress.close()
    for (s, d, name, _), best, secs in collected:
        results.setdefault((s, d, name), []).append(best)
        seconds.setdefault((s, d, name), []).append(secs)
    wall = time.perf_counter() - start

    args.out.mkdir(parents=True, exist_ok=True)
    head = "| space | dataset | strategy | " + " | ".join(
        f"regret@{c}" for c in checkpoints) + " | " + " | ".join(f"optimum@{c}" for c in checkpoints) + " | s/run |"
    lines = [head, "|" + " --- |" * (4 + 2 * len(checkpoints))]
    for s, d in benchmarks:
        optimum = evaluator_for(s, d, tables).best()[1]
        curves = {}
        for name in strategies:
            best = np.stack(results[(s, d, name)])
            regret = optimum - best
            curves[name] = regret
            cells = [f"{regret[:, c - 1].mean():.2f} ± {regret[:, c - 1].std(ddof=1) / np.sqrt(len(regret)):.2f}"
                     for c in checkpoints]
            hits = [f"{np.mean(regret[:, c - 1] <= 1e-9):.0%}" for c in checkpoints]
            lines.append(f"| {s} | {d} | {name} | " + " | ".join(cells + hits)
                         + f" | {np.mean(seconds[(s, d, name)]):.3f} |")
        plot(args.out / f"regret_{s}_{d}.png", f"{s} {d}: {args.seeds} seeds, optimum {optimum:.2f}%", curves)
    table = "\n".join(lines)
    print(table)

    earlier = ["| strategy | earlier: regret@100 | earlier: optimum@100 | this run: regret@100 "
               "| this run: optimum@100 |",
               "| --- | --- | --- | --- | --- |"]
    if ("nb201", "cifar10") in benchmarks and args.budget >= 100:
        optimum = evaluator_for("nb201", "cifar10", tables).best()[1]
        for name, (reg, hit) in EARLIER.items():
            if (("nb201", "cifar10", name)) in results:
                regret = optimum - np.stack(results[("nb201", "cifar10", name)])[:, 99]
                earlier.append(f"| {name} | {reg:.2f} | {hit:.0%} | {regret.mean():.2f} "
                               f"| {np.mean(regret <= 1e-9):.0%} |")
    command = "python scripts/bench_strategies.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = f"""# Search strategies on tabular benchmarks

Regret (table best minus best found, accuracy points, mean ± standard error over {args.seeds} seeds) after
{', '.join(map(str, checkpoints))} queries, and the share of runs that found the table's optimum (a tie
counts). Every query counts, a repeated architecture included. Strategies run with their defaults
(evolution: population 10, sample 3; optuna: TPE, 10 random startup trials, storage None).

Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU; {args.jobs} worker processes;
{wall:.0f} s in all. Command: `{command.strip()}`

{table}

Plots: {', '.join(f'`regret_{s}_{d}.png`' for s, d in benchmarks)}.

## Beside the earlier measurement (nb201 cifar10, 100 queries, same machine)

{chr(10).join(earlier)}

{EARLIER_NOTE}

## Published figures

{PUBLISHED}
"""
    (args.out / "strategies.md").write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
