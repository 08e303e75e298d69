"""Latency tables on this machine: build time, and how well they predict 100+ random whole models, FP32 and INT8.

For each case (`mbconv` small at 32 px, `mbconv` ofa_mbv3 at 224 px, `hytra` small at 32 px) and precision,
runs `nas latency build` and `nas latency validate --archs N` of the committed code on a clean clone of HEAD
(refuses to start from a dirty tree) and keeps each case's table, validate.json and validate.png under
`benchmarks/latency/<machine>/`, where <machine> names this CPU (and whether it has VNNI), so tables measured on
different machines stay side by side. A finished case is not run again (delete its folder to redo it), so a
killed run resumes. The report `benchmarks/latency.md` is rebuilt from every finished case of every machine:
share within +-10% and MAPE of the table model, the plain sum of blocks, FLOPs-linear (fitted on the table's
calibration models and in-sample) and the noise floor, beside the build time; and INT8 against FP32 speed-up on
the same architectures (the validation draws the same ones for both precisions). A machine's `NOTES.md`, written
by hand after looking at its figures, is printed under its table.

    python scripts/bench_latency.py --archs 100
    python scripts/bench_latency.py --report-only
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "latency"
CASES = {"mbconv-small": ["--space", "mbconv", "--preset", "small"],
         "mbconv-ofa224": ["--space", "mbconv", "--preset", "ofa_mbv3", "--resolution", "224"],
         "hytra-small": ["--space", "hytra", "--preset", "small"]}
PRECISIONS = ("fp32", "int8")


def machine_folder() -> Path:
    """This machine's folder under `OUT`: its CPU model as a slug, with "-vnni" where it has the instructions
    ONNX Runtime's INT8 kernels use."""
    sys.path.insert(0, str(ROOT))
    from nas.quantize import has_vnni
    from nas.timing import cpu_model

    name = re.sub(r"\((R|TM)\)", "", cpu_model(), flags=re.IGNORECASE)
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown-cpu"
    return OUT / (slug + ("-vnni" if has_vnni() else ""))


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def run_case(clone: Path, machine: Path, case: str, precision: str, archs: int) -> None:
    folder = machine / f"{case}-{precision}"
    if (folder / "result.json").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    table = folder / "table.json"
    nas = [sys.executable, "-m", "nas", "latency"]
    start = time.perf_counter()
    subprocess.run([*nas, "build", *CASES[case], "--precision", precision, "--out", str(table), "--no-progress"],
                   cwd=clone, check=True)
    built = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run([*nas, "validate", "--table", str(table), "--archs", str(archs), "--out", str(folder),
                    "--no-progress"], cwd=clone, check=True)
    report = json.loads((folder / "validate.json").read_text())
    result = {"case": case, "precision": precision, "build_seconds": round(built, 1),
              "validate_seconds": round(time.perf_counter() - start, 1), "commit": git("rev-parse", "HEAD", cwd=clone),
              "blocks": len(json.loads(table.read_text())["blocks"]), "archs": report["archs"],
              "command": " ".join(["nas latency build", *CASES[case], "--precision", precision, "--out TABLE;",
                                   "nas latency validate --table TABLE --archs", str(archs)]),
              "machine": report["machine"], "date": time.strftime("%Y-%m-%d")}
    (folder / "result.json").write_text(json.dumps(result, indent=1))


def report() -> str:
    lines = ["# Latency tables", "",
             "Written by `python scripts/bench_latency.py` (see its docstring); each case's table, validate.json "
             "and scatter plot are in `benchmarks/latency/<machine>/<case>-<precision>/`. Measurement: ONNX Runtime, "
             "1 intra-op thread, batch 1, fastest of 3 round-robin rounds of 30 samples (`nas.timing`). "
             "Within +-10% / MAPE against the first end-to-end measurement of each architecture; the noise floor "
             "is the second measurement against the first."]
    for machine in sorted(p for p in OUT.iterdir() if p.is_dir()):
        lines += machine_report(machine)
    return "\n".join(lines) + "\n"


def machine_report(machine: Path) -> list[str]:
    """One machine's section: the validation table, the machine, its notes and the INT8 speed-ups."""
    rows, speedups, results = [], [], []
    for case in CASES:
        for precision in PRECISIONS:
            folder = machine / f"{case}-{precision}"
            if not (folder / "result.json").exists():
                continue
            r = json.loads((folder / "result.json").read_text())
            v = json.loads((folder / "validate.json").read_text())
            results.append(r)
            cells = [f"{100 * v[k]['within_10pct']:.0f}% / {v[k]['mape']:.1f}%" for k in
                     ("table", "sum of blocks", "flops-linear", "flops-linear in-sample", "noise floor")]
            rows.append(f"| {case} | {precision} | {r['blocks']} | {r['build_seconds'] / 60:.1f} min | {r['archs']} | "
                        + " | ".join(cells) + f" | {r['commit'][:7]} | {r['date']} |")
        fp32, int8 = machine / f"{case}-fp32" / "validate.json", machine / f"{case}-int8" / "validate.json"
        if fp32.exists() and int8.exists():
            a, b = json.loads(fp32.read_text())["rows"], json.loads(int8.read_text())["rows"]
            ratios = [x["measured"] / y["measured"] for x, y in zip(a, b) if x["arch"] == y["arch"]]
            if ratios:
                speedups.append(f"| {case} | {len(ratios)} | {statistics.median(ratios):.2f}x | "
                                f"{min(ratios):.2f}x .. {max(ratios):.2f}x |")
    if not results:
        return []
    m = results[0]["machine"]
    lines = ["", f"## {m.get('cpu')} (`{machine.name}`)", "",
             "| case | precision | blocks | build | archs | table | sum of blocks | FLOPs-linear | "
             "FLOPs-linear in-sample | noise floor | commit | date |", "|---" * 12 + "|",
             *rows, "", f"Machine: {m.get('cpu')} ({m.get('system')}), 2 cores of a shared virtual machine, torch "
             f"{m.get('torch')}, onnxruntime {m.get('onnxruntime')}."]
    if (machine / "NOTES.md").exists():
        lines += ["", (machine / "NOTES.md").read_text().strip()]
    if speedups:
        lines += ["", "INT8 (ONNX Runtime static quantization, QOperator, per-channel weights; 7-bit weights on CPUs "
                      "without VNNI, `nas.quantize`) against FP32 (ONNX Runtime), same architectures:", "",
                  "| case | archs | median speed-up | range |", "|---|---|---|---|", *speedups]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=100)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if not args.report_only:
        if git("status", "--porcelain", "--untracked-files=no"):
            sys.exit("commit first: figures must come from committed code")
        machine = machine_folder()
        with tempfile.TemporaryDirectory() as tmp:
            clone = Path(tmp) / "clone"
            subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
            for case in args.cases.split(","):
                for precision in args.precisions.split(","):
                    print(f"{case} {precision} ({platform.node()}, {machine.name})", flush=True)
                    run_case(clone, machine, case, precision, args.archs)
    (ROOT / "benchmarks" / "latency.md").write_text(report())
    print(report())


if __name__ == "__main__":
    main()
