"""CPU time per request of the relay and agentgw: the figure other load on the machine barely moves.

Starts the sim, the relay and agentgw (as `overhead.py` does), then sends a fixed number of
requests to each target in turn, several interleaved rounds, and reads the target process's
CPU time (`/proc`, user + system, all threads) around each batch. Wall-clock throughput on a
shared 2-core machine moves 10-60 % between rounds; CPU per request moves a few percent, so
this is the number to decide an optimization on.

    python -m tests.perf.cpureq                    # 2,000 requests x 3 rounds, plain and stream
    python -m tests.perf.cpureq --requests 500 --rounds 5 --concurrency 1
    python -m tests.perf.cpureq --baseline /path/to/other/checkout   # A/B, interleaved

With `--baseline DIR`, a second agentgw runs from another copy of the source tree (same config,
same key, its own store) and takes its turn in every round: an A/B comparison that shares the
machine's noise, which is how changes on the hot path were kept or dropped.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import aiohttp
import anyio

from tests.e2e.procs import start_gateway
from tests.perf.cpu import _process_seconds
from tests.perf.stack import Deployment, Target, revision, running


async def _batch(target: Target, *, stream: bool, requests: int, concurrency: int) -> int:
    """Send `requests` requests over `concurrency` connections; return how many failed."""
    body = target.body(stream=stream)
    errors = 0
    remaining = requests

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors, remaining
        while remaining > 0:
            remaining -= 1
            async with session.post(target.url, data=body, headers=target.headers) as resp:
                data = await resp.read()
                done = not stream or data.rstrip().endswith(b"data: [DONE]")
                if resp.status != 200 or not done:
                    errors += 1

    connector = aiohttp.TCPConnector(limit=0)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        anyio.create_task_group() as tg,
    ):
        for _ in range(concurrency):
            tg.start_soon(worker, session)
    return errors


def _cpu_us_per_request(target: Target, *, stream: bool, requests: int, concurrency: int) -> float:
    before = _process_seconds(target.pid)
    errors = anyio.run(
        lambda: _batch(target, stream=stream, requests=requests, concurrency=concurrency)
    )
    after = _process_seconds(target.pid)
    if errors * 100 > requests:  # a stray failure on a loaded machine is reported, not fatal
        raise SystemExit(f"{target.name}: {errors} of {requests} requests failed")
    if errors:
        print(f"  ({target.name}: {errors} of {requests} requests failed)")
    if before is None or after is None:
        raise SystemExit("no /proc on this system: CPU per request needs Linux")
    return (after - before) / requests * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--modes", nargs="+", default=["plain", "stream"])
    parser.add_argument("--baseline", type=Path, help="another source tree to compare against")
    args = parser.parse_args(argv)
    print(
        f"revision {revision()}, {args.requests} requests x {args.rounds} rounds, "
        f"{args.concurrency} connections, load {os.getloadavg()[0]:.2f}"
    )
    with running() as dep, ExitStack() as stack:
        names = ["relay", "agentgw"]
        if args.baseline is not None:
            names.append(stack.enter_context(_baseline(dep, args.baseline)))
        for mode in args.modes:
            stream = mode == "stream"
            warm = max(50, args.requests // 10)
            for name in names:
                _cpu_us_per_request(
                    dep.targets[name], stream=stream, requests=warm, concurrency=args.concurrency
                )
            got: dict[str, list[float]] = {name: [] for name in names}
            for _ in range(args.rounds):
                for name in names:
                    started = time.perf_counter()
                    cpu = _cpu_us_per_request(
                        dep.targets[name],
                        stream=stream,
                        requests=args.requests,
                        concurrency=args.concurrency,
                    )
                    got[name].append(cpu)
                    rate = args.requests / (time.perf_counter() - started)
                    print(f"  {mode:6} {name:8} {cpu:7.0f} us/req  ({rate:6.0f} req/s)")
            for name in names[1:]:
                print(_summary(mode, got["relay"], got[name], name))
            if args.baseline is not None:
                print(_summary(mode, got["baseline"], got["agentgw"], "agentgw vs baseline"))
    return 0


def _summary(mode: str, ref: list[float], new: list[float], name: str) -> str:
    """Median and minimum (the least disturbed round) of both, and their ratios."""
    med = statistics.median(ref) / statistics.median(new)
    low = min(ref) / min(new)
    return (
        f"{mode}: {name}: {statistics.median(new):.0f} (min {min(new):.0f}) us/req against "
        f"{statistics.median(ref):.0f} (min {min(ref):.0f}); ratio {med:.2f} median, "
        f"{low:.2f} min (load {os.getloadavg()[0]:.2f})"
    )


@contextmanager
def _baseline(dep: Deployment, tree: Path) -> Iterator[str]:
    """agentgw from `tree` (PYTHONPATH first) on a copy of the main one's config and store."""
    main = dep.targets["agentgw"]
    args = main.proc.popen.args  # [python, -m, core.cli, serve, --config, CONFIG, …]
    assert isinstance(args, list)
    config = Path(str(args[args.index("--config") + 1]))
    with tempfile.TemporaryDirectory(prefix="agentgw-base-") as tmp:
        copy = Path(tmp) / config.name
        copy.write_text(config.read_text())
        with (
            sqlite3.connect(config.parent / "gw.db") as src,
            sqlite3.connect(copy.parent / "gw.db") as dst,
        ):
            src.backup(dst)
        proc = start_gateway(copy, env={"PYTHONPATH": str(tree.resolve())})
        try:
            dep.targets["baseline"] = Target("baseline", proc, main.model, main.headers)
            yield "baseline"
        finally:
            proc.stop()


if __name__ == "__main__":
    raise SystemExit(main())
