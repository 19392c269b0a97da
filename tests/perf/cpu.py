"""CPU accounting around one measured window (Linux `/proc`; empty elsewhere).

Two numbers make a run on a shared 2-core machine readable: the CPU time the target server
spent per request (barely moved by other load, unlike req/s), and how much CPU processes that
are not part of the benchmark took meanwhile (the noise, made visible).
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _busy_seconds() -> float | None:
    """CPU seconds the whole machine spent busy since boot."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICK


def _process_seconds(pid: int) -> float | None:
    """User + system CPU seconds of one running process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _children_seconds() -> float:
    """CPU seconds of this process's children that have been waited for (the load tools)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _self_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Snapshot:
    """Counters at one instant: wall clock, machine busy time, the target's and ours."""

    wall: float
    busy: float | None
    target: float | None
    ours: float | None

    @classmethod
    def take(cls, target: int | Sequence[int], servers: Iterable[int]) -> Snapshot:
        """`target`: one pid, or several whose CPU counts together (replicas of one service)."""
        running = [_process_seconds(pid) for pid in servers]
        ours = None if None in running else sum(s or 0.0 for s in running)
        if ours is not None:
            ours += _children_seconds() + _self_seconds()
        pids = [target] if isinstance(target, int) else list(target)
        spent = [_process_seconds(pid) for pid in pids]
        mine = None if None in spent else sum(s or 0.0 for s in spent)
        return cls(time.perf_counter(), _busy_seconds(), mine, ours)


@dataclass(frozen=True)
class Usage:
    """CPU over one window: the target's seconds, and other processes' average cores."""

    target_seconds: float | None
    foreign_cores: float | None

    @classmethod
    def between(cls, a: Snapshot, b: Snapshot) -> Usage:
        target = None if a.target is None or b.target is None else b.target - a.target
        foreign = None
        if None not in (a.busy, b.busy, a.ours, b.ours) and b.wall > a.wall:
            assert a.busy is not None and b.busy is not None
            assert a.ours is not None and b.ours is not None
            spent = (b.busy - a.busy) - (b.ours - a.ours)
            foreign = max(0.0, spent / (b.wall - a.wall))
        return cls(target, foreign)
