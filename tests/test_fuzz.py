"""Property-based fuzzing (hypothesis) of everything a user hands in: `nas search` / `inspect` / `export` / `show`
flags, architecture JSON for every registered space, `.npz` dataset files, benchmark tables and run-folder files.
Each input either works or is a one-line `NASError` (exit status 2 from the command line): no other exception, no
hang (a time limit per example) and nothing written outside the run or output folder it names (issue 18).

Searches answer from the NAS-Bench-201 table (or fail before anything is trained), so the file runs in the normal
suite in well under a minute on one core."""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import SHARED
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from nas import registry
from nas.cli import main
from nas.space import NASError

TABLE = SHARED / "benchmarks/nasbench201/nats_tss_test_accuracy_200ep.csv"
NB201_ARCH = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
SECONDS = 20  # per example: longer is a hang
EXPLORE = int(os.environ.get("NAS_FUZZ_EXAMPLES", "0"))  # set: that many random examples a test, else CI's fixed 60
FUZZ = settings(max_examples=EXPLORE or 60, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                derandomize=not EXPLORE, phases=[p for p in Phase if p != Phase.explain])  # explain traces: slow
needs_table = pytest.mark.skipif(not TABLE.is_file(), reason=f"benchmark table {TABLE} is absent")

# -- values ----------------------------------------------------------------------------------------------------
ODD_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
HUGE_INTS = st.sampled_from([2**31, 2**63, 10**30, -(10**30)])
INTS = st.one_of(st.integers(-3, 3), HUGE_INTS)
FLOAT_TEXT = st.one_of(st.sampled_from(["nan", "inf", "-inf", "1e400", "-0", "0", "1e-320", "-1", "2.5"]),
                       st.floats(allow_nan=True, allow_infinity=True).map(repr))
NUMBER_TEXT = st.one_of(INTS.map(str), FLOAT_TEXT, ODD_TEXT)
JSON_SCALARS = st.one_of(st.none(), st.booleans(), INTS, st.floats(), ODD_TEXT)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                                 st.dictionaries(ODD_TEXT, inner, max_size=3)),
                           max_leaves=6)


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the main thread after `seconds` (a hang fails the example instead of the suite)."""
    def alarm(signum: int, frame: Any) -> None:
        raise TimeoutError(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run_cli(argv: list[str], root: Path, writable: tuple[str, ...] = ()) -> tuple[int, str]:
    """`nas ARGV` in-process in folder `root`: the exit status and stderr; asserts the status is 0 or 2, a failure is
    one `nas: error:` line, and nothing changed in `root` outside the `writable` folders."""
    before = files_under(root)
    threads = torch.get_num_threads()
    err, cwd = io.StringIO(), os.getcwd()
    os.chdir(root)
    try:
        with time_limit(SECONDS), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exit_:  # argparse: a value of the wrong type, an unknown flag
                code = exit_.code if isinstance(exit_.code, int) else 2
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
    text = err.getvalue()
    assert code in (0, 2), (argv, code, text[-2000:])
    if code == 2 and "nas: error:" in text:
        line = text[text.index("nas: error:"):].rstrip("\n")
        assert "\n" not in line and len(line) < 600, (argv, line[:2000])
    after = files_under(root)
    changed = {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}
    outside = sorted(n for n in changed if not any(n == w or n.startswith(w + "/") for w in writable))
    assert not outside, (argv, outside)
    return code, text


def works_or_nas_error(call: Callable[[], Any]) -> Any:
    """`call()`'s value, or None when it raised a one-line `NASError` (any other exception fails the test)."""
    with time_limit(SECONDS):
        try:
            return call()
        except NASError as err:
            assert "\n" not in str(err) and len(str(err)) < 600, str(err)[:2000]
            return None


# -- nas search / inspect / export / show flags ------------------------------------------------------------------
SPACES = registry.names("spaces")
STRATEGIES = [s for s in registry.names("strategies") if s != "bananas"]  # bananas fits predictors: slower
OPTION_KEYS = ["population_size", "sample_size", "max_retries", "n_startup_trials", "sampler", "study_name",
               "num_init", "num_restart", "population", "top_k", "unknown"]
