"""The `nas` command line. Heavy packages (torch, optuna) are imported inside commands, so `nas --help`
answers at once."""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

TRAIN_FLAGS = ("epochs", "batch_size", "lr", "optimizer", "weight_decay", "device", "augment", "num_threads")
# the stored setting (dotted key) each `nas search` flag sets, where it is not the flag's own name
SETTING_OF = {"constraint": "constraints", "max_params": "constraints", "max_macs": "constraints",
              "latency_max": "constraints", "evaluator_option": "evaluator_options", "option": "options",
              "no_retrain": "retrain", "no_export": "export", "latency_precision": "latency",
              **{flag: f"train.{flag}" for flag in TRAIN_FLAGS}}


def _add_space_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", required=True, help="search space name (see `nas spaces`)")
    p.add_argument("--preset", default=None, help="space preset (see `nas spaces`); default: the space's own")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nas", description="Neural architecture search workbench.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    sub.add_parser("spaces", help="list search spaces, their presets and named architectures")
    sub.add_parser("strategies", help="list search strategies")

    s = sub.add_parser("search", help="run a search (or resume one) and write a run directory",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("--space", help="search space name (see `nas spaces`)")
    s.add_argument("--preset", default=None, help="space preset; default: the space's own")
    s.add_argument("--strategy", help="strategy name (see `nas strategies`)")
    s.add_argument("--budget", type=int, default=12, help="architectures to evaluate (sample-based strategies)")
    s.add_argument("--budget-preset", default="quick", choices=("quick", "standard", "paper"),
                   help="schedule preset of supernet strategies")
    s.add_argument("--objectives", default="accuracy",
                   help="comma-separated metrics, e.g. accuracy,macs (metric:minimize|maximize for others)")
    s.add_argument("--constraint", action="append", default=[], metavar="METRIC<=LIMIT",
                   help="constraint on a cost model's metric (checked before evaluating) or an evaluator's, e.g. "
                        "macs<=2e7 (repeatable)")
    s.add_argument("--max-params", type=float, default=None, help="constraint: at most this many parameters")
    s.add_argument("--max-macs", type=float, default=None, help="constraint: at most this many multiply-adds")
    s.add_argument("--latency-max", type=float, default=None, metavar="MS",
                   help="constraint: predicted (with --latency-table) or measured latency at most MS milliseconds")
    s.add_argument("--latency-table", default=None, metavar="TABLE",
                   help="latency table (`nas latency build`) the latency metric is predicted from; without one, "
                        "each proposal is measured end to end on this machine")
    s.add_argument("--latency-precision", default="fp32", choices=("fp32", "int8"),
                   help="without a table: measure FP32 or INT8 (ONNX Runtime static quantization) latency")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--dataset", default="digits",
                   help="digits | fashion_mnist | cifar10 | image_folder | npz | synthetic | mnist1d | "
                        "seq_fashion_mnist (the last two are (C, L) sequences); with --benchmark, "
                        "the table's dataset column (cifar10, cifar100, imagenet16_120)")
    s.add_argument("--data-path", default=None, help="folder or file of a file-based dataset")
    s.add_argument("--train-subset", type=int, default=None, help="use this many training images")
    s.add_argument("--evaluator", default=None,
                   help="train | tabular | predictor or a registered plug-in; None: tabular with --benchmark, "
                        "else train")
    s.add_argument("--evaluator-option", action="append", default=[], metavar="KEY=VALUE",
                   help="evaluator option, e.g. predictor=rf or samples=200 for the predictor evaluator (repeatable)")
    s.add_argument("--benchmark", default=None, help="tabular benchmark CSV: answer accuracies from the table")
    s.add_argument("--predictor-data", default=None, metavar="RUN_DIR|CSV",
                   help="predictor evaluator: fit on a run directory's measured accuracies or a benchmark CSV's rows")
    s.add_argument("--epochs", type=int, default=5, help="stand-alone training epochs per architecture")
    s.add_argument("--batch-size", type=int, default=128)
    s.add_argument("--lr", type=float, default=0.05)
    s.add_argument("--optimizer", default="sgd", choices=("sgd", "adamw"))
    s.add_argument("--weight-decay", type=float, default=4e-5)
    s.add_argument("--augment", default="auto", choices=("auto", "none", "shift", "shift+flip"))
    s.add_argument("--device", default="auto", help="auto | cpu | cuda")
    s.add_argument("--threads", dest="num_threads", type=int, default=0,
                   help="CPU threads for torch (default 0: the cores idle when a phase starts, or OMP_NUM_THREADS)")
    s.add_argument("--storage", default=None, help="Optuna storage URL (default: the run directory's SQLite file)")
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="strategy option, e.g. population_size=20 (repeatable)")
    s.add_argument("--run-dir", default=None, help="where to write the run (default: runs/SPACE-STRATEGY-TIME)")
    s.add_argument("--resume", default=None, metavar="RUN_DIR", help="resume a killed search from its run directory")
    s.add_argument("--no-retrain", action="store_true", help="supernet strategies: skip the stand-alone training")
    s.add_argument("--no-export", action="store_true", help="do not export the best model")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")

    i = sub.add_parser("inspect", help="parameters, multiply-adds and layers of one architecture")
    _add_space_args(i)
    i.add_argument("--arch", required=True, help="a named architecture or a JSON object of choices")
    i.add_argument("--resolution", type=int, default=None, help="input resolution (default: the architecture's)")
    i.add_argument("--classes", type=int, default=None, help="number of classes (default: the space's)")
    i.add_argument("--json", action="store_true", help="print JSON")

    e = sub.add_parser("export", help="export a run's best model, or any architecture, as PyTorch/TorchScript/ONNX")
    e.add_argument("run_dir", nargs="?", help="a run directory (its best architecture and trained weights)")
    e.add_argument("--space", default=None, help="with --arch: the space (instead of a run directory)")
    e.add_argument("--preset", default=None)
    e.add_argument("--arch", default=None, help="with --space: a named architecture or JSON (untrained weights)")
    e.add_argument("--classes", type=int, default=None)
    e.add_argument("--out", default=None, help="output folder (default: RUN_DIR/model)")
    e.add_argument("--formats", default="source,pt2,onnx",
                   help="comma-separated: source, pt2, onnx, torchscript (deprecated in torch; not a default), "
                        "int8 (a run's export: ONNX Runtime static quantization), streaming (sequence networks: "
                        "stream.py runs them token by token)")

    c = sub.add_parser("compress", help="compress a teacher network into a smaller student (N2N; resumable)",
                       description="N2N (Ashok et al., ICLR 2018): two stages of policy-gradient RL remove, then "
                                   "shrink the teacher's layers; students are trained by distillation and scored on "
                                   "images held out of the training split; the best one is exported.")
    c.add_argument("--teacher", help="a run directory of nas search, or a built-in teacher: vgg, resnet18, resnet10")
    c.add_argument("--strategy", default="n2n", help="n2n (policy gradient) or random (the same actions at random)")
    c.add_argument("--preset", default="quick", help="paper, quick (minutes on a CPU) or tiny")
    c.add_argument("--dataset", default=None, help="for a built-in teacher (default fashion_mnist)")
    c.add_argument("--data-path", default=None)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--size-limit", type=int, default=None, help="parameters a student may have (annealed penalty)")
    c.add_argument("--acc-limit", type=float, default=None, help="held-out accuracy (%%) a student must reach")
    c.add_argument("--distill", default="mse", help="mse (on logits, as N2N's code) or kl (temperature 4)")
    c.add_argument("--advantage", default="rollout", help="rollout (the paper's) or batch (the code's)")
    c.add_argument("--controller", default=None, help="policies.pt of an earlier compress run to start from")
    c.add_argument("--device", default="auto")
    c.add_argument("--threads", type=int, default=0, help="CPU threads (default: the idle cores)")
    c.add_argument("--removal-lr", type=float, default=0.003, help="Adam learning rate of the removal policy")
    c.add_argument("--shrink-lr", type=float, default=0.1, help="Adam learning rate of the shrink policy (the "
                   "code's 0.1 made it deterministic after one update in our quick runs)")
    c.add_argument("--fix-pools", action="store_true", help="shrink stage: keep max pooling as it is (ours; the code "
                   "scales its stride, which on 28x28 VGG students mostly exceeds the 50,000-feature linear limit)")
    c.add_argument("--run-dir", required=True)
    c.add_argument("--resume", action="store_true", help="continue the compression in --run-dir")
    c.add_argument("--no-progress", action="store_true")

    w = sub.add_parser("show", help="summarise a run directory")
    w.add_argument("run_dir")
    _add_latency_parser(sub)
    _add_plugin_args(sub)
    return parser


