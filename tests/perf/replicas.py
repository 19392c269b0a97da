"""Two agentgw replicas against one, on the same PostgreSQL and Redis.

Starts the sim, the minimal relay (for scale) and two `agentgw serve` processes sharing one
configuration: a fresh PostgreSQL schema (`postgresql://…/test?schema=perf_…`, dropped at the
end), Redis for governance counters, circuits and the change feed (a fresh key prefix, its keys
deleted at the end), one virtual model → the sim, a price, a real key. Then, in interleaved
rounds like `overhead.py`:

- `1 replica`: all load to replica A (B stays up, idle);
- `2 replicas`: the same load split request by request between A and B (a trivial
  client-side round-robin, `Load.also`);
- `relay`: the minimal relay, so both read as a fraction of the floor in the same run;
- `sqlite` (unless `--no-sqlite`): one agentgw on its embedded SQLite store, for the cost of
  PostgreSQL + Redis on one replica.

On this 2-core machine the load client, the sim and every replica share the two cores, so
two replicas cannot double anything here; the run shows what the second process costs or
gains on one box, and that the spans of both land in the one database. Nothing is asserted.

    python -m tests.perf.replicas                  # ~2.5 minutes
    python -m tests.perf.replicas --clients 32 --duration 2 --rounds 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import statistics
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import asyncpg
from redis import Redis

from tests.e2e.procs import Proc, start_gateway, start_sim
from tests.perf.loadgen import Load
from tests.perf.overhead import Cell, table
from tests.perf.rounds import Measured, Rounds, run_window, throughput_ratios, warm
from tests.perf.stack import (
    CHAT_PATH,
    SIM_MODEL,
    VIRTUAL_MODEL,
    Target,
    gateway_config,
    gateway_key,
    machine,
    revision,
    start_relay,
)

PG_SERVER = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
ONE, TWO = "1 replica", "2 replicas"


@dataclass
class Cluster:
    """The running targets, and what the run must clean up and count afterwards."""

    schema: str
    prefix: str
    targets: dict[str, Target] = field(default_factory=dict)
    # The replicas' distinct warning and error lines (first few), read once they have stopped.
    problems: list[str] = field(default_factory=list)


async def _drop_schema(schema: str) -> int | None:
    """Count the spans both replicas stored, then drop `schema`."""
    conn = await asyncpg.connect(PG_SERVER)
    try:
        try:
            spans: int | None = await conn.fetchval(f'SELECT count(*) FROM "{schema}".spans')
        except asyncpg.PostgresError:
            spans = None
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
    return spans


def _forget_redis(prefix: str) -> int:
    """Delete every Redis key under `prefix` (counters, circuits, cache); how many there were."""
    client = Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
        return len(keys)
    finally:
        client.close()


@contextmanager
def cluster(
    *, reply_words: int, sqlite: bool, redis_connections: int | None = None
) -> Iterator[Cluster]:
    """Everything started; on exit everything stopped, the schema and the Redis keys removed."""
    token = uuid.uuid4().hex[:12]
    run = Cluster(schema=f"perf_{token}", prefix=f"agwperf:{token}:")
    store = f"{PG_SERVER}?schema={run.schema}"
    redis = f'"{REDIS_URL}"'
    if redis_connections is not None:
        redis = f'{{url: "{REDIS_URL}", max_connections: {redis_connections}}}'
    extra = f'redis: {redis}\ngovernance: {{prefix: "{run.prefix}"}}\n'
    with tempfile.TemporaryDirectory(prefix="agentgw-replicas-") as tmp, ExitStack() as stack:
        stack.callback(lambda: print(f"# redis keys removed: {_forget_redis(run.prefix)}"))
        stack.callback(
            lambda: print(f"# spans in PostgreSQL: {anyio.run(_drop_schema, run.schema)}")
        )

        def started(proc: Proc) -> Proc:
            stack.callback(proc.stop)
            return proc

        sim = started(start_sim("--reply-words", str(reply_words)))
        json_headers = {"content-type": "application/json"}
        relay = started(start_relay(sim.url + CHAT_PATH))
        run.targets["relay"] = Target("relay", relay, SIM_MODEL, json_headers)
        if sqlite:
            workdir = Path(tmp) / "sqlite"
            workdir.mkdir()
            config = workdir / "agentgw.yaml"
            config.write_text(gateway_config(sim.url))
            headers = gateway_key(config)
            run.targets["sqlite"] = Target(
                "sqlite", started(start_gateway(config)), VIRTUAL_MODEL, headers
            )
        workdir = Path(tmp) / "pg"
        workdir.mkdir()
        config = workdir / "agentgw.yaml"
        config.write_text(gateway_config(sim.url, store=f'"{store}"', extra=extra))
        headers = gateway_key(config)  # migrates the schema and stores the key
        replicas: dict[str, Proc] = {}
        stack.callback(_problems, run, replicas)  # runs once both have stopped
        a = started(start_gateway(config))
        b = started(start_gateway(config))
        replicas.update({"replica A": a, "replica B": b})
        run.targets[ONE] = Target(ONE, a, VIRTUAL_MODEL, headers)
        run.targets[TWO] = Target(TWO, a, VIRTUAL_MODEL, headers, others=(b,))
        # Leaving stops the processes in reverse (replicas first: a clean stop flushes their
        # spans), then counts the spans and drops the schema, then removes the Redis keys.
        yield run


def _problems(run: Cluster, replicas: dict[str, Proc], *, most: int = 5) -> None:
    """Note each replica's warnings and errors: how many, and the first few distinct ones."""
    for name, proc in replicas.items():
        bad = [
            line for line in proc.lines if "ERROR" in line or "WARNING" in line or "Error" in line
        ]
        distinct = list(dict.fromkeys(line[:200] for line in bad))
        run.problems.append(f"{name}: {len(bad)} warning/error lines")
        run.problems += [f"  {line}" for line in distinct[:most]]


