"""How many CPU threads torch uses: what the user asked for, else the cores that are idle right now.

Torch's intra-op threads spin and wait for each other; on a machine where another process keeps a core
busy, a thread per core makes every operation wait for the slowest thread and a small model trains several
times slower than with one thread fewer (measured: `benchmarks/threads.md`). So unless the user says how many
(`--threads`, `TrainConfig.num_threads`, or `OMP_NUM_THREADS`), we count the cores idle over a short window
(`/proc/stat`; all usable cores where that file does not exist) and use that many, at least one.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from nas.space import NASError

STAT = Path("/proc/stat")
MAX_THREADS_PER_CORE = 8  # more threads than this per core only slows torch down


def usable_cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _busy_idle() -> tuple[int, int]:
    fields = [int(v) for v in STAT.read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, idle


def idle_cores(window: float = 0.25) -> float | None:
    """How many cores were idle, on average, over the next `window` seconds (None where /proc/stat is absent)."""
    try:
        busy0, idle0 = _busy_idle()
        time.sleep(window)
        busy1, idle1 = _busy_idle()
    except (OSError, ValueError, IndexError):
        return None
    total = (busy1 - busy0) + (idle1 - idle0)
    return (os.cpu_count() or 1) * (idle1 - idle0) / total if total > 0 else None


def choose_threads(requested: int = 0) -> int:
    """`requested` when > 0, else `OMP_NUM_THREADS` when set, else the idle cores (rounded, 1 .. usable)."""
    most = MAX_THREADS_PER_CORE * (os.cpu_count() or 1)
    if requested < 0 or requested > most:  # torch crashes (segfault) when asked for a million threads
        raise NASError(f"threads {requested} is not accepted: give 0 (the idle cores) or a count from 1 to {most}")
    if requested:
        return requested
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and 0 < int(env) <= most:
        return int(env)
    cores = usable_cores()
    idle = idle_cores()
    return cores if idle is None else max(1, min(cores, round(idle)))


def set_threads(requested: int = 0) -> int:
    """Set torch's intra-op threads by `choose_threads(requested)`; returns the count."""
    threads = choose_threads(requested)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