METRICS = st.one_of(st.sampled_from(["accuracy", "macs", "params", "nope", ""]), ODD_TEXT)


def flag(name: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return st.one_of(st.just([]), values.map(lambda v: [name, v]))


#: constraint limits: rejected ones or loose ones (a positive limit below every architecture's cost, or accuracy<=0,
#: is valid, and the search then tries 1000 proposals before its error, 15 s)
LIMIT_TEXT = st.one_of(st.sampled_from(["nan", "inf", "-inf", "1e400", "-1", "0", "-0", "1e12", "5e8"]), ODD_TEXT)
#: flag -> its generated values; an example gives up to three of them (most fail alone, so fewer reach deeper)
SEARCH_VALUES: dict[str, st.SearchStrategy[str]] = {
    # a huge budget is valid: it evaluates the table's 15,625 cells (the space's size caps it), minutes, so none here
    "--budget": st.one_of(st.integers(-3, 3).map(str), HUGE_INTS.filter(lambda v: v < 0).map(str), FLOAT_TEXT,
                          ODD_TEXT),
    "--seed": INTS.map(str),
    "--strategy": st.one_of(st.sampled_from(STRATEGIES), ODD_TEXT),
    "--space": st.one_of(st.sampled_from(["nb201", "nats_sss", "mbconv"]), ODD_TEXT),
    "--preset": st.one_of(st.sampled_from(["small", "paper"]), ODD_TEXT),
    "--dataset": st.one_of(st.sampled_from(["cifar10", "cifar100", "imagenet16_120", "npz", "digits"]), ODD_TEXT),
    "--objectives": st.one_of(st.lists(METRICS, min_size=1, max_size=3).map(",".join),
                              st.sampled_from(["accuracy:minimize", "foo:maximize", "accuracy,,macs"])),
    "--constraint": st.tuples(st.one_of(st.sampled_from(["macs", "params", "nope", ""]), ODD_TEXT),
                              st.sampled_from(["<=", "<", ">=", ""]), LIMIT_TEXT).map("".join),
    "--max-params": LIMIT_TEXT, "--max-macs": LIMIT_TEXT, "--epochs": NUMBER_TEXT, "--batch-size": NUMBER_TEXT,
    "--lr": NUMBER_TEXT, "--weight-decay": NUMBER_TEXT, "--train-subset": NUMBER_TEXT,
    "--threads": st.one_of(st.integers(-2, 2).map(str), HUGE_INTS.map(str)),
    "--device": st.one_of(st.sampled_from(["cpu", "auto", "cuda", "cuda:7", "tpu", "mps", ""]), ODD_TEXT),
    "--evaluator": st.one_of(st.sampled_from(["tabular", "supernet", "nope"]), ODD_TEXT),
    "--evaluator-option": st.tuples(ODD_TEXT, ODD_TEXT).map("=".join),
    "--option": st.tuples(st.sampled_from(OPTION_KEYS), st.one_of(INTS.map(str), FLOAT_TEXT, ODD_TEXT)).map("=".join),
    "--storage": st.one_of(st.sampled_from(["notaurl://x", "sqlite://", "postgresql://u@127.0.0.1:1/db", "mysql://",
                                            ""]), ODD_TEXT),
    "--predictor-data": ODD_TEXT,
    "--data-path": ODD_TEXT,
}


@st.composite
def search_flags(draw: st.DrawFn) -> list[str]:
    names = draw(st.lists(st.sampled_from(sorted(SEARCH_VALUES)), max_size=3, unique=True))
    return [item for name in names for item in (name, draw(SEARCH_VALUES[name]))]


@needs_table
@FUZZ
@given(flags=search_flags())
def test_fuzz_search_flags(flags: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["search", "--space", "nb201", "--strategy", "random", "--budget", "2", "--benchmark", str(TABLE),
                "--dataset", "cifar10", "--run-dir", "run", "--no-progress", "--no-export", *flags]
        code, _ = run_cli(argv, Path(tmp), writable=("run",))
        if code == 0:
            assert json.loads((Path(tmp) / "run/best.json").read_text())["metrics"]["accuracy"] > 0


ARCH_TEXT = st.one_of(st.sampled_from(["mobilenet_v2", "nb201_resnet", NB201_ARCH, "64:40:48:64:56", "{}", "{",
                                       '{"resolution": [32]}']),
                      st.dictionaries(ODD_TEXT, JSON_VALUES, max_size=4).map(json.dumps), ODD_TEXT)


@FUZZ
@given(space=st.one_of(st.sampled_from(SPACES), ODD_TEXT), arch=ARCH_TEXT,
       extra=st.tuples(flag("--resolution", NUMBER_TEXT), flag("--classes", NUMBER_TEXT),
                       flag("--preset", st.one_of(st.sampled_from(["small", "paper"]), ODD_TEXT))))
def test_fuzz_inspect_flags(space: str, arch: str, extra: tuple[list[str], ...]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run_cli(["inspect", "--space", space, "--arch", arch, "--json", *sum(extra, [])], Path(tmp))


@FUZZ
@given(arch=st.one_of(st.just(NB201_ARCH), ARCH_TEXT), classes=flag("--classes", NUMBER_TEXT),
       formats=st.one_of(st.just("source"), st.lists(st.one_of(st.sampled_from(["source", "bogus", " ", ""]),
                                                                ODD_TEXT), max_size=3).map(",".join)),
       out=st.sampled_from(["out", "out/deeper", "A_FILE", "A_FILE/sub"]))
def test_fuzz_export_flags(arch: str, classes: list[str], formats: str, out: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "A_FILE").write_text("x")
        code, _ = run_cli(["export", "--space", "nb201", "--arch", arch, "--out", out, "--formats", formats,
                           *classes], Path(tmp), writable=("out",))
        if code == 0:
            assert (Path(tmp) / out / "net.py").exists()


# -- architecture JSON for every registered space ----------------------------------------------------------------
@st.composite
def arch_mappings(draw: st.DrawFn, space: Any) -> dict[str, Any]:
    """A valid architecture of `space` with a few values replaced, removed or added."""
    import random

    arch = dict(space.sample(random.Random(draw(st.integers(0, 2**16)))))
    for name in draw(st.lists(st.sampled_from(sorted(arch)), max_size=2, unique=True)):
        edit = draw(st.sampled_from(["value", "delete", "float", "bool"]))
        if edit == "delete":
            del arch[name]
        elif edit == "float" and isinstance(arch[name], int) and not isinstance(arch[name], bool):
            arch[name] = float(arch[name]) + draw(st.sampled_from([0.0, 0.5, math.nan, math.inf]))
        elif edit == "bool":
            arch[name] = draw(st.booleans())
        else:
            arch[name] = draw(JSON_VALUES)
    if draw(st.booleans()):
        arch[draw(ODD_TEXT)] = draw(JSON_VALUES)
    return arch


@pytest.mark.parametrize("space_name", SPACES)
def test_fuzz_architecture_json(space_name: str) -> None:
    space = registry.make_space(space_name)

    @settings(FUZZ, max_examples=EXPLORE or 25)
    @given(arch=arch_mappings(space), as_text=st.booleans())
    def check(arch: dict[str, Any], as_text: bool) -> None:
        given_arch = json.dumps(arch) if as_text else arch
        resolved = works_or_nas_error(lambda: space.resolve(given_arch))
        if resolved is not None:  # a valid architecture builds a graph at the space's own input
            works_or_nas_error(lambda: space.graph(resolved, space.input_shape_for(resolved, space.default_input)))

    check()


# -- .npz dataset files --------------------------------------------------------------------------------------------
DTYPES = st.sampled_from([np.uint8, np.float32, np.float64, np.int64, np.int8, np.bool_, np.float16, np.complex64])


@st.composite
def arrays(draw: st.DrawFn, ndim: st.SearchStrategy[int]) -> np.ndarray:
    rank = draw(ndim)
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=rank, max_size=rank)))
    values = draw(st.sampled_from([0, 1, -1, 255, 300, 1e30, math.nan, math.inf]))
    out = np.random.default_rng(draw(st.integers(0, 99))).integers(0, 4, size=shape).astype(draw(DTYPES))
    if out.size and draw(st.booleans()):
        with np.errstate(all="ignore"):
            out.flat[0] = np.array([values]).astype(out.dtype)[0]
    return out


