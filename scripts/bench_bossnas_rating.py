"""Architecture-rating accuracy of BossNAS on real data, next to a supervised one-shot supernet (SPOS) and size.

Trains `--archs` random architectures of `--space` / `--preset` (HyTra-small by default) stand-alone on
Fashion-MNIST with one fixed recipe, once per ground-truth seed (`--gt-seeds`; the ground truth is their mean);
rates the same architectures with BossNAS (the `--boss-budget` preset, trained as the preset says with
`--boss-as-preset` except that its supernet sees the `--size` images (the preset's `input_size` replaced: on
run C's 32x32 data `quick` trained at 32, not 16), else with run C's training set by the options below;
`--boss-option` changes any field),
with SPOS (Guo et al. 2020: the `spos` strategy's one-shot supernet trained with uniform single paths for
`--spos-epochs` on the same images; an architecture's rating is its validation accuracy with inherited weights
after BN recalibration), by parameter count and by multiply-adds; prints Kendall tau and Spearman rho of each
rating against the ground truth, with 95% bootstrap intervals over the architectures, and writes a markdown
report (`--out`) with a scatter plot. Every rating of the same architectures on the same images found in
`--rating-cache` (e.g. BossNAS with one option changed) is a row of the report too. The noise ceiling is by
split half: the mean accuracy of half the seeds against the other half's, averaged over every such split (with
two seeds, seed against seed); from it, stepped up to the mean of all seeds (Spearman-Brown), an estimate of the
tau an exact rating would reach against the ground truth, and of the seeds either would need to reach 0.6.
`--table DIR` writes the ground truth as a tabular benchmark (`table.csv`, `table.json`) that `nas search
--benchmark DIR/table.csv --dataset fashion_mnist` reads. Every stand-alone result records the commit it was
trained at. Every architecture is trained at the `--size` data's shape unless `--arch-input` trains each at its
own (MBConv's resolution choice).

With `--workers N` the stand-alone trainings run in N processes and the BossNAS + SPOS part in one more,
all at once (on a GPU they share the card; the timings then say so). Stand-alone accuracies are cached by
recipe, seed and architecture in `--standalone-cache`, written after each training, and the BossNAS + SPOS
results in `--rating-cache`, so a killed run keeps what it finished and a rerun with the same options only
trains what is missing (or just writes the report); with `--supernet-dir` the supernets train in a kept
folder, so that a killed rating run resumes from their checkpoints too. `--deadline` stops starting stand-alone
trainings after that many seconds; seeds left incomplete are left out of the ground truth.

    python scripts/bench_bossnas_rating.py --archs 3 --train 256 --val 128 --epochs 1 --out /tmp/x.md  # smoke
    python scripts/bench_bossnas_rating.py --size 32 --train 20000 --val 10000 --epochs 12 --gt-seeds 0,1 \\
        --boss-budget standard --boss-epochs 3 --workers 5 --device cuda             # the GPU run (BENCHMARKS.md)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from itertools import combinations
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from nas.data import TensorData, load_dataset  # noqa: E402
from nas.registry import make_space  # noqa: E402
from nas.space import Architecture  # noqa: E402
from nas.strategy import SupernetContext  # noqa: E402
from nas.train import TrainConfig, resize_inputs, resolve_device, train_and_evaluate  # noqa: E402
from predictors.base import (  # noqa: E402
    bootstrap_draws,
    bootstrap_interval,
    kendall_tau,
    percentile_interval,
    rank_correlations_by_row,
    spearman_rho,
)

MOST_SPLITS = 2000  # split halves averaged in the noise ceiling (a random sample of them past this)
ANCHORS = [("BossNAS, MBConv space / ImageNet (paper)", "0.65", "0.78"),
           ("BossNAS, NATS-Bench size space / CIFAR-10 (paper)", "0.53", "0.73"),
           ("SPOS, MBConv space / ImageNet (paper's table)", "-0.18", "-0.27")]


# -- data and architectures (rebuilt identically in every worker process) ---------------------------------
_DATA: dict[tuple, TensorData] = {}


def bench_data(opts: dict) -> TensorData:
    """The Fashion-MNIST subset of the run, resized to the run's input side."""
    key = (opts["data"], opts["train"], opts["val"], opts["size"], opts["seed"])
    if key not in _DATA:
        full = load_dataset("fashion_mnist", path=opts["data"]).subset(opts["train"], opts["val"], seed=opts["seed"])
        shape = (full.sample_shape[0], opts["size"], opts["size"])
        _DATA[key] = TensorData(full.name, resize_inputs(full.x_train, shape), full.y_train,
                                resize_inputs(full.x_val, shape), full.y_val, full.num_classes)
    return _DATA[key]


