"""Which HTTP client should agentgw egress through? The same relay, measured with each.

The minimal relay of `tests/perf/relay.py` on agentgw's own hot-path client (`h1`) and on aiohttp
(one shared session), against the same relay built on httpx: plain `httpx.AsyncClient()` as it
comes, httpx with its pool raised to aiohttp's (so the default of 20 keep-alive connections is
not what is measured), and httpx on the `httpx-aiohttp` transport. Each is loaded at 32 clients,
non-streaming, against `agentgw sim`.

    python -m tests.perf.clients             # ~1 minute (3 interleaved rounds of 3 s each)
    python -m tests.perf.clients --quick

`httpx-aiohttp` is not one of agentgw's dependencies: `pip install httpx-aiohttp` first (the
variant is skipped, and says so, when it is missing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import statistics
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import ExitStack, asynccontextmanager

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.e2e.procs import start_sim
from tests.perf.loadgen import Load, have_wrk
from tests.perf.rounds import Measured, Rounds, run_window, throughput_ratios, warm
from tests.perf.stack import CHAT_PATH, SIM_MODEL, Target, machine, start_relay

_HEADERS = {"content-type": "application/json"}


def _plain() -> httpx.AsyncClient:
    return httpx.AsyncClient()


def _pooled() -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    return httpx.AsyncClient(limits=limits)


def _on_aiohttp() -> httpx.AsyncClient:
    # Imported by name: an optional benchmark dependency must not be needed to type-check.
    transport: httpx.AsyncBaseTransport = importlib.import_module("httpx_aiohttp").AiohttpTransport(
        limits=httpx.Limits(max_connections=1000)
    )
    return httpx.AsyncClient(transport=transport)


HTTPX_CLIENTS: dict[str, Callable[[], httpx.AsyncClient]] = {
    "httpx": _plain,
    "httpx-pool1000": _pooled,
    "httpx-aiohttp": _on_aiohttp,
}


class HttpxRelay:
    """`tests.perf.relay.AiohttpRelay` with an httpx client in place of aiohttp."""

    def __init__(self, upstream: str, client: Callable[[], httpx.AsyncClient]) -> None:
        self._upstream = upstream
        self._make = client
        self._client: httpx.AsyncClient | None = None

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with self._make() as client:
            self._client = client
            yield

    async def forward(self, request: Request) -> Response:
        assert self._client is not None, "used outside the lifespan"
        body = await request.body()
        req = self._client.build_request("POST", self._upstream, content=body, headers=_HEADERS)
        resp = await self._client.send(req, stream=True)
        media_type = resp.headers.get("content-type", "application/json")
        if not media_type.startswith("text/event-stream"):
            try:
                data = await resp.aread()
            finally:
                await resp.aclose()
            return Response(data, resp.status_code, media_type=media_type)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in resp.aiter_raw():
                    yield chunk
            finally:
                await resp.aclose()

        return StreamingResponse(chunks(), resp.status_code, media_type="text/event-stream")


def serve(variant: str, port: int, upstream: str) -> None:
    relay = HttpxRelay(upstream, HTTPX_CLIENTS[variant])
    app = Starlette(
        routes=[Route(CHAT_PATH, relay.forward, methods=["POST"])], lifespan=relay.lifespan
    )
    uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info", access_log=False)
    ).run()


def _available(variant: str) -> bool:
    if variant != "httpx-aiohttp":
        return True
    try:
        importlib.import_module("httpx_aiohttp")
    except ImportError:
        return False
    return True


def compare(duration: int, warmup: int, clients: int, rounds: int) -> dict[str, Rounds]:
    """Every relay variant against one sim, in interleaved rounds."""
    with ExitStack() as stack:
        sim = start_sim("--reply-words", "20")
        stack.callback(sim.stop)
        upstream = sim.url + CHAT_PATH
        targets: dict[str, Target] = {}
        for variant in ("h1", "aiohttp", *HTTPX_CLIENTS):
            if not _available(variant):
                print(f"  {variant}: skipped (pip install httpx-aiohttp)", file=sys.stderr)
                continue
            if variant in ("h1", "aiohttp"):
                proc = start_relay(upstream, "tests.perf.relay", "--client", variant)
            else:
                proc = start_relay(upstream, "tests.perf.clients", "--serve", variant)
            stack.callback(proc.stop)
            targets[variant] = Target(variant, proc, SIM_MODEL, _HEADERS)
        pids = [sim.popen.pid, *(t.pid for t in targets.values())]
        loads = {
            variant: Load(
                url=t.url,
                body=t.body(stream=False),
                headers=_HEADERS,
                concurrency=clients,
                duration=duration,
                warmup=warmup,
            )
            for variant, t in targets.items()
        }
        for load in loads.values():
            warm(load)
        windows: dict[str, list[Measured]] = {variant: [] for variant in loads}
        for _ in range(rounds):
            for variant, load in loads.items():
                m = run_window(load, targets[variant].pid, pids)
                windows[variant].append(m)
                print(f"  {variant:<15} {m.result.rps:>8.0f} req/s", file=sys.stderr, flush=True)
    return {variant: Rounds(tuple(w)) for variant, w in windows.items()}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="the relay with each HTTP client")
    p.add_argument("--quick", action="store_true", help="one 2 s round per client")
    p.add_argument("--duration", type=int, default=3, help="seconds per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--serve", choices=sorted(HTTPX_CLIENTS), help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--upstream", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port, args.upstream)
        return 0
    duration, rounds = (2, 1) if args.quick else (args.duration, args.rounds)
    tool = "wrk" if have_wrk() else "aiohttp client"
    print(f"# relay by HTTP client, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {machine()}")
    print(
        f"# {args.clients} clients, non-streaming, {tool}; {rounds} interleaved round(s) of "
        f"{duration} s after {args.warmup} s warm-up",
        flush=True,
    )
    results = compare(duration, args.warmup, args.clients, rounds)
    base = results.get("aiohttp")
    head = ("client", "req/s", "range", "p50 ms", "p99 ms", "cpu/req", "other", "vs aiohttp")
    print(
        f"\n{head[0]:<15} {head[1]:>7} {head[2]:>11} {head[3]:>7} {head[4]:>7} {head[5]:>7} "
        f"{head[6]:>5} {head[7]:>10}"
    )
    for variant, rounds_ in results.items():
        r = rounds_.median.result
        low, high = rounds_.rps_range
        rel = "-"
        if base is not None:
            ratios = throughput_ratios(rounds_, base)
            rel = f"{statistics.median(ratios):.2f}" if ratios else "-"
        cpu, other = rounds_.cpu_us_per_request, rounds_.worst_foreign_cores
        print(
            f"{variant:<15} {r.rps:>7.0f} {f'{low:.0f}-{high:.0f}':>11} {r.p50_ms:>7.2f} "
            f"{r.p99_ms:>7.2f} {'-' if cpu is None else f'{cpu:.0f}':>7} "
            f"{'-' if other is None else f'{other:.2f}':>5} {rel:>10}"
        )
    print(
        "cpu/req: median CPU µs the relay process spent per request; other: cores used by "
        "other processes in the worst round; vs aiohttp: median of round-by-round ratios"
    )
    if any(r.errors for r in results.values()):
        print("WARNING: some requests failed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
