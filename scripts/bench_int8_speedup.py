"""INT8 against FP32 latency of published models on this CPU: the ten SEQnet models (SpaceEvo) and the classic
MBConv models, each at its own resolution, batch 1, one thread, ONNX Runtime (`nas.timing`: FP32 export and
its static INT8 quantization, `nas.quantize`, random calibration inputs: kernel speed does not depend on the
scales). The FP32 and INT8 models of all of them are measured round-robin, fastest of `--rounds` rounds, so a
slow stretch of the shared machine spoils one round of each rather than one model.

SpaceEvo's one published measurement (`onnx_tools/latency.csv` of the official code, host CPU not named):
SEQnet@vnni-A0 7.85 ms FP32, 3.84 ms INT8, a 2.04x speed-up. Results go to `benchmarks/int8_speedup.md`
(one section per machine, replaced when run again on the same CPU model) with the commit and this command:

    python scripts/bench_int8_speedup.py
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "int8_speedup.json"
REPORT = ROOT / "benchmarks" / "int8_speedup.md"
MODELS = [("spaceevo", f"SEQnet@{device}-A{i}") for device in ("vnni", "pixel4") for i in range(5)] + [
    ("mbconv", name) for name in ("mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "mnasnet1_0",
                                  "proxylessnas_mobile")]


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def measure(rounds: int) -> dict:
    from tqdm import tqdm

    from nas import registry
    from nas.build import build_module
    from nas.quantize import has_vnni
    from nas.timing import Conditions, cpu_model, machine, measure_rounds, prepare

    fp32, int8 = Conditions.make(), Conditions.make(precision="int8")
    rows, runners = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for space_name, arch_name in tqdm(MODELS, desc="export and quantize"):
            space = registry.make_space(space_name, None, arch_name)
            arch = space.resolve(arch_name)
            graph = space.graph(arch)
            model = build_module(graph)
            folder = Path(tmp) / arch_name
            runners += [prepare(model, graph.input_shape, c, folder / c.precision) for c in (fp32, int8)]
            rows.append({"model": arch_name, "resolution": graph.input_shape[-1], "madds": graph.macs(),
                         "params": graph.params()})
        with tqdm(total=rounds * len(runners), desc="measure") as bar:
            times = measure_rounds(runners, rounds, bar)
    for i, row in enumerate(rows):
        row["fp32_ms"], row["int8_ms"] = times[2 * i], times[2 * i + 1]
        row["speedup"] = row["fp32_ms"] / row["int8_ms"]
    return {"cpu": cpu_model(), "vnni": has_vnni(), "machine": machine(fp32), "commit": git("rev-parse", "HEAD"),
            "date": time.strftime("%Y-%m-%d"), "rounds": rounds, "rows": rows}


def report(results: dict[str, dict]) -> str:
    lines = ["# INT8 against FP32 on this CPU", "", __doc__.split("\n\n")[0].replace("\n", " "), "",
             "SpaceEvo's published example: SEQnet@vnni-A0 7.85 ms FP32, 3.84 ms INT8 (2.04x), on a CPU it does "
             "not name.", ""]
    for result in results.values():
        m = result["machine"]
        lines += [f"## {result['cpu']} ({'with' if result['vnni'] else 'without'} VNNI)", "",
                  f"Measured {result['date']} at commit {result['commit'][:7]}, torch {m.get('torch')}, onnxruntime "
                  f"{m.get('onnxruntime')}, fastest of {result['rounds']} rounds; command: "
                  "`python scripts/bench_int8_speedup.py`.", "",
                  "| model | resolution | MAdds (M) | params (M) | FP32 ms | INT8 ms | speed-up |",
                  "|---|---|---|---|---|---|---|"]
        for r in result["rows"]:
            lines.append(f"| {r['model']} | {r['resolution']} | {r['madds'] / 1e6:.0f} | {r['params'] / 1e6:.2f} | "
                         f"{r['fp32_ms']:.2f} | {r['int8_ms']:.2f} | {r['speedup']:.2f}x |")
        for family in ("SEQnet", "other"):
            ups = [r["speedup"] for r in result["rows"] if r["model"].startswith("SEQnet") == (family == "SEQnet")]
            lines.append(f"\nMedian speed-up, {'SEQnet models' if family == 'SEQnet' else 'classic MBConv models'}: "
                         f"{statistics.median(ups):.2f}x ({min(ups):.2f}x .. {max(ups):.2f}x).")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    if not args.report_only:
        if git("status", "--porcelain", "--untracked-files=no"):
            sys.exit("commit first: figures must come from committed code")
        result = measure(args.rounds)
        results[result["cpu"]] = result
        OUT.write_text(json.dumps(results, indent=1))
    REPORT.write_text(report(results))
    print(REPORT.read_text())


if __name__ == "__main__":
    main()
