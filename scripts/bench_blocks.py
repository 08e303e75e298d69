"""The block families of issue 13 on this machine: short searches against each family's hand-designed reference,
the LS aggregation's CPU speed against a depthwise convolution, and the LMU's parallel against recurrent form.

1. Search (`--part search`): for each space (`lsnet`, `wavemix`, `mixer` on the built-in digits; `lmuformer` on
   the built-in MNIST-1D-style sequences), regularized evolution for `--budget` architectures of at most the
   reference's parameters, each trained stand-alone `--epochs` epochs (the CLI's recipe), search seed 0. The
   found model and the reference are then both trained again with seeds 1..`--seeds` (not the search's), and
   the table reports their mean validation accuracy: the search's own numbers are the best of many on the same
   split, the retrained ones are not.
2. LS aggregation (`--part ska`): forward time on one CPU thread of `SmallKernelAggregation` (nine shifted
   slices) and of a 3x3 depthwise `nn.Conv2d` of the same shape, at LSNet-T's stage shapes (batch 1 and 16).
3. LMU (`--part lmu`): the largest difference between the parallel (FFT) and the recurrent form of the LMU
   layer on random input, and the time of each on a (1, 128, 128) and a (16, 128, 128) sequence, 1 thread.

Each part is saved to `benchmarks/blocks_runs/<part>.json` (with the commit and the command) and skipped when
present, so a killed run resumes; `benchmarks/blocks.md` is rebuilt from what is there. Runs refuse a dirty tree
(figures come from committed code).

    python scripts/bench_blocks.py                 # all parts
    python scripts/bench_blocks.py --part ska --redo
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RUNS = ROOT / "benchmarks" / "blocks_runs"
#: (space, preset, reference, dataset)
SEARCHES = (("lsnet", "small", "small_t", "digits"), ("wavemix", "small", "wavemix_lite_32_2", "digits"),
            ("mixer", "small", "small_lsnet", "digits"), ("lmuformer", "small", None, "mnist1d"))


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def machine() -> str:
    import torch

    from nas.timing import cpu_model

    return f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}"


def train_accuracy(space: Any, arch: Any, dataset: str, epochs: int, seed: int) -> float:
    from nas.session import make_evaluator

    settings = {"dataset": dataset, "data_path": None, "seed": seed, "train_subset": None,
                "train": {"epochs": epochs, "num_threads": 1}}
    return float(make_evaluator(space, settings).evaluate(arch).metrics["accuracy"])


def part_search(args: argparse.Namespace) -> dict[str, Any]:
    import tempfile

    from nas import registry
    from nas.api import search

    partial = RUNS / "search_rows.json"  # rows finished so far: a killed run resumes with the next space
    rows = json.loads(partial.read_text()) if partial.exists() and not args.redo else []
    for name, preset, reference, dataset in SEARCHES:
        if name not in registry.names("spaces") or any(r["space"] == name for r in rows):
            continue
        space = registry.make_space(name, preset)
        refs = space.reference_archs()
        ref_name = reference or next(iter(refs))
        ref = refs[ref_name]
        shape = space.input_shape_for(ref, space.default_input)
        ref_params = space.graph(ref, shape, space.default_classes).params()
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            found = search(name, strategy="evolution", run_dir=Path(tmp) / "run", progress=False, preset=preset,
                           budget=args.budget, dataset=dataset, seed=0, epochs=args.epochs, num_threads=1,
                           constraints={"params": ref_params}, export=False)
        assert found.best is not None
        seconds = time.perf_counter() - start
        seeds = range(1, args.seeds + 1)
        best_acc = [train_accuracy(space, found.best.arch, dataset, args.epochs, s) for s in seeds]
        ref_acc = [train_accuracy(space, ref, dataset, args.epochs, s) for s in seeds]
        rows.append({"space": name, "preset": preset, "dataset": dataset, "reference": ref_name,
                     "reference_params": ref_params, "found": dict(found.best.arch),
                     "found_params": space.graph(found.best.arch, space.input_shape_for(found.best.arch, shape),
                                                 space.default_classes).params(),
                     "search_accuracy": found.best.metrics["accuracy"], "found_accuracy": best_acc,
                     "reference_accuracy": ref_acc, "search_seconds": round(seconds, 1),
                     "commit": git("rev-parse", "--short", "HEAD")})
        partial.write_text(json.dumps(rows, indent=1))
        print(rows[-1], flush=True)
    partial.unlink()
    return {"budget": args.budget, "epochs": args.epochs, "seeds": args.seeds, "rows": rows}


def _time(fn: Any, repeats: int = 30) -> float:
    for _ in range(5):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return 1000 * min(samples)


def part_ska(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from nas.ops.lsnet_module import SmallKernelAggregation

    torch.set_num_threads(1)
    rows = []
    for channels, size in ((64, 28), (128, 14), (256, 7)):
        for batch in (1, 16):
            x = torch.randn(batch, channels, size, size)
            w = torch.randn(batch, channels // 8, 9, size, size)
            ska = SmallKernelAggregation(channels, 8)
            dw = torch.nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
            with torch.inference_mode():
                rows.append({"channels": channels, "size": size, "batch": batch,
                             "ska_ms": _time(partial(ska, x, w)), "dwconv_ms": _time(partial(dw, x))})
    return {"rows": rows}


def _recurrent(layer: Any, x: Any) -> Any:
    """The LMU layer run one token at a time (`LMUCell.step`)."""
    import torch

    state, outputs = None, []
    for t in range(x.shape[-1]):
        h, state = layer.step(x[..., t], state)
        outputs.append(h)
    return torch.stack(outputs, dim=-1)


def part_lmu(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from nas.ops.lmu_module import LMUCell

    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = []
    for batch in (1, 16):
        layer = LMUCell(128, 128, 256, 128.0, 128).eval()
        x = torch.randn(batch, 128, 128)
        with torch.inference_mode():
            difference = float((layer(x) - _recurrent(layer, x)).abs().max())
            rows.append({"batch": batch, "channels": 128, "length": 128, "memory": 256,
                         "max_abs_difference": difference, "parallel_ms": _time(partial(layer, x), 10),
                         "recurrent_ms": _time(partial(_recurrent, layer, x), 3)})
    return {"rows": rows}


PARTS = {"search": part_search, "ska": part_ska, "lmu": part_lmu}


def report() -> str:
    lines = ["# Block families: LSNet, WaveMix, LMUFormer", "",
             "Written by `python scripts/bench_blocks.py` (its docstring says what each part measures).", ""]
    saved = {p: json.loads((RUNS / f"{p}.json").read_text()) for p in PARTS if (RUNS / f"{p}.json").exists()}
    if "search" in saved:
        s = saved["search"]
        lines += ["## A short search on each new space against the family's reference", "",
                  f"Regularized evolution, {s['budget']} architectures of at most the reference's parameters, "
                  f"{s['epochs']} epochs each (search seed 0); the found model and the reference then trained "
                  f"again with seeds 1..{s['seeds']}: mean (min-max) validation accuracy. {s['meta']}", "",
                  "| space | data | reference | params | accuracy | found | params | accuracy | search | commit |",
                  "|---|---|---|---:|---|---|---:|---|---:|---|"]
        for r in s["rows"]:
            found = ", ".join(f"{k}={v}" for k, v in r["found"].items())
            lines.append(f"| {r['space']} ({r['preset']}) | {r['dataset']} | {r['reference']} | "
                         f"{r['reference_params']:,} | {_acc(r['reference_accuracy'])} | `{found}` | "
                         f"{r['found_params']:,} | {_acc(r['found_accuracy'])} | {r['search_seconds'] / 60:.1f} min | "
                         f"{r['commit']} |")
        lines.append("")
    if "ska" in saved:
        s = saved["ska"]
        lines += ["## LS aggregation against a depthwise convolution (CPU, 1 thread, forward)", "",
                  f"Fastest of 30 calls. {s['meta']} The official aggregation is a Triton kernel for CUDA only; "
                  "its paper and repository give no kernel timing to set beside these.", "",
                  "| channels | map | batch | LS aggregation | 3x3 depthwise conv | ratio |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for r in s["rows"]:
            lines.append(f"| {r['channels']} | {r['size']}x{r['size']} | {r['batch']} | {r['ska_ms']:.3f} ms | "
                         f"{r['dwconv_ms']:.3f} ms | {r['ska_ms'] / r['dwconv_ms']:.1f}x |")
        lines.append("")
    if "lmu" in saved:
        s = saved["lmu"]
        lines += ["## LMU: parallel (FFT) against recurrent form", "",
                  f"One LMU layer, input 128 channels x 128 steps, memory order 256, theta 128. {s['meta']}", "",
                  "| batch | max abs difference | parallel | recurrent |", "|---:|---:|---:|---:|"]
        for r in s["rows"]:
            lines.append(f"| {r['batch']} | {r['max_abs_difference']:.1e} | {r['parallel_ms']:.2f} ms | "
                         f"{r['recurrent_ms']:.2f} ms |")
        lines.append("")
    return "\n".join(lines)


def _acc(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f}% ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", action="append", choices=list(PARTS), help="default: all")
    parser.add_argument("--budget", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--redo", action="store_true", help="measure the parts again even when saved")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if not args.report_only:
        dirty = [line for line in git("status", "--porcelain").splitlines()
                 if not line[3:].startswith("benchmarks/") and not line[3:].endswith(".md")]
        if dirty:
            sys.exit(f"refusing to measure uncommitted code: {dirty[:3]}")
        RUNS.mkdir(parents=True, exist_ok=True)
        for part in args.part or list(PARTS):
            path = RUNS / f"{part}.json"
            if path.exists() and not args.redo:
                continue
            result = PARTS[part](args)
            result["meta"] = (f"Measured {time.strftime('%Y-%m-%d')} at {git('rev-parse', '--short', 'HEAD')} on "
                              f"{machine()}; `{' '.join(['python scripts/bench_blocks.py', *sys.argv[1:]])}`.")
            path.write_text(json.dumps(result, indent=1))
    (ROOT / "benchmarks" / "blocks.md").write_text(report())
    print(report())


if __name__ == "__main__":
    main()
