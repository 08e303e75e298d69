"""N2N compression (issue 16) on this machine: teacher against student, N2N against random actions at the same
number of students, and policy transfer.

1. Compression (`--part compress`): for each built-in teacher of `--teachers` (vgg, resnet18) on each of
   `--datasets` (fashion_mnist, digits), `nas compress` with `--strategies` (n2n, random: the same removal and
   shrink actions drawn uniformly, as many students trained) on seeds `--seeds`, preset `--preset`: the teacher's
   and the final student's test accuracy (the dataset's test split; rewards use images held out of the training
   split), the compression (teacher / student parameters), the students trained and the seconds. With
   `--fix-pools`, the same with max pooling kept out of the shrink stage (`nas compress --fix-pools`; its own units).
2. Search at the same size (`--part search`): for each finished n2n unit of part 1 (of `--teachers`, `--datasets`,
   `--seeds` and `--preset`), `nas search --space mbconv --strategy evolution` with the student's parameter count
   as a limit, as many architectures as the unit trained students, each trained with cross-entropy for the
   preset's final epochs on the same number of training images; its best architecture's accuracy is on the
   dataset's test split, which the search also selects on (an advantage N2N's students do not have: they are
   chosen on held-out training images).
3. Transfer (`--part transfer`): the removal and shrink policies trained on the small teacher (resnet10, one block
   per stage; its n2n unit of part 1 is run when missing) initialise N2N on resnet18 (`--controller`), against N2N
   from scratch on resnet18 (part 1's units): mean reward per policy update, plotted.

Every unit is a compress run folder under `--runs` (default `n2n_runs/` beside `--out`), skipped when finished and
resumed when not, so a killed benchmark continues; `--out` is rebuilt from every finished unit. Writing inside the
repository from a tree with uncommitted source changes is refused unless `--allow-dirty`.

    python scripts/bench_n2n.py --preset quick --seeds 0,1,2
    python scripts/bench_n2n.py --part transfer --datasets fashion_mnist --seeds 0
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench_strategies as bs  # noqa: E402

from nas.space import NASError  # noqa: E402

STAGES = ("removal", "shrinkage")
SOURCE = "Ashok et al., N2N Learning, ICLR 2018 (arXiv 1709.06030)"
#: the paper's Table 1 as recalled in ../shared/reference/gm_nas_and_n2n.md, marked unverified there
PUBLISHED = [("CIFAR-10", "VGG-19", "91.97%", "91.6%", "20x"), ("CIFAR-10", "ResNet-18", "92.0%", "91.8%", "11x"),
             ("CIFAR-10", "ResNet-34", "92.05%", "92.4%", "10x"), ("MNIST", "VGG-13", "99.5%", "about 99.5%", "large")]


def unit_dir(runs: Path, teacher: str, dataset: str, strategy: str, seed: int, preset: str,
             controller: str | None = None, fix_pools: bool = False) -> Path:
    tag = ("__fixpools" if fix_pools else "") + (f"__from_{Path(controller).name}" if controller else "")
    return runs / f"{teacher}__{dataset}__{strategy}__{preset}__s{seed}{tag}"


def default_runs(out: Path) -> Path:
    return (out.parent / "n2n_runs").resolve()


def run_unit(path: Path, teacher: str, dataset: str, strategy: str, seed: int, args: argparse.Namespace,
             controller: str | None = None) -> dict[str, Any]:
    """The unit's best.json, running or resuming its compression first when it is not finished (then its
    bench.json records the commit, machine and command)."""
    from strategies.n2n import Settings, compress

    best = path / "best.json"
    if not best.exists():
        resume = (path / "config.json").exists()
        settings = None if resume else Settings(teacher, strategy, args.preset, dataset, seed=seed,
                                                controller=controller, threads=args.threads,
                                                fix_pools="__fixpools" in path.name)
        start = time.perf_counter()
        compress(settings, path, resume=resume, progress=not args.no_progress)
        (path / "bench.json").write_text(json.dumps(args.meta, indent=1))
        print(f"{path.name}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return json.loads(best.read_text())


def mean_se(values: list[float], fmt: str = ".2f") -> str:
    v = np.array(values, dtype=float)
    se = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0
    return f"{v.mean():{fmt}} ± {se:{fmt}}" if len(v) > 1 else f"{v.mean():{fmt}}"


def reward_curve(rollouts: list[dict[str, Any]]) -> list[float]:
    """Mean reward per policy update, removal then shrinkage."""
    out = []
    for stage in STAGES:
        updates = sorted({r["update"] for r in rollouts if r["stage"] == stage})
        out += [float(np.mean([r["reward"] for r in rollouts if r["stage"] == stage and r["update"] == u]))
                for u in updates]
    return out


def invalid(rollouts: list[dict[str, Any]], stage: str) -> float:
    """Rollouts of `stage` rewarded -1."""
    return float(sum(r["reward"] == -1 for r in rollouts if r["stage"] == stage))


def plot_transfer(png: Path, curves: dict[str, list[list[float]]], dataset: str, removal_updates: int) -> None:
    """Mean reward per policy update over seeds, with a band of one standard error and the stage switch marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for label, runs in curves.items():
        length = min(map(len, runs))
        ys = np.array([r[:length] for r in runs])
        x, mean = np.arange(1, length + 1), ys.mean(0)
        se = ys.std(0, ddof=1) / np.sqrt(len(ys)) if len(ys) > 1 else np.zeros(length)
        ax.plot(x, mean, marker=".", label=f"{label} ({len(runs)} seeds)")
        ax.fill_between(x, mean - se, mean + se, alpha=0.2)
    ax.axvline(removal_updates + 0.5, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("policy update (removal, then shrinkage after the dashed line)")
    ax.set_ylabel("mean reward of the update's students")
    ax.set_title(f"N2N on resnet18, {dataset}: policies from resnet10 vs from scratch", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def report(args: argparse.Namespace, meta: dict[str, Any]) -> str:
    from strategies.n2n import PRESETS

    runs = args.runs.relative_to(ROOT) if args.runs.is_relative_to(ROOT) else args.runs
    units = []
    for best in sorted(args.runs.glob("*/best.json")):
        if best.parent.name.startswith("search__"):
            continue
        teacher, dataset, strategy, preset, seed = best.parent.name.split("__")[:5]
        bench = best.parent / "bench.json"
        if "__fixpools" in best.parent.name:
            strategy += ", fix_pools"
        units.append({**json.loads(best.read_text()), "dir": best.parent, "teacher": teacher, "dataset": dataset,
                      "strategy": strategy, "preset": preset, "seed": int(seed[1:]),
                      "transfer": "__from_" in best.parent.name,
                      "bench": json.loads(bench.read_text()) if bench.exists() else {},
                      "rollouts": json.loads((best.parent / "rollouts.json").read_text())})
    # a unit made with `--runs` naming this very folder is made the same way without it (the default beside --out)
    commands = sorted({u["bench"]["command"].replace(f" --runs {args.runs}", "" if args.runs == default_runs(args.out)
                                                     else f" --runs {runs}")
                       for u in units if "command" in u["bench"]})
    out = ["# N2N compression on this machine", "", f"- Machine: {meta['machine']}", f"- Commit: {meta['commit']}",
           f"- Date: {meta['date']}", f"- Report: `{meta['command']}`", f"- Units: `{runs}`, made by (each command "
           "skips finished units and resumes an unfinished one):", *[f"  - `{c}`" for c in commands], ""]
    plain = [u for u in units if not u["transfer"]]
    if plain:
        out += ["## Teacher against student", "",
                "Test accuracy on the dataset's test split (mean ± standard error over seeds); students were rewarded "
                "on images held out of the training split. Compression = teacher / student parameters. Invalid = "
                "rollouts rewarded -1 (a student that does not build, whose linear reads more than 50,000 features, "
                "the code's limit, or not smaller than the teacher) per stage.", "",
                "| teacher | dataset | strategy | preset | seeds | teacher params | teacher test % | student params | "
                "student test % | compression | students trained | invalid, removal / shrinkage | s | commit |",
                "|" + " --- |" * 14]
        groups: dict[tuple, list[dict[str, Any]]] = {}
        for u in plain:
            groups.setdefault((u["teacher"], u["dataset"], u["strategy"], u["preset"]), []).append(u)
        for (teacher, dataset, strategy, preset), us in sorted(groups.items()):
            commits = ", ".join(sorted({u["bench"].get("commit", "?") for u in us}))
            cells = [bs.seed_text([u["seed"] for u in us]), f"{us[0]['teacher_params']:,}",
                     mean_se([u["test"]["teacher"] for u in us]), mean_se([u["student_params"] for u in us], ",.0f"),
                     mean_se([u["test"]["student"] for u in us]), mean_se([u["compression"] for u in us]) + "x",
                     mean_se([u["students_trained"] for u in us], ".1f"),
                     " / ".join(mean_se([invalid(u["rollouts"], stage) for u in us], ".1f") for stage in STAGES),
                     mean_se([u["seconds"] for u in us], ".0f")]
            out.append(f"| {teacher} | {dataset} | {strategy} | {preset} | " + " | ".join(cells) + f" | {commits} |")
        out += ["", f"Published ({SOURCE}; Table 1 values recalled in the reference notes, unverified there): "
                + "; ".join(f"{d} {t}: teacher {a}, student {b}, {c}" for d, t, a, b, c in PUBLISHED) + ".", ""]
    searched = [u for u in plain if any((args.runs / f"search__{u['dir'].name}" / f).exists()
                                        for f in ("best.json", "infeasible.txt"))]
    if searched:
        out += ["## N2N's student beside nas search at the same size", "",
                "Each row is made by `python scripts/bench_n2n.py --part search --teachers T --datasets D --seeds S` "
                "with its teacher, dataset and seed (`--preset` as the unit's).", "",
                "A search stops early when its strategy keeps proposing architectures over the limit (the MBConv "
                "space has few networks as small as these students): `trained` counts the architectures it "
                "actually trained, `proposed` every proposal.", "",
                "| teacher | dataset | seed | N2N student params | N2N student test % | search budget | trained / "
                "proposed | search best params | search best test % |", "|" + " --- |" * 9]
        for u in searched:
            folder = args.runs / f"search__{u['dir'].name}"
            history = folder / "history.jsonl"
            rows = [json.loads(line) for line in history.read_text().splitlines()] if history.exists() else []
            tried = f"{sum(r.get('metrics') is not None for r in rows)} / {len(rows)}"
            if (folder / "best.json").exists():
                found = json.loads((folder / "best.json").read_text())["metrics"]
                result = f"{int(found['params']):,} | {found['accuracy']:.2f}"
            else:
                result = "none within the limit | "
            out.append(f"| {u['teacher']} | {u['dataset']} | {u['seed']} | {u['student_params']:,} | "
                       f"{u['test']['student']:.2f} | {u['students_trained']} | {tried} | {result} |")
        out.append("")
    for dataset in sorted({u["dataset"] for u in units if u["transfer"]}):
        moved = [u for u in units if u["transfer"] and u["dataset"] == dataset]
        # from scratch: the same seeds' resnet18 n2n units, so both curves average the same seeds
        scratch = [u for u in plain if u["teacher"] == "resnet18" and u["strategy"] == "n2n"
                   and u["dataset"] == dataset and u["seed"] in {m["seed"] for m in moved}]
        curves = {"transferred from resnet10": [reward_curve(u["rollouts"]) for u in moved]}
        if scratch:
            curves["from scratch"] = [reward_curve(u["rollouts"]) for u in scratch]
        png = args.out.parent / f"{args.out.stem}_transfer_{dataset}.png"
        plot_transfer(png, curves, dataset, PRESETS[moved[0]["preset"]].updates)
        out += [f"## Policy transfer (resnet10 to resnet18) on {dataset}", "",
                "| start | seeds | mean reward, first 3 updates | mean reward, all updates | student test % | "
                "compression |", "| --- | --- | --- | --- | --- | --- |"]
        for label, us in (("transferred from resnet10", moved), ("from scratch", scratch)):
            if us:
                cs = [reward_curve(u["rollouts"]) for u in us]
                cells = [bs.seed_text([u["seed"] for u in us]), mean_se([float(np.mean(c[:3])) for c in cs]),
                         mean_se([float(np.mean(c)) for c in cs]), mean_se([u["test"]["student"] for u in us]),
                         mean_se([u["compression"] for u in us]) + "x"]
                out.append(f"| {label} | " + " | ".join(cells) + " |")
        out += ["", f"Plot: `{png.name}`. The paper reports the transferred policy reaching high reward faster, "
                "without numbers at hand.", ""]
    text = "\n".join(out)
    args.out.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("compress", "search", "transfer", "all"), default="all")
    parser.add_argument("--teachers", default="vgg,resnet18")
    parser.add_argument("--datasets", default="fashion_mnist,digits")
    parser.add_argument("--strategies", default="n2n,random")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--fix-pools", action="store_true", help="compress part: N2N's --fix-pools (units tagged)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "n2n.md")
    parser.add_argument("--runs", type=Path)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--allow-dirty", action="store_true")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    args.out = args.out.resolve()
    args.runs = (args.runs or default_runs(args.out)).resolve()
    seeds = [int(s) for s in args.seeds.split(",")]
    datasets = [d for d in args.datasets.split(",") if d]
    commit, changed = bs.tree_state()
    if changed and bs.inside_repository(args.out) and not args.allow_dirty:
        raise SystemExit(f"refusing to write {args.out} from a tree with uncommitted source changes at {commit} "
                         f"({', '.join(changed[:5])}); commit them, or pass --allow-dirty")
    import torch

    from nas.timing import cpu_model

    meta = {"commit": commit + ("+dirty" if changed else ""), "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "machine": f"{cpu_model()}, torch {torch.__version__}, Python {platform.python_version()}",
            "command": "python scripts/bench_n2n.py " + " ".join(map(shlex.quote, argv if argv is not None
                                                                      else sys.argv[1:]))}
    args.meta = meta
    if not args.report_only:
        if args.part in ("compress", "all"):
            for teacher in args.teachers.split(","):
                for dataset in datasets:
                    for strategy in args.strategies.split(","):
                        for seed in seeds:
                            path = unit_dir(args.runs, teacher, dataset, strategy, seed, args.preset,
                                            fix_pools=args.fix_pools)
                            run_unit(path, teacher, dataset, strategy, seed, args)
        if args.part in ("search", "all"):
            from nas.api import search
            from strategies.n2n import PRESETS

            preset = PRESETS[args.preset]
            for best in sorted(args.runs.glob("*__n2n__*/best.json")):
                if any(t in best.parent.name for t in ("__from_", "__fixpools")) or best.parent.name.startswith(
                        "search__"):
                    continue
                teacher, dataset, _, preset_name, seed = best.parent.name.split("__")[:5]
                folder = args.runs / f"search__{best.parent.name}"
                if (teacher not in args.teachers.split(",") or dataset not in datasets or int(seed[1:]) not in seeds
                        or preset_name != args.preset or (folder / "best.json").exists()
                        or (folder / "infeasible.txt").exists()):
                    continue
                unit = json.loads(best.read_text())
                try:
                    search("mbconv", "evolution", folder, progress=not args.no_progress,
                           budget=unit["students_trained"], dataset=dataset, train_subset=preset.train_images,
                           epochs=preset.final_epochs, seed=int(seed[1:]),
                           constraints={"params": unit["student_params"]}, export=False, num_threads=args.threads)
                except NASError as err:  # e.g. no mbconv network is that small
                    folder.mkdir(parents=True, exist_ok=True)
                    (folder / "infeasible.txt").write_text(f"{err}\n")
        if args.part in ("transfer", "all"):
            for dataset in datasets:
                for seed in seeds:
                    small = unit_dir(args.runs, "resnet10", dataset, "n2n", seed, args.preset)
                    run_unit(small, "resnet10", dataset, "n2n", seed, args)
                    run_unit(unit_dir(args.runs, "resnet18", dataset, "n2n", seed, args.preset), "resnet18", dataset,
                             "n2n", seed, args)
                    run_unit(unit_dir(args.runs, "resnet18", dataset, "n2n", seed, args.preset, str(small)),
                             "resnet18", dataset, "n2n", seed, args, controller=str(small))
    print(report(args, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
