"""How fast reports answer over many aggregate rows (they never scan spans), and what keeping the
aggregates costs the span writer.

Fills a fresh SQLite store with N synthetic hourly aggregate rows (default 1,000,000: 90 days x
24 hours x 463 active key/model/agent/customer combinations per hour, each row standing for 1-50
calls, so ~25 million calls) and the matching daily rows, then times the reports the console and
the admin API run. Then records spans through `record_spans` with and without the aggregate
upserts. Run from the repository root:

    python -m tests.perf.reports [--rows N] [--spans N]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sqlite3
import tempfile
import time
from pathlib import Path
from unittest import mock

import anyio

import store.sqlite
from core.ops.attribution import parse_query, spend_report, top_consumers
from core.reports import DAY, DIMENSION_COLUMNS, DIMENSIONS, HOUR, MEASURES
from core.tracing import Span
from store import SQLiteStore
from store.usage import dims_digest

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
KEYS = [f"key_{i:04d}" for i in range(400)]
TEAMS = [f"dept{d}/team{t}" for d in range(8) for t in range(6)]
MODELS = ["sim-large", "sim-small", "qwen", "gpt-x", "claude-y"]
COLUMNS = ("bucket", "dims", *(DIMENSION_COLUMNS[d] for d in DIMENSIONS), *MEASURES)


def combos(n: int) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for i in range(n):
        key = KEYS[i % len(KEYS)]
        team = TEAMS[i % len(TEAMS)]
        model = MODELS[i % len(MODELS)]
        out.append((team.split("/")[0], team, team + "/p", f"cust{i % 30}", "app",
                    f"agent{i % 50}", key, model, "prov", model, "", "chat"))  # fmt: skip
    return out


def fill(db: Path, rows: int) -> None:
    hours = 90 * 24
    active = combos(max(1, rows // hours))
    rng = random.Random(1)
    sql = "INSERT INTO {} ({}) VALUES ({})"
    marks = ", ".join("?" for _ in COLUMNS)
    daily: dict[tuple[int, tuple[str, ...]], list[float]] = {}
    with sqlite3.connect(db) as conn:
        batch = []
        for h in range(hours):
            hour = T0 + h * HOUR
            for dims in active:
                n = rng.randint(1, 50)
                m = [n, 0, 0, n * 300, n * 120, 0, 0, 0, 0.0, 0, 0.0, n * 0.001, n * 200.0, 0.0]
                batch.append((hour, dims_digest(dims), *dims, *m))
                acc = daily.setdefault((hour - hour % DAY, dims), [0] * len(MEASURES))
                for i, v in enumerate(m):
                    acc[i] += v
            if len(batch) >= 50_000:
                conn.executemany(sql.format("usage_hourly", ", ".join(COLUMNS), marks), batch)
                batch.clear()
        conn.executemany(sql.format("usage_hourly", ", ".join(COLUMNS), marks), batch)
        conn.executemany(
            sql.format("usage_daily", ", ".join(COLUMNS), marks),
            [(day, dims_digest(dims), *dims, *m) for (day, dims), m in daily.items()],
        )
        hourly = conn.execute("SELECT count(*) FROM usage_hourly").fetchone()[0]
        days = conn.execute("SELECT count(*) FROM usage_daily").fetchone()[0]
    print(f"aggregate rows: {hourly:,} hourly, {days:,} daily")


CASES: dict[str, dict[str, str]] = {
    "total, all time": {},
    "by team, all time": {"group_by": "team"},
    "by team, by month": {"group_by": "team", "bucket": "month"},
    "by key x model, by day, last 30 days": {
        "group_by": "key,upstream_model", "bucket": "day", "since": str(T0 + 60 * DAY + 1234),
        "until": str(T0 + 90 * DAY - 999)},
    "by team, by day, last 30 days": {"group_by": "team", "bucket": "day",
                                      "since": str(T0 + 60 * DAY + 1234)},
    "one key, by hour, last 7 days": {"key": KEYS[7], "bucket": "hour",
                                      "since": str(T0 + 83 * DAY)},
    "one team by model, last 30 days": {"team": TEAMS[3], "group_by": "model",
                                        "since": str(T0 + 60 * DAY + 1234)},
}  # fmt: skip


async def reports(db: Path) -> None:
    s = SQLiteStore(str(db))
    await s.open()
    try:
        for name, params in CASES.items():
            started = time.perf_counter()
            report = await spend_report(s, parse_query(params))
            took = (time.perf_counter() - started) * 1000
            print(f"  {name:40} {len(report.rows):>7,} rows {took:8.1f} ms")
        started = time.perf_counter()
        await top_consumers(s, parse_query({"group_by": "key"}), 10)
        took = (time.perf_counter() - started) * 1000
        print(f"  {'top 10 keys, all time':40} {'':>12} {took:8.1f} ms")
    finally:
        await s.aclose()


def spans_for(count: int, keys: int, teams: int, models: int) -> list[list[Span]]:
    rng = random.Random(2)
    batches = []
    for b in range(count // 256):
        batch = []
        for i in range(256):
            k = rng.randrange(keys)
            batch.append(
                Span(f"req_{b}_{i}", f"{i:016x}", f"{b:032x}", T0 + rng.uniform(0, 3 * DAY),
                     key_id=KEYS[k], org_path=TEAMS[(k + rng.randrange(teams)) % 48] + "/p",
                     model_requested="chat", provider="prov",
                     upstream_model=MODELS[rng.randrange(models)], input_tokens=300,
                     output_tokens=100, cost_usd=0.001)
            )  # fmt: skip
        batches.append(batch)
    return batches


async def writes(tmp: Path, spans: int) -> None:
    cases = {
        "10 keys x 2 models": spans_for(spans, 10, 1, 2),
        "50 keys x 48 teams x 5 models": spans_for(spans, 50, 48, 5),
    }
    for name, batches in cases.items():
        for label, keep in (("without aggregates", False), ("with aggregates", True)):
            s = SQLiteStore(str(tmp / f"writes-{len(name)}-{keep}.db"))
            await s.open()
            off = mock.patch.object(store.sqlite, "usage_rows", return_value=([], []))
            try:
                with contextlib.nullcontext() if keep else off:
                    started = time.perf_counter()
                    for batch in batches:
                        await s.record_spans(batch)
                    took = time.perf_counter() - started
            finally:
                await s.aclose()
            rate = len(batches) * 256 / took
            print(f"  {name:30} {label:20} {rate:10,.0f} spans/s (batches of 256)")


async def main(rows: int, spans: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "perf.db"
        s = SQLiteStore(str(db))
        await s.open()
        await s.aclose()
        started = time.perf_counter()
        fill(db, rows)
        print(f"filled in {time.perf_counter() - started:.1f} s; reports:")
        await reports(db)
        print("span writer:")
        await writes(Path(tmp), spans)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--spans", type=int, default=50_000)
    args = parser.parse_args()
    anyio.run(main, args.rows, args.spans)
