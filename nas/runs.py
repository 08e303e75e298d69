"""The run directory: everything a search saw, self-describing and resumable.

    config.json        the command's settings, seed, package versions, evaluator description
    history.jsonl      one line per proposed architecture: index, arch, metrics (null if infeasible), seconds, info
    best.json          the best architecture, its metrics and the Pareto front (several objectives)
    best_weights.pt    trained weights of the best architecture (a state dict; loads with weights_only=True)
    study.db           the Optuna study, for the optuna strategy
    checkpoints/       supernet strategies' checkpoints
    model/             the exported best model (net.py, weights.pt, model.ts, model.onnx, arch.json)
    search.png         accuracy vs. evaluations (and accuracy vs. cost with several objectives)
    summary.txt        the printed summary

A killed search resumes from this directory: history lines are appended and flushed one by one, a torn last
line (killed mid-write) is dropped, and nothing recorded is evaluated again.
"""
from __future__ import annotations

import json
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from nas.space import Architecture, NASError
from nas.strategy import Record

VERSIONED = ("torch", "numpy", "optuna", "networkx", "scikit-learn", "torch-geometric", "onnx", "onnxruntime")


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("nas-workbench", *VERSIONED):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


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
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    # -- create / open -----------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, config: dict[str, Any]) -> RunDir:
        run = cls(path)
        if run.config_file.exists():
            raise NASError(f"run directory {str(run.path)!r} already holds a run; resume it with --resume or pick "
                           "another --run-dir")
        make_folder(run.path, "run directory")
        full = dict(config, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), versions=package_versions())
        run.config_file.write_text(json.dumps(full, indent=2, sort_keys=True))
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        run = cls(path)
        if not run.path.is_dir():
            raise NASError(f"run directory {str(run.path)!r} does not exist")
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
        if not isinstance(data, dict) or "space" not in data or "strategy" not in data:
            raise NASError(f"run directory {str(self.path)!r} is corrupt: config.json lacks 'space' or 'strategy'")
        return data

    def settings(self) -> dict[str, Any]:
        """The search settings config.json holds (what `--resume` runs again)."""
        settings = self.config().get("settings")
        if not isinstance(settings, dict) or not {"space", "strategy", "seed", "budget"} <= settings.keys():
            raise NASError(f"run directory {str(self.path)!r} is corrupt: config.json has no search settings "
                           "(space, strategy, seed, budget) to resume")
        return settings

    # -- history -----------------------------------------------------------------------------
    def append(self, record: Record) -> None:
        line = json.dumps({"index": record.index, "arch": dict(record.arch), "metrics": record.metrics,
                           "seconds": round(record.seconds, 4), "info": record.info}, sort_keys=True)
        with open(self.history_file, "a") as fh:
            fh.write(line + "\n")
            fh.flush()

    def history(self) -> list[Record]:
        """Recorded evaluations, read without touching the file: a torn last line (a kill in the middle of a write,
        no newline after it) is left out, any other bad line is a one-line error (`repair_history` fixes the
        former before a resume appends)."""
        return self._read_history()[0]

    def repair_history(self) -> str | None:
        """Cut a torn last line off history.jsonl (atomically); what was cut, or None when nothing was."""
        _, torn = self._read_history()
        if torn is None:
            return None
        data = self.history_file.read_bytes()
        tmp = self.path / ".history.tmp"
        tmp.write_bytes(data[:torn])
        tmp.replace(self.history_file)
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
                    and (row["metrics"] is None or isinstance(row["metrics"], dict))
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
        tmp = self.path / f".{name}.tmp"
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        tmp.replace(self.path / name)

    def read_json(self, name: str) -> Any:
        file = self.path / name
        if not file.exists():
            return None
        try:
            return json.loads(file.read_text())
        except json.JSONDecodeError:
            raise NASError(f"run directory {str(self.path)!r} is corrupt: {name} is not valid JSON") from None

    def save_weights(self, state_dict: dict) -> None:
        import torch

        tmp = self.path / ".best_weights.tmp"
        torch.save(state_dict, tmp)
        tmp.replace(self.weights_file)
