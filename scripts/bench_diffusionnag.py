"""DiffusionNAG (issue 15) on this machine: generation quality, whether guidance works, and search regret.

1. Generation (`--part generation`): the unconditional prior (`nas.diffusion.prior`, preset `--preset`) trained on
   a random half of the 15,625 NAS-Bench-201 cells (the split drawn with the unit's seed; 7,812 cells, as the
   paper's novelty experiment), then `--samples` (1,000) generated cells: validity (valid / sampled), uniqueness
   (unique / valid) and novelty (unique valid cells not in the training half / unique), the published 98.97% /
   98.70% / 49.20% beside; seconds to train the prior and to generate `--time-samples` (256). The same for the
   prior on all cells (`nb201_all`, the strategy's: is validity a matter of the training set?) and for the
   MBConv space's `ofa_mbv3` preset (the official 20 x 9 OFA matrix; published validity 99.09%), the prior trained
   on `train_archs` sampled architectures (the strategy's budget) with the published MobileNetV3 sigma range
   0.1-1.0. The sampled MBConv architectures are mapped through the matrix (resolution and width multiplier fixed
   as `decode` sets them) before training, so that novelty compares like with like. `mbconv_small` is the strategy's
   own prior for the default MBConv preset (`small`, whose stages differ: per-layer positions on the embedding's
   scale), the one an `nas search --space mbconv --strategy diffusionnag` run trains (its `prior_seed` is the unit's
   seed; 0 is the strategy's default). `--gen-spaces` picks some of the four, `--gen-seeds N` runs seeds 0..N-1.
2. Guidance (`--part guidance`): the prior on all 15,625 cells (the one the `diffusionnag` strategy trains, shared
   with part 3 through the prior cache), a noise-aware predictor (`predictors.noise_aware`) trained on
   `--labelled` (100) random cells labelled with the CIFAR-10 table, then `--guidance-samples` cells generated at
   each guidance scale of `--scales` (0 = unguided): validity, unique cells, their mean predicted accuracy
   (the predictor at sigma_min) and their mean and best TRUE table accuracy.
3. Regret (`--part regret`): `diffusionnag` (budget preset `--preset`) against random, evolution, local search,
   Optuna TPE and BANANAS on the NB201 tables (CIFAR-10, CIFAR-100, ImageNet16-120) and the NATS size table
   (`nats_sss`: its CIFAR-10 column, the generic one-hot-per-choice matrix), `--budget` queries on seeds
   `--seed-start`.. (default 100-119: not seeds anything was tuned on); mean regret and share at the table's optimum
   at `--checkpoints` (50, 100). The protocol is `scripts/bench_strategies.py`'s (oracle: the strategies search on
   the test accuracy they are scored on; every query counts). The prior is trained once per preset before the
   workers start and shared through `cache_dir`.

Every unit of work (one generation, one guidance seed, one search) is saved as JSON under `--runs` (default
`diffusionnag_runs/` beside `--out`) and skipped when present, so a killed run resumes; `--out` is rebuilt from
every unit saved there. `--smoke` is a minutes-long check (tiny prior, 64 samples, 2 seeds, 15 queries; its units go
to `diffusionnag_smoke_runs/`). Writing inside the repository from a tree with uncommitted source changes is refused
unless `--allow-dirty` (figures then marked dirty).

    python scripts/bench_diffusionnag.py --part all --workers 2                  # CPU, preset quick
    python scripts/bench_diffusionnag.py --part generation --preset paper --device cuda
    python scripts/bench_diffusionnag.py --part generation --gen-spaces mbconv_small --gen-seeds 2   # a 2nd prior seed
    python scripts/bench_diffusionnag.py --part all --smoke --out /tmp/dnag_smoke.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import sys
import time
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # small models, several worker processes: one thread each

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench_strategies as bs  # noqa: E402

from nas import registry  # noqa: E402

PARTS = ("generation", "guidance", "regret")
GEN_SPACES = ("nb201", "nb201_all", "mbconv", "mbconv_small")
#: the regret part's tables: `--datasets` name -> (space, the table's dataset column)
TABLE_OF = {"cifar10": ("nb201", "cifar10"), "cifar100": ("nb201", "cifar100"),
            "imagenet16_120": ("nb201", "imagenet16_120"), "nats_sss": ("nats_sss", "cifar10")}
DATASETS = tuple(TABLE_OF)
STRATEGIES = ("random", "evolution", "local_search", "optuna", "bananas", "diffusionnag")
SOURCE = "An et al., DiffusionNAG, ICLR 2024, arXiv 2305.16943"
#: published figures (`../shared/reference/diffusionnag.md` Sec. 5/7): value, where it is from
PUBLISHED = {
    ("nb201", "validity"): ("98.97%", "1,000 samples; quoted by PNAG (CVPR 2026) from the paper's Table 4"),
    ("nb201", "uniqueness"): ("98.70%", "idem"),
    ("nb201", "novelty"): ("49.20%", "idem; prior trained on half the cells (official issue #2, split_ratio 0.5)"),
    ("mbconv", "validity"): ("99.09%", "MobileNetV3 (OFA); quoted by PNAG from the paper's Table 4"),
}
PUBLISHED_COST = ("training the prior: 3.43 GPU-hours (NB201), 21.33 GPU-hours (MobileNetV3) on a V100; one batch of "
                  "256 samples up to 2.02 GPU-minutes (a secondary reproducibility summary, Sec. 3 of the reference "
                  "notes; provisional)")


# -- settings ---------------------------------------------------------------------------------------------------
def budget_of(preset: str) -> Any:
    from strategies.diffusionnag import BUDGETS

    return BUDGETS[preset]


def prior_preset(preset: str, **overrides: Any) -> Any:
    from nas.diffusion.prior import with_overrides

    return with_overrides(budget_of(preset).prior_preset(), **overrides)


def machine() -> str:
    import torch

    from nas.timing import cpu_model

    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (f"{cpu_model()}, {os.cpu_count()} CPU cores{gpu}, torch {torch.__version__}, "
            f"Python {platform.python_version()}")


def write_unit(path: Path, record: dict[str, Any], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**record, **meta}, indent=1) + "\n")
    tmp.replace(path)  # a killed write leaves no half unit behind


def load_units(runs: Path, prefix: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(runs.glob(f"{prefix}__*.json"))]


def fit_timed(prior: Any, archs: Sequence[Any], cache: Path) -> tuple[Any, float | None]:
    """Fit (or load) the prior; the seconds it trained, None when it came from the cache."""
    path = cache / f"diffusionnag-{prior.matrix.name}-{prior.cache_key(prior.matrix.encode_many(archs))}.pt"
    cached = path.exists()
    start = time.perf_counter()
    prior.fit(archs, cache_dir=cache)
    return prior, None if cached else time.perf_counter() - start


def generate_timed(prior: Any, n: int, guidance: Any = None, seed: int = 0) -> tuple[Any, float]:
    start = time.perf_counter()
    result = prior.generate(n, guidance, seed=seed)
    return result, time.perf_counter() - start


def rates(result: Any) -> dict[str, Any]:
    return {"n_samples": result.n_samples, "n_valid": result.n_valid, "n_unique": len(result.archs),
            "n_novel": result.n_novel, "validity": result.validity, "uniqueness": result.uniqueness,
            "novelty": result.novelty}


# -- part 1: generation ----------------------------------------------------------------------------------------
def generation_unit(space: str, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    import torch

    from predictors.base import single_thread

    torch.set_num_threads(1)
    prior, train_s, note = generation_prior(space, args, seed)
    with single_thread():
        result, gen_s = generate_timed(prior, args.samples, seed=seed + 1)
        _, time_s = generate_timed(prior, args.time_samples, seed=seed + 2)
    return {"space": space, "seed": seed, "preset": args.preset, "device": args.device, "note": note,
            "train_seconds": train_s, "generate_seconds": gen_s, "time_samples": args.time_samples,
            "time_seconds": time_s, "final_loss": float(np.mean(prior.losses[-50:])) if prior.losses else None,
            **rates(result)}


def generation_prior(space: str, args: argparse.Namespace, seed: int) -> tuple[Any, float | None, str]:
    """The prior of one generation unit, trained or loaded from the cache, its training seconds (None when cached)
    and a note on its training set."""
    from nas.diffusion.encoding import MBConvMatrix, operation_matrix
    from nas.diffusion.prior import DiffusionPrior
    from predictors.base import single_thread
    from strategies.diffusionnag import nb201_cells

    rng = random.Random(seed)
    if space == "mbconv_small":  # the strategy's prior for the default MBConv preset (prior seed = the unit's)
        prior, train_s = strategy_prior("mbconv", args, prior_seed=seed)
        return prior, train_s, (f"the strategy's prior for the mbconv `small` preset: {len(prior.training_set):,} "
                                f"unique of {budget_of(args.preset).train_archs:,} sampled architectures, sigma "
                                f"0.1-{prior.preset.sigma_max:g}, positions per {prior.matrix.position_kind} "
                                f"scaled by {prior.preset.net.position_scale:.3g}")
    if space in ("nb201", "nb201_all"):
        matrix = operation_matrix(registry.make_space("nb201"))
        cells = nb201_cells()
        preset = prior_preset(args.preset)
        if space == "nb201_all":  # the strategy's prior (with seed 0 the same cached file as parts 2 and 3)
            train, note = cells, f"trained on all {len(cells):,} cells (the strategy's prior); novelty is 0 by design"
        else:
            rng.shuffle(cells)
            train = cells[: len(cells) // 2]
            note = f"trained on {len(train):,} of {len(cells):,} cells (a random half, seed {seed})"
    else:
        sp = registry.make_space("mbconv", preset="ofa_mbv3")
        mb = MBConvMatrix(sp)
        n = budget_of(args.preset).train_archs
        train = list(dict.fromkeys(mb.decode_valid(mb.encode(sp.sample(rng))) for _ in range(n)))
        preset = prior_preset(args.preset, sigma_max=1.0)
        note = (f"trained on {len(train):,} unique sampled ofa_mbv3 architectures ({n:,} drawn, seed {seed}; "
                f"resolution {mb.resolution}, width {mb.width_mult}), sigma 0.1-1.0")
        matrix = mb
    with single_thread():
        prior, train_s = fit_timed(DiffusionPrior(matrix, preset, device=args.device, seed=seed), train,
                                   args.runs / "priors")
    return prior, train_s, note


# -- part 2: guidance -------------------------------------------------------------------------------------------
def strategy_prior(space: str, args: argparse.Namespace, prior_seed: int = 0) -> tuple[Any, float | None]:
    """The prior the `diffusionnag` strategy uses on `space` (NB201: all cells; the strategy's default prior seed 0)
    on the searches' device and budget preset, trained into or loaded from the shared cache; the seconds it trained,
    None when cached."""
    from nas.objectives import Objective
    from nas.strategy import StrategyContext
    from strategies.diffusionnag import DiffusionNAG

    cache = args.runs / "priors"
    before = set(cache.glob("*.pt"))
    start = time.perf_counter()
    sp, objectives = registry.make_space(space), [Objective("accuracy", "maximize")]
    strategy = DiffusionNAG(sp, objectives, preset=args.preset, cache_dir=str(cache), prior_seed=prior_seed)
    tables = [c for s, c in TABLE_OF.values() if s == space]
    shape, classes = sp.benchmark_input(tables[0]) if tables else ((1, 8, 8), 10)  # the prior needs neither
    strategy.setup(StrategyContext(sp, objectives, 0, args.budget, shape, classes, device=args.device,
                                   progress=False))
    prior = strategy.fit_prior()
    return prior, (time.perf_counter() - start if set(cache.glob("*.pt")) - before else None)


def guidance_unit(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    from nas.diffusion.sde import Guidance
    from predictors.base import single_thread
    from predictors.noise_aware import NoiseAwarePredictor
    from strategies.diffusionnag import nb201_cells

    prior, train_s = strategy_prior("nb201", args)
    table = bs.evaluator_for("nb201", "cifar10", bs.TABLES)
    cells = nb201_cells()
    labelled = random.Random(seed).sample(cells, args.labelled)
    acc = [table.lookup(a) for a in labelled]
    b = budget_of(args.preset)
    rows = []
    with single_thread():
        predictor = NoiseAwarePredictor(prior.matrix.n_types, prior.matrix.adjacency, prior.sde,
                                        hidden=b.predictor_hidden, steps=b.predictor_steps,
                                        batch_size=b.predictor_batch, seed=seed, device=args.device)
        predictor.fit(prior.matrix.encode_many(labelled), acc)
        all_pred = predictor.predict_clean(prior.matrix.encode_many(cells))
        all_true = np.array([table.lookup(a) for a in cells])
        spearman = float(np.corrcoef(np.argsort(np.argsort(all_pred)), np.argsort(np.argsort(all_true)))[0, 1])
        for scale in args.scales:
            guidance = Guidance(predictor, scale=scale) if scale > 0 else None
            result, secs = generate_timed(prior, args.guidance_samples, guidance, seed=seed * 7 + 1)
            true = [table.lookup(a) for a in result.archs]
            pred = predictor.predict_clean(prior.matrix.encode_many(result.archs)).tolist() if result.archs else []
            rows.append({"scale": scale, "seconds": secs, **rates(result),
                         "pred_mean": float(np.mean(pred)) if pred else None,
                         "true_mean": float(np.mean(true)) if true else None,
                         "true_best": float(np.max(true)) if true else None})
    return {"seed": seed, "preset": args.preset, "device": args.device, "labelled": args.labelled,
            "labelled_mean": float(np.mean(acc)), "labelled_best": float(np.max(acc)),
            "table_mean": float(all_true.mean()),
            "spearman_all": spearman, "prior_train_seconds": train_s, "rows": rows}


# -- part 3: regret -------------------------------------------------------------------------------------------------
def run_search(task: tuple[str, str, int, int, str, str]) -> tuple[tuple[str, str, int], list[float], float,
                                                                  dict[str, Any]]:
    """One search of `spec` on the `dataset` table (`TABLE_OF`): the best accuracy after each query, its seconds,
    and for diffusionnag how often a round found nothing new and fell back to a random architecture."""
    dataset, spec, seed, budget, device, cache = task
    diffusionnag = bs.parse_spec(spec)[0] == "diffusionnag"
    best, secs, state = bs.search_curve(bs.evaluator_for(*TABLE_OF[dataset], bs.TABLES), spec, seed, budget, device,
                                        options={"cache_dir": cache} if diffusionnag else None)
    extra = {k: state[k] for k in ("rounds", "fallbacks", "rounds_log")} if diffusionnag else {}
    return (dataset, spec, seed), best.tolist(), secs, extra


def regret_tasks(args: argparse.Namespace) -> list[tuple[str, str, int, int, str, str]]:
    specs = [bs.spec_of("diffusionnag", {"preset": args.preset}) if s == "diffusionnag" else s
             for s in args.strategies]
    return [(d, spec, seed, args.budget, args.device, str(args.runs / "priors")) for d in args.datasets
            for spec in specs for seed in args.seed_list]


def unit_path(runs: Path, task: tuple[str, str, int, int, str, str]) -> Path:
    dataset, spec, seed, budget = task[:4]
    return runs / f"regret__{dataset}__{bs.slug(spec)}__b{budget}__s{seed}.json"


# -- the report -----------------------------------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}%"


def _f(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}"


def _se(v: np.ndarray) -> float:
    return float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0


def _s(x: float | None) -> str:
    return "(cached prior)" if x is None else f"{x:.1f}"


def report(args: argparse.Namespace, meta: dict[str, Any]) -> str:
    runs = args.runs
    out = [f"# DiffusionNAG on this machine{' (SMOKE RUN: tiny settings, not results)' if args.smoke else ''}", "",
           f"- Machine: {meta['machine']}", f"- Commit: {meta['commit']}", f"- Date: {meta['date']}",
           f"- Command: `{meta['command']}` ({args.workers} worker processes, device {args.device})",
           f"- Units of work: `{runs.relative_to(ROOT) if bs.inside_repository(runs) else runs}` (each with the "
           "commit, machine and command that made it)",
           f"- Published figures: {SOURCE}; facts and their provenance in `../shared/reference/diffusionnag.md`.", ""]
    gen = load_units(runs, "generation")
    if gen:
        out += ["## 1. Generation: validity, uniqueness, novelty", "",
                "Rates as the official code counts them: validity = valid / sampled, uniqueness = unique / valid, "
                "novelty = unique valid architectures not in the prior's training set / unique.", "",
                "| space | preset | seed | samples | validity | uniqueness | novelty | published | train s | "
                "generate s | s per 256 | device | commit | training set |",
                "|" + " --- |" * 14]
        for r in gen:
            pub = " / ".join(PUBLISHED[(r["space"], k)][0] for k in ("validity", "uniqueness", "novelty")
                             if (r["space"], k) in PUBLISHED)
            per256 = f"{r['time_seconds'] * 256 / r['time_samples']:.1f}"
            if r["time_samples"] != 256:
                per256 += f" (scaled from {r['time_samples']})"
            out.append(f"| {r['space']} | {r['preset']} | {r['seed']} | {r['n_samples']} | {_pct(r['validity'])} | "
                       f"{_pct(r['uniqueness'])} | {_pct(r['novelty'])} | {pub} | {_s(r['train_seconds'])} | "
                       f"{r['generate_seconds']:.1f} | {per256} | {r['device']} | {r['commit']} | {r['note']} |")
        out += ["", "Published: " + "; ".join(f"{s} {k} {v} ({src})" for (s, k), (v, src) in PUBLISHED.items()) + ".",
                f"Published cost: {PUBLISHED_COST}.", ""]
        if any(r["space"] == "mbconv_small" for r in gen):
            out += ["mbconv_small: the per-layer positions scaled by 8 (commit 8fef1a9) were chosen by looking at the "
                    "seed-0 prior's validity; rows of other seeds are the figures on seeds nothing was tuned on.", ""]
    gui = load_units(runs, "guidance")
    if gui:
        out += ["## 2. Does guidance work? (NB201, CIFAR-10 table)", "",
                "Prior on all 15,625 cells (the strategy's); noise-aware predictor trained on the labelled cells; "
                "predicted = the predictor at sigma_min, true = the table's test accuracy, both over the unique "
                "valid generated cells. Scale 0 is unguided. No published figure for this check.", "",
                "| seed | labelled (mean / best true) | predictor Spearman on all cells | scale | validity | unique | "
                "mean predicted | mean true | best true | s | commit |", "|" + " --- |" * 11]
        for r in gui:
            for row in r["rows"]:
                out.append(f"| {r['seed']} | {r['labelled']} ({r['labelled_mean']:.2f} / {r['labelled_best']:.2f}) | "
                           f"{r['spearman_all']:.3f} | {row['scale']:g} | {_pct(row['validity'])} | "
                           f"{row['n_unique']} | {_f(row['pred_mean'])} | {_f(row['true_mean'])} | "
                           f"{_f(row['true_best'])} | "
                           f"{row['seconds']:.1f} | {r['commit']} |")
        out += ["", f"Table mean over all cells: {gui[0]['table_mean']:.2f}.", ""]
    reg = load_units(runs, "regret")
    if reg:
        out += ["## 3. Regret on the NB201 and NATS size tables", "",
                "Regret = table best minus best found (accuracy points), mean ± standard error over seeds; optimum = "
                "share of runs at the table's best. Oracle protocol of `scripts/bench_strategies.py` (search and score "
                "on the table's test accuracy: NB201's 200-epoch one; the NATS size table's CIFAR-10 column as shipped "
                "in `../shared/benchmarks/nats_sss`); every query counts. The paper's BO figures (Appendix C.6, "
                "Algorithm 2) are curves without published numbers, so nothing is set beside these; its NB201 "
                "transferable result (Table 1: CIFAR-10 94.37 after 1 trained architecture, CIFAR-100 73.51 after 2) "
                "is a different, meta-learned protocol. s/run is the wall time each run measured with whatever else "
                "shared the machine then (the CIFAR-100, ImageNet16-120 and NATS runs at dc1b706 shared the 2 cores "
                "with up to four other processes; the first CIFAR-100 DiffusionNAG run alone took 163 s): an upper "
                "bound, not a speed comparison.", ""]
        checkpoints = [c for c in args.checkpoints if c <= max(r["budget"] for r in reg)]
        out += ["| dataset | strategy | seeds | " + " | ".join(f"regret@{c}" for c in checkpoints) + " | "
                + " | ".join(f"optimum@{c}" for c in checkpoints) + " | s/run | guided rounds / random fallbacks "
                "per run | commit |",
                "|" + " --- |" * (6 + 2 * len(checkpoints))]
        groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
        for r in reg:
            groups.setdefault((r["dataset"], r["strategy"], r["budget"]), []).append(r)
        order = {s: i for i, s in enumerate(STRATEGIES)}
        plots: dict[str, dict[str, np.ndarray]] = {}
        for (d, spec, budget), rs in sorted(groups.items(), key=lambda kv: (DATASETS.index(kv[0][0]) if kv[0][0] in
                                                                          DATASETS else 9, order.get(bs.parse_spec(
                                                                              kv[0][1])[0], 9), kv[0][2])):
            optimum = bs.evaluator_for(*TABLE_OF[d], bs.TABLES).best()[1]
            regret = optimum - np.array([r["best"] for r in rs])
            n = len(rs)
            cells = [f"{regret[:, c - 1].mean():.3f} ± {_se(regret[:, c - 1]):.3f}" if c <= budget else ""
                     for c in checkpoints]
            hits = [f"{np.mean(regret[:, c - 1] <= 1e-9):.0%}" if c <= budget else "" for c in checkpoints]
            commits = ", ".join(sorted({r["commit"] for r in rs}))
            out.append(f"| {d} | {bs.label_of(spec)} | {bs.seed_text([r['seed'] for r in rs])} ({n}) | "
                       + " | ".join(cells + hits) + f" | {np.mean([r['seconds'] for r in rs]):.2f} | "
                       + (f"{np.mean([r['rounds'] for r in rs]):.1f} / {np.mean([r['fallbacks'] for r in rs]):.1f}"
                          if all("rounds" in r for r in rs) else "") + f" | {commits} |")
            plots.setdefault(d, {})[bs.label_of(spec)] = regret
        for d, curves in plots.items():
            png = args.out.parent / f"{args.out.stem}_regret_{d}.png"
            bs.plot(png, "{} {}: DiffusionNAG and baselines".format(*TABLE_OF[d]), curves)
            out.append("")
            out.append(f"Plot: `{png.name}`.")
        out.append("")
    commands = sorted({r["command"] for r in gen + gui + reg})
    if commands:
        out += ["## Commands that made the units", "", *(f"- `{c}`" for c in commands), ""]
    text = "\n".join(out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return text


# -- main -------------------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=[*PARTS, "all"], default="all")
    parser.add_argument("--smoke", action="store_true", help="minutes-long check: tiny prior, 64 samples, 2 seeds, "
                                                             "15 queries")
    parser.add_argument("--workers", type=int, default=1, help="worker processes for the searches")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--preset", choices=("tiny", "quick", "paper"), default=None,
                        help="the strategy's budget preset (prior, predictor, samples a round); default quick "
                             "(tiny with --smoke)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "diffusionnag.md")
    parser.add_argument("--runs", type=Path, help="folder of saved units (default: diffusionnag_runs/ beside --out)")
    parser.add_argument("--samples", type=int, help="generated samples for the rates (default 1000)")
    parser.add_argument("--time-samples", type=int, help="samples to time the generation on (default 256)")
    parser.add_argument("--gen-seeds", type=int, default=1, help="generation units per space (seeds 0..)")
    parser.add_argument("--gen-spaces", default=",".join(GEN_SPACES),
                        help=f"comma-separated generation spaces, of {', '.join(GEN_SPACES)}")
    parser.add_argument("--labelled", type=int, default=100, help="table-labelled cells for the guidance predictor")
    parser.add_argument("--guidance-samples", type=int, help="samples per guidance scale (default 256)")
    parser.add_argument("--guidance-seeds", type=int, help="guidance units (default 3)")
    parser.add_argument("--scales", default="0,1000,10000", help="guidance scales (0: unguided)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seeds", type=int, help="search seeds (default 20)")
    parser.add_argument("--seed-start", type=int, default=100)
    parser.add_argument("--budget", type=int, help="queries per search (default 100)")
    parser.add_argument("--checkpoints", default="50,100")
    parser.add_argument("--allow-dirty", action="store_true")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)

    smoke = args.smoke
    args.preset = args.preset or ("tiny" if smoke else "quick")
    args.samples = args.samples or (64 if smoke else 1000)
    args.time_samples = args.time_samples or (64 if smoke else 256)
    args.guidance_samples = args.guidance_samples or (64 if smoke else 256)
    args.guidance_seeds = args.guidance_seeds or (1 if smoke else 3)
    args.budget = args.budget or (15 if smoke else 100)
    seeds = args.seeds or (2 if smoke else 20)
    args.seed_list = list(range(args.seed_start, args.seed_start + seeds))
    args.checkpoints = [int(c) for c in args.checkpoints.split(",")] if not smoke else [10, args.budget]
    args.scales = [float(s) for s in args.scales.split(",")]
    args.strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    args.datasets = [s.strip() for s in args.datasets.split(",") if s.strip()]
    args.gen_spaces = [s.strip() for s in args.gen_spaces.split(",") if s.strip()]
    unknown = [s for s in args.gen_spaces if s not in GEN_SPACES]
    if unknown:
        parser.error(f"--gen-spaces: unknown space {unknown[0]!r}; accepted: {', '.join(GEN_SPACES)}")
    args.out = args.out.resolve()
    args.runs = (args.runs or args.out.parent / ("diffusionnag_smoke_runs" if smoke else "diffusionnag_runs")).resolve()
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device here")

    commit, changed = bs.tree_state()
    if changed and bs.inside_repository(args.out) and not args.allow_dirty:
        raise SystemExit(f"refusing to write {args.out} from a tree with uncommitted source changes at {commit} "
                         f"({', '.join(changed[:5])}); commit them, or pass --allow-dirty")
    command = "python scripts/bench_diffusionnag.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    meta = {"commit": commit + ("+dirty" if changed else ""), "changed": changed, "machine": machine(),
            "command": command.strip(), "date": time.strftime("%Y-%m-%d %H:%M %Z")}
    parts = PARTS if args.part == "all" else (args.part,)
    wall = time.perf_counter()
    if not args.report_only:
        if "generation" in parts:
            for space in args.gen_spaces:
                for seed in range(args.gen_seeds):
                    path = args.runs / f"generation__{space}__{args.preset}__{args.device}__s{seed}.json"
                    if not path.exists():
                        t = time.perf_counter()
                        write_unit(path, generation_unit(space, args, seed), meta)
                        print(f"generation {space} seed {seed}: {time.perf_counter() - t:.0f} s", file=sys.stderr)
        if "guidance" in parts:
            for seed in range(args.guidance_seeds):
                path = args.runs / f"guidance__{args.preset}__{args.device}__n{args.labelled}__s{seed}.json"
                if not path.exists():
                    t = time.perf_counter()
                    write_unit(path, guidance_unit(args, seed), meta)
                    print(f"guidance seed {seed}: {time.perf_counter() - t:.0f} s", file=sys.stderr)
        if "regret" in parts:
            tasks = [t for t in regret_tasks(args) if not unit_path(args.runs, t).exists()]
            for space in sorted({TABLE_OF[t[0]][0] for t in tasks if t[1].startswith("diffusionnag")}):
                _, secs = strategy_prior(space, args)  # trained once, here, before the workers share it
                print(f"{space} prior for the searches: {_s(secs)} s", file=sys.stderr)
            t0 = time.perf_counter()
            outcomes: Iterable[tuple[tuple[str, str, int], list[float], float, dict[str, Any]]]
            with ExitStack() as stack:
                if args.workers > 1:
                    from multiprocessing import get_context

                    pool = stack.enter_context(get_context("spawn").Pool(args.workers))
                    outcomes = pool.imap_unordered(run_search, tasks)
                else:
                    outcomes = map(run_search, tasks)
                for done, ((dataset, spec, seed), best, secs, extra) in enumerate(outcomes, 1):
                    task = (dataset, spec, seed, args.budget, args.device, "")
                    write_unit(unit_path(args.runs, task), {"dataset": dataset, "strategy": spec, "seed": seed,
                                                           "budget": args.budget, "device": args.device,
                                                           "best": best, "seconds": secs, **extra}, meta)
                    if done % 10 == 0 or done == len(tasks):
                        print(f"searches {done}/{len(tasks)} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    text = report(args, meta)
    print(text)
    print(f"wall {time.perf_counter() - wall:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
