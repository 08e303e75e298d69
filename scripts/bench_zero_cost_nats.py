"""Zero-cost proxies against the NATS-Bench size space (CIFAR-10 column of the shared table).

Each proxy scores `--cells` random size-space networks (seeded initialisation, one minibatch of
`--batch` scikit-learn digits resized to 3x32x32: CIFAR-10 is not on this machine); Kendall tau and
Spearman rho against the table's accuracy. Writes `benchmarks/zero_cost_nats_sss.md`.

    python scripts/bench_zero_cost_nats.py
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

from bench_predictors import run_zero_cost  # noqa: E402

from nas import registry  # noqa: E402
from nas.tabular import read_table  # noqa: E402

TABLE = ROOT.parent / "shared" / "benchmarks" / "nats_sss" / "nats_sss_cifar10_accuracy.csv"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=100)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "zero_cost_nats_sss.md")
    args = parser.parse_args()
    start = time.perf_counter()
    space = registry.make_space("nats_sss")
    table = read_table(args.table, "cifar10")
    archs = [space.resolve(key) for key in table]
    acc = np.array(list(table.values()))
    results = run_zero_cost(space, archs, acc, args.cells, args.batch)
    lines = ["# Zero-cost proxies on the NATS-Bench size space (CIFAR-10)", "",
             f"{args.cells} random networks of the 32,768 (seed 0), one minibatch of {args.batch} digits resized to "
             "3x32x32, against the shared table's CIFAR-10 accuracy. BossNAS' supernet rating on this table: "
             "Kendall tau 0.53, Spearman 0.73 (paper and official code).", "",
             f"Machine: {platform.machine()}, 2 CPU cores, no GPU; {time.perf_counter() - start:.0f} s in all. "
             "Command: `python scripts/bench_zero_cost_nats.py`", "",
             "| proxy | Kendall tau | Spearman rho | s per network |", "| --- | --- | --- | --- |"]
    lines += [f"| {p} | {tau:.3f} | {rho:.3f} | {sec:.2f} |" for p, (tau, rho, sec) in results.items()]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