def bench_archs(opts: dict) -> list[Architecture]:
    space = make_space(opts["space"], opts["preset"])
    rng, archs = random.Random(opts["seed"]), []
    while len(archs) < opts["archs"]:
        arch = space.sample(rng)
        if arch not in archs:
            archs.append(arch)
    return archs


def recipe(opts: dict) -> str:
    return (f"{opts['train']}/{opts['val']}/{opts['size']}px/{opts['epochs']}ep/lr{opts['lr']}/b{opts['batch']}"
            f"/{opts['augment']}" + ("/arch-input" if opts.get("arch_input") else ""))


def arch_input(opts: dict, space: Any, arch: Architecture, data_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The input a stand-alone network is trained and counted at: the architecture's own (`--arch-input`, as
    `nas search` trains it: e.g. MBConv's resolution choice) or the data's size for every architecture."""
    return tuple(space.input_shape_for(arch, data_shape)) if opts.get("arch_input") else data_shape


def standalone_key(opts: dict, seed: int, arch: Architecture) -> str:
    return f"{recipe(opts)}/seed{seed} {arch.to_json()}"


def rating_key(opts: dict) -> str:
    """What a cached BossNAS + SPOS result depends on."""
    keys = ("space", "preset", "archs", "train", "val", "size", "seed", "boss_budget", "boss_epochs", "boss_batch",
            "max_rated", "rating_images", "spos_epochs", "boss_images", "entry_states", "skip_bossnas", "supernet_seed",
            "skip_spos")
    # supernets built from the graph (commit 13ac6a5) initialise in another order than the earlier hand-written
    # ones: results cached before then are not this code's
    key = "supernets=graph/" + "/".join(f"{k}={opts[k]}" for k in keys)
    key += "/as_preset" if opts.get("boss_as_preset") else ""
    return key + "".join(f"/{k}={v}" for k, v in sorted(boss_options(opts).items()))


def ground_key(opts: dict) -> str:
    """What the rated architectures and their data depend on: ratings with the same ground key rate the same
    architectures on the same images, so they share one table."""
    return "/".join(f"{k}={opts[k]}" for k in ("space", "preset", "archs", "train", "val", "size", "seed"))


def rating_label(opts: dict) -> dict[str, str]:
    """Row names of a rating run's BossNAS and SPOS results (its settings that vary between runs)."""
    extra = "".join(f", {k}={v}" for k, v in sorted(boss_options(opts).items()))
    training = ("as the preset" if opts.get("boss_as_preset") else
                f"{opts['boss_epochs']} ep/block, 4 paths, earlier blocks trained")
    seed = "" if opts["supernet_seed"] is None else f", supernet seed {opts['supernet_seed']}"
    return {"boss": f"BossNAS '{opts['boss_budget']}' ({training}{extra}{seed})",
            "spos": f"SPOS ({opts['spos_epochs']} epochs{seed})"}


def train_standalone(opts: dict, arch_json: str, seed: int) -> tuple[str, int, float, float]:
    """One stand-alone training with the fixed recipe: (arch json, seed, top-1 %, seconds)."""
    torch.set_num_threads(opts["threads"])
    space = make_space(opts["space"], opts["preset"])
    data = bench_data(opts)
    arch = Architecture.from_json(arch_json)
    torch.manual_seed(seed)
    shape = arch_input(opts, space, arch, data.sample_shape)
    model = space.build(arch, shape, data.num_classes)
    config = TrainConfig(epochs=opts["epochs"], batch_size=opts["batch"], lr=opts["lr"], warmup_epochs=0.3,
                         augment=opts["augment"], seed=seed, num_threads=opts["threads"], device=opts["device"])
    res = train_and_evaluate(model, data, config, input_shape=shape)
    return arch_json, seed, res.accuracy, res.seconds


def boss_options(opts: dict) -> dict:
    """The `--boss-option KEY=VALUE` overrides of BossNAS's preset (values parsed as JSON where they can be)."""
    out = {}
    for item in opts["boss_option"]:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def supernet_seed(opts: dict) -> int:
    return opts["seed"] if opts["supernet_seed"] is None else opts["supernet_seed"]


def supernet_context(opts: dict, folder: str) -> SupernetContext:
    space = make_space(opts["space"], opts["preset"])
    return SupernetContext(space=space, data=bench_data(opts), objectives=[], seed=supernet_seed(opts),
                           budget=opts["boss_budget"], checkpoint_dir=Path(folder), progress=False)


@contextmanager
def supernet_folder(opts: dict, name: str) -> Iterator[str]:
    """Where a supernet trains: `--supernet-dir`/`name` (kept, so that a killed rating run resumes from the
    strategy's own checkpoints; refused when it was started with other settings), else a temporary folder."""
    if not opts["supernet_dir"]:
        with tempfile.TemporaryDirectory() as tmp:
            yield tmp
        return
    folder = Path(opts["supernet_dir"]) / name
    folder.mkdir(parents=True, exist_ok=True)
    stamp, key = folder / "rating_key.txt", rating_key(opts)
    if stamp.exists() and stamp.read_text() != key:
        raise SystemExit(f"--supernet-dir {folder} holds a supernet trained with other settings "
                         f"({stamp.read_text()}); accepted: an empty folder or one started with these")
    stamp.write_text(key)
    yield str(folder)


def rate_bossnas(opts: dict) -> dict:
    """BossNAS's supernet training and block ratings, then its ratings of the benchmark's architectures."""
    from strategies.bossnas import BossNAS

    torch.set_num_threads(opts["threads"])
    t = time.perf_counter()
    options = dict(input_size=opts["size"], search="enumerate", device=opts["device"]) if opts["boss_as_preset"] \
        else dict(input_size=opts["size"], train_images=opts["boss_images"] or opts["train"],
                   epochs_per_block=opts["boss_epochs"],
                   batch_size=opts["boss_batch"], max_rated=opts["max_rated"], rating_images=opts["rating_images"],
                   bn_images=128, search="enumerate", entry_states=opts["entry_states"], device=opts["device"],
                   # the quick preset's training until commit 33ea194 (which cut it to 3 minutes on a CPU):
                   # the rows of run C were measured with it
                   num_paths=4, train_prefix=True)
    options.update(boss_options(opts))
    strategy = BossNAS([], seed=supernet_seed(opts), **options)
    with supernet_folder(opts, "bossnas") as tmp:
        strategy.prepare(supernet_context(opts, tmp))
        trained = time.perf_counter() - t
        t = time.perf_counter()
        boss = strategy.rate(bench_archs(opts))
        chosen = strategy.online.arch_of(strategy.best_paths)
        chosen_rating = strategy.rate([chosen])[0]
    return {"boss": boss, "boss_seconds": sum(strategy.train_seconds), "chosen": chosen.to_json(),
            "chosen_rating": chosen_rating,
            "times": {"BossNAS supernet training + block ratings": trained,
                      "BossNAS rating of the architectures": time.perf_counter() - t}}


def rate_spos(opts: dict) -> dict:
    """The `spos` strategy's supernet (`--spos-epochs` on the BossNAS images, batch and device), then each
    architecture's rating: top-1 with inherited weights after BN recalibration on 256 training images."""
    from strategies.spos import SPOS

    torch.set_num_threads(opts["threads"])
    t = time.perf_counter()
    strategy = SPOS([], seed=supernet_seed(opts), epochs=opts["spos_epochs"], batch_size=opts["boss_batch"], lr=0.1,
                    train_images=opts["boss_images"], bn_images=256, val_images=0, device=opts["device"])
    with supernet_folder(opts, "spos") as tmp:
        plan = strategy.prepare(supernet_context(opts, tmp))
        trained = time.perf_counter() - t
        t = time.perf_counter()
        accs = [plan.evaluator.evaluate(a).metrics["rating"] for a in bench_archs(opts)]
    return {"spos": accs, "spos_budget": f"{opts['spos_epochs']} epochs", "spos_seconds": trained,
            "times": {f"SPOS supernet training ({opts['spos_epochs']} epochs)": trained,
                      "SPOS rating of the architectures": time.perf_counter() - t}}


def rate_with_supernets(opts: dict) -> dict:
    """BossNAS (unless `--skip-bossnas`), then SPOS (unless `--skip-spos`)."""
    boss = {} if opts["skip_bossnas"] else rate_bossnas(opts)
    return merge_ratings(boss, {} if opts["skip_spos"] else rate_spos(opts), opts["device"])


def merge_ratings(boss: dict, spos: dict, device: str) -> dict:
    return {**boss, **spos, "times": {**boss.get("times", {}), **spos.get("times", {})}, "machine": machine(device)}


# -- the run -----------------------------------------------------------------------------------------------
def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="hytra")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--archs", type=int, default=20)
    ap.add_argument("--data", default=None, help="Fashion-MNIST IDX folder (default: Debian's)")
    ap.add_argument("--train", type=int, default=2000, help="training images (Fashion-MNIST subset)")
    ap.add_argument("--val", type=int, default=1000, help="validation images (from the official test split)")
    ap.add_argument("--size", type=int, default=8, help="input side (images resized; hytra needs a multiple of 8)")
    ap.add_argument("--epochs", type=int, default=3, help="stand-alone epochs")
    ap.add_argument("--lr", type=float, default=0.1, help="stand-alone SGD learning rate")
    ap.add_argument("--batch", type=int, default=128, help="stand-alone batch size")
    ap.add_argument("--augment", default="none", help="stand-alone augmentation (none, shift, shift+flip)")
    ap.add_argument("--arch-input", action="store_true",
                    help="train (and count) each architecture at its own input (e.g. MBConv's resolution choice), as "
                         "nas search does; without it every one sees the --size data as they are")
    ap.add_argument("--gt-seeds", default="0", help="comma-separated stand-alone seeds; the ground truth is the mean")
    ap.add_argument("--boss-budget", default="quick", help="BossNAS preset the options below scale")
    ap.add_argument("--boss-epochs", type=float, default=2.0, help="BossNAS epochs per block")
    ap.add_argument("--boss-images", type=int, default=0,
                    help="training images BossNAS and SPOS use (the first ones of the subset; 0: all)")
    ap.add_argument("--boss-batch", type=int, default=64, help="BossNAS (and SPOS) batch size")
    ap.add_argument("--spos-epochs", type=float, default=4.0,
                    help="SPOS training epochs (the spos strategy); with --workers in a process beside BossNAS")
    ap.add_argument("--skip-bossnas", action="store_true", help="rate with SPOS only (no BossNAS row)")
    ap.add_argument("--skip-spos", action="store_true", help="rate with BossNAS only (no SPOS row)")
    ap.add_argument("--boss-option", action="append", default=[], metavar="KEY=VALUE",
                    help="a BossNAS option for its preset, e.g. centre=state (repeatable)")
    ap.add_argument("--max-rated", type=int, default=12, help="rated candidates per block and entry state (0: all)")
    ap.add_argument("--rating-images", type=int, default=256)
    ap.add_argument("--entry-states", default="all", choices=("all", "best"),
                    help="BossNAS blocks trained from every entry state, or only the best path's (the official "
                         "code; most random architectures then cannot be rated)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--workers", type=int, default=0,
                    help="processes for the stand-alone trainings (plus one for BossNAS + SPOS); 0: all in this one")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads per process (1 is far faster than 2 on a busy 2-core machine)")
    ap.add_argument("--standalone-cache", default=None,
                    help="JSON of stand-alone accuracies by recipe, seed and architecture, read and extended")
    ap.add_argument("--rating-cache", default=None,
                    help="JSON of BossNAS + SPOS results by setting, read and extended (a rerun only reports)")
    ap.add_argument("--supernet-dir", default=None,
                    help="train the BossNAS and SPOS supernets in DIR/bossnas and DIR/spos and keep them there: "
                         "a killed rating run resumes from their checkpoints (default: a temporary folder)")
    ap.add_argument("--deadline", type=float, default=0.0,
                    help="seconds after which no new stand-alone training starts (0: none); seeds left "
                         "incomplete are left out of the ground truth")
    ap.add_argument("--cached-only", action="store_true",
                    help="train nothing stand-alone: use the cached accuracies (e.g. trained on another machine)")
    ap.add_argument("--report-only", action="store_true",
                    help="train and rate nothing: the report from the caches (every cached rating)")
    ap.add_argument("--standalone-only", action="store_true", help="only the stand-alone accuracies and their noise")
    ap.add_argument("--seed", type=int, default=0, help="seed of the data subset, the architectures and the supernets")
    ap.add_argument("--supernet-seed", type=int, default=None,
                    help="seed of BossNAS's and SPOS's training alone (default: --seed), for their run-to-run spread")
    ap.add_argument("--boss-as-preset", action="store_true",
                    help="train BossNAS as its --boss-budget preset says (only --size, enumeration and --boss-option "
                         "set here); without it, the run-C training (--boss-epochs, --boss-images, 4 paths, ...)")
    ap.add_argument("--table", default=None,
                    help="also write the ground truth as a tabular benchmark here (table.csv, table.json)")
    ap.add_argument("--out", default="benchmarks/bossnas_rating.md")
    return ap.parse_args(argv)


