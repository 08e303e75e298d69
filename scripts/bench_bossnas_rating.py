"""Architecture-rating accuracy of BossNAS on real data, next to a supervised one-shot supernet (SPOS) and size.

Trains `--archs` random HyTra-small architectures stand-alone on a Fashion-MNIST subset (a short fixed
recipe), rates the same architectures with BossNAS (the "quick" preset scaled by the options below) and with
SPOS (Guo et al. 2020: the same `BlockSupernet` plus global pool and a linear head, uniform single-path
sampling over complete architectures, cross-entropy, SGD; given the same wall-clock seconds as BossNAS's
supernet training; an architecture's rating is its validation accuracy with inherited weights after BN
recalibration), and by parameter count; prints Kendall tau and Spearman rho of each rating against the
stand-alone accuracies and writes `benchmarks/bossnas_rating.md` with a scatter plot.

    python scripts/bench_bossnas_rating.py            # the full run (~30-45 min on a busy 2-core CPU)
    python scripts/bench_bossnas_rating.py --archs 3 --train 256 --val 128 --epochs 1 --out /tmp/x.md  # smoke
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.data import TensorData, load_dataset  # noqa: E402
from nas.registry import make_space  # noqa: E402
from nas.strategy import SearchContext  # noqa: E402
from nas.supernet import BlockSupernet  # noqa: E402
from nas.train import TrainConfig, resize_inputs, train_and_evaluate  # noqa: E402
from strategies.bossnas import BossNAS  # noqa: E402
from strategies.bossnas_parts import BNRecalibration  # noqa: E402
from strategies.bossnas_rating import plot_ratings, random_paths  # noqa: E402

ANCHORS = [("BossNAS, MBConv space / ImageNet (paper)", "0.65", "0.78"),
           ("BossNAS, NATS-Bench size space / CIFAR-10 (paper)", "0.53", "0.73"),
           ("SPOS, MBConv space / ImageNet (paper's table)", "-0.18", "-0.27")]


class SPOSNet(nn.Module):
    """A block supernet with a classifier: global average pool and a linear layer per output width."""

    def __init__(self, supernet: BlockSupernet, num_classes: int) -> None:
        super().__init__()
        self.supernet = supernet
        last = supernet.num_blocks - 1
        widths = set()
        entries = [supernet.initial_state()]
        for block in range(supernet.num_blocks):
            nxt = {}
            for e in entries:
                for p in supernet.candidates(block, e):
                    nxt[repr(supernet.exit_state(block, p, e))] = supernet.exit_state(block, p, e)
                    if block == last:
                        widths.add(supernet.output_shape(block, p, e)[0])
            entries = list(nxt.values())
        self.heads = nn.ModuleDict({str(w): nn.Linear(w, num_classes) for w in sorted(widths)})

    def forward(self, x: torch.Tensor, paths) -> torch.Tensor:  # noqa: ANN001
        h = self.supernet.forward_paths(x, paths).mean((2, 3))
        return self.heads[str(h.shape[1])](h)


def train_spos(net: SPOSNet, x: torch.Tensor, y: torch.Tensor, seconds: float, batch: int, lr: float,
               seed: int) -> int:
    """Uniform single-path training for `seconds` of wall-clock; returns the steps taken."""
    rng, g = random.Random(seed), torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=4e-5)
    start, steps = time.perf_counter(), 0
    net.train()
    while time.perf_counter() - start < seconds:
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x) - 1, batch):
            if time.perf_counter() - start >= seconds:
                break
            idx = order[i:i + batch]
            paths = random_paths(net.supernet, rng)
            loss = F.cross_entropy(net(x[idx], paths), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
    return steps


@torch.no_grad()
def spos_accuracy(net: SPOSNet, paths, x_bn: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:  # noqa: ANN001
    with BNRecalibration(net):
        net(x_bn, paths)
    net.eval()
    return 100.0 * (net(x, paths).argmax(1) == y).float().mean().item()


def standalone_key(args: argparse.Namespace, seed: int, arch) -> str:  # noqa: ANN001
    return f"{args.train}/{args.val}/{args.size}px/{args.epochs}ep/seed{seed} {arch.to_json()}"


def standalone(args: argparse.Namespace, seed: int, archs, params, space, shape, data, cache: dict,  # noqa: ANN001
               cache_file: Path | None) -> list[float]:
    """Stand-alone top-1 of every architecture with the fixed recipe and `seed` (from the cache when there)."""
    accs = []
    for i, arch in enumerate(archs):
        key = standalone_key(args, seed, arch)
        if key in cache:
            accs.append(cache[key])
            continue
        torch.manual_seed(seed)
        model = space.build(arch, shape, data.num_classes)
        res = train_and_evaluate(model, data, TrainConfig(epochs=args.epochs, batch_size=128, lr=0.1,
                                                          warmup_epochs=0.3, augment="none", seed=seed,
                                                          num_threads=args.threads))
        accs.append(res.accuracy)
        if cache_file:
            cache[key] = res.accuracy
            cache_file.write_text(json.dumps(cache, indent=1))
        print(f"arch {i + 1}/{len(archs)} (seed {seed}): {res.accuracy:.2f}% ({params[i] / 1e6:.3f}M params, "
              f"{res.seconds:.0f}s)", flush=True)
    return accs


def write_noise(args: argparse.Namespace, archs, params, accs, space, shape, data, cache: dict,  # noqa: ANN001
                cache_file: Path | None, out: Path) -> None:
    """The ground truth's own rank stability: the same recipe with another seed."""
    if args.noise_seed is None:
        return
    t = time.perf_counter()
    again = standalone(args, args.noise_seed, archs, params, space, shape, data, cache, cache_file)
    tau, rho = kendall_spearman(again, accs)
    text = "\n".join([
        "# Stand-alone ranking noise (the ceiling of any rating)",
        "",
        f"Command: `python {' '.join(sys.argv)}` ({time.perf_counter() - t:.0f} s, 1 thread on the busy 2-core "
        "machine).",
        "",
        f"{len(archs)} {args.space}-{args.preset} architectures, {args.train} / {args.val} Fashion-MNIST images at "
        f"{args.size}x{args.size}, {args.epochs} epochs: seed {args.noise_seed} against seed {args.seed}: Kendall tau "
        f"{tau:.2f}, Spearman rho {rho:.2f}; accuracies {min(accs):.1f}-{max(accs):.1f}% (seed {args.seed}), "
        f"{min(again):.1f}-{max(again):.1f}% (seed {args.noise_seed}).",
        ""])
    out.write_text(text)
    print(text)


