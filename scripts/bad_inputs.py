"""Re-run a table of bad-input cases against the `nas` command line (and a few against `nas.api`) and classify each
result, then write benchmarks/bad_inputs.md.

What must hold (issue 18): every bad input gives a one-line error naming the bad value and what is accepted, with
exit status 2, before any training starts, and nothing is written outside the run or output folder it names.

Classes of a result:
    clean      exit 2, no traceback, one error line (<= 300 chars) naming what the case says it must name
    ok         a case expected to succeed did, and its check passed
    messy      exit 2 without a traceback, but the error is several lines, too long, or does not name the value
    traceback  'Traceback' in the output, or an exit status other than 0 and 2
    silent     exit 0 where an error was expected, or an expected success that did the wrong thing
    refused    exit 2 where success was expected
    stray      the command wrote, changed or deleted files outside the folders the case allows
    leftover   an error that left behind the run or output folder it names (CLI errors leave none)
    hang       no answer within the case's time limit
    skipped    the case cannot run here (root bypasses permissions, the benchmark table is absent)

Each case runs `python -m nas.cli ...` (or `python -c` for the API) in a fresh temporary folder as its working
directory; two workers run cases side by side. The report is the output: the exit status is 0 whatever the cases
found.

    python scripts/bad_inputs.py                       # all cases -> benchmarks/bad_inputs.md
    python scripts/bad_inputs.py --only 'resume|show'  # a regular expression on case ids
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO.parent / "shared/benchmarks/nasbench201/nats_tss_test_accuracy_200ep.csv"
NB201_ARCH = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
MAX_LINE = 300
CLASSES = ("clean", "ok", "messy", "traceback", "silent", "refused", "stray", "leftover", "hang", "skipped")
FAILING = ("messy", "traceback", "silent", "refused", "stray", "leftover", "hang")

Setup = Callable[[Path], None]


@dataclass
class Result:
    """What one command did."""

    code: int | None  # None: killed after the time limit
    stdout: str
    stderr: str
    seconds: float
    changed: list[str] = field(default_factory=list)  # paths outside the writable and named folders that changed
    left: list[str] = field(default_factory=list)  # paths under the named folders (not writable) that changed


Check = Callable[[Path, Result], "str | None"]  # a reason when the command did the wrong thing, else None


@dataclass
class Case:
    """One bad input. `argv` follows `nas` (or, with `api`, is the Python source `python -c` runs); `expect` is
    "error" (a clean exit-2 error), "ok" (success; `check` must pass) or "either" (debatable: both count);
    `must_mention`: texts the error line must contain (case-insensitive); `writable`: paths the command may create
    or change; `named`: the folders the command names (a change there that `writable` does not allow is a
    leftover, anywhere else stray); `needs`: "table" (the NAS-Bench-201 CSV) or "nonroot" (file permissions
    hold)."""

    id: str
    argv: tuple[str, ...]
    expect: str = "error"
    must_mention: tuple[str, ...] = ()
    setup: Setup | None = None
    check: Check | None = None
    writable: tuple[str, ...] = ()
    named: tuple[str, ...] = ("run", "out")
    env: tuple[tuple[str, str], ...] = ()
    api: bool = False
    needs: tuple[str, ...] = ()
    note: str = ""
    timeout: float = 150.0
    shown: str = ""  # how the report shows the command (default: `nas ARGV`)


@dataclass
class Outcome:
    case: Case
    cls: str
    result: Result | None
    why: str = ""


# -- setup helpers -------------------------------------------------------------------------------------------------
FIXTURES: dict[str, Path] = {}  # name -> a finished run folder, built once (`build_fixtures`) and copied per case


def files(**contents: bytes | str) -> Setup:
    """Write files (names with '__' for '/', '_DOT_' for '.') in the case folder."""
    def setup(tmp: Path) -> None:
        for name, data in contents.items():
            path = tmp / name.replace("__", "/").replace("_DOT_", ".")
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, str):
                path.write_text(data)
            else:
                path.write_bytes(data)
    return setup


def write(path: str, data: bytes | str) -> Setup:
    """Write one file at `path` (relative to the case folder)."""
    def setup(tmp: Path) -> None:
        target = tmp / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.encode() if isinstance(data, str) else data)
    return setup


def mkdir(path: str, mode: int | None = None) -> Setup:
    def setup(tmp: Path) -> None:
        (tmp / path).mkdir(parents=True, exist_ok=True)
        if mode is not None:
            (tmp / path).chmod(mode)
    return setup


def chain(*setups: Setup) -> Setup:
    def setup(tmp: Path) -> None:
        for step in setups:
            step(tmp)
    return setup


def npz(**arrays: object) -> Setup:
    """data.npz holding `arrays` (numpy is imported here, in the harness, only when a case needs it)."""
    def setup(tmp: Path) -> None:
        import numpy as np

        payload: dict[str, Any] = {k: np.asarray(v) for k, v in arrays.items()}
        np.savez(tmp / "data.npz", **payload)
    return setup


def npy_as_npz(tmp: Path) -> None:
    import numpy as np

    with open(tmp / "data.npz", "wb") as handle:
        np.save(handle, np.zeros((4, 4, 4)))


def garbage(path: str, size: int = 4096, seed: int = 1) -> Setup:
    """Reproducible binary garbage (with NULs, high bytes and newlines) at `path`."""
    import random

    data = bytes(random.Random(seed).randrange(256) for _ in range(size))
    return write(path, data)


def run_copy(fixture: str, **edits: bytes | str | None) -> Setup:
    """Copy fixture run `fixture` to ./run, then overwrite (bytes/str) or delete (None) files in it."""
    def setup(tmp: Path) -> None:
        shutil.copytree(FIXTURES[fixture], tmp / "run")
        for name, data in edits.items():
            path = tmp / "run" / name.replace("_DOT_", ".")
            if data is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(data.encode() if isinstance(data, str) else data)
    return setup


def edit_config(fixture: str, change: Callable[[dict], dict]) -> Setup:
    """A copy of fixture run `fixture` whose config.json is `change(config)`."""
    def setup(tmp: Path) -> None:
        run_copy(fixture)(tmp)
        config = json.loads((tmp / "run/config.json").read_text())
        (tmp / "run/config.json").write_text(json.dumps(change(config)))
    return setup


def torch_weights(kind: str) -> Setup:
    """Replace ./run/best_weights.pt (a copy of the trained fixture) with weights of the wrong kind:
    "reshaped" (the same keys, one tensor of another shape), "other" (a Linear layer's state dict) or
    "pickle" (a pickle whose __reduce__ would create ./PWNED when unpickled)."""
    def setup(tmp: Path) -> None:
        import torch

        run_copy("trained")(tmp)
        file = tmp / "run/best_weights.pt"
        if kind == "reshaped":
            state = torch.load(file, weights_only=True)
            key = next(k for k, v in state.items() if v.dim() == 4)
            state[key] = torch.zeros(*(n + 1 for n in state[key].shape))
        elif kind == "other":
            state = torch.nn.Linear(3, 2).state_dict()
        else:
            state = {"weight": _Evil(str(tmp / "PWNED"))}
        torch.save(state, file)
    return setup


class _Evil:
    """Unpickling this calls open(path, "w"): a malicious weights file's payload."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (open, (self.path, "w"))


def chmod_back(tmp: Path) -> None:
    """Give every folder back its write permission (a case made one read-only), so it can be deleted."""
    for path in [tmp, *tmp.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)


# -- checks of expected successes ----------------------------------------------------------------------------------
def exists(path: str) -> Check:
    def check(tmp: Path, result: Result) -> str | None:
        return None if (tmp / path).exists() else f"{path} was not written"
    return check


def says(*texts: str) -> Check:
    def check(tmp: Path, result: Result) -> str | None:
        out = (result.stdout + result.stderr).lower()
        missing = [t for t in texts if t.lower() not in out]
        return f"output does not mention {missing}" if missing else None
    return check


def both(*checks: Check) -> Check:
    def check(tmp: Path, result: Result) -> str | None:
        return next((why for c in checks if (why := c(tmp, result))), None)
    return check


def no_marker(tmp: Path, result: Result) -> str | None:
    return "the pickle's payload ran: PWNED was created" if (tmp / "PWNED").exists() else None


# -- the cases -----------------------------------------------------------------------------------------------------
def search(strategy: str = "random", *extra: str, run_dir: str = "run") -> tuple[str, ...]:
    return ("search", "--space", "nb201", "--strategy", strategy, *extra, "--run-dir", run_dir, "--no-progress",
            "--no-export")


def tab(*extra: str, benchmark: str = str(TABLE), dataset: str = "cifar10", strategy: str = "random",
        run_dir: str = "run") -> tuple[str, ...]:
    """A search answered from the NAS-Bench-201 table (no training), budget 2."""
    return search(strategy, "--budget", "2", "--benchmark", benchmark, "--dataset", dataset, *extra, run_dir=run_dir)


def train(*extra: str, subset: str | None = "32", run_dir: str = "run") -> tuple[str, ...]:
    """A search that trains one architecture one epoch on digits (seconds) if a bad value gets through."""
    return search("random", "--budget", "1", "--epochs", "1", *(("--train-subset", subset) if subset else ()),
                  *extra, run_dir=run_dir)


TAB = tab()
TRAIN = train()
EVO = tab(strategy="evolution")
NPZ = train("--dataset", "npz", "--data-path", "data.npz", subset=None)
EXPORT_ARCH = ("export", "--space", "nb201", "--arch", NB201_ARCH, "--formats", "source")
MBCONV = ("inspect", "--space", "mbconv", "--arch")
MBCONV_SMALL = ('{"resolution":32,"width_mult":1.0,"s1_depth":%s,"s2_depth":1,"s3_depth":1,"s4_depth":1,'
                '"s1_l0_k":3,"s1_l0_e":3,"s2_l0_k":3,"s2_l0_e":3,"s3_l0_k":3,"s3_l0_e":3,"s4_l0_k":3,"s4_l0_e":3}')
BUILD = ("latency", "build", "--space", "nb201", "--out", "table.json", "--max-archs", "2", "--calibrate", "0",
         "--patience", "1", "--no-progress")
HUGE = "x" * 120_000
TINY_PLUGIN = textwrap.dedent('''
    from nas.graph import GraphBuilder
    from nas.layers import conv_bn_act
    from nas.ops import Flatten, GlobalAvgPool, Linear
    from nas.registry import register_space
    from nas.space import Choice, SearchSpace


    @register_space("tiny_bad_inputs")
    class Tiny(SearchSpace):
        """One conv layer of width 4 or 8: two architectures."""

        name = "tiny_bad_inputs"
        default_input = (1, 8, 8)
        default_classes = 10

        def choices(self):
            return [Choice("width", (4, 8), "ordinal")]

        def graph(self, arch, input_shape=None, num_classes=None):
            g = GraphBuilder(input_shape or self.default_input)
            x = conv_bn_act(g, "layer0", g.input, arch["width"], 3)
            x = g.add("flatten", Flatten(), g.add("pool", GlobalAvgPool(), x))
            return g.finish(g.add("fc", Linear(g.shape(x)[0], num_classes or self.default_classes), x))
''')
RECORD = {"index": 0, "arch": {"edge_1_0": "nor_conv_3x3", "edge_2_0": "none", "edge_2_1": "skip_connect",
                               "edge_3_0": "avg_pool_3x3", "edge_3_1": "nor_conv_1x1", "edge_3_2": "none"},
          "metrics": {"accuracy": 80.0}, "seconds": 0.1, "info": {}}
GARBAGE_HISTORY = bytes(range(256)) * 8  # NULs, newlines, invalid UTF-8
WRONG_SHAPE_HISTORY = b'[1, 2, 3]\n{"index": "zero", "arch": [], "metrics": "high"}\n'


def flag_cases(base: tuple[str, ...], flag: str, values: dict[str, str], needs: tuple[str, ...] = (),
               prefix: str = "search") -> list[Case]:
    """One error case per bad value of `flag` on top of `base`; each must name its value."""
    name = flag.lstrip("-")
    return [Case(f"{prefix}-{name}-{label}", base + (flag, value), must_mention=(value,), needs=needs)
            for label, value in values.items()]


NUMBER = {"neg": "-1", "zero": "0", "nan": "nan", "inf": "inf", "text": "abc"}


def search_cases() -> list[Case]:
    """`nas search`: every numeric flag, choice flag and path flag."""
    t = ("table",)
    cases = [
        *flag_cases(TAB, "--budget", {"zero": "0", "neg": "-1", "text": "abc", "float": "1.5"}, t),
        *flag_cases(TRAIN, "--epochs", {"zero": "0", "neg": "-1", "text": "abc"}),
        *flag_cases(TRAIN, "--batch-size", {"zero": "0", "neg": "-4", "text": "abc"}),
        *flag_cases(TRAIN, "--lr", {"neg": "-5", "zero": "0", "nan": "nan", "inf": "inf", "text": "abc"}),
        *flag_cases(TRAIN, "--weight-decay", {"neg": "-1", "nan": "nan", "inf": "inf", "text": "abc"}),
        *flag_cases(TRAIN, "--threads", {"neg": "-2", "huge": "1000000", "text": "abc"}),
        Case("search-threads-zero", TRAIN + ("--threads", "0"), "ok", check=exists("run/best.json"),
             writable=("run",), note="0 is the documented default (automatic), so accepted"),
        *flag_cases(TAB, "--seed", {"neg": "-1", "text": "abc"}, t),
        Case("search-seed-huge", TAB + ("--seed", str(2**70)), "either", (str(2**70),), needs=t, writable=("run",),
             check=exists("run/best.json"), note="debatable: a seed above 2**64 can work or be refused"),
        *flag_cases(TRAIN, "--train-subset", {"zero": "0", "neg": "-5", "text": "abc"}),
        Case("search-train-subset-huge", TRAIN + ("--train-subset", "10000000"), "either", ("10000000",),
             writable=("run",), check=exists("run/best.json"),
             note="debatable: more than the dataset holds could mean all images"),
        *flag_cases(TAB, "--max-params", {k: NUMBER[k] for k in ("neg", "zero", "nan", "inf", "text")}, t),
        *flag_cases(TAB, "--max-macs", {k: NUMBER[k] for k in ("neg", "nan", "text")}, t),
        *flag_cases(TAB, "--latency-max", {k: NUMBER[k] for k in ("neg", "zero", "nan", "inf", "text")}, t),
        *flag_cases(TAB, "--constraint", {"neg": "macs<=-1", "nan": "macs<=nan", "text": "macs<=abc",
                                          "op": "macs>=5", "no-op": "macs"}, t),
        Case("search-constraint-metric", TAB + ("--constraint", "nosuchmetric<=5"), must_mention=("nosuchmetric",),
             needs=t),
        *flag_cases(TAB, "--objectives", {"direction": "accuracy:sideways", "empty": "", "commas": ",,"}, t),
        Case("search-objectives-metric", TAB + ("--objectives", "foo:maximize"), must_mention=("foo",), needs=t),
        Case("search-objectives-foo", TAB + ("--objectives", "accuracy,foo"), must_mention=("foo",), needs=t),
        *flag_cases(TAB, "--budget-preset", {"unknown": "bogus"}, t),
        *flag_cases(TRAIN, "--optimizer", {"unknown": "bogus"}),
        *flag_cases(TRAIN, "--augment", {"unknown": "bogus"}),
        *flag_cases(TAB, "--latency-precision", {"unknown": "int4"}, t),
        *flag_cases(TRAIN, "--device", {"cuda": "cuda", "tpu": "tpu", "cuda7": "cuda:7", "empty": ""}),
        *flag_cases(TAB, "--space", {"unknown": "nosuch", "empty": ""}, t),
        Case("search-space-120k", TAB + ("--space", HUGE), needs=t, must_mention=("xxxxxxxx",),
             note="a 120,000-character value: the error must stay under 300 characters"),
        *flag_cases(TAB, "--preset", {"unknown": "nosuch"}, t),
        *flag_cases(TAB, "--strategy", {"unknown": "nosuch", "empty": ""}, t),
        *flag_cases(TRAIN, "--dataset", {"unknown": "nosuch"}),
        Case("search-dataset-npz-no-path", TRAIN + ("--dataset", "npz"), must_mention=("npz",)),
        Case("search-dataset-image-folder-no-path", TRAIN + ("--dataset", "image_folder"),
             must_mention=("image_folder",)),
        Case("search-benchmark-unknown-column", tab(dataset="nosuchcol"),
             must_mention=("nosuchcol",), needs=t),
        *flag_cases(TAB, "--evaluator", {"unknown": "nosuch"}, t),
        Case("search-evaluator-option-no-equals", TAB + ("--evaluator-option", "predictor"),
             must_mention=("predictor",), needs=t),
        Case("search-evaluator-option-unknown-key", TAB + ("--evaluator-option", "nosuchkey=1"),
             must_mention=("nosuchkey",), needs=t),
        Case("search-predictor-no-data", TRAIN + ("--evaluator", "predictor"), must_mention=("predictor",)),
        Case("search-predictor-data-missing", TRAIN + ("--evaluator", "predictor", "--predictor-data", "nope.csv"),
             must_mention=("nope.csv",)),
        Case("search-predictor-data-garbage", TRAIN + ("--evaluator", "predictor", "--predictor-data", "g.csv"),
             must_mention=("g.csv",), setup=garbage("g.csv")),
        Case("search-latency-table-missing", TAB + ("--latency-table", "nope.json", "--objectives",
                                                    "accuracy,latency"), must_mention=("nope.json",), needs=t),
        Case("search-latency-table-garbage", TAB + ("--latency-table", "g.json", "--objectives",
                                                    "accuracy,latency"), must_mention=("g.json",), needs=t,
             setup=garbage("g.json")),
        Case("search-latency-table-dir", TAB + ("--latency-table", "adir", "--objectives", "accuracy,latency"),
             must_mention=("adir",), needs=t, setup=mkdir("adir")),
        # strategy options
        Case("search-option-sample-size-0", EVO + ("--option", "sample_size=0"), must_mention=("sample_size",),
             needs=t),
        Case("search-option-population-neg", EVO + ("--option", "population_size=-1"),
             must_mention=("population_size",), needs=t),
        Case("search-option-sample-size-nan", EVO + ("--option", "sample_size=nan"), must_mention=("sample_size",),
             needs=t),
        Case("search-option-unknown-key", EVO + ("--option", "nosuchkey=3"), must_mention=("nosuchkey",), needs=t),
        Case("search-option-no-equals", EVO + ("--option", "sample_size"), must_mention=("sample_size",), needs=t),
        Case("search-option-empty-key", EVO + ("--option", "=5"), must_mention=("=5",), needs=t),
        # storage
        Case("search-storage-not-url", TAB + ("--storage", "notaurl://x"), must_mention=("notaurl://x",), needs=t),
        Case("search-storage-empty", TAB + ("--storage", ""), must_mention=("storage",), needs=t),
        Case("search-storage-mysql-no-driver", TAB + ("--storage", "mysql://u@127.0.0.1:1/db"),
             must_mention=("mysql://u@127.0.0.1:1/db",), needs=t),
        Case("search-storage-sqlite-missing-dir", tab("--storage", "sqlite:///nodir/sub/x.db", strategy="optuna"),
             must_mention=("nodir",), needs=t),
        # data files
        Case("search-data-path-with-digits", TRAIN + ("--data-path", "somewhere"), must_mention=("somewhere",)),
        Case("search-npz-missing-file", NPZ, must_mention=("data.npz",)),
        Case("search-npz-is-dir", NPZ, must_mention=("data.npz",), setup=mkdir("data.npz")),
        Case("search-npz-empty-file", NPZ, must_mention=("data.npz",), setup=write("data.npz", b"")),
        Case("search-npz-garbage", NPZ, must_mention=("data.npz",), setup=garbage("data.npz")),
        Case("search-npz-one-npy-array", NPZ, must_mention=("data.npz",), setup=npy_as_npz),
        Case("search-npz-missing-keys", NPZ, must_mention=("x_train",),
             setup=npz(images=[[[0.0] * 4] * 4] * 4, labels=[0, 1, 0, 1])),
        Case("search-npz-missing-labels", NPZ, must_mention=("y_train",), setup=npz(x_train=[[[0.0] * 4] * 4] * 4)),
        Case("search-npz-mismatched-lengths", NPZ, must_mention=("4",),
             setup=npz(x_train=[[[0.0] * 4] * 4] * 4, y_train=[0, 1, 0])),
        Case("search-npz-nan-pixels", NPZ, must_mention=("nan",),
             setup=npz(x_train=[[[float("nan")] * 4] * 4] * 4, y_train=[0, 1, 0, 1])),
        Case("search-image-folder-empty", train("--dataset", "image_folder", "--data-path", "imgs", subset=None),
             must_mention=("imgs",), setup=mkdir("imgs")),
        Case("search-image-folder-is-file", train("--dataset", "image_folder", "--data-path", "f.txt", subset=None),
             must_mention=("f.txt",),
             setup=write("f.txt", "x")),
        # benchmark tables
        Case("search-benchmark-missing", tab(benchmark="nope.csv"), must_mention=("nope.csv",)),
        Case("search-benchmark-dir", tab(benchmark="adir"), must_mention=("adir",), setup=mkdir("adir")),
        Case("search-benchmark-empty", tab(benchmark="t.csv"), must_mention=("t.csv",),
             setup=write("t.csv", "")),
        Case("search-benchmark-binary", tab(benchmark="t.csv"), must_mention=("t.csv",),
             setup=garbage("t.csv")),
        Case("search-benchmark-header-only", tab(benchmark="t.csv"), must_mention=("t.csv",),
             setup=write("t.csv", "arch,cifar10\n")),
        Case("search-benchmark-nan-inf", tab(benchmark="t.csv"), must_mention=("nan",),
             setup=write("t.csv", f"arch,cifar10\n{NB201_ARCH},nan\n{NB201_ARCH.replace('none~0', 'skip_connect~0')}"
                                  ",inf\n|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|"
                                  "nor_conv_3x3~1|nor_conv_3x3~2|,93.1\n"),
             note="a table with some NaN/inf rows: refusing or skipping those rows are both reasonable"),
        Case("search-benchmark-all-nan", tab(benchmark="t.csv"), must_mention=("t.csv",),
             setup=write("t.csv", f"arch,cifar10\n{NB201_ARCH},nan\n"
                                  f"{NB201_ARCH.replace('none~0', 'skip_connect~0')},nan\n")),
        Case("search-benchmark-bad-arch", tab(benchmark="t.csv"), must_mention=("t.csv",),
             setup=write("t.csv", "arch,cifar10\nnot-a-cell,90.0\n")),
        # run folder
        Case("search-run-dir-is-file", tab(run_dir="afile"),
             must_mention=("afile",), setup=write("afile", "x"), needs=t),
        Case("search-run-dir-under-file", tab(run_dir="afile/sub"),
             must_mention=("afile",), setup=write("afile", "x"), needs=t),
        Case("search-run-dir-holds-run", TAB, must_mention=("run",), setup=run_copy("tabular"),
             needs=t),
        Case("search-run-dir-unwritable", tab(run_dir="ro/run"),
             must_mention=("ro/run",), setup=mkdir("ro", 0o500), needs=("table", "nonroot")),
        Case("search-budget-beyond-space", ("search", "--plugin", "tiny.py", "--space", "tiny_bad_inputs",
                                            "--strategy", "random", "--budget", "5", "--epochs", "1",
                                            "--train-subset", "32", "--run-dir", "run", "--no-progress",
                                            "--no-export"), "ok",
             setup=write("tiny.py", TINY_PLUGIN), writable=("run",),
             check=exists("run/best.json"), note="budget 5 in a space of 2: expected to finish after 2, best.json"),
        Case("search-no-space", ("search", "--strategy", "random", "--run-dir", "run"), must_mention=("--space",)),
        # plug-ins
        Case("search-plugin-no-module", TAB + ("--plugin", "no.such.module"), must_mention=("no.such.module",),
             needs=t),
        Case("search-plugin-missing-file", TAB + ("--plugin", "nope.py"), must_mention=("nope.py",), needs=t),
        Case("search-plugin-raises", TAB + ("--plugin", "boom.py"), must_mention=("boom",), needs=t,
             setup=write("boom.py", "raise RuntimeError('boom at import')\n")),
        Case("search-plugin-syntax-error", TAB + ("--plugin", "bad.py"), must_mention=("bad",), needs=t,
             setup=write("bad.py", "def (:\n")),
        Case("search-env-plugin-no-module", TAB, must_mention=("no.such.module",), needs=t,
             env=(("NAS_PLUGINS", "no.such.module"),)),
        Case("search-env-plugin-commas", TAB, "either", needs=t, env=(("NAS_PLUGINS", ",, ,"),),
             writable=("run",), check=exists("run/best.json"), note="empty names: ignoring them is fine"),
    ]
    return cases


def resume_cases() -> list[Case]:
    """`nas search --resume` on good and broken run folders."""
    t = ("table",)
    resume = ("search", "--resume", "run", "--no-progress")
    cases = [
        Case("resume-missing-dir", resume, must_mention=("run",)),
        Case("resume-a-file", resume, must_mention=("run",), setup=write("run", "x")),
        Case("resume-empty-dir", resume, must_mention=("config.json",), setup=mkdir("run"), writable=("run",)),
        Case("resume-with-run-dir", resume + ("--run-dir", "other"), must_mention=("--run-dir",),
             setup=run_copy("tabular"), needs=t, writable=("run/run.lock",)),
        Case("resume-budget-up", resume + ("--budget", "5"), "ok", setup=run_copy("tabular"), needs=t,
             writable=("run",), check=both(says("budget"), exists("run/best.json")),
             note="a larger budget is taken, and a line says so"),
        Case("resume-budget-down", resume + ("--budget", "1"), must_mention=("budget",), setup=run_copy("tabular"),
             needs=t, writable=("run/run.lock",)),
        Case("resume-budget-3-epochs-2", resume + ("--budget", "3", "--epochs", "2"), must_mention=("epochs",),
             setup=run_copy("trained"), writable=("run/run.lock",)),
        Case("resume-lr-changed", resume + ("--lr", "0.2"), must_mention=("lr",), setup=run_copy("trained"),
             writable=("run/run.lock",)),
        Case("resume-space-changed", resume + ("--space", "nats_sss"), must_mention=("space",),
             setup=run_copy("tabular"), needs=t, writable=("run/run.lock",)),
        Case("resume-bad-lr", resume + ("--lr", "nan"), must_mention=("nan",), setup=run_copy("trained"),
             writable=("run/run.lock",)),
        Case("resume-finished-same", resume, "ok", setup=run_copy("tabular"), needs=t, writable=("run",),
             check=exists("run/best.json"), note="nothing to do: a finished run resumes to its summary"),
        Case("resume-config-no-settings", resume, must_mention=("settings",), needs=t,
             setup=run_copy("tabular", config_DOT_json='{"space": "nb201", "strategy": "random"}'),
             writable=("run/run.lock",)),
        Case("resume-config-garbage", resume, must_mention=("config.json",), needs=t,
             setup=run_copy("tabular", config_DOT_json=GARBAGE_HISTORY), writable=("run/run.lock",)),
        Case("resume-config-empty", resume, must_mention=("config.json",), needs=t,
             setup=run_copy("tabular", config_DOT_json=b""), writable=("run/run.lock",)),
        Case("resume-config-bad-budget", resume, must_mention=("budget",), needs=t,
             setup=edit_config("tabular", lambda c: {**c, "settings": {**c["settings"], "budget": "many"}}),
             writable=("run/run.lock",)),
        Case("resume-config-bad-lr", resume, must_mention=("lr",),
             setup=edit_config("trained", lambda c: {**c, "settings": {**c["settings"], "train": {
                 **c["settings"]["train"], "lr": -1}}}), writable=("run/run.lock",)),
        Case("resume-history-binary", resume, must_mention=("history.jsonl",), needs=t,
             setup=run_copy("tabular", history_DOT_jsonl=GARBAGE_HISTORY), writable=("run/run.lock",)),
        Case("resume-history-wrong-shape", resume, must_mention=("history.jsonl",), needs=t,
             setup=run_copy("tabular", history_DOT_jsonl=WRONG_SHAPE_HISTORY), writable=("run/run.lock",)),
        Case("resume-history-torn-tail", resume, "ok", needs=t, writable=("run",), check=exists("run/best.json"),
             setup=run_copy("tabular", history_DOT_jsonl=json.dumps(RECORD).encode() + b'\n{"index": 1, "ar'),
             note="a torn last line (a kill mid-write) is repaired"),
    ]
    return [replace(case, named=()) for case in cases]  # the run folder exists: a change is stray


def show_cases() -> list[Case]:
    """`nas show` only reads: any write in the case folder (the run folder included) counts as stray."""
    t = ("table",)
    show = ("show", "run")
    cases = [
        Case("show-missing-dir", show, must_mention=("run",)),
        Case("show-a-file", show, must_mention=("run",), setup=write("run", "x")),
        Case("show-empty-dir", show, must_mention=("config.json",), setup=mkdir("run")),
        Case("show-history-binary", show, must_mention=("history.jsonl",), needs=t,
             setup=run_copy("tabular", history_DOT_jsonl=GARBAGE_HISTORY),
             note="history.jsonl must be byte-identical afterwards (the stray check compares contents)"),
        Case("show-history-wrong-shape", show, must_mention=("history.jsonl",), needs=t,
             setup=run_copy("tabular", history_DOT_jsonl=WRONG_SHAPE_HISTORY)),
        Case("show-history-record-missing-arch", show, must_mention=("history.jsonl",), needs=t,
             setup=run_copy("tabular", history_DOT_jsonl=json.dumps({"index": 0, "metrics": {}}) + "\n")),
        Case("show-config-no-settings", show, "either", ("settings",), needs=t,
             setup=run_copy("tabular", config_DOT_json='{"space": "nb201", "strategy": "random"}'),
             note="showing what is there, or refusing, are both reasonable"),
        Case("show-config-garbage", show, must_mention=("config.json",), needs=t,
             setup=run_copy("tabular", config_DOT_json=GARBAGE_HISTORY)),
        Case("show-config-list", show, must_mention=("config.json",), needs=t,
             setup=run_copy("tabular", config_DOT_json="[1, 2]")),
        Case("show-best-json-list", show, must_mention=("best.json",), needs=t,
             setup=run_copy("tabular", best_DOT_json="[]")),
        Case("show-best-json-garbage", show, must_mention=("best.json",), needs=t,
             setup=run_copy("tabular", best_DOT_json=GARBAGE_HISTORY)),
        Case("show-objectives-number", show, must_mention=("objectives",), needs=t,
             setup=edit_config("tabular", lambda c: {**c, "settings": {**c["settings"], "objectives": 5}})),
    ]
    return [replace(case, named=()) for case in cases]


def inspect_cases() -> list[Case]:
    """`nas inspect`: architecture JSON, --resolution and --classes."""
    base = MBCONV + ("mobilenet_v2",)
    return [
        Case("inspect-arch-depth-float", MBCONV + (MBCONV_SMALL % "1.0",), "ok", check=says("parameters"),
             note="1.0 equals the declared 1, so it is taken as 1"),
        Case("inspect-arch-depth-1.5", MBCONV + (MBCONV_SMALL % "1.5",), must_mention=("1.5", "s1_depth")),
        Case("inspect-arch-depth-true", MBCONV + (MBCONV_SMALL % "true",), must_mention=("true", "s1_depth")),
        Case("inspect-arch-depth-null", MBCONV + (MBCONV_SMALL % "null",), must_mention=("none", "s1_depth")),
        Case("inspect-arch-resolution-list", MBCONV + ('{"resolution": [32]}',), must_mention=("[32]",)),
        Case("inspect-arch-unknown-key", MBCONV + ((MBCONV_SMALL % "1")[:-1] + ',"bogus_key":1}',),
             must_mention=("bogus_key",)),
        Case("inspect-arch-missing-key", MBCONV + ((MBCONV_SMALL % "1").replace('"s4_l0_e":3', '"s4_l0_k":3'),),
             must_mention=("s4_l0_e",)),
        Case("inspect-arch-not-json", MBCONV + ("{resolution: 32",), must_mention=("{resolution: 32",)),
        Case("inspect-arch-json-list", MBCONV + ("[1, 2]",), must_mention=("[1, 2]",)),
        Case("inspect-arch-unknown-name", MBCONV + ("nosuch_arch",), must_mention=("nosuch_arch",)),
        Case("inspect-arch-empty", MBCONV + ("",), must_mention=("arch",)),
        Case("inspect-arch-120k", MBCONV + (json.dumps({"resolution": HUGE}),), must_mention=("resolution",)),
        Case("inspect-nb201-bad-op", ("inspect", "--space", "nb201", "--arch", NB201_ARCH.replace("none~0", "conv9~0")),
             must_mention=("conv9",)),
        Case("inspect-space-unknown", ("inspect", "--space", "nosuch", "--arch", "x"), must_mention=("nosuch",)),
        Case("inspect-preset-unknown", base[:3] + ("--preset", "nosuch", "--arch", "mobilenet_v2"),
             must_mention=("nosuch",)),
        *flag_cases(base, "--resolution", {"neg": "-8", "zero": "0", "text": "abc"}, prefix="inspect"),
        Case("inspect-resolution-too-small", ("inspect", "--space", "wavemix", "--arch", "wavemix_cifar10_94_58",
                                              "--resolution", "3"), must_mention=("3",)),
        *flag_cases(base, "--classes", {"zero": "0", "neg": "-3", "text": "abc"}, prefix="inspect"),
        Case("inspect-classes-huge", base + ("--classes", "2147483648"), "either", ("2147483648",),
             note="costs are computed, not allocated: answering or refusing are both fine"),
    ]


def export_cases() -> list[Case]:
    """`nas export`: formats, --out, --classes, run folders and their weights files."""
    out = EXPORT_ARCH + ("--out", "out")
    run_export = ("export", "run", "--out", "out", "--formats", "source")
    return [
        Case("export-formats-empty", EXPORT_ARCH[:-2] + ("--formats", "", "--out", "out"), must_mention=("format",),
             note="nothing may be written: out/ must not appear"),
        Case("export-formats-bogus", EXPORT_ARCH[:-2] + ("--formats", "bogus", "--out", "out"),
             must_mention=("bogus",)),
        Case("export-formats-mixed", EXPORT_ARCH[:-2] + ("--formats", "source,bogus", "--out", "out"),
             must_mention=("bogus",)),
        Case("export-out-is-file", EXPORT_ARCH + ("--out", "afile"), must_mention=("afile",),
             setup=write("afile", "x")),
        Case("export-out-unwritable", EXPORT_ARCH + ("--out", "ro/out"), must_mention=("ro/out",),
             setup=mkdir("ro", 0o500), needs=("nonroot",)),
        *flag_cases(out, "--classes", {"zero": "0", "neg": "-1", "huge": "2147483648", "text": "abc"},
                    prefix="export"),
        Case("export-nothing", ("export",), must_mention=("run_dir",)),
        Case("export-arch-no-out", EXPORT_ARCH, must_mention=("--out",)),
        Case("export-arch-not-json", ("export", "--space", "nb201", "--arch", "{oops", "--out", "out"),
             must_mention=("{oops",)),
        Case("export-space-unknown", ("export", "--space", "nosuch", "--arch", "x", "--out", "out"),
             must_mention=("nosuch",)),
        Case("export-run-missing", run_export, must_mention=("run",)),
        Case("export-run-no-weights", run_export, must_mention=("best_weights.pt",), setup=run_copy("tabular"),
             needs=("table",)),
        Case("export-run-no-best", run_export, must_mention=("best.json",),
             setup=run_copy("trained", best_DOT_json=None)),
        Case("export-weights-garbage", run_export, must_mention=("best_weights.pt",),
             setup=run_copy("trained", best_weights_DOT_pt=GARBAGE_HISTORY)),
        Case("export-weights-empty", run_export, must_mention=("best_weights.pt",),
             setup=run_copy("trained", best_weights_DOT_pt=b"")),
        Case("export-weights-reshaped", run_export, must_mention=("best_weights.pt",), setup=torch_weights("reshaped")),
        Case("export-weights-other-arch", run_export, must_mention=("best_weights.pt",),
             setup=torch_weights("other")),
        Case("export-weights-malicious-pickle", run_export, must_mention=("best_weights.pt",),
             setup=torch_weights("pickle"), check=no_marker,
             note="the payload must not run (PWNED absent) and the error is one line"),
        Case("export-run-formats-empty", ("export", "run", "--formats", ""), must_mention=("format",),
             setup=run_copy("trained")),
    ]


def latency_cases() -> list[Case]:
    """`nas latency build | validate | merge`."""
    return [
        *flag_cases(BUILD, "--patience", {"zero": "0", "neg": "-1"}, prefix="latency-build"),
        *flag_cases(BUILD, "--max-archs", {"zero": "0"}, prefix="latency-build"),
        *flag_cases(BUILD, "--calibrate", {"neg": "-1"}, prefix="latency-build"),
        *flag_cases(BUILD, "--threads", {"zero": "0", "neg": "-2"}, prefix="latency-build"),
        *flag_cases(BUILD, "--batch", {"zero": "0", "neg": "-1"}, prefix="latency-build"),
        *flag_cases(BUILD, "--resolution", {"zero": "0", "neg": "-8"}, prefix="latency-build"),
        *flag_cases(BUILD, "--device", {"tpu": "tpu"}, prefix="latency-build"),
        Case("latency-build-device-cuda", BUILD + ("--device", "cuda"), must_mention=("cuda",)),
        Case("latency-build-dataset-unknown", BUILD + ("--dataset", "nosuch"), must_mention=("nosuch",)),
        Case("latency-build-space-unknown", ("latency", "build", "--space", "nosuch", "--out", "t.json"),
             must_mention=("nosuch",)),
        Case("latency-build-out-dir", BUILD[:5] + ("adir",) + BUILD[6:], must_mention=("adir",),
             setup=mkdir("adir")),
        Case("latency-build-out-garbage", BUILD[:5] + ("g.json",) + BUILD[6:], must_mention=("g.json",),
             setup=garbage("g.json")),
        Case("latency-validate-missing", ("latency", "validate", "--table", "nope.json"), must_mention=("nope.json",)),
        Case("latency-validate-garbage", ("latency", "validate", "--table", "g.json"), must_mention=("g.json",),
             setup=garbage("g.json")),
        Case("latency-validate-json-list", ("latency", "validate", "--table", "l.json"), must_mention=("l.json",),
             setup=write("l.json", "[]")),
        Case("latency-validate-dir", ("latency", "validate", "--table", "adir"), must_mention=("adir",),
             setup=mkdir("adir")),
        Case("latency-merge-missing", ("latency", "merge", "nope.json", "--out", "m.json"),
             must_mention=("nope.json",)),
        Case("latency-merge-garbage", ("latency", "merge", "g.json", "--out", "m.json"), must_mention=("g.json",),
             setup=garbage("g.json")),
    ]


API_CALL = """
import sys
from nas.api import search
kwargs = dict(budget=1, epochs=1, train_subset=32, export=False)
kwargs.update({overrides})
try:
    search({space}, strategy={strategy!r}, run_dir="run", progress=False, **kwargs)
except (ValueError, TypeError) as err:
    print(f"{{type(err).__name__}}: {{err}}", file=sys.stderr)
    sys.exit(2)
print("no error raised")
"""


def api_case(case_id: str, overrides: str, mention: str, space: str = "'nb201'", strategy: str = "random") -> Case:
    """`nas.api.search(...)` with bad keyword arguments: a ValueError/TypeError (exit 2 here) naming `mention`;
    any other exception escapes as a traceback."""
    code = API_CALL.format(overrides=overrides, space=space, strategy=strategy)
    shown = f"nas.api.search({space}, strategy={strategy!r}, {overrides or '...'})"
    return Case(f"api-{case_id}", (code,), must_mention=(mention,), api=True, shown=shown)


def api_cases() -> list[Case]:
    return [
        api_case("budget-0", "budget=0", "budget"),
        api_case("budget-str", "budget='3'", "budget"),
        api_case("budget-bool", "budget=True", "budget"),
        api_case("lr-neg", "lr=-1.0", "lr"),
        api_case("lr-nan", "lr=float('nan')", "nan"),
        api_case("epochs-0", "epochs=0", "epochs"),
        api_case("seed-neg", "seed=-1", "seed"),
        api_case("train-subset-0", "train_subset=0", "subset"),
        api_case("device-tpu", "device='tpu'", "tpu"),
        api_case("dataset-unknown", "dataset='nosuch'", "nosuch"),
        api_case("objectives-unknown", "objectives='foo:maximize'", "foo"),
        api_case("unknown-kwarg", "bogus_setting=1", "bogus_setting"),
        api_case("constraints-nan", "constraints={'macs': float('nan')}", "nan"),
        api_case("space-unknown", "", "nosuch", space="'nosuch'"),
        api_case("space-none", "", "space", space="None"),
        api_case("strategy-unknown", "", "nosuch", strategy="nosuch"),
        api_case("evaluator-unknown", "evaluator='nosuch'", "nosuch"),
    ]


def all_cases() -> list[Case]:
    cases = search_cases() + resume_cases() + show_cases() + inspect_cases() + export_cases() + latency_cases() \
        + api_cases()
    ids = Counter(c.id for c in cases)
    duplicates = [i for i, n in ids.items() if n > 1]
    assert not duplicates, f"duplicate case ids: {duplicates}"
    return cases


# -- running -------------------------------------------------------------------------------------------------------
def nas_env(extra: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1",
               PYTHONWARNINGS="ignore::DeprecationWarning")
    env.pop("NAS_PLUGINS", None)
    env.update(dict(extra))
    return env


def command(case: Case) -> list[str]:
    return [sys.executable, "-c", case.argv[0]] if case.api else [sys.executable, "-m", "nas.cli", *case.argv]


def execute(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> Result:
    """Run `cmd` in its own process group; kill the group after `timeout` seconds (code None)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace", start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        code = None
    return Result(code, out, err, time.monotonic() - start)


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> content digest ("dir" for folders) of everything under `root`."""
    out = {}
    for path in root.rglob("*"):
        rel = str(path.relative_to(root))
        try:
            out[rel] = "dir" if path.is_dir() else hashlib.sha1(path.read_bytes()).hexdigest()
        except OSError:
            out[rel] = "unreadable"
    return out


def outside(changed: set[str], writable: tuple[str, ...]) -> list[str]:
    return sorted(p for p in changed if not any(p == w or p.startswith(w + "/") for w in writable))


INTERNALS = re.compile(r"\w+\.__\w+__\(\)|not supported between instances|object has no attribute|NoneType")
NOISE = re.compile(r"\d+%\||\d+/\d+ \[|it/s\]|s/it\]|arch/s\]")
WARNING = re.compile(r"^\S.*\b\w*Warning\b:|^warnings?\.warn|^\[W[0-9 ]")


def error_lines(stderr: str) -> list[str]:
    """stderr's lines less progress bars, Python warnings (and their indented source lines) and argparse's
    usage block (its `usage:` line and the indented lines after it)."""
    kept, skipping = [], False
    for raw in stderr.replace("\r", "\n").splitlines():
        if not raw.strip():
            continue
        if skipping and raw[:1].isspace():
            continue
        skipping = False
        if raw.startswith("usage:") or WARNING.search(raw):
            skipping = True
            continue
        if NOISE.search(raw):
            continue
        kept.append(raw.strip())
    return kept


def classify(case: Case, tmp: Path, result: Result) -> tuple[str, str]:
    """The class of `result` and why."""
    if result.code is None:
        return "hang", f"no answer within {case.timeout:.0f} s"
    output = result.stdout + result.stderr
    why = case.check(tmp, result) if case.check else None
    if "Traceback" in output or result.code not in (0, 2):
        return "traceback", f"exit {result.code}" + (f"; {why}" if why else "; check passed" if case.check else "")
    if result.changed:
        return "stray", "changed outside the allowed paths: " + ", ".join(result.changed[:5])
    if result.left and result.code == 2 and case.expect != "ok" and not why:
        cls, problem = classify_error(case, result)
        left = "left behind: " + ", ".join(result.left[:3])
        return ("leftover", left) if cls == "clean" else (cls, f"{problem}; {left}")
    if result.code == 0:
        if case.expect == "error":
            return "silent", "exit 0" + (f"; {why}" if why else "")
        return ("silent", why) if why else ("ok", "")
    if why:  # exit 2, but a check of harm failed (e.g. a pickle payload ran)
        return "traceback" if "payload" in why else "messy", why
    cls, problem = classify_error(case, result)
    if case.expect == "ok":
        return "refused", problem or "exit 2"
    return cls, problem


def classify_error(case: Case, result: Result) -> tuple[str, str]:
    """clean or messy, and why, for an exit-2 error."""
    lines = error_lines(result.stderr)
    if len(lines) != 1:
        problem = f"{len(lines)} error lines"
    elif len(lines[0]) > MAX_LINE:
        problem = f"error line of {len(lines[0])} chars"
    else:
        missing = [m for m in case.must_mention if m.lower() not in lines[0].lower()]
        problem = f"does not name {missing}" if missing else ""
        if not problem and INTERNALS.search(lines[0]):
            problem = "the message leaks Python internals instead of saying what is accepted"
    return ("messy", problem) if problem else ("clean", "")


def run_case(case: Case, skip: str | None) -> Outcome:
    """Set up, run and classify one case in a fresh temporary folder."""
    if skip:
        return Outcome(case, "skipped", None, skip)
    with tempfile.TemporaryDirectory(prefix="bad_input_") as name:
        tmp = Path(name)
        try:
            if case.setup:
                case.setup(tmp)
            before = snapshot(tmp)
            result = execute(command(case), tmp, nas_env(case.env), case.timeout)
            chmod_back(tmp)
            after = snapshot(tmp)
            changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
            changed = set(outside(changed, case.writable))
            result.left = outside(changed - set(outside(changed, case.named)), ())
            result.changed = outside(changed, case.named)
            cls, why = classify(case, tmp, result)
            return Outcome(case, cls, result, why)
        finally:
            chmod_back(tmp)


def skip_reason(case: Case) -> str | None:
    if "table" in case.needs and not TABLE.is_file():
        return f"benchmark table {TABLE} is absent"
    if "nonroot" in case.needs and os.geteuid() == 0:
        return "running as root: file permissions do not stop root"
    return None


def build_fixtures(root: Path) -> None:
    """The finished run folders cases copy: "tabular" (2 table lookups; only with the table) and "trained" (1
    architecture trained one epoch on 32 digits images, with best_weights.pt)."""
    argv = {"trained": train(run_dir="{dir}")}
    if TABLE.is_file():
        argv["tabular"] = tab(run_dir="{dir}")
    for name, args in argv.items():
        path = root / name
        cmd = [sys.executable, "-m", "nas.cli", *(str(path) if a == "{dir}" else a for a in args)]
        result = execute(cmd, root, nas_env(), 300)
        if result.code != 0:
            sys.exit(f"cannot build fixture run {name!r}: {result.stderr[-2000:]}")
        FIXTURES[name] = path


# -- report --------------------------------------------------------------------------------------------------------
def git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def machine() -> str:
    from nas.timing import cpu_model

    cpu = f"{cpu_model()} ({platform.machine()})"
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def shown_command(case: Case) -> str:
    if case.shown:
        return case.shown
    env = " ".join(f"{k}={v}" for k, v in case.env)
    args = " ".join(_quote(a.replace(str(TABLE), "NB201.csv")) for a in case.argv)
    return (env + " " if env else "") + "nas " + args


def _quote(arg: str) -> str:
    if len(arg) > 60:
        arg = arg[:40] + f"...({len(arg)} chars)"
    return arg if arg and re.fullmatch(r"[\w./:=,<>@+-]+", arg) else repr(arg)


def shown_error(outcome: Outcome) -> str:
    """The error line (the last line for a traceback), else stdout's first line."""
    r = outcome.result
    if r is None:
        return ""
    lines = [ln.strip() for ln in r.stderr.splitlines() if ln.strip()]
    if outcome.cls == "traceback" and lines:
        raised = [ln for ln in lines if re.match(r"[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b", ln)]
        text = (raised or lines)[-1]
    else:
        kept = error_lines(r.stderr)
        text = kept[0] if kept else (lines[0] if lines else "(stdout) " + (r.stdout.strip().splitlines() or [""])[0])
    return text[:120] + ("..." if len(text) > 120 else "")


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").replace("`", "'")


def write_report(outcomes: list[Outcome], out: Path, argv: list[str], seconds: float) -> None:
    totals = Counter(o.cls for o in outcomes)
    lines = [
        "# Bad inputs",
        "",
        "Issue 18: every bad input gives a one-line error naming the bad value and what is accepted (exit 2), before "
        "any training starts, and writes nothing outside the folder it names. Written by `scripts/bad_inputs.py`.",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"- machine: {machine()}",
        f"- commit: {git_commit()}",
        f"- command: `{' '.join(argv)}`",
        f"- cases: {len(outcomes)}, wall time {seconds:.0f} s",
        "",
        "Classes: clean (exit 2, one error line <= 300 chars naming the value), ok (an expected success), messy "
        "(exit 2 but several lines, too long, not naming the value, or leaking Python internals), traceback, silent "
        "(exit 0 where an error "
        "was expected, or a success doing the wrong thing), refused (exit 2 where success was expected), stray "
        "(wrote outside the allowed paths), leftover (an error that left the run/output folder it names behind), "
        "hang, skipped. argparse's usage block before its error line is not "
        "counted as an error line.",
        "",
        "| class | cases |",
        "|---|---:|",
        *(f"| {c} | {totals[c]} |" for c in CLASSES if totals[c]),
        f"| **total** | {len(outcomes)} |",
        "",
        "| id | command | expected | observed | exit | s | error line (stderr; last line for a traceback) | note |",
        "|---|---|---|---|---:|---:|---|---|",
    ]
    for o in outcomes:
        r = o.result
        note = "; ".join(x for x in (o.why, o.case.note) if x)
        lines.append(f"| {o.case.id} | `{cell(shown_command(o.case))}` | {o.case.expect} | **{o.cls}** | "
                     f"{'' if r is None else r.code} | {'' if r is None else f'{r.seconds:.1f}'} | "
                     f"{cell(shown_error(o))} | {cell(note)} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


def save_logs(outcomes: list[Outcome], folder: Path) -> None:
    """ID.log: the command, class, exit status, stdout and stderr of each outcome."""
    folder.mkdir(parents=True, exist_ok=True)
    for o in outcomes:
        r = o.result
        text = f"$ {shown_command(o.case)}\nclass {o.cls}: {o.why}\n"
        if r is not None:
            text += f"exit {r.code}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}\n"
        (folder / f"{o.case.id}.log").write_text(text[:200_000])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="a regular expression: run the cases whose id it matches")
    parser.add_argument("--out", default=str(REPO / "benchmarks/bad_inputs.md"), help="the markdown report")
    parser.add_argument("--workers", type=int, default=2, help="cases run side by side")
    parser.add_argument("--list", action="store_true", help="list the case ids and stop")
    parser.add_argument("--logs", default=None, help="a folder for the full stdout/stderr of each failing case")
    args = parser.parse_args()
    from tqdm import tqdm

    cases = [c for c in all_cases() if not args.only or re.search(args.only, c.id)]
    if args.list:
        print("\n".join(f"{c.id:45s} {c.expect:6s} {shown_command(c)[:100]}" for c in cases))
        print(f"{len(cases)} cases")
        return 0
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bad_input_fixtures_") as fixtures:
        build_fixtures(Path(fixtures))
        outcomes: dict[str, Outcome] = {}
        with ThreadPoolExecutor(max_workers=args.workers) as pool:  # each worker drives one `nas` process
            futures = [pool.submit(run_case, c, skip_reason(c)) for c in cases]
            with tqdm(total=len(futures), desc="bad inputs", unit="case") as bar:
                for future in as_completed(futures):
                    outcome = future.result()
                    outcomes[outcome.case.id] = outcome
                    bar.set_postfix_str(f"{outcome.case.id}: {outcome.cls}"[:50])
                    bar.update()
    ordered = [outcomes[c.id] for c in cases]
    seconds = time.monotonic() - start
    write_report(ordered, Path(args.out), ["python", "scripts/bad_inputs.py", *sys.argv[1:]], seconds)
    totals = Counter(o.cls for o in ordered)
    print(", ".join(f"{c} {totals[c]}" for c in CLASSES if totals[c]) + f" (of {len(ordered)}, {seconds:.0f} s)")
    for o in ordered:
        if o.cls in FAILING:
            print(f"  {o.cls:9s} {o.case.id}: {o.why} | {shown_error(o)}")
    if args.logs:
        save_logs([o for o in ordered if o.cls in FAILING], Path(args.logs))
    print(f"written: {args.out}" + (f" and logs in {args.logs}" if args.logs else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
