"""Supernet training-step time against the extracted subnet's, for one architecture of each supernet space.

For each case the supernet (`nas.supernet.Supernet`, the space's sharing or the one named) and the stand-alone
model of one fixed architecture with the supernet's weights (`supernet.subnet(arch)`) each take training steps
(forward, cross-entropy, backward, SGD with momentum over all their parameters) on the same random batch, the two
interleaved step by step after a warm-up; the table reports the median step of each and their ratio (goal: at
most 1.10). A second supernet column draws a new architecture every step (uniform sampling, as SPOS trains),
which adds building and compiling each new graph. Writes a markdown table (`--out`).

    python scripts/bench_supernet_step.py --threads 1 --steps 30 --out benchmarks/supernet_step.md
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.registry import make_space  # noqa: E402
from nas.supernet import Supernet  # noqa: E402

#: (space, preset, sharing, named architecture or None for a sample, data shape)
CASES = [("nb201", None, "separate", "nb201_best_cifar10", (3, 32, 32)),
         ("mbconv", "small", "elastic", "small_max", (3, 32, 32)),
         ("mbconv", "small", "separate", "small_max", (3, 32, 32)),
         ("hytra", "small", "separate", "small_t0", (1, 32, 32))]


def step_time(step: Callable[[], None]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def trainer(model: torch.nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
            y: torch.Tensor) -> Callable[[], None]:
    """One SGD step of `forward` on (x, y) over `model`'s parameters."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        loss = F.cross_entropy(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def measure(case: tuple, batch: int, steps: int, warmup: int) -> dict:
    name, preset, sharing, arch_name, shape = case
    space = make_space(name, preset)
    torch.manual_seed(0)
    supernet = Supernet(space, shape, 10, sharing=sharing).train()
    arch = space.resolve(arch_name) if arch_name else space.sample(random.Random(0))
    subnet = supernet.subnet(arch).train()
    x = torch.randn(batch, *supernet.arch_input_shape(arch))
    y = torch.randint(0, 10, (batch,))
    fixed = trainer(supernet, lambda t: supernet(t, arch), x, y)
    alone = trainer(subnet, subnet, x, y)
    rng = random.Random(1)

    def sampled_forward(t: torch.Tensor) -> torch.Tensor:
        other = space.sample(rng)
        return supernet(F.interpolate(t, size=supernet.arch_input_shape(other)[1:]), other)

    sampled = trainer(supernet, sampled_forward, x, y)
    for _ in range(warmup):
        fixed(), alone()
    times: dict[str, list[float]] = {"supernet": [], "subnet": [], "sampled": []}
    for _ in range(steps):
        times["supernet"].append(step_time(fixed))
        times["subnet"].append(step_time(alone))
        times["sampled"].append(step_time(sampled))
    medians = {k: statistics.median(v) for k, v in times.items()}
    graph = supernet.graph(arch)
    return {"case": f"{name}{'-' + preset if preset else ''} ({sharing})", "arch": arch_name or "sample 0",
            "params": sum(p.numel() for p in supernet.parameters()), "subnet_params": graph.params(),
            "input": "x".join(map(str, x.shape[1:])), **medians, "ratio": medians["supernet"] / medians["subnet"]}


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False,
                         cwd=Path(__file__).resolve().parents[1])
    return out.stdout.strip() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/supernet_step.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure(case, args.batch, args.steps, args.warmup) for case in CASES]
    lines = ["# Supernet step time against the extracted subnet", "",
             f"Machine: {platform.machine()} CPU ({os.cpu_count()} cores, no GPU), torch {torch.__version__}, "
             f"{args.threads} thread(s); commit {commit()}. Command: `python scripts/bench_supernet_step.py "
             f"{' '.join(sys.argv[1:])}`.", "",
             f"Median of {args.steps} training steps (batch {args.batch}, after {args.warmup} warm-up steps; forward, "
             "cross-entropy, backward, SGD step over all parameters), supernet and subnet interleaved. `sampled`: "
             "the supernet with a new uniformly drawn architecture every step (its graph built and compiled then).",
             "", "| supernet (sharing) | architecture | input | supernet params | subnet params | subnet step (ms) | "
             "supernet step (ms) | ratio | sampled step (ms) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['arch']} | {r['input']} | {r['params']:,} | {r['subnet_params']:,} | "
                     f"{1000 * r['subnet']:.1f} | {1000 * r['supernet']:.1f} | {r['ratio']:.2f} | "
                     f"{1000 * r['sampled']:.1f} |")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
