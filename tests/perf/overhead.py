"""agentgw's overhead over a minimal relay, measured end to end on this machine.

Starts `agentgw sim --reply-words 20` and, against it, three targets: the sim itself, the
minimal aiohttp relay (`tests/perf/relay.py`) and agentgw (SQLite store, one virtual model, a
price, a real key, spans written). Drives the same load at each (1 and 32 concurrent clients,
streaming and not), prints req/s, p50 and p99 per cell, and the two ratios agentgw is held to:

    agentgw / relay throughput at 32 clients  >= 0.70
    agentgw - relay p50 at 1 client           <= 1 ms

Run from the repository root (not collected by pytest):

    python -m tests.perf.overhead            # ~2.5 minutes
    python -m tests.perf.overhead --quick    # ~30 s smoke run

Each cell is measured in interleaved rounds (see `rounds.py`) so that a burst of other work on
the machine hits all three targets alike; the `other` column shows how much there was.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.perf.loadgen import Load, have_wrk
from tests.perf.rounds import (
    Measured,
    Rounds,
    p50_differences,
    run_window,
    throughput_ratios,
    warm,
)
from tests.perf.stack import Deployment, machine, revision, running

TARGETS = ("sim", "relay", "agentgw")
THROUGHPUT_TARGET = 0.70
LATENCY_TARGET_MS = 1.0


@dataclass(frozen=True)
class Cell:
    """One measured combination: a target, a number of concurrent clients, streaming or not."""

    target: str
    clients: int
    stream: bool

    @property
    def label(self) -> str:
        return f"{self.target:<8} {self.clients:>3} {'yes' if self.stream else 'no':<6}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table(cells: dict[Cell, Rounds]) -> str:
    """The measured cells, one line each: the median round, the spread, the noise."""
    head = (
        f"{'target':<8} {'cl':>3} {'stream':<6} {'req/s':>7} {'range':>11} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'ttft50':>7} {'ttft99':>7} {'cpu/req':>7} {'other':>5} {'err':>4}  tool"
    )
    lines = [head, "-" * len(head)]
    for cell, rounds in cells.items():
        r = rounds.median.result
        low, high = rounds.rps_range
        lines.append(
            f"{cell.label} {r.rps:>7.0f} {f'{low:.0f}-{high:.0f}':>11} {_ms(r.p50_ms):>7} "
            f"{_ms(r.p99_ms):>7} {_ms(r.ttft_p50_ms):>7} {_ms(r.ttft_p99_ms):>7} "
            f"{_num(rounds.cpu_us_per_request, '.0f'):>7} "
            f"{_num(rounds.worst_foreign_cores, '.2f'):>5} {rounds.errors:>4}  {r.tool}"
        )
    lines += [
        "req/s, p50, p99, ttft: the round with the median req/s; range: req/s over all rounds;",
        "cpu/req: median CPU µs the target process spent per request (the sim's excluded);",
        "other: cores taken by processes outside the benchmark in the worst round (noise).",
    ]
    return "\n".join(lines)


def _values(values: list[float], fmt: str) -> str:
    return ", ".join(format(v, fmt) for v in values)


def ratios(cells: dict[Cell, Rounds]) -> list[str]:
    """The two targets, said plainly: met or missed, and by how much."""
    out: list[str] = []
    for stream in (False, True):
        kind = "streaming" if stream else "non-streaming"
        gw, relay = cells.get(Cell("agentgw", 32, stream)), cells.get(Cell("relay", 32, stream))
        per_round = throughput_ratios(gw, relay) if gw and relay else []
        if per_round:
            ratio = statistics.median(per_round)
            verdict = "met" if ratio >= THROUGHPUT_TARGET else "MISSED"
            miss = "" if ratio >= THROUGHPUT_TARGET else f" by {THROUGHPUT_TARGET - ratio:.2f}"
            out.append(
                f"agentgw/relay req/s at 32 clients, {kind}: {ratio:.2f} "
                f"(target >= {THROUGHPUT_TARGET:.2f}: {verdict}{miss}; "
                f"rounds: {_values(per_round, '.2f')})"
            )
        gw, relay = cells.get(Cell("agentgw", 1, stream)), cells.get(Cell("relay", 1, stream))
        per_round = p50_differences(gw, relay) if gw and relay else []
        if per_round:
            delta = statistics.median(per_round)
            verdict = "met" if delta <= LATENCY_TARGET_MS else "MISSED"
            miss = "" if delta <= LATENCY_TARGET_MS else f" by {delta - LATENCY_TARGET_MS:.2f} ms"
            out.append(
                f"agentgw - relay p50 at 1 client, {kind}: {delta:+.2f} ms "
                f"(target <= {LATENCY_TARGET_MS:.0f} ms: {verdict}{miss}; "
                f"rounds: {_values(per_round, '+.2f')})"
            )
        gw, relay = cells.get(Cell("agentgw", 32, stream)), cells.get(Cell("relay", 32, stream))
        g = gw.cpu_us_per_request if gw else None
        r = relay.cpu_us_per_request if relay else None
        if g and r:
            out.append(
                f"CPU per request at 32 clients, {kind}: agentgw {g:.0f} µs, relay {r:.0f} µs "
                f"(relay/agentgw {r / g:.2f}, where a CPU-bound ratio tends)"
            )
    return out


def _load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def measure_all(
    dep: Deployment, *, clients: Sequence[int], duration: float, warmup: float, rounds: int
) -> dict[Cell, Rounds]:
    """Every cell, the targets taking turns round by round."""
    pids = [t.pid for t in dep.targets.values()]
    cells: dict[Cell, Rounds] = {}
    for stream, n in itertools.product((False, True), clients):
        loads = {
            name: Load(
                url=t.url,
                body=t.body(stream=stream),
                headers=t.headers,
                concurrency=n,
                duration=duration,
                warmup=warmup,
                stream=stream,
            )
            for name, t in ((name, dep.targets[name]) for name in TARGETS)
        }
        for load in loads.values():
            warm(load)
        windows: dict[str, list[Measured]] = {name: [] for name in loads}
        for _ in range(rounds):
            for name, load in loads.items():
                m = run_window(load, dep.targets[name].pid, pids)
                windows[name].append(m)
                cell = Cell(name, n, stream)
                print(f"  {cell.label} {m.result.rps:>8.0f} req/s", file=sys.stderr, flush=True)
        for name, measured in windows.items():
            cells[Cell(name, n, stream)] = Rounds(tuple(measured))
    return cells


def _json(cells: dict[Cell, Rounds], meta: dict[str, object]) -> str:
    rows = [
        {
            "target": c.target,
            "clients": c.clients,
            "stream": c.stream,
            "rounds": [
                {
                    **m.result.to_json(),
                    "cpu_us_per_request": m.cpu_us_per_request,
                    "foreign_cores": m.cpu.foreign_cores,
                }
                for m in rounds.rounds
            ],
        }
        for c, rounds in cells.items()
    ]
    return json.dumps({**meta, "cells": rows}, indent=2)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="agentgw overhead over a minimal relay")
    p.add_argument("--quick", action="store_true", help="~30 s smoke run (one 1 s round)")
    p.add_argument("--duration", type=int, default=3, help="seconds per round (default 3)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per cell")
    p.add_argument("--warmup", type=int, default=1, help="warm-up seconds per target and cell")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 32])
    p.add_argument("--reply-words", type=int, default=20)
    p.add_argument("--json", type=Path, help="also write every round to this file")
    args = p.parse_args(argv)
    duration, rounds = (1, 1) if args.quick else (args.duration, args.rounds)
    started = dt.datetime.now(dt.UTC)
    meta: dict[str, object] = {
        "date": started.isoformat(),
        "machine": machine(),
        "revision": revision(),
        "seconds_per_round": duration,
        "rounds": rounds,
        "load_average_before": _load(),
    }
    print(f"# agentgw overhead, {started:%Y-%m-%d %H:%M} UTC; {machine()}")
    print(f"# agentgw at {meta['revision']}; load average before: {meta['load_average_before']}")
    print(
        f"# {rounds} interleaved round(s) of {duration} s per cell after {args.warmup} s warm-up; "
        f"non-streaming load: {'wrk' if have_wrk() else 'aiohttp client'}; "
        "streaming: aiohttp client",
        flush=True,
    )
    with running(reply_words=args.reply_words) as dep:
        cells = measure_all(
            dep, clients=args.clients, duration=duration, warmup=args.warmup, rounds=rounds
        )
    print()
    print(table(cells))
    print()
    for line in ratios(cells):
        print(line)
    print(f"spans recorded by agentgw: {dep.spans_recorded}")
    print(f"# load average after: {_load()}")
    if any(c.errors for c in cells.values()):
        print("WARNING: some requests failed; see the err column", file=sys.stderr)
    if args.json:
        args.json.write_text(_json(cells, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
