"""Measured rounds: one load window with CPU accounting, repeated and summarized by median.

On a shared 2-core machine a burst of someone else's work can halve one window. Targets are
therefore measured in interleaved rounds (sim, relay, agentgw, sim, relay, agentgw, …) and each
cell reports its median round, the spread, and how much foreign CPU its worst round saw; ratios
are taken round by round, between windows seconds apart, and their median reported.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

from tests.perf.cpu import Snapshot, Usage
from tests.perf.loadgen import Load, Result, measure


@dataclass(frozen=True)
class Measured:
    """One window's load result and the CPU accounting around it."""

    result: Result
    cpu: Usage

    @property
    def cpu_us_per_request(self) -> float | None:
        """CPU µs the target process spent per request completed in the window."""
        if self.cpu.target_seconds is None or not self.result.requests:
            return None
        return 1e6 * self.cpu.target_seconds / self.result.requests


def warm(load: Load, *, prefer_wrk: bool = True) -> None:
    """A run of `load.warmup` seconds whose results are thrown away."""
    if load.warmup > 0:
        measure(replace(load, duration=load.warmup, warmup=0), prefer_wrk=prefer_wrk)


def run_window(
    load: Load, target: int | Sequence[int], servers: Sequence[int], *, prefer_wrk: bool = True
) -> Measured:
    """One measured window (no warm-up) with CPU accounting around it.

    `target` is the pid (or pids, summed) whose CPU per request is reported; `servers` are
    every benchmark process still running, whose CPU is not counted as foreign.
    """
    before = Snapshot.take(target, servers)
    result = measure(replace(load, warmup=0), prefer_wrk=prefer_wrk)
    after = Snapshot.take(target, servers)
    return Measured(result, Usage.between(before, after))


@dataclass(frozen=True)
class Rounds:
    """Every round of one cell."""

    rounds: tuple[Measured, ...]

    @property
    def median(self) -> Measured:
        """The round with the median throughput (the lower middle one for an even count)."""
        ordered = sorted(self.rounds, key=lambda m: m.result.rps)
        return ordered[(len(ordered) - 1) // 2]

    @property
    def rps_range(self) -> tuple[float, float]:
        rps = [m.result.rps for m in self.rounds]
        return min(rps), max(rps)

    @property
    def cpu_us_per_request(self) -> float | None:
        values = [v for m in self.rounds if (v := m.cpu_us_per_request) is not None]
        return statistics.median(values) if values else None

    @property
    def worst_foreign_cores(self) -> float | None:
        values = [v for m in self.rounds if (v := m.cpu.foreign_cores) is not None]
        return max(values) if values else None

    @property
    def errors(self) -> int:
        return sum(m.result.errors for m in self.rounds)


def throughput_ratios(a: Rounds, b: Rounds) -> list[float]:
    """`a`'s req/s over `b`'s, round by round."""
    pairs = zip(a.rounds, b.rounds, strict=True)
    return [x.result.rps / y.result.rps for x, y in pairs if y.result.rps]


def p50_differences(a: Rounds, b: Rounds) -> list[float]:
    """`a`'s p50 minus `b`'s, in ms, round by round."""
    return [x.result.p50_ms - y.result.p50_ms for x, y in zip(a.rounds, b.rounds, strict=True)]
