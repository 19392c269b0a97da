"""When do agentgw's slow requests start? A timeline of the latency tail under load.

Drives N concurrent clients at agentgw (non-streaming) and records when each request started
and how long it took. Slow requests (over `--factor` x p50) are grouped by the 100 ms window
they started in: a tail that comes in bursts at a fixed period points at something periodic on
the request path (a cache expiring, a batch write) rather than at steady overhead.

    python -m tests.perf.stalls [--seconds 6] [--clients 32] [--target agentgw|relay|sim]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Sequence

import aiohttp
import anyio

from tests.perf.loadgen import MAX_REQUESTS_PER_WORKER, percentile
from tests.perf.stack import Target, running


async def timeline(target: Target, clients: int, seconds: float) -> list[tuple[float, float]]:
    """(start offset s, latency ms) of every request that completed with 200."""
    body = target.body(stream=False)
    out: list[tuple[float, float]] = []
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        t0 = time.perf_counter()
        deadline = t0 + seconds

        async def worker() -> None:
            for _ in range(MAX_REQUESTS_PER_WORKER):
                started = time.perf_counter()
                if started >= deadline:
                    return
                async with session.post(target.url, data=body, headers=target.headers) as resp:
                    await resp.read()
                    ok = resp.status == 200
                if ok:
                    out.append((started - t0, (time.perf_counter() - started) * 1000))

        async with anyio.create_task_group() as tg:
            for _ in range(clients):
                tg.start_soon(worker)
    return out


def bursts(samples: list[tuple[float, float]], factor: float) -> list[str]:
    """One line per 100 ms window in which slow requests started."""
    p50 = percentile(sorted(lat for _, lat in samples), 0.5)
    windows: dict[int, list[float]] = defaultdict(list)
    for start, lat in samples:
        if lat > factor * p50:
            windows[int(start * 10)].append(lat)
    return [
        f"  started {w / 10:5.1f}-{(w + 1) / 10:.1f} s: {len(lats):>3} slow, "
        f"up to {max(lats):6.0f} ms"
        for w, lats in sorted(windows.items())
    ]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="timeline of the latency tail")
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--factor", type=float, default=5.0, help="slow = over this x p50")
    p.add_argument("--target", choices=["agentgw", "relay", "sim"], default="agentgw")
    args = p.parse_args(argv)
    with running(relay=args.target == "relay", gateway=args.target == "agentgw") as dep:
        target = dep.targets[args.target]
        samples = anyio.run(
            timeline, target, args.clients, args.seconds, backend_options={"use_uvloop": True}
        )
    lat = sorted(x for _, x in samples)
    print(
        f"{args.target}, {args.clients} clients, {args.seconds:g} s: {len(lat)} requests, "
        f"p50 {percentile(lat, 0.5):.1f} ms, p99 {percentile(lat, 0.99):.1f} ms, "
        f"max {lat[-1] if lat else 0:.1f} ms (client in-process: compare shapes, not req/s)"
    )
    lines = bursts(samples, args.factor)
    print(f"slow requests (> {args.factor:g} x p50) by when they started:" if lines else "none")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