@FUZZ
@given(x=arrays(st.integers(0, 5)), y=arrays(st.integers(0, 2)), val=st.booleans(),
       keys=st.sampled_from([("x_train", "y_train"), ("x_train",), ("x", "y")]))
def test_fuzz_npz_dataset(x: np.ndarray, y: np.ndarray, val: bool, keys: tuple[str, ...]) -> None:
    from nas.data import load_dataset

    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "data.npz"
        arrays_ = dict(zip(keys, (x, y)))
        if val:
            arrays_.update(x_val=x[:2] if x.ndim else x, y_val=y[:2] if y.ndim else y)
        np.savez(file, **arrays_)
        data = works_or_nas_error(lambda: load_dataset("npz", str(file)))
    if data is not None:  # what loads can be trained on
        assert len(data.x_train) == len(data.y_train) > 0 and len(data.x_val) == len(data.y_val) > 0
        assert data.x_train.dim() == 4 and data.x_train.shape[1:] == data.x_val.shape[1:]
        assert torch.isfinite(data.x_train).all() and torch.isfinite(data.x_val).all()
        labels = torch.cat([data.y_train, data.y_val])
        assert data.num_classes >= 1 and labels.min() >= 0 and labels.max() < data.num_classes


@FUZZ
@given(data=st.binary(max_size=300))
def test_fuzz_npz_bytes(data: bytes) -> None:
    from nas.data import load_dataset

    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "data.npz"
        file.write_bytes(b"PK\x03\x04" + data if data[:1] == b"\x00" else data)
        works_or_nas_error(lambda: load_dataset("npz", str(file)))


