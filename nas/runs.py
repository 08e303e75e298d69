"""The run directory: everything a search saw, self-describing and resumable.

    config.json        the command's settings, seed, package versions, evaluator description
    history.jsonl      one line per proposed architecture: index, arch, metrics (null if infeasible), seconds, info
    best.json          the best architecture, its metrics and the Pareto front (several objectives)
    best_weights.pt    trained weights of the best architecture (a state dict; loads with weights_only=True)
    best_weights.json  the index and architecture of the history record best_weights.pt belongs to
    run.lock           while a process searches in the folder: its pid and host (one writer per run folder)
    study.db           the Optuna study, for the optuna strategy
    checkpoints/       supernet strategies' checkpoints
    model/             the exported best model (net.py, weights.pt, model.ts, model.onnx, arch.json)
    search.png         accuracy vs. evaluations (and accuracy vs. cost with several objectives)
    summary.txt        the printed summary

A killed search resumes from this directory: each history line is appended with one write, every other file is
written to a temporary file and renamed over the old one, so a kill at any moment leaves whole files (at most a
torn last history line, which a resume cuts off). The weights of a new best are saved to a pending file before the
record that makes them best is appended, and renamed into best_weights.pt after it: a resume completes a pending
file whose record is in the history and deletes one whose record is not (`repair`), so best_weights.pt always
ends up belonging to the best record.
"""
from __future__ import annotations

import fcntl
import json
import os
import platform
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from nas.space import Architecture, NASError, brief
from nas.strategy import Record