def measure_all(
    run: Cluster, *, clients: Sequence[int], duration: float, warmup: float, rounds: int
) -> dict[Cell, Rounds]:
    """Every cell, the targets taking turns round by round."""
    pids = sorted({pid for t in run.targets.values() for pid in t.pids})
    cells: dict[Cell, Rounds] = {}
    for stream, n in itertools.product((False, True), clients):
        loads = {
            name: Load(
                url=t.url,
                also=t.also,
                body=t.body(stream=stream),
                headers=t.headers,
                concurrency=n,
                duration=duration,
                warmup=warmup,
                stream=stream,
            )
            for name, t in run.targets.items()
        }
        for load in loads.values():
            warm(load, prefer_wrk=False)
        windows: dict[str, list[Measured]] = {name: [] for name in loads}
        for _ in range(rounds):
            for name, load in loads.items():
                # The aiohttp client for every target, so that the round-robin one is no different.
                m = run_window(load, run.targets[name].pids, pids, prefer_wrk=False)
                windows[name].append(m)
                print(
                    f"  {Cell(name, n, stream).label} {m.result.rps:>8.0f} req/s",
                    file=sys.stderr,
                    flush=True,
                )
        for name, measured in windows.items():
            cells[Cell(name, n, stream)] = Rounds(tuple(measured))
    return cells


def ratios(cells: dict[Cell, Rounds]) -> list[str]:
    out: list[str] = []
    counts = sorted({c.clients for c in cells})
    for stream, n in itertools.product((False, True), counts):
        kind = "streaming" if stream else "non-streaming"
        two, one = cells.get(Cell(TWO, n, stream)), cells.get(Cell(ONE, n, stream))
        relay = cells.get(Cell("relay", n, stream))
        if two and one:
            r = throughput_ratios(two, one)
            if r:
                out.append(
                    f"2 replicas / 1 replica req/s at {n} clients, {kind}: "
                    f"{statistics.median(r):.2f} (rounds: {', '.join(f'{x:.2f}' for x in r)})"
                )
        for name in ("sqlite", ONE, TWO):
            cell = cells.get(Cell(name, n, stream))
            if cell and relay:
                r = throughput_ratios(cell, relay)
                if r:
                    out.append(
                        f"{name}/relay req/s at {n} clients, {kind}: {statistics.median(r):.2f}"
                    )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="two agentgw replicas versus one")
    p.add_argument("--clients", type=int, nargs="+", default=[32, 128])
    p.add_argument("--duration", type=int, default=3, help="seconds per round (default 3)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per cell")
    p.add_argument("--warmup", type=int, default=1, help="warm-up seconds per target and cell")
    p.add_argument("--reply-words", type=int, default=20)
    p.add_argument("--no-sqlite", dest="sqlite", action="store_false")
    p.add_argument(
        "--redis-connections",
        type=int,
        help="redis.max_connections per replica (default: agentgw's own default)",
    )
    args = p.parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"# agentgw replicas, {started:%Y-%m-%d %H:%M} UTC; {machine()}; at {revision()}")
    print(f"# load average before: {load}")
    print(
        f"# {args.rounds} interleaved round(s) of {args.duration} s per cell after "
        f"{args.warmup} s warm-up; aiohttp client for all load",
        flush=True,
    )
    with cluster(
        reply_words=args.reply_words, sqlite=args.sqlite, redis_connections=args.redis_connections
    ) as run:
        print(f"# PostgreSQL schema {run.schema}, Redis prefix {run.prefix}", flush=True)
        cells = measure_all(
            run,
            clients=args.clients,
            duration=args.duration,
            warmup=args.warmup,
            rounds=args.rounds,
        )
    print()
    print(table(cells))
    print("cpu/req of 2 replicas: both processes together.")
    for cell, rounds in cells.items():
        failed: dict[str, int] = {}
        for m in rounds.rounds:
            for what, count in m.result.failures.items():
                failed[what] = failed.get(what, 0) + count
        if failed:
            said = ", ".join(f"{count} x {what}" for what, count in sorted(failed.items()))
            print(f"failures, {cell.label.strip()}: {said}")
    for line in run.problems:
        print(line)
    print()
    for line in ratios(cells):
        print(line)
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
