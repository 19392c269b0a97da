"""agentgw's memory (RSS): idle after start, at its peak under load, and after the load.

Starts the sim and, against it, the minimal relay (for scale) and four agentgw processes:
no content filters, the PII filter in pattern mode, the same with the analysis in one worker
process (`filters.pii.workers: 1`), and the PII filter with NER (`filters.pii.ner: true`,
spaCy's small English model). Each is measured in turn:

- idle: resident memory right after it reported ready (the NER model is loaded at start);
- load: 32 clients (default) for a few seconds, non-streaming then streaming, every prompt new
  and holding an e-mail address and a phone number, so that every text is analysed and the
  filter's caches fill as they would in use;
- peak: the kernel's high-water mark of the process's resident set (`VmHWM`), so nothing
  between two samples is missed; after: the resident set once the load has stopped.

Each figure is the target's whole process tree (a gateway's PII workers included; a peak is the
sum of each process's own high-water mark, so it may overstate); the `gw` columns are the
gateway process alone.

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
from tests.perf.stack import PII_NER, PII_PATTERN, PII_WORKERS, Target, machine, revision, running

NER_TARGET = "agentgw+ner"
RSS_TARGET_MB = 250.0
GATEWAYS = {
    "agentgw": "",
    "agentgw+pii": PII_PATTERN,
    "agentgw+pii-w": PII_WORKERS,
    NER_TARGET: PII_NER,
}


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


def descendants(pid: int) -> list[int]:
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
            found += [child, *descendants(child)]
    return found


@dataclass(frozen=True)
class Resident:
    """One reading, in MB (10^6 bytes): `pid` alone, and `pid` with its descendants."""

    own: float | None
    tree: float | None


def _read(pid: int, field: str) -> Resident:
    own = _status_kb(pid, field)
    if own is None:
        return Resident(None, None)
    kb = own + sum(_status_kb(c, field) or 0 for c in descendants(pid))
    return Resident(own * 1024 / 1e6, kb * 1024 / 1e6)


def rss_mb(pid: int) -> Resident:
    """Resident memory of `pid`, alone and with its descendants."""
    return _read(pid, "VmRSS")


def peak_mb(pid: int) -> Resident:
    """The kernel's high-water mark of the resident set since start (summed over the tree)."""
    return _read(pid, "VmHWM")


@dataclass(frozen=True)
class Footprint:
    """One target's memory, in MB, and the load it served meanwhile."""

    target: str
    idle: Resident
    peak: Resident
    after: Resident
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
        children=len(descendants(target.pid)),
    )


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def report(rows: Sequence[Footprint]) -> list[str]:
    head = (
        f"{'target':<13} {'idle MB':>8} {'peak MB':>8} {'after MB':>9} {'gw idle':>8} "
        f"{'gw peak':>8} {'plain req/s':>11} {'stream req/s':>12} {'errors':>6}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        plain, stream = row.results
        lines.append(
            f"{row.target:<13} {_mb(row.idle.tree):>8} {_mb(row.peak.tree):>8} "
            f"{_mb(row.after.tree):>9} {_mb(row.idle.own):>8} {_mb(row.peak.own):>8} "
            f"{plain.rps:>11.0f} {stream.rps:>12.0f} {plain.errors + stream.errors:>6}"
        )
    lines.append(
        "idle: RSS once ready; peak: VmHWM (high-water mark) after the load; after: RSS then;"
    )
    lines.append("gw: the gateway process alone (the others count its child processes too).")
    if any(r.children for r in rows):
        lines.append(
            "RSS includes child processes: "
            + ", ".join(f"{r.target} {r.children}" for r in rows if r.children)
        )
    ner = next((r for r in rows if r.target == NER_TARGET), None)
    if ner is not None and ner.peak.tree is not None:
        verdict = "met" if ner.peak.tree < RSS_TARGET_MB else "MISSED"
        lines.append(
            f"{NER_TARGET} peak RSS {ner.peak.tree:.0f} MB (target < {RSS_TARGET_MB:.0f} MB with "
            f"NER loaded: {verdict}); idle {_mb(ner.idle.tree)} MB"
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
            print(
                f"  {name}: idle {_mb(row.idle.tree)} MB, peak {_mb(row.peak.tree)} MB",
                file=sys.stderr,
            )
            rows.append(row)
    print()
    for line in report(rows):
        print(line)
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
