"""agentgw's memory (RSS): idle after start, at its peak under load, and after the load.

Starts the sim and, against it, the minimal relay (for scale) and three agentgw processes:
no content filters, the PII filter in pattern mode, and the PII filter with NER
(`filters.pii.ner: true`, spaCy's small English model). Each is measured in turn:

- idle: resident memory right after it reported ready (the NER model is loaded at start);
- load: 32 clients (default) for a few seconds, non-streaming then streaming, every prompt new
  and holding an e-mail address and a phone number, so that every text is analysed and the
  filter's caches fill as they would in use;
- peak: the kernel's high-water mark of the process's resident set (`VmHWM`), so nothing
  between two samples is missed; after: the resident set once the load has stopped.

The target (issue 11): under 250 MB with NER loaded. Run from the repository root (not
collected by pytest):

    python -m tests.perf.memory                   # ~1.5 minutes
    python -m tests.perf.memory --seconds 3       # shorter load phases
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.perf.loadgen import Load, Result, measure
from tests.perf.stack import PII_NER, PII_PATTERN, Target, machine, revision, running

NER_TARGET = "agentgw+ner"
RSS_TARGET_MB = 250.0
GATEWAYS = {"agentgw": "", "agentgw+pii": PII_PATTERN, NER_TARGET: PII_NER}


def _status_kb(pid: int, field: str) -> int | None:
    """A `kB` line of /proc/PID/status (VmRSS, VmHWM), or None when it cannot be read."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def _children(pid: int) -> list[int]:
    """Every descendant of `pid` (worker processes, if a target has any)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
        except OSError:
            continue
        for child in (int(x) for x in text.split()):
            found += [child, *_children(child)]
    return found


def rss_mb(pid: int) -> float | None:
    """Resident memory of `pid` and its descendants, in MB (10^6 bytes)."""
    own = _status_kb(pid, "VmRSS")
    if own is None:
        return None
    kb = own + sum(_status_kb(c, "VmRSS") or 0 for c in _children(pid))
    return kb * 1024 / 1e6


def peak_mb(pid: int) -> float | None:
    """The kernel's high-water mark of `pid`'s resident set since it started, in MB."""
    kb = _status_kb(pid, "VmHWM")
    return None if kb is None else kb * 1024 / 1e6


@dataclass(frozen=True)
class Footprint:
    """One target's memory, in MB, and the load it served meanwhile."""

    target: str
    idle: float | None
    peak: float | None
    after: float | None
    results: tuple[Result, ...]
    children: int


def load_phases(target: Target, *, clients: int, seconds: float) -> tuple[Result, ...]:
    """Non-streaming then streaming load on `target`, every prompt new and holding PII."""
    results = []
    for stream in (False, True):
        load = Load(
            url=target.url,
            body=target.body(stream=stream, unique=True),
            headers=target.headers,
            concurrency=clients,
            duration=seconds,
            warmup=0,
            stream=stream,
            vary=True,
        )
        results.append(measure(load))
    return tuple(results)


def footprint(target: Target, *, clients: int, seconds: float) -> Footprint:
    idle = rss_mb(target.pid)
    results = load_phases(target, clients=clients, seconds=seconds)
    return Footprint(
        target=target.name,
        idle=idle,
        peak=peak_mb(target.pid),
        after=rss_mb(target.pid),
        results=results,
        children=len(_children(target.pid)),
    )


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def report(rows: Sequence[Footprint]) -> list[str]:
    head = (
        f"{'target':<12} {'idle MB':>8} {'peak MB':>8} {'after MB':>9} "
        f"{'plain req/s':>11} {'stream req/s':>12} {'errors':>6}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        plain, stream = row.results
        lines.append(
            f"{row.target:<12} {_mb(row.idle):>8} {_mb(row.peak):>8} {_mb(row.after):>9} "
            f"{plain.rps:>11.0f} {stream.rps:>12.0f} {plain.errors + stream.errors:>6}"
        )
    lines.append(
        "idle: RSS once ready; peak: VmHWM (high-water mark) after the load; after: RSS then."
    )
    if any(r.children for r in rows):
        lines.append(
            "RSS includes child processes: "
            + ", ".join(f"{r.target} {r.children}" for r in rows if r.children)
        )
    ner = next((r for r in rows if r.target == NER_TARGET), None)
    if ner is not None and ner.peak is not None:
        verdict = "met" if ner.peak < RSS_TARGET_MB else "MISSED"
        lines.append(
            f"{NER_TARGET} peak RSS {ner.peak:.0f} MB (target < {RSS_TARGET_MB:.0f} MB with NER "
            f"loaded: {verdict}); idle {_mb(ner.idle)} MB"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="agentgw memory, idle and under load")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients under load")
    p.add_argument("--seconds", type=float, default=8.0, help="seconds per load phase")
    p.add_argument(
        "--targets", nargs="+", default=["relay", *GATEWAYS], choices=["relay", *GATEWAYS]
    )
    args = p.parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    print(f"# agentgw memory, {started:%Y-%m-%d %H:%M} UTC; {machine()}; at {revision()}")
    print(f"# load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"# load: {args.clients} clients, {args.seconds:g} s plain then {args.seconds:g} s "
        "streamed, every prompt new and holding PII",
        flush=True,
    )
    gateways = {name: extra for name, extra in GATEWAYS.items() if name in args.targets}
    rows: list[Footprint] = []
    with running(relay="relay" in args.targets, gateways=gateways) as dep:
        for name in args.targets:
            row = footprint(dep.targets[name], clients=args.clients, seconds=args.seconds)
            print(f"  {name}: idle {_mb(row.idle)} MB, peak {_mb(row.peak)} MB", file=sys.stderr)
            rows.append(row)
    print()
    for line in report(rows):
        print(line)
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