def machine(device: str) -> str:
    dev = resolve_device(device)
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)} GPU, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    return f"{platform.machine()} CPU ({os.cpu_count()} cores, no GPU), torch {torch.__version__}"


def load_json(path: Path | None) -> dict:
    return json.loads(path.read_text()) if path and path.exists() else {}


def save_json(path: Path | None, value: dict) -> None:
    if path:
        path.write_text(json.dumps(value, indent=1))


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    opts = vars(args).copy()
    seeds = [int(s) for s in args.gt_seeds.split(",") if s.strip()]
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    space = make_space(args.space, args.preset)
    data = bench_data(opts)
    archs = bench_archs(opts)
    graphs = [space.graph(a, arch_input(opts, space, a, data.sample_shape), data.num_classes) for a in archs]
    costs = {"params": [g.params() for g in graphs], "macs": [g.macs() for g in graphs]}
    cache_file = Path(args.standalone_cache) if args.standalone_cache else None
    cache = load_json(cache_file)
    rating_file = Path(args.rating_cache) if args.rating_cache else None
    rated = {} if args.standalone_only else load_json(rating_file).get(rating_key(opts), {})
    jobs = [] if args.cached_only or args.report_only else [(a.to_json(), s) for s in seeds for a in archs
                                         if standalone_key(opts, s, a) not in cache]
    done = 0
    start = time.perf_counter()
    from bench_strategies import tree_state

    head, changed = tree_state()
    commit = head + ("+dirty" if changed else "")  # recorded with every stand-alone result

    def store(result: tuple[str, int, float, float]) -> None:
        nonlocal done
        arch_json, seed, acc, secs = result
        cache[standalone_key(opts, seed, Architecture.from_json(arch_json))] = {
            "accuracy": acc, "seconds": secs, "machine": machine(args.device), "commit": commit}
        save_json(cache_file, cache)
        done += 1
        print(f"stand-alone seed {seed}: {acc:.2f}% ({secs:.0f}s) [{done}/{len(jobs)}]", flush=True)

    def keep_rating(result: dict) -> None:
        result = {**result, "ground": ground_key(opts), "labels": rating_label(opts), "commit": commit}
        rated.update(result)
        save_json(rating_file, {**load_json(rating_file), rating_key(opts): result})

    run_rating = not (args.standalone_only or args.report_only or rated)
    if args.workers > 0:
        from multiprocessing import get_context

        parallel_spos = run_rating and not args.skip_bossnas and not args.skip_spos
        with ProcessPoolExecutor(args.workers + run_rating + parallel_spos, mp_context=get_context("spawn")) as pool:
            ratings = {}  # future -> its part
            if parallel_spos:  # BossNAS and SPOS side by side, each in its own process
                ratings = {pool.submit(rate_bossnas, opts): "boss", pool.submit(rate_spos, opts): "spos"}
            elif run_rating:
                ratings = {pool.submit(rate_with_supernets, opts): "both"}
            futures = [pool.submit(train_standalone, opts, a, s) for a, s in jobs]
            parts: dict[str, dict] = {}
            for future in as_completed([*ratings, *futures]):
                if future.cancelled():
                    continue
                if future in ratings:
                    if future.exception() is not None:  # keep the stand-alone results; say what broke
                        traceback.print_exception(future.exception())
                        continue
                    parts[ratings[future]] = future.result()
                    if "both" in parts:
                        keep_rating(parts["both"])
                    elif len(parts) == 2:
                        keep_rating(merge_ratings(parts["boss"], parts["spos"], args.device))
                    continue
                store(future.result())
                if args.deadline and time.perf_counter() - start > args.deadline:
                    for f in futures:
                        f.cancel()  # the ones not started; running ones finish
    else:
        for a, s in jobs:
            if args.deadline and time.perf_counter() - start > args.deadline:
                break
            store(train_standalone(opts, a, s))
        if run_rating:
            keep_rating(rate_with_supernets(opts))
    total_wall = time.perf_counter() - start

    complete = [s for s in seeds if all(standalone_key(opts, s, a) in cache for a in archs)]
    if not complete:
        raise SystemExit("no ground-truth seed finished before the deadline; rerun with --standalone-cache to go on")
    records = [[cache[standalone_key(opts, s, a)] for a in archs] for s in complete]
    if args.table:
        write_table(Path(args.table), opts, archs, complete, records)
    others = [r for key, r in load_json(rating_file).items()
              if r.get("ground") == ground_key(opts) and key != rating_key(opts)]
    write_report(args, out, complete, records, costs, rated, total_wall, noise_rows(complete, records), others)