# -- benchmark tables --------------------------------------------------------------------------------------------
CELLS = st.one_of(st.just(NB201_ARCH), FLOAT_TEXT, ODD_TEXT, st.sampled_from(["", '"', '""', "a,b", "\x00"]))
HEADERS = st.one_of(st.sampled_from(["arch,cifar10", "index,arch,cifar10,cifar100", "channels,cifar10",
                                     "arch,arch,cifar10", "ARCH,CIFAR-10", "\ufeffarch,cifar10", ""]),
                    st.lists(ODD_TEXT, max_size=3).map(",".join))


@FUZZ
@given(header=HEADERS, rows=st.lists(st.lists(CELLS, min_size=1, max_size=4).map(",".join), max_size=4),
       dataset=st.one_of(st.sampled_from(["cifar10", "CIFAR-10", "cifar100"]), ODD_TEXT),
       ending=st.sampled_from(["\n", "\r\n", ""]))
def test_fuzz_benchmark_table(header: str, rows: list[str], dataset: str, ending: str) -> None:
    from nas.tabular import TabularEvaluator, read_table

    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "table.csv"
        file.write_text(ending.join([header, *rows]) + ending, encoding="utf-8", errors="surrogatepass")
        table = works_or_nas_error(lambda: read_table(file, dataset))
        if table is not None:
            assert table and all(math.isfinite(v) for v in table.values())
            bench = works_or_nas_error(lambda: TabularEvaluator(registry.make_space("nb201"), file, dataset))
            if bench is not None:
                assert math.isfinite(bench.best()[1])


# -- run-folder files (nas show, nas search --resume) ------------------------------------------------------------
def settings_for_table(budget: int = 2) -> dict[str, Any]:
    return {"space": "nb201", "preset": None, "strategy": "random", "budget": budget, "budget_preset": "quick",
            "objectives": "accuracy", "seed": 0, "constraints": {}, "dataset": "cifar10", "data_path": None,
            "train_subset": None, "benchmark": str(TABLE), "evaluator": "tabular", "evaluator_options": {},
            "predictor_data": None, "train": {"epochs": 1, "batch_size": 128, "lr": 0.05, "optimizer": "sgd",
                                              "weight_decay": 4e-5, "device": "auto", "augment": "auto",
                                              "num_threads": 0},
            "storage": None, "options": {}, "retrain": True, "export": False, "latency_table": None,
            "latency": {"precision": "fp32"}}


RECORD = {"index": 0, "arch": {"edge_1_0": "nor_conv_3x3", "edge_2_0": "none", "edge_2_1": "skip_connect",
                               "edge_3_0": "avg_pool_3x3", "edge_3_1": "nor_conv_1x1", "edge_3_2": "none"},
          "metrics": {"accuracy": 80.0}, "seconds": 0.1, "info": {}}


