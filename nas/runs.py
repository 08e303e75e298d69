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

    # -- history -----------------------------------------------------------------------------
    def append(self, record: Record) -> None:
        line = json.dumps({"index": record.index, "arch": dict(record.arch), "metrics": record.metrics,
                           "seconds": round(record.seconds, 4), "info": record.info}, sort_keys=True)
        with open(self.history_file, "a") as fh:
            fh.write(line + "\n")
            fh.flush()

    def history(self) -> list[Record]:
        """Recorded evaluations; a torn final line from a kill is dropped, any other bad line is an error."""
        if not self.history_file.exists():
            return []
        lines = self.history_file.read_text().splitlines()
        records = []
        for number, line in enumerate(lines, start=1):
            try:
                row = json.loads(line)
                records.append(Record(row["index"], Architecture(row["arch"]), row["metrics"], row.get("seconds", 0.0),
                                      row.get("info", {})))
            except (json.JSONDecodeError, KeyError, TypeError):
                if number == len(lines):
                    self._truncate(lines[:-1])
                    break
                raise NASError(f"run directory {str(self.path)!r} is corrupt: history.jsonl line {number} "
                               "is not a valid record") from None
        return records

    def _truncate(self, lines: list[str]) -> None:
        self.history_file.write_text("".join(line + "\n" for line in lines))

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