def kendall_spearman(a, b) -> tuple[float, float]:  # noqa: ANN001
    from scipy.stats import kendalltau, spearmanr

    return float(kendalltau(a, b)[0]), float(spearmanr(a, b)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="hytra")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--archs", type=int, default=20)
    ap.add_argument("--train", type=int, default=2000, help="training images (Fashion-MNIST subset)")
    ap.add_argument("--val", type=int, default=1000, help="validation images")
    ap.add_argument("--size", type=int, default=8, help="input side (images resized; hytra needs a multiple of 8)")
    ap.add_argument("--epochs", type=int, default=3, help="stand-alone epochs")
    ap.add_argument("--boss-epochs", type=float, default=2.0, help="BossNAS epochs per block")
    ap.add_argument("--max-rated", type=int, default=12, help="rated candidates per block and entry state")
    ap.add_argument("--rating-images", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is far faster than 2 on a busy 2-core machine)")
    ap.add_argument("--standalone-cache", default=None,
                    help="JSON of stand-alone accuracies by architecture, read and extended (reruns skip training)")
    ap.add_argument("--noise-seed", type=int, default=None,
                    help="with --standalone-only: retrain with this seed and rank-correlate the two seeds")
    ap.add_argument("--standalone-only", action="store_true",
                    help="only the stand-alone accuracies (the noise ceiling of the ground truth with --noise-seed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/bossnas_rating.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    times: dict[str, float] = {}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    space = make_space(args.space, args.preset)
    full = load_dataset("fashion_mnist").subset(args.train, args.val, seed=args.seed)
    shape = (full.sample_shape[0], args.size, args.size)
    data = TensorData(full.name, resize_inputs(full.x_train, shape), full.y_train, resize_inputs(full.x_val, shape),
                      full.y_val, full.num_classes)
    rng = random.Random(args.seed)
    archs = []
    while len(archs) < args.archs:
        arch = space.sample(rng)
        if arch not in archs:
            archs.append(arch)
    params = [space.graph(a, shape, data.num_classes).params() for a in archs]

    # 1. stand-alone accuracies
    t = time.perf_counter()
    cache_file = Path(args.standalone_cache) if args.standalone_cache else None
    cache = json.loads(cache_file.read_text()) if cache_file and cache_file.exists() else {}
    cached = sum(standalone_key(args, args.seed, a) in cache for a in archs)
    accs = standalone(args, args.seed, archs, params, space, shape, data, cache, cache_file)
    times["stand-alone training" + (f" ({cached} cached from an earlier run)" if cached else "")] = \
        time.perf_counter() - t
    if args.standalone_only:
        write_noise(args, archs, params, accs, space, shape, data, cache, cache_file, out)
        return

    # 2. BossNAS
    t = time.perf_counter()
    options = dict(input_size=args.size, train_images=args.train, epochs_per_block=args.boss_epochs,
                   batch_size=64, max_rated=args.max_rated, rating_images=args.rating_images, bn_images=128,
                   search="enumerate")
    strategy = BossNAS([], seed=args.seed, **options)
    with tempfile.TemporaryDirectory() as tmp:
        context = SearchContext(space=space, data=data, objectives=[], seed=args.seed, budget="quick",
                                checkpoint_dir=Path(tmp), record=lambda *a: None, progress=False)
        outcome = strategy.search(context)
        times["BossNAS supernet training + block ratings"] = time.perf_counter() - t
        boss_train_seconds = sum(strategy.train_seconds)
        t = time.perf_counter()
        boss = strategy.rate(archs)
        times["BossNAS rating of the architectures"] = time.perf_counter() - t

    # 3. SPOS on the same wall-clock training budget
    t = time.perf_counter()
    torch.manual_seed(args.seed)
    spos = SPOSNet(space.block_supernet(shape, data.num_classes), data.num_classes)
    steps = train_spos(spos, data.x_train, data.y_train, boss_train_seconds, 64, 0.1, args.seed)
    x_bn = data.x_train[:256]
    spos_acc = [spos_accuracy(spos, spos.supernet.paths_of(a), x_bn, data.x_val, data.y_val) for a in archs]
    times["SPOS training + rating"] = time.perf_counter() - t

    rows = [("BossNAS (ensemble bootstrapping, this run)", *kendall_spearman(boss, accs)),
            (f"SPOS supernet, {steps} steps, same seconds (this run)", *kendall_spearman(spos_acc, accs)),
            ("parameter count (this run)", *kendall_spearman(params, accs))]
    plot = out.with_suffix(".png")
    plot_ratings(boss, accs, str(plot), title=f"BossNAS on {args.space}-{args.preset}, Fashion-MNIST {args.size}px")
    lines = [
        "# BossNAS architecture-rating accuracy",
        "",
        f"Machine: {platform.machine()} CPU, {torch.get_num_threads()} threads (2-core machine shared with other "
        f"jobs), torch {torch.__version__}. Command: `python {' '.join(sys.argv)}`.",
        "",
        f"{len(archs)} random {args.space}-{args.preset} architectures, Fashion-MNIST subset ({args.train} train / "
        f"{args.val} val images, resized to {args.size}x{args.size}). Stand-alone: {args.epochs} epochs, SGD "
        f"lr 0.1, batch 128, no augmentation; accuracies {min(accs):.1f}-{max(accs):.1f}%. BossNAS: 'quick' preset "
        f"with {args.boss_epochs} epochs per block on the {args.train} images, batch 64, 4 paths, at most {args.max_rated} "
        f"rated candidates per block and entry state, {args.rating_images} rating images. SPOS: uniform single path, SGD lr 0.1, batch 64, "
        f"for the seconds BossNAS trained ({boss_train_seconds:.0f} s), BN recalibrated on 256 images per rating.",
        "",
        "| rating | Kendall tau | Spearman rho |",
        "|---|---|---|",
        *[f"| {name} | {tau:.2f} | {rho:.2f} |" for name, tau, rho in rows],
        *[f"| {name} | {tau} | {rho} |" for name, tau, rho in ANCHORS],
        "",
        "| part | seconds |",
        "|---|---|",
        *[f"| {name} | {sec:.0f} |" for name, sec in times.items()],
        "",
        f"BossNAS's chosen architecture: `{outcome.arch.to_json()}` (rating {outcome.metrics['rating']:.4f}).",
        "",
        "| # | params | stand-alone top-1 | BossNAS rating | SPOS accuracy |",
        "|---|---|---|---|---|",
        *[f"| {i} | {p / 1e6:.3f}M | {a:.2f} | {b:.4f} | {s:.2f} |"
          for i, (p, a, b, s) in enumerate(zip(params, accs, boss, spos_acc))],
        "",
        f"![ratings vs accuracy]({plot.name})",
    ]
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
