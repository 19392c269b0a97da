"""agentgw's overhead over a minimal relay, measured end to end on this machine.

Starts `agentgw sim --reply-words 20` and, against it, three targets: the sim itself, the
minimal aiohttp relay (`tests/perf/relay.py`) and agentgw (SQLite store, one virtual model, a
price, a real key, spans written). Drives the same load at each (1 and 32 concurrent clients
by default, streaming and not), prints req/s, p50 and p99 per cell, and the ratios agentgw is
held to:

    agentgw / relay throughput at 32 clients              >= 0.70
    agentgw - relay p50 at 1 client                       <= 1 ms
    agentgw+pii / relay throughput at 32 clients          >= 0.50  (pattern-mode PII on)
    agentgw+pii-w / relay throughput at 32 clients        >= 0.50  (the same, in a worker)

Run from the repository root (not collected by pytest):

    python -m tests.perf.overhead            # ~2.5 minutes
    python -m tests.perf.overhead --quick    # ~30 s smoke run
    python -m tests.perf.overhead --clients 1,32,128 --pii off,on
    python -m tests.perf.overhead --clients 32 --pii off,on --unique   # every prompt new, with PII
    python -m tests.perf.overhead --clients 32 --pii on,workers --unique --duration 4 --rounds 5

`--pii on` adds a second agentgw process, `agentgw+pii`, the same but with the PII filter in
pattern mode (`filters.pii: {action: redact}`), measured in the same rounds. The default prompt
has no digits or `@`, so the filter's pre-check passes it without analysis (and its cache would
answer a repeated text anyway); `--unique` sends every request a new prompt with an e-mail
address and a phone number in it, which the filter must analyse and redact: its full cost.
`--pii workers` adds `agentgw+pii-w`: pattern mode with the analysis in one worker process
(`filters.pii.workers: 1`). A target's CPU per request counts its whole process tree, so a
gateway's workers are in its figure, not in the `other` column.

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
from tests.perf.memory import descendants
from tests.perf.rounds import (
    Measured,
    Rounds,
    p50_differences,
    run_window,
    throughput_ratios,
    warm,
)
from tests.perf.stack import PII_PATTERN, PII_WORKERS, Deployment, machine, revision, running

PII_TARGET = "agentgw+pii"
PII_WORKERS_TARGET = "agentgw+pii-w"
# `--pii` words -> the agentgw process each one adds (name, extra YAML).
PII_MODES = {
    "off": ("agentgw", ""),
    "on": (PII_TARGET, PII_PATTERN),
    "workers": (PII_WORKERS_TARGET, PII_WORKERS),
}
THROUGHPUT_TARGET = 0.70
PII_THROUGHPUT_TARGET = 0.50
LATENCY_TARGET_MS = 1.0
# Throughput targets are set at this many clients; other client counts are reported only.
TARGET_CLIENTS = 32


@dataclass(frozen=True)
class Cell:
    """One measured combination: a target, a number of concurrent clients, streaming or not."""

    target: str
    clients: int
    stream: bool

    @property
    def label(self) -> str:
        return f"{self.target:<13} {self.clients:>3} {'yes' if self.stream else 'no':<6}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table(cells: dict[Cell, Rounds]) -> str:
    """The measured cells, one line each: the median round, the spread, the noise."""
    head = (
        f"{'target':<13} {'cl':>3} {'stream':<6} {'req/s':>7} {'range':>11} {'p50 ms':>7} "
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
        "cpu/req: median CPU µs the target's processes (workers too) spent per request;",
        "other: cores taken by processes outside the benchmark in the worst round (noise).",
    ]
    return "\n".join(lines)


def _values(values: list[float], fmt: str) -> str:
    return ", ".join(format(v, fmt) for v in values)


def _gateways(cells: dict[Cell, Rounds]) -> list[str]:
    names = {c.target for c in cells} - {"sim", "relay"}
    return sorted(names, key=lambda n: (n != "agentgw", n))


def _throughput_line(name: str, n: int, kind: str, per_round: list[float]) -> str:
    ratio = statistics.median(per_round)
    goal = PII_THROUGHPUT_TARGET if name in (PII_TARGET, PII_WORKERS_TARGET) else THROUGHPUT_TARGET
    if n != TARGET_CLIENTS:
        judged = "no target at this count"
    elif ratio >= goal:
        judged = f"target >= {goal:.2f}: met"
    else:
        judged = f"target >= {goal:.2f}: MISSED by {goal - ratio:.2f}"
    return (
        f"{name}/relay req/s at {n} client{'s' if n != 1 else ''}, {kind}: {ratio:.2f} "
        f"({judged}; rounds: {_values(per_round, '.2f')})"
    )


def ratios(cells: dict[Cell, Rounds]) -> list[str]:
    """The targets, said plainly: met or missed, and by how much; other counts as measured."""
    out: list[str] = []
    counts = sorted({c.clients for c in cells})
    for name, stream in itertools.product(_gateways(cells), (False, True)):
        kind = "streaming" if stream else "non-streaming"
        for n in counts:
            gw, relay = cells.get(Cell(name, n, stream)), cells.get(Cell("relay", n, stream))
            per_round = throughput_ratios(gw, relay) if gw and relay else []
            if per_round:
                out.append(_throughput_line(name, n, kind, per_round))
        gw, relay = cells.get(Cell(name, 1, stream)), cells.get(Cell("relay", 1, stream))
        per_round = p50_differences(gw, relay) if gw and relay else []
        if per_round:
            delta = statistics.median(per_round)
            verdict = "met" if delta <= LATENCY_TARGET_MS else "MISSED"
            miss = "" if delta <= LATENCY_TARGET_MS else f" by {delta - LATENCY_TARGET_MS:.2f} ms"
            out.append(
                f"{name} - relay p50 at 1 client, {kind}: {delta:+.2f} ms "
                f"(target <= {LATENCY_TARGET_MS:.0f} ms: {verdict}{miss}; "
                f"rounds: {_values(per_round, '+.2f')})"
            )
        for n in counts:
            gw, relay = cells.get(Cell(name, n, stream)), cells.get(Cell("relay", n, stream))
            g = gw.cpu_us_per_request if gw else None
            r = relay.cpu_us_per_request if relay else None
            if g and r and n > 1:
                out.append(
                    f"CPU per request at {n} clients, {kind}: {name} {g:.0f} µs, "
                    f"relay {r:.0f} µs (relay/{name} {r / g:.2f}, where a CPU-bound ratio tends)"
                )
    return out


def _load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def measure_all(
    dep: Deployment,
    *,
    clients: Sequence[int],
    duration: float,
    warmup: float,
    rounds: int,
    unique: bool = False,
) -> dict[Cell, Rounds]:
    """Every cell, the targets taking turns round by round.

    A target's CPU is its whole process tree's (a gateway's PII workers included).
    """
    trees = {name: (t.pid, *descendants(t.pid)) for name, t in dep.targets.items()}
    pids = [pid for tree in trees.values() for pid in tree]
    cells: dict[Cell, Rounds] = {}
    for stream, n in itertools.product((False, True), clients):
        loads = {
            name: Load(
                url=t.url,
                body=t.body(stream=stream, unique=unique),
                headers=t.headers,
                concurrency=n,
                duration=duration,
                warmup=warmup,
                stream=stream,
                vary=unique,
            )
            for name, t in dep.targets.items()
        }
        for load in loads.values():
            warm(load)
        windows: dict[str, list[Measured]] = {name: [] for name in loads}
        for _ in range(rounds):
            for name, load in loads.items():
                m = run_window(load, trees[name], pids)
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


def _ints(text: str) -> list[int]:
    """`1,32,128` (or `32`) as integers."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,32,128, not {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("client counts are positive")
    return values


def _switches(text: str) -> list[str]:
    """`off,on,workers` (any of them) as a list of `PII_MODES` keys."""
    values = [w.strip().lower() for w in text.split(",") if w.strip()]
    if not values or any(v not in PII_MODES for v in values):
        raise argparse.ArgumentTypeError(f"expected off, on, workers or a list, not {text!r}")
    return values


def gateway_variants(pii: Sequence[str]) -> dict[str, str]:
    """The agentgw processes to run, one per `--pii` mode, in `PII_MODES` order."""
    return dict(PII_MODES[mode] for mode in PII_MODES if mode in pii)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="agentgw overhead over a minimal relay")
    p.add_argument("--quick", action="store_true", help="~30 s smoke run (one 1 s round)")
    p.add_argument("--duration", type=int, default=3, help="seconds per round (default 3)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per cell")
    p.add_argument("--warmup", type=int, default=1, help="warm-up seconds per target and cell")
    p.add_argument(
        "--clients", type=_ints, nargs="+", default=[[1, 32]], help="e.g. 1,32,128 or 1 32 128"
    )
    p.add_argument(
        "--pii",
        type=_switches,
        default=["off"],
        help="off (default), on (pattern mode), workers (in a worker process), or a list",
    )
    p.add_argument(
        "--unique", action="store_true", help="every prompt new and holding PII (see above)"
    )
    p.add_argument("--reply-words", type=int, default=20)
    p.add_argument("--json", type=Path, help="also write every round to this file")
    args = p.parse_args(argv)
    duration, rounds = (1, 1) if args.quick else (args.duration, args.rounds)
    clients = sorted({n for group in args.clients for n in group})
    started = dt.datetime.now(dt.UTC)
    meta: dict[str, object] = {
        "date": started.isoformat(),
        "machine": machine(),
        "revision": revision(),
        "seconds_per_round": duration,
        "rounds": rounds,
        "load_average_before": _load(),
        "clients": clients,
        "pii": args.pii,
        "unique_prompts": args.unique,
    }
    print(f"# agentgw overhead, {started:%Y-%m-%d %H:%M} UTC; {machine()}")
    print(f"# agentgw at {meta['revision']}; load average before: {meta['load_average_before']}")
    print(
        f"# {rounds} interleaved round(s) of {duration} s per cell after {args.warmup} s warm-up; "
        f"non-streaming load: {'wrk' if have_wrk() else 'aiohttp client'}; "
        "streaming: aiohttp client; "
        f"prompt: {'new per request, with PII' if args.unique else 'fixed, without PII'}",
        flush=True,
    )
    with running(reply_words=args.reply_words, gateways=gateway_variants(args.pii)) as dep:
        cells = measure_all(
            dep,
            clients=clients,
            duration=duration,
            warmup=args.warmup,
            rounds=rounds,
            unique=args.unique,
        )
    print()
    print(table(cells))
    print()
    for line in ratios(cells):
        print(line)
    for name, spans in dep.spans_by_gateway.items():
        print(f"spans recorded by {name}: {spans}")
    print(f"# load average after: {_load()}")
    if any(c.errors for c in cells.values()):
        print("WARNING: some requests failed; see the err column", file=sys.stderr)
    if args.json:
        args.json.write_text(_json(cells, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