@st.composite
def mutated(draw: st.DrawFn, base: Mapping[str, Any]) -> Any:
    """`base` with up to two keys (nested ones too) set to generated JSON values or removed."""
    out = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(0, 2))):
        target = out
        key = draw(st.sampled_from(sorted(target)))
        if isinstance(target[key], dict) and target[key] and draw(st.booleans()):
            target, key = target[key], draw(st.sampled_from(sorted(target[key])))
        if draw(st.integers(0, 3)) == 0:
            del target[key]
        else:
            target[key] = draw(JSON_VALUES)
    return out


@st.composite
def run_files(draw: st.DrawFn) -> dict[str, bytes]:
    config = draw(st.one_of(mutated({"space": "nb201", "strategy": "random", "seed": 0,
                                     "settings": settings_for_table(1)}),
                            JSON_VALUES))
    files = {"config.json": json.dumps(config).encode()}
    if draw(st.integers(0, 5)) == 0:
        files["config.json"] = draw(st.binary(max_size=40))
    lines = [json.dumps(draw(st.one_of(mutated(RECORD), JSON_VALUES))).encode()
             for _ in range(draw(st.integers(0, 3)))]
    if lines or draw(st.booleans()):
        tail = draw(st.sampled_from([b"\n", b"", b"\n{\"index\": 1, \"ar", b"\n\xff\xfe\x00"]))
        files["history.jsonl"] = b"\n".join(lines) + tail
    if draw(st.booleans()):
        files["best.json"] = json.dumps(draw(st.one_of(mutated({"arch": RECORD["arch"], "metrics": {"accuracy": 80},
                                                                "index": 0, "input_shape": [3, 32, 32],
                                                                "num_classes": 10, "front": []}),
                                                       JSON_VALUES))).encode()
    return files


