"""Thread choice: the user's count wins, then OMP_NUM_THREADS, else the idle cores (at least one)."""
from __future__ import annotations

import os

import pytest
import torch

from nas import threads
from nas.space import NASError


def test_requested_count_wins_and_is_set(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    before = torch.get_num_threads()
    try:
        assert threads.set_threads(3) == 3 and torch.get_num_threads() == 3
        assert threads.choose_threads() == 2  # the environment next
    finally:
        torch.set_num_threads(before)
    with pytest.raises(NASError, match="threads -1 is not accepted"):
        threads.choose_threads(-1)


def test_idle_cores_are_counted(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "idle_cores", lambda: 0.2)  # every core busy: still one thread
    assert threads.choose_threads() == 1
    monkeypatch.setattr(threads, "idle_cores", lambda: 64.0)  # never more than the usable cores
    assert threads.choose_threads() == threads.usable_cores()
    monkeypatch.setattr(threads, "idle_cores", lambda: None)  # no /proc/stat: every usable core
    assert threads.choose_threads() == threads.usable_cores()


class FakeStat:
    """/proc/stat read twice: 4 cores; between the reads 300 jiffies busy and 100 idle (+ 0 iowait)."""

    def __init__(self) -> None:
        self.reads = iter(["cpu  1000 0 500 4000 100 0 0 0 0 0\ncpu0 ...",
                           "cpu  1200 0 600 4100 100 0 0 0 0 0\ncpu0 ..."])

    def read_text(self) -> str:
        return next(self.reads)


def test_idle_cores_from_proc_stat(monkeypatch):
    monkeypatch.setattr(threads, "STAT", FakeStat())
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    assert threads.idle_cores(0.0) == pytest.approx(1.0)  # a quarter of 4 cores idle


@pytest.mark.skipif(not threads.STAT.exists(), reason="no /proc/stat on this system")
def test_idle_cores_on_this_machine():
    idle = threads.idle_cores(0.1)
    assert idle is not None and 0.0 <= idle <= (os.cpu_count() or 1)