def _add_plugin_args(sub: Any) -> None:
    """`--plugin MODULE` on every command (the latency actions included)."""
    for command in sub.choices.values():
        nested = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        if nested:
            _add_plugin_args(nested[0])
            continue
        command.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                             help="import a module of your own first (a dotted name importable from the current "
                                  "directory, or a .py file), so the spaces and strategies it registers can be named "
                                  "(repeatable; also NAS_PLUGINS=mod1,mod2)")


def _add_latency_parser(sub: Any) -> None:
    lat = sub.add_parser("latency", help="build, validate and merge latency lookup tables")
    cmds = lat.add_subparsers(dest="latency_command", metavar="ACTION")
    cmds.required = True
    b = cmds.add_parser("build", help="measure every block configuration of a space into a table (resumable)",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_space_args(b)
    b.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    b.add_argument("--runtime", default=None, choices=("onnxruntime", "torch"),
                   help="default: onnxruntime on the CPU (what the ONNX export deploys on), torch on cuda")
    b.add_argument("--precision", default="fp32", choices=("fp32", "int8"))
    b.add_argument("--threads", type=int, default=1, help="intra-op threads while measuring")
    b.add_argument("--batch", type=int, default=1)
    b.add_argument("--resolution", type=int, default=None,
                   help="input resolution (restricts the space's resolution choice where it has one)")
    b.add_argument("--dataset", default=None,
                   help="take the input channels, size and classes from this dataset (as `nas search` would)")
    b.add_argument("--data-path", default=None)
    b.add_argument("--patience", type=int, default=200,
                   help="stop looking for block configurations after this many sampled architectures bring none")
    b.add_argument("--max-archs", type=int, default=5000, help="sample at most this many architectures")
    b.add_argument("--calibrate", type=int, default=24,
                   help="whole random models measured to fit the correction of the sum of blocks")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--out", required=True, metavar="TABLE", help="the table file (resumed or extended when it exists)")
    b.add_argument("--no-progress", action="store_true")
    v = cmds.add_parser("validate", help="measure random architectures end to end against the table's predictions",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    v.add_argument("--table", required=True)
    v.add_argument("--space", default=None, help="default: the space the table was built for (its last build)")
    v.add_argument("--preset", default=None)
    v.add_argument("--archs", type=int, default=100, help="random architectures to measure (twice each)")
    v.add_argument("--seed", type=int, default=1000, help="seed of the random architectures")
    v.add_argument("--out", default=None, help="folder for validate.json and validate.png (default: beside the table)")
    v.add_argument("--no-progress", action="store_true")
    m = cmds.add_parser("merge", help="merge tables measured under the same conditions on the same machine")
    m.add_argument("tables", nargs="+")
    m.add_argument("--out", required=True)


# -- commands ------------------------------------------------------------------------------------
def cmd_spaces(args: argparse.Namespace) -> None:
    from nas import registry

    for name in registry.names("spaces"):
        cls = registry.get("spaces", name)
        print(f"{name:12s} {_doc(cls)}")
        presets = cls.presets
        for preset in presets or (None,):
            space = cls(preset) if presets else cls()
            refs = ", ".join(space.reference_archs()) or "-"
            print(f"  preset {preset} ({space.describe()}): {refs}" if preset else f"  named: {refs}")


def _doc(obj: Any) -> str:
    lines = (obj.__doc__ or "").strip().splitlines()
    return lines[0] if lines else ""


def cmd_strategies(args: argparse.Namespace) -> None:
    from nas import registry
    from nas.strategy import SupernetStrategy

    for name in registry.names("strategies"):
        cls = registry.get("strategies", name)
        kind = "supernet" if issubclass(cls, SupernetStrategy) else "ask/tell"
        print(f"{name:12s} [{kind}] {cls.describe()}")


def _parse_options(items: list[str], what: str = "strategy") -> dict[str, Any]:
    from nas.space import NASError

    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise NASError(f"{what} option {item!r} is not KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _constraints(args: argparse.Namespace) -> dict[str, float]:
    """metric -> limit from --constraint, --max-params and --max-macs; the tightest limit per metric."""
    from nas.objectives import Constraint

    given = [Constraint.parse(text) for text in args.constraint]
    given += [Constraint(m, v) for m, v in (("params", args.max_params), ("macs", args.max_macs),
                                            ("latency", args.latency_max)) if v is not None]
    limits: dict[str, float] = {}
    for c in given:
        limits[c.metric] = min(c.limit, limits.get(c.metric, c.limit))
    return limits


def _settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    from nas.evaluate import evaluator_name
    from nas.space import NASError

    if not args.space or not args.strategy:
        raise NASError("nas search needs --space and --strategy (or --resume RUN_DIR)")
    if args.budget < 1:
        raise NASError(f"--budget {args.budget} must be at least 1")
    from nas.registry import split_space_name

    space, preset = split_space_name(args.space, args.preset)
    settings = {
        "space": space, "preset": preset, "strategy": args.strategy, "budget": args.budget,
        "budget_preset": args.budget_preset, "objectives": args.objectives, "seed": args.seed,
        "constraints": _constraints(args), "dataset": args.dataset, "data_path": args.data_path,
        "train_subset": args.train_subset, "benchmark": args.benchmark, "evaluator": args.evaluator,
        "evaluator_options": _parse_options(args.evaluator_option, "evaluator"), "predictor_data": args.predictor_data,
        "train": {k: getattr(args, k) for k in TRAIN_FLAGS}, "storage": args.storage,
        "options": _parse_options(args.option), "retrain": not args.no_retrain, "export": not args.no_export,
        "latency_table": args.latency_table, "latency": {"precision": args.latency_precision},
    }
    settings["evaluator"] = evaluator_name(settings)
    return settings


def _given_flags(argv: list[str]) -> set[str]:
    """The `nas search` options `argv` gives explicitly (their dests), whatever their values."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for action in sub.choices["search"]._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv))) - {"command"}


def _given_settings(args: argparse.Namespace, stored: dict[str, Any]) -> dict[str, Any]:
    """The settings (dotted keys) the flags given beside --resume set, as a new search would store them."""
    from nas.space import NASError

    given = _given_flags(args.argv) - {"resume", "no_progress", "plugin"}
    if "run_dir" in given:
        raise NASError("--run-dir and --resume both name the run folder; give only --resume RUN_DIR")
    filled = argparse.Namespace(**{**vars(args), "space": args.space or stored["space"],
                                   "strategy": args.strategy or stored["strategy"]})
    fresh = _settings_from_args(filled)
    values = {}
    for key in sorted({SETTING_OF.get(dest, dest) for dest in given}):
        head, _, rest = key.partition(".")
        values[key] = fresh[head][rest] if rest else fresh[key]
    return values


def cmd_search(args: argparse.Namespace) -> None:
    """Start a search into a new run folder, or resume one (`RunDir.resume_settings`: given flags that differ are
    taken or refused), holding the folder's lock throughout."""
    from nas.runs import RunDir
    from nas.session import execute
    from nas.space import NASError

    if args.resume:
        run = RunDir.open(args.resume)
    else:
        settings = _settings_from_args(args)
        from nas import registry

        registry.get("spaces", settings["space"])  # fail early on unknown names
        registry.get("strategies", settings["strategy"])
        registry.get("evaluators", settings["evaluator"])
        run = RunDir(args.run_dir or f"runs/{settings['space']}-{settings['strategy']}-"
                                     f"{time.strftime('%Y%m%d-%H%M%S')}")
    created = False
    try:
        with run.locked():
            if args.resume:
                settings, note = run.resume_settings(_given_settings(args, run.settings()))
                print(note)
            else:
                run.start({"space": settings["space"], "strategy": settings["strategy"], "seed": settings["seed"],
                           "settings": settings, "command": " ".join(sys.argv)})
                created = True
            print(execute(run, settings, progress=not args.no_progress))
    except NASError:
        if created:  # a run that failed before evaluating anything leaves no directory behind
            run.discard_unstarted()
        raise


def cmd_inspect(args: argparse.Namespace) -> None:
    from nas import registry
    from nas.ops import ShapeError
    from nas.space import NASError

    for flag, value in (("--resolution", args.resolution), ("--classes", args.classes)):
        if value is not None and value < 1:
            raise NASError(f"{flag} {value} must be at least 1")
    named = None if args.arch.lstrip().startswith("{") else args.arch
    space = registry.make_space(args.space, args.preset, named)
    arch = space.resolve(args.arch)
    shape = space.input_shape_for(arch, space.default_input)
    if args.resolution:
        shape = (shape[0],) + (args.resolution,) * (len(shape) - 1)
    try:
        graph = space.graph(arch, shape, args.classes or space.default_classes)
    except ShapeError as err:
        raise NASError(f"input {shape} does not fit this architecture: {err}") from None
    report = {"space": space.name, "preset": space.preset, "arch": dict(arch),
              "input_shape": list(graph.input_shape), "num_classes": graph.output_shape[-1],
              "params": graph.params(), "macs": graph.macs(), "layers": sum(1 for _ in graph.layers()),
              "groups": graph.group_costs()}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"space {report['space']}" + (f" (preset {report['preset']})" if report["preset"] else ""))
    print(f"input {tuple(report['input_shape'])}, {report['num_classes']} classes")
    print(f"parameters    {report['params']:,}")
    print(f"multiply-adds {report['macs']:,}")
    print(f"{'group':<22}{'layers':>7}{'params':>14}{'MACs':>16}")
    for group, cost in report["groups"].items():
        print(f"{group:<22}{cost['layers']:>7}{cost['params']:>14,}{cost['macs']:>16,}")


def cmd_export(args: argparse.Namespace) -> None:
    from nas.session import export_architecture, export_run
    from nas.space import NASError

    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    from nas.export import FORMATS

    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise NASError(f"export format {bad[0] if bad else args.formats!r} is not one of {', '.join(FORMATS)}")
    from nas.data.loaders import MAX_CLASSES

    if args.classes is not None and not 1 <= args.classes <= MAX_CLASSES:  # the classifier is built in memory
        raise NASError(f"--classes {args.classes} must be from 1 to {MAX_CLASSES:,}")
    if args.run_dir:
        written = export_run(args.run_dir, args.out, formats)
    elif args.space and args.arch and args.out:
        written = export_architecture(args.space, args.preset, args.arch, args.classes, args.out, formats)
    else:
        raise NASError("nas export needs a RUN_DIR, or --space, --arch and --out")
    for kind, path in written.items():
        print(f"{kind:12s} {path}")


def cmd_compress(args: argparse.Namespace) -> None:
    from strategies.n2n import Settings, compress

    if args.resume:
        settings = None
    elif not args.teacher:
        from nas.space import NASError

        raise NASError("nas compress needs --teacher (a run directory of nas search, vgg, resnet18 or resnet10), "
                       "or --resume")
    else:
        settings = Settings(args.teacher, args.strategy, args.preset, args.dataset, args.data_path, args.seed,
                            args.size_limit, args.acc_limit, args.distill, args.advantage, args.controller,
                            args.device, args.threads, args.removal_lr, args.shrink_lr, args.fix_pools)
    print(compress(settings, args.run_dir, args.resume, not args.no_progress))


def cmd_show(args: argparse.Namespace) -> None:
    from nas.session import show_run

    print(show_run(args.run_dir))


def cmd_latency(args: argparse.Namespace) -> None:
    from nas import latency_cli

    {"build": latency_cli.build, "validate": latency_cli.validate, "merge": latency_cli.merge}[
        args.latency_command](args)


COMMANDS = {"spaces": cmd_spaces, "strategies": cmd_strategies, "search": cmd_search, "inspect": cmd_inspect,
            "export": cmd_export, "compress": cmd_compress, "show": cmd_show,
            "latency": cmd_latency}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)  # what was given, for `nas search --resume`
    from nas.space import NASError

    try:
        from nas.registry import load_plugins, plugins_from_env

        load_plugins(plugins_from_env() + args.plugin)  # before anything is looked up
        COMMANDS[args.command](args)
    except NASError as err:
        print(f"nas: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into a reader that stopped early (`nas spaces | head`)
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("nas: interrupted; resume with `nas search --resume RUN_DIR`", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