@needs_table
@settings(FUZZ, max_examples=EXPLORE or 100)
@given(files=run_files(), command=st.sampled_from(["show", "resume", "export"]))
def test_fuzz_run_folder(files: dict[str, bytes], command: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        run.mkdir()
        for name, data in files.items():
            (run / name).write_bytes(data)
        if command == "show":  # reading never modifies
            run_cli(["show", "run"], Path(tmp))
        elif command == "export":
            run_cli(["export", "run", "--out", "out", "--formats", "source"], Path(tmp), writable=("out",))
        else:
            run_cli(["search", "--resume", "run", "--no-progress"], Path(tmp), writable=("run",))


# -- what the fuzzing found, kept as named cases -----------------------------------------------------------------
FOUND_CLI = {
    "a million threads (torch segfaulted)": (["--threads", "1000000"], "threads 1000000 is not accepted"),
    "max_retries 0 (a crash in ask)": (["--option", "max_retries=0"], "max_retries 0 must be a whole number"),
    "max_retries nan": (["--option", "max_retries=NaN"], "option max_retries=nan must be a whole number"),
    "no database server there": (["--storage", "postgresql://u@127.0.0.1:1/db"],
                                 "storage 'postgresql://u@127.0.0.1:1/db' cannot be opened: connection failed"),
    "no database server there (optuna)": (["--strategy", "optuna", "--storage", "postgresql://u@127.0.0.1:1/db"],
                                          "cannot be opened: connection failed"),
    "a newline in an objective (a two-line error)": (["--objectives", "0\n0"],
                                                     "objective '0\\n0': give a direction as 0\\n0:maximize"),
    "a MySQL URL without its driver": (["--storage", "mysql://u@127.0.0.1:1/db"],
                                       "needs the database driver 'MySQLdb', which is not installed"),
}


@needs_table
@pytest.mark.parametrize("case", list(FOUND_CLI))
def test_found_search_flags(case: str, tmp_path: Path) -> None:
    flags, expected = FOUND_CLI[case]
    code, err = run_cli(["search", "--space", "nb201", "--strategy", "random", "--budget", "2", "--benchmark",
                         str(TABLE), "--dataset", "cifar10", "--run-dir", "run", "--no-progress", *flags], tmp_path,
                        writable=("run",))
    assert code == 2 and expected in err, err
    assert not (tmp_path / "run").exists()  # nothing was evaluated: no run folder is left behind


def test_found_export_with_two_billion_classes(tmp_path: Path) -> None:
    code, err = run_cli(["export", "--space", "nb201", "--arch", NB201_ARCH, "--out", "out", "--classes",
                         "2147483648"], tmp_path)
    assert code == 2 and "--classes 2147483648 must be from 1 to 100,000" in err, err


FOUND_RUN = {
    "config.json not UTF-8": ({"config.json": b"\x80"}, "config.json is not UTF-8 text"),
    "settings null": ({"config.json": b'{"space": "nb201", "strategy": "random", "settings": null}'},
                      "config.json's settings are not an object"),
    "objectives a number": ({"config.json": b'{"space": "nb201", "strategy": "random", "settings": '
                                            b'{"objectives": 5}}'}, "objectives '5' are not metric names"),
    "a metric null in history": ({"history.jsonl": json.dumps({**RECORD, "metrics": {"accuracy": None}}).encode()
                                  + b"\n"}, "history.jsonl line 1 is not a valid record"),
    "best.json a list": ({"best.json": b"[]"}, "best.json is not an object with an arch"),
}


@pytest.mark.parametrize("case", list(FOUND_RUN))
def test_found_run_folder_files(case: str, tmp_path: Path) -> None:
    files, expected = FOUND_RUN[case]
    (tmp_path / "run").mkdir()
    for name, data in {"config.json": json.dumps({"space": "nb201", "strategy": "random",
                                                  "settings": settings_for_table(1)}).encode(), **files}.items():
        (tmp_path / "run" / name).write_bytes(data)
    code, err = run_cli(["show", "run"], tmp_path)
    assert code == 2 and expected in err, err


FOUND_NPZ = {
    "an empty file": (None, "is not a readable .npz archive"),
    "one .npy array": ("npy", "is one array, not an .npz archive"),
    "no images": ({"x_train": np.zeros((0, 4, 4)), "y_train": np.zeros(0, np.int64)}, "at least one image"),
    "0-d labels": ({"x_train": np.zeros((4, 4, 4)), "y_train": np.array(3)}, "one label per image (4)"),
    "fewer labels than images": ({"x_train": np.zeros((4, 4, 4)), "y_train": np.zeros(3, np.int64)},
                                 "one label per image (4)"),
    "negative label": ({"x_train": np.zeros((4, 4, 4)), "y_train": np.array([0, 1, -1, 0])}, "holds label -1"),
    "float labels": ({"x_train": np.zeros((4, 4, 4)), "y_train": np.array([0.0, 1.5, 1, 0])}, "whole-number class"),
    "NaN pixels": ({"x_train": np.full((4, 4, 4), np.nan), "y_train": np.zeros(4, np.int64)}, "NaN, infinite"),
    "complex pixels": ({"x_train": np.zeros((4, 4, 4), np.complex64), "y_train": np.zeros(4, np.int64)},
                       "must hold real numbers"),
    "one image, nothing to validate on": ({"x_train": np.zeros((1, 4, 4)), "y_train": np.zeros(1, np.int64)},
                                          "too few to split off a validation set"),
    "validation images of another size": ({"x_train": np.zeros((4, 4, 4)), "y_train": np.zeros(4, np.int64),
                                           "x_val": np.zeros((2, 5, 5)), "y_val": np.zeros(2, np.int64)},
                                          "x_val images are (1, 5, 5), x_train's (1, 4, 4)"),
}


@pytest.mark.parametrize("case", list(FOUND_NPZ))
def test_found_npz_files(case: str, tmp_path: Path) -> None:
    from nas.data import load_dataset

    content, expected = FOUND_NPZ[case]
    file = tmp_path / "data.npz"
    if content is None:
        file.write_bytes(b"")
    elif content == "npy":
        with open(file, "wb") as handle:
            np.save(handle, np.zeros(3))
    else:
        np.savez(file, **content)
    with pytest.raises(NASError) as err:
        load_dataset("npz", str(file))
    assert expected in str(err.value) and "\n" not in str(err.value), str(err.value)