LOCK_FILE = "run.lock"
WEIGHTS_INDEX = "best_weights.json"
PENDING_WEIGHTS = ".best_weights.{index}.tmp"
# settings a resume may take when given anew (the budget only upwards): they do not change what a record means
RESUMABLE = ("budget", "export", "train.device", "train.num_threads")
VERSIONED = ("torch", "numpy", "optuna", "networkx", "scikit-learn", "torch-geometric", "onnx", "onnxruntime")


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("nas-workbench", *VERSIONED):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it over `path`: a kill leaves the old
    file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _sync_folder(path: Path) -> None:
    """fsync a folder, so a rename in it survives a crash of the machine."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lookup(settings: Mapping[str, Any], key: str) -> Any:
    """The value of a dotted settings key ("train.epochs"); a training setting the run left out has TrainConfig's
    default."""
    head, _, rest = key.partition(".")
    if not rest:
        return settings.get(key)
    inner = settings.get(head) or {}
    if head == "train" and rest not in inner:
        from nas.train import TrainConfig

        field = TrainConfig.__dataclass_fields__.get(rest)
        return None if field is None else field.default
    return inner.get(rest)


def make_folder(path: Path, what: str) -> None:
    """Create folder `path` (and its parents); a one-line error when a file is in the way or it cannot be written."""
    if path.exists() and not path.is_dir():
        raise NASError(f"{what} {str(path)!r} is a file, not a folder; pick another path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NASError(f"cannot create {what} {str(path)!r}: {err.strerror}") from None


class RunDir:
    """A run directory on disk."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None

    # -- files -------------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.path / "config.json"

    @property
    def history_file(self) -> Path:
        return self.path / "history.jsonl"

    @property
    def weights_file(self) -> Path:
        return self.path / "best_weights.pt"

    @property
    def lock_file(self) -> Path:
        return self.path / LOCK_FILE

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    # -- create / open -----------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, config: dict[str, Any]) -> RunDir:
        """A new run directory holding `config` (`start`), created under its lock."""
        run = cls(path)
        with run.locked():
            run.start(config)
        return run

    def start(self, config: dict[str, Any]) -> None:
        """Write config.json for a new run (with the time and package versions); a one-line error when the folder
        already holds a run. Call it holding the lock (`locked`), so two new searches cannot both start."""
        if self.config_file.exists():
            raise NASError(f"run directory {str(self.path)!r} already holds a run; resume it with --resume or pick "
                           "another --run-dir")
        make_folder(self.path, "run directory")
        full = dict(config, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), versions=package_versions())
        write_atomic(self.config_file, json.dumps(full, indent=2, sort_keys=True).encode())

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        run = cls(path)
        if not run.path.is_dir():
            raise NASError(f"run directory {str(run.path)!r} "
                           f"{'is a file, not a folder' if run.path.exists() else 'does not exist'}")
        run.config()  # validates
        return run

    def config(self) -> dict[str, Any]:
        try:
            data = json.loads(self.config_file.read_text())
        except FileNotFoundError:
            raise NASError(f"{str(self.path)!r} is not a run directory: it has no config.json") from None
        except json.JSONDecodeError as err:
            raise NASError(f"run directory {str(self.path)!r} is corrupt: config.json is not valid JSON "
                           f"(line {err.lineno})") from None
        except UnicodeDecodeError:
            raise NASError(f"run directory {str(self.path)!r} is corrupt: config.json is not UTF-8 text") from None
        if not isinstance(data, dict) or "space" not in data or "strategy" not in data:
            raise NASError(f"run directory {str(self.path)!r} is corrupt: config.json lacks 'space' or 'strategy'")
        if not isinstance(data.get("settings", {}), dict):
            raise NASError(f"run directory {str(self.path)!r} is corrupt: config.json's settings are not an object")
        return data

    def settings(self) -> dict[str, Any]:
        """The search settings config.json holds (what `--resume` runs again)."""
        settings = self.config().get("settings")
        if not isinstance(settings, dict) or not {"space", "strategy", "seed", "budget"} <= settings.keys():
            raise NASError(f"run directory {str(self.path)!r} is corrupt: config.json has no search settings "
                           "(space, strategy, seed, budget) to resume")
        return settings

    def resume_settings(self, given: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
        """The settings a resume runs, and a line saying what it took and kept. `given`: the settings given anew
        (dotted keys, e.g. "train.epochs"). Those equal to the stored ones are kept; those in `RESUMABLE` (the
        budget only upwards) are taken and saved in config.json; any other that differs is a one-line `NASError`
        naming them all, since it would change what the recorded evaluations mean."""
        stored = self.settings()
        settings = json.loads(json.dumps(stored))
        taken, refused = [], []
        for key, value in given.items():
            old = _lookup(stored, key)
            if json.loads(json.dumps(value)) == old:
                continue
            change = f"{key.removeprefix('train.')} {brief(value)} (stored {brief(old)})"
            if key in RESUMABLE and not (key == "budget" and isinstance(old, int) and value < old):
                head, _, rest = key.partition(".")
                if rest:
                    settings.setdefault(head, {})[rest] = value
                else:
                    settings[key] = value
                taken.append(change)
            else:
                refused.append(change)
        if refused:
            raise NASError(f"cannot resume {str(self.path)!r} with {', '.join(refused)}: that changes what its "
                           f"records mean (only {', '.join(k.removeprefix('train.') for k in RESUMABLE)} may change, "
                           "the budget only upwards); resume without them or start a new run with --run-dir")
        if taken:
            config = dict(self.config(), settings=settings)
            write_atomic(self.config_file, json.dumps(config, indent=2, sort_keys=True).encode())
        return settings, (f"resuming {self.path}: takes {', '.join(taken)}; keeps every other stored setting"
                          if taken else f"resuming {self.path} with its stored settings")

    def discard_unstarted(self) -> None:
        """Remove a new run that failed before recording anything: its config.json and evaluator.json, then the
        folder when nothing else is in it. Call it after the lock is released."""
        if not self.path.is_dir() or {p.name for p in self.path.iterdir()} - {"config.json", "evaluator.json"}:
            return
        for name in ("config.json", "evaluator.json"):
            (self.path / name).unlink(missing_ok=True)
        self.path.rmdir()

    # -- one writer ----------------------------------------------------------------------------
    @contextmanager
    def locked(self) -> Iterator[RunDir]:
        """Hold the run folder's lock (run.lock: an exclusive `flock` and the owner's pid and host) for the block;
        nested blocks of the same RunDir share it. A one-line `NASError` naming the owner's pid when another process
        holds it; the lock of a killed process is taken over (said on stderr). Released on leaving the block,
        on errors and Ctrl-C too; the kernel drops the flock of a killed process."""
        if self._lock_fd is not None:
            yield self
            return
        self._acquire()
        try:
            yield self
        finally:
            self._release()

    def _acquire(self) -> None:
        make_folder(self.path, "run directory")
        while True:
            try:
                fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise NASError(f"cannot lock run directory {str(self.path)!r}: {err.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _read_owner(fd, wait=True)
                os.close(fd)
                raise NASError(f"run directory {str(self.path)!r} is in use by pid {owner.get('pid', '?')} on "
                               f"{owner.get('host', '?')} (since {owner.get('since', '?')}); one process writes a run "
                               "folder at a time: wait for it to end or stop it") from None
            try:
                if os.fstat(fd).st_ino == os.stat(self.lock_file).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)  # the owner removed the file between our open and our lock: lock the new one
        previous = _read_owner(fd)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if previous.get("host", me["host"]) != me["host"]:
            os.close(fd)
            raise NASError(f"run directory {str(self.path)!r} is locked by pid {previous.get('pid', '?')} on host "
                           f"{previous['host']!r}, which this host cannot check; if that process has ended, delete "
                           f"{str(self.lock_file)!r}")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        self._lock_fd = fd
        if previous:
            print(f"nas: run directory {str(self.path)!r}: took over the lock of pid {previous.get('pid', '?')}, "
                  "which ended without releasing it (killed)", file=sys.stderr)

    def _release(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        self.lock_file.unlink(missing_ok=True)  # before unlocking: who opened it sees it gone and retries
        os.close(fd)

    # -- history -----------------------------------------------------------------------------
    def append(self, record: Record, weights: Mapping[str, Any] | None = None) -> None:
        """Append `record` to history.jsonl with one write. With `weights` (the state dict of the record's model,
        which makes it the best), save them kill-safe: first to a pending file (fsynced), then append the record
        (fsynced), then name the record in best_weights.json and rename the pending file into best_weights.pt.
        A kill before the append leaves the old best and an orphan pending file, one after it a pending file of
        a recorded best; `repair` deletes the former and completes the latter."""
        pending = self.path / PENDING_WEIGHTS.format(index=record.index)
        if weights is not None:
            import torch

            with open(pending, "wb") as fh:
                torch.save(dict(weights), fh)
                fh.flush()
                os.fsync(fh.fileno())
        line = json.dumps({"index": record.index, "arch": dict(record.arch), "metrics": record.metrics,
                           "seconds": round(record.seconds, 4), "info": record.info}, sort_keys=True) + "\n"
        fd = os.open(self.history_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
            if weights is not None:
                os.fsync(fd)
        finally:
            os.close(fd)
        if weights is not None:
            self._install_weights(pending, record)

    def history(self) -> list[Record]:
        """Recorded evaluations, read without touching the file: a torn last line (a kill in the middle of a write,
        no newline after it) is left out, any other bad line is a one-line error (`repair_history` fixes the
        former before a resume appends)."""
        return self._read_history()[0]

    def repair(self) -> list[str]:
        """What a resume repairs before it appends (holding the lock): a torn last history line (`repair_history`)
        and pending best weights a kill left (`repair_weights`); what was repaired, one line each."""
        return [note for note in (self.repair_history(), *self.repair_weights()) if note]

    def repair_weights(self) -> list[str]:
        """Complete the pending weights of a recorded best (a kill came after its record was appended) and delete
        those of an evaluation the history lacks (it is evaluated again); what was done, one line each."""
        indices = {r.index: r for r in self.history()}
        notes = []
        for pending in sorted(self.path.glob(PENDING_WEIGHTS.format(index="*"))):
            index = pending.name.split(".")[2]
            record = indices.get(int(index)) if index.isdigit() else None
            if record is None:
                pending.unlink()
                notes.append(f"deleted {pending.name}, the weights of an evaluation a kill left unrecorded")
            else:
                self._install_weights(pending, record)
                notes.append(f"best_weights.pt: installed the weights of best record {record.index}, which a kill "
                             "left pending")
        return notes

    def weights_index(self) -> int | None:
        """The index of the history record best_weights.pt belongs to (best_weights.json); None without one."""
        data = self.read_json(WEIGHTS_INDEX)
        return data.get("index") if isinstance(data, dict) and self.weights_file.exists() else None

    def _install_weights(self, pending: Path, record: Record) -> None:
        """Name `record` in best_weights.json, then rename its `pending` weights into best_weights.pt (a kill
        between the two leaves the pending file, which `repair_weights` installs again)."""
        write_atomic(self.path / WEIGHTS_INDEX, json.dumps({"index": record.index, "arch": dict(record.arch)},
                                                           sort_keys=True).encode())
        os.replace(pending, self.weights_file)
        _sync_folder(self.path)

    def repair_history(self) -> str | None:
        """Cut a torn last line off history.jsonl (atomically); what was cut, or None when nothing was."""
        _, torn = self._read_history()
        if torn is None:
            return None
        data = self.history_file.read_bytes()
        write_atomic(self.history_file, data[:torn])
        return f"history.jsonl: cut a torn last line ({len(data) - torn} bytes) a killed run left"

    def _read_history(self) -> tuple[list[Record], int | None]:
        """The records, and where a torn last line starts (None: there is none)."""
        if not self.history_file.exists():
            return [], None
        data = self.history_file.read_bytes()
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline, else a torn last line
        records = [self._record(line, number) for number, line in enumerate(lines, start=1)]
        return records, (len(data) - len(tail) if tail else None)

    def _record(self, line: bytes, number: int) -> Record:
        try:
            row = json.loads(line)
            if not (isinstance(row, dict) and isinstance(row["index"], int) and isinstance(row["arch"], dict)
                    and (row["metrics"] is None or isinstance(row["metrics"], dict)
                         and all(isinstance(v, (int, float)) for v in row["metrics"].values()))
                    and isinstance(row.get("info", {}), dict)):
                raise TypeError("not a record")
            return Record(row["index"], Architecture(row["arch"]), row["metrics"], float(row.get("seconds", 0.0)),
                          row.get("info", {}))
        except (ValueError, KeyError, TypeError):  # JSONDecodeError, UnicodeDecodeError, ArchitectureError
            raise NASError(f"run directory {str(self.path)!r} is corrupt: history.jsonl line {number} is not a "
                           "valid record; move the line out of the file (or the file, to start afresh) and "
                           "resume") from None

    # -- results -----------------------------------------------------------------------------
    def write_json(self, name: str, data: Any) -> None:
        """Write `name` in the run folder atomically (`write_atomic`)."""
        write_atomic(self.path / name, json.dumps(data, indent=2, sort_keys=True).encode())

    def best(self) -> dict[str, Any] | None:
        """best.json (None before a search finishes); a one-line error when it is not an object with an arch, numeric
        metrics and, where present, a positive input shape and class count."""
        best = self.read_json("best.json")
        if best is None:
            return None
        whole = isinstance(best, dict) and isinstance(best.get("arch"), dict) and isinstance(best.get("metrics"), dict)
        shape, classes = (best.get("input_shape", [1]), best.get("num_classes", 1)) if whole else ([], 0)
        if not (whole and all(isinstance(v, (int, float)) for v in best["metrics"].values())
                and isinstance(shape, list) and all(isinstance(n, int) and n > 0 for n in shape)
                and isinstance(classes, int) and classes > 0):
            raise NASError(f"run directory {str(self.path)!r} is corrupt: best.json is not an object with an arch, "
                           "numeric metrics, an input shape and a class count; a resume rewrites it")
        return best

    def weights(self) -> dict[str, Any]:
        """best_weights.pt's state dict, loaded without unpickling code (weights_only); a one-line error when it is
        not a state dict of tensors."""
        return load_state_dict(self.weights_file, f"run directory {str(self.path)!r}: best_weights.pt")

    def read_json(self, name: str) -> Any:
        file = self.path / name
        if not file.exists():
            return None
        try:
            return json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise NASError(f"run directory {str(self.path)!r} is corrupt: {name} is not valid JSON") from None


def load_state_dict(file: Path, what: str) -> dict[str, Any]:
    """A state dict saved with torch.save, loaded with weights_only=True (no code in the file runs); a one-line
    error naming `what` when the file is not one."""
    import pickle

    import torch

    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise NASError(f"{what} is not a plain state dict of tensors: it asks to unpickle other objects, which may run "
                       "code, so it was not loaded") from None
    except (EOFError, RuntimeError, ValueError, OSError) as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0][:120]
        raise NASError(f"{what} is not a torch state dict ({reason})") from None
    if not (isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise NASError(f"{what} holds a {type(state).__name__}, not a state dict of tensors")
    return state


def _read_owner(fd: int, wait: bool = False) -> dict[str, Any]:
    """The pid, host and time a lock file holds ({} when empty or unreadable); with `wait`, give an owner that
    has just locked it a moment to write them."""
    for _ in range(20 if wait else 1):
        try:
            owner = json.loads(os.pread(fd, 4096, 0) or b"{}")
            if isinstance(owner, dict) and owner:
                return owner
        except ValueError:
            pass
        if wait:
            time.sleep(0.01)
    return {}