def split_halves(seeds: Sequence[int], most: int = MOST_SPLITS) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Every split of an even number of seeds into two halves (each split once: the first seed's half first);
    past `most` splits (18 seeds have 24,310), `most` of them drawn at random with a fixed seed, in their order.
    The mean over that sample estimates the mean over all splits far inside its bootstrap interval (its own
    sampling error is about the splits' spread / sqrt(most)), and the bootstrap, which ranks every split in every
    resample, stays at minutes."""
    if len(seeds) < 2 or len(seeds) % 2:
        return []
    first, rest = seeds[0], list(seeds[1:])
    half = len(seeds) // 2
    splits = [((first, *c), tuple(s for s in rest if s not in c)) for c in combinations(rest, half - 1)]
    if len(splits) > most:
        splits = [splits[i] for i in sorted(random.Random(0).sample(range(len(splits)), most))]
    return splits


def noise_rows(seeds: list[int], records: list[list[dict]]) -> list[tuple[str, list[float], list[float]]]:
    """The noise ceiling by split half: for each split of the complete seeds into two halves, the mean accuracy
    of one half against the other's (with 2 seeds: seed against seed). It measures how well a mean over half
    the seeds ranks; the ground truth averages all of them, so it is a lower bound of the truth's own
    reliability (the ceiling a rating can reach against it is at least this)."""
    accs = {s: [r["accuracy"] for r in row] for s, row in zip(seeds, records)}
    rows = []
    for a, b in split_halves(seeds):
        mean_a = [sum(v) / len(a) for v in zip(*(accs[s] for s in a))]
        mean_b = [sum(v) / len(b) for v in zip(*(accs[s] for s in b))]
        name = (f"noise ceiling: seed {b[0]} vs. seed {a[0]}" if len(a) == 1 else
                f"noise ceiling: mean of seeds {'+'.join(map(str, b))} vs. seeds {'+'.join(map(str, a))}")
        rows.append((name, mean_b, mean_a))
    return rows


def split_half_row(noise: list[tuple[str, list[float], list[float]]], n_seeds: int) -> str:
    """The noise-ceiling row of the report: with one split (two seeds) seed against seed; with several, Kendall
    tau and Spearman rho averaged over the splits of the seeds into halves (`split_halves`), the 95% bootstrap
    interval drawn over the architectures (the same draw for every split)."""
    import numpy as np

    if len(noise) == 1:
        name, second, first = noise[0]
        return f"| {name} | {correlation_cells(second, first)} | | |"
    seconds = np.array([second for _, second, _ in noise])  # one row per split
    firsts = np.array([first for _, _, first in noise])

    def means_over_splits(rows: np.ndarray) -> list[float]:  # Kendall tau and Spearman rho, each averaged
        return [float(values.mean()) for values in rank_correlations_by_row(seconds[:, rows], firsts[:, rows])]

    resampled = np.array([means_over_splits(draw) for draw in bootstrap_draws(seconds.shape[1])])
    cells = [f"{value:.2f} [{lo:.2f}, {hi:.2f}]" for value, (lo, hi) in
             zip(means_over_splits(np.arange(seconds.shape[1])), map(percentile_interval, resampled.T))]
    every = math.comb(n_seeds - 1, n_seeds // 2 - 1)  # splits of the seeds into halves
    over = f"the {every} splits" if len(noise) == every else f"{len(noise):,} of the {every:,} splits, drawn at random"
    return f"| noise ceiling: mean of half the seeds vs. the other half's, mean over {over} | " \
        f"{' | '.join(cells)} | | |"


def seeds_for(target_r: float, r_one: float) -> int:
    """Seeds whose mean reaches reliability `target_r` when one seed's is `r_one` (Spearman-Brown inverted)."""
    return max(1, math.ceil(target_r * (1 - r_one) / (r_one * (1 - target_r))))


def truth_ceiling(noise: list[tuple[str, list[float], list[float]]], n_seeds: int) -> str:
    """A sentence estimating the tau and rho an exact rating (the accuracy averaged over infinitely many seeds)
    would reach against the ground truth (the mean of all seeds): the split halves' Pearson r, stepped up to the
    whole mean by Spearman-Brown (2r / (1 + r)); its square root is the exact rating's correlation with the
    truth, turned into tau and rho as for normal data (2/pi asin r, 6/pi asin r/2). A model-based estimate. It
    also says, by the same model, how many seeds the split-half tau and the estimated ceiling need to reach 0.6."""
    import numpy as np

    if not noise:
        return ""
    r_half = float(np.mean([np.corrcoef(a, b)[0, 1] for _, a, b in noise]))
    if r_half <= 0:
        return f"The split halves do not correlate (Pearson r {r_half:.2f}): no rating can be told from chance here."
    r = math.sqrt(2 * r_half / (1 + r_half))
    tau, rho = 2 / math.pi * math.asin(r), 6 / math.pi * math.asin(r / 2)
    per_half = n_seeds // 2
    r_one = r_half / (per_half - (per_half - 1) * r_half)  # one seed's reliability
    r_tau_06 = math.sin(0.3 * math.pi)  # the Pearson r whose tau is 0.6 (normal data)
    return (f"Estimated ceiling against this ground truth (split halves' Pearson r {r_half:.2f}, stepped up to the "
            f"mean of all seeds by Spearman-Brown, as for normal data): an exact rating would reach about tau "
            f"{tau:.2f}, rho {rho:.2f}. By the same model (one seed's reliability {r_one:.2f}), a split-half tau of "
            f"0.6 takes about {2 * seeds_for(r_tau_06, r_one)} seeds and an estimated ceiling of tau 0.6 about "
            f"{seeds_for(r_tau_06 ** 2, r_one)}.")


def write_table(folder: Path, opts: dict, archs: list[Architecture], seeds: list[int],
                records: list[list[dict]]) -> None:
    """The ground truth as a tabular benchmark: `table.csv` (`index,arch,fashion_mnist`, the architecture as
    JSON, the mean over the seeds) and `table.json` (the input and classes its networks saw, the recipe), which
    `nas search --space S --benchmark folder/table.csv --dataset fashion_mnist` reads."""
    import csv

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "table.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "arch", "fashion_mnist"])
        for i, arch in enumerate(archs):
            writer.writerow([i, arch.to_json(), f"{sum(r[i]['accuracy'] for r in records) / len(records):.4f}"])
    meta = {"space": opts["space"], "preset": opts["preset"], "input": [1, opts["size"], opts["size"]],
            "classes": 10, "recipe": recipe(opts), "seeds": seeds,
            "commits": sorted({str(r[i].get("commit", "not recorded")) for r in records for i in range(len(archs))})}
    (folder / "table.json").write_text(json.dumps(meta, indent=1) + "\n")


def correlation_cells(predicted: Sequence[float], actual: Sequence[float]) -> str:
    """'tau [lo, hi] | rho [lo, hi]': Kendall tau and Spearman rho with 95% bootstrap intervals over the
    architectures."""
    cells = []
    for metric in (kendall_tau, spearman_rho):
        if len(predicted) < 3:
            cells.append(f"{metric(predicted, actual):.2f}")
            continue
        lo, hi = bootstrap_interval(metric, predicted, actual)
        cells.append(f"{metric(predicted, actual):.2f} [{lo:.2f}, {hi:.2f}]")
    return " | ".join(cells)


def rating_rows(result: dict, default_labels: dict[str, str]) -> list[tuple[str, list[float], str, str]]:
    """(row name, ratings, supernet seconds and commit) of one cached BossNAS / SPOS result."""
    labels = result.get("labels", default_labels)
    return [(labels[k], result[k], f"{result[f'{k}_seconds']:.0f} s" if f"{k}_seconds" in result else "",
             result.get("commit", "")) for k in ("boss", "spos") if k in result]


def variant_and_seed(name: str) -> tuple[str, int]:
    """A rating row's name without its supernet seed, and the seed (0 when the name has none: the default)."""
    found = re.search(r", supernet seed (\d+)\)$", name)
    return (name[:found.start()] + ")", int(found.group(1))) if found else (name, 0)


def seed_spread(rows: list[tuple[str, list[float], str, str]], truth: list[float]) -> list[str]:
    """Markdown lines: for each rating run with several supernet seeds, Kendall tau and Spearman rho as mean and
    standard deviation over the seeds (the supernet's run-to-run spread)."""
    import numpy as np

    groups: dict[str, dict[int, tuple[float, float]]] = {}
    for name, ratings, _, _ in rows:
        variant, seed = variant_and_seed(name)
        groups.setdefault(variant, {})[seed] = (kendall_tau(ratings, truth), spearman_rho(ratings, truth))

    def spread(values: list[float]) -> str:
        return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"

    lines = [f"| {variant} | {', '.join(map(str, sorted(by_seed)))} | {spread([t for t, _ in by_seed.values()])} | "
             f"{spread([r for _, r in by_seed.values()])} |" for variant, by_seed in groups.items() if len(by_seed) > 1]
    if not lines:
        return []
    return ["", "Over supernet seeds (mean ± standard deviation of the seeds' values):", "",
            "| rating | supernet seeds | Kendall tau | Spearman rho |", "|---|---|---|---|", *lines]


def write_report(args, out: Path, seeds, records, costs: dict[str, list[int]],  # noqa: ANN001
                 rated: dict, total_wall: float, noise: list[tuple[str, list[float], list[float]]],
                 others: list[dict]) -> None:
    from strategies.bossnas_rating import plot_ratings

    per_seed = [[r["accuracy"] for r in row] for row in records]
    truth = [sum(col) / len(col) for col in zip(*per_seed)]
    sa_seconds = [r["seconds"] for row in records for r in row]
    machines = sorted({r["machine"] for row in records for r in row} | ({rated["machine"]} if rated else set()))
    command = "python scripts/bench_bossnas_rating.py " + " ".join(sys.argv[1:])
    boss, spos = "boss" in rated, "spos" in rated
    labels = rating_label(vars(args))
    rows = sorted([*rating_rows(rated, labels), *(row for other in others for row in rating_rows(other, labels))],
                  key=lambda row: variant_and_seed(row[0]))
    rows += [("parameter count", costs["params"], "", ""), ("multiply-adds", costs["macs"], "", "")]
    times = {f"stand-alone trainings ({len(sa_seconds)}; sum of their seconds)": sum(sa_seconds),
             **rated.get("times", {}), "this invocation, wall clock (cached parts excluded)": total_wall}
    lines = [
        f"# {' and '.join(n for n, k in (('BossNAS', 'boss'), ('SPOS', 'spos')) if k in rated)} architecture-rating "
        "accuracy"
        f"{'' if args.supernet_seed is None else f' (supernet seed {args.supernet_seed})'}",
        "",
        f"Machine: {'; '.join(machines)}; {max(args.workers, 1)} stand-alone process(es)"
        f"{' + 1 for BossNAS/SPOS, all at once' if args.workers and rated else ''}, {args.threads} torch thread(s) "
        f"each. Command: `{command.strip()}`.",
        "",
        f"{len(truth)} random {args.space}-{args.preset} architectures (seed {args.seed}), Fashion-MNIST "
        f"({args.train} train / {args.val} validation images from the official test split, resized to "
        f"{args.size}x{args.size}). Stand-alone recipe: {args.epochs} epochs, SGD lr {args.lr} (cosine), batch "
        f"{args.batch}, augmentation {args.augment}, seeds {', '.join(map(str, seeds))}; ground truth = mean over "
        f"the seeds, {min(truth):.2f}-{max(truth):.2f}%.",
    ]
    if boss and args.boss_as_preset:
        changed = f" with {', '.join(args.boss_option)}" if args.boss_option else ""
        lines += ["", f"BossNAS: trained as its '{args.boss_budget}' preset says{changed} (`strategies/bossnas.py`), "
                  f"on the {args.size}x{args.size} training images; every architecture rated from its blocks' "
                  f"ratings (supernet training {rated['boss_seconds']:.0f} s)."]
    elif boss:
        changed = f" with {', '.join(args.boss_option)}" if args.boss_option else ""
        lines += ["", f"BossNAS: '{args.boss_budget}' preset{changed}, {args.boss_epochs} epochs per block on "
                  f"{args.boss_images or args.train} of the training images, batch {args.boss_batch}, at most "
                  f"{args.max_rated or 'all'} rated candidates per block and entry state, {args.rating_images} rating "
                  f"images (supernet training {rated['boss_seconds']:.0f} s)."]
    if spos:
        lines += ["", f"SPOS: the `spos` strategy's supernet (uniform single path over the whole space, the "
                  f"architectures' own heads, SGD lr 0.1 cosine, label smoothing 0.1, batch {args.boss_batch}) on "
                  f"{args.boss_images or args.train} of the training images for {rated['spos_budget']}; a rating is "
                  "the top-1 on the validation images with inherited weights, BN recalibrated on 256 training "
                  "images."]
    lines += ["", "Kendall tau and Spearman rho against the ground truth, with 95% bootstrap intervals over the "
              "architectures (2,000 resamples); a row per rating of these architectures on these images found in "
              "`--rating-cache` (this run's included).", "",
              "| rating | Kendall tau | Spearman rho | supernet training | commit |", "|---|---|---|---|---|",
              *([split_half_row(noise, len(seeds))] if noise else []),
              *[f"| {name} | {correlation_cells(ratings, truth)} | {sec} | {commit} |"
                for name, ratings, sec, commit in rows],
              *[f"| {name} | {tau} | {rho} | | |" for name, tau, rho in ANCHORS],
              "", truth_ceiling(noise, len(seeds)),
              *seed_spread(rows, truth),
              "", "| part | seconds |", "|---|---|", *[f"| {name} | {sec:.0f} |" for name, sec in times.items()], ""]
    if boss:
        lines += [f"BossNAS's chosen architecture: `{rated['chosen']}` (rating {rated['chosen_rating']:.4f}).", ""]
    head = "| # | params | MACs | " + " | ".join(f"top-1 seed {s}" for s in seeds) + " | ground truth |"
    head += (" BossNAS rating |" if boss else "") + (" SPOS accuracy |" if spos else "")
    lines += [head, "|" + "---|" * (4 + len(seeds) + boss + spos)]
    for i, (p, m) in enumerate(zip(costs["params"], costs["macs"])):
        cells = [f"{i}", f"{p / 1e6:.3f}M", f"{m / 1e6:.1f}M", *[f"{acc[i]:.2f}" for acc in per_seed],
                 f"{truth[i]:.2f}"]
        cells += [f"{rated['boss'][i]:.4f}"] if boss else []
        cells += [f"{rated['spos'][i]:.2f}"] if spos else []
        lines.append("| " + " | ".join(cells) + " |")
    if rated:
        plot = out.with_suffix(".png")
        name = "BossNAS" if boss else "SPOS"
        plot_ratings(rated["boss" if boss else "spos"], truth, str(plot),
                     title=f"{name} on {args.space}-{args.preset}, Fashion-MNIST {args.size}px")
        lines += ["", f"![ratings vs accuracy]({plot.name})"]
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
