"""Load generators that stay out of the way of what they measure.

Non-streaming load goes through `wrk` (C, one thread, a Lua script for the POST body and the
percentiles) when it is installed. Streaming load, and everything when wrk is missing, goes
through an aiohttp client on uvloop in its own process (this module's `main`), which measures
the full-response time and the time to the first body byte (TTFT) of every request.

Both run a warm-up first and count only what the measured window started. Every loop is
bounded by a deadline and a request cap.

Two options need the aiohttp client (wrk is skipped for them): `also` (more URLs, taken in
turn with `url`, request by request: a trivial client-side round-robin over replicas) and
`vary` (every `VARY_MARK` in the body replaced by a token unique to the request, so that no
cache of the target can answer from an earlier request).

    python -m tests.perf.loadgen --url URL --body JSON --concurrency 32 --duration 5 --stream
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp
import anyio

# A cap no 8-second cell on this machine comes near; it only keeps every loop bounded.
MAX_REQUESTS_PER_WORKER = 1_000_000
REQUEST_TIMEOUT_SECONDS = 30.0
_WRK_MARK = "WRK_RESULT"
LOCAL_ORIGINS = ("http://127.0.0.1:", "http://localhost:")
VARY_MARK = "@N@"


@dataclass(frozen=True)
class Load:
    """One cell of load: what to send, to where, how hard and for how long."""

    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    concurrency: int = 1
    duration: float = 5.0
    warmup: float = 1.0
    stream: bool = False
    also: tuple[str, ...] = ()
    vary: bool = False

    def __post_init__(self) -> None:
        for url in self.urls:
            if not url.startswith(LOCAL_ORIGINS):
                raise ValueError(f"load goes to this machine only, not to {url}")

    @property
    def urls(self) -> tuple[str, ...]:
        """Every URL the load goes to, in the order requests take them."""
        return (self.url, *self.also)


@dataclass(frozen=True)
class Result:
    """What one cell measured. Latencies are full-response times in milliseconds."""

    tool: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    ttft_p50_ms: float | None = None
    ttft_p99_ms: float | None = None
    # What the failed requests got: HTTP status or exception name -> count (aiohttp client only).
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "rps": self.rps}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Result:
        fields = {k: v for k, v in data.items() if k != "rps"}
        return cls(**fields)  # type: ignore[arg-type]


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def measure(load: Load, *, prefer_wrk: bool = True) -> Result:
    """Drive `load` with wrk (non-streaming, when installed) or the aiohttp client process."""
    if prefer_wrk and not load.stream and not load.also and not load.vary and have_wrk():
        return run_wrk(load)
    return run_client(load)


# -- wrk ------------------------------------------------------------------------------------


def _lua(load: Load) -> str:
    lines = ['wrk.method = "POST"', f"wrk.body = [==[{load.body.decode()}]==]"]
    for name, value in load.headers.items():
        lines.append(f'wrk.headers["{name}"] = [==[{value}]==]')
    lines.append(
        f"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("{_WRK_MARK} %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""
    )
    return "\n".join(lines)


def _wrk(script: Path, load: Load, seconds: int) -> str:
    cmd = [
        "wrk",
        "-t1",
        f"-c{load.concurrency}",
        f"-d{seconds}s",
        "--timeout",
        f"{int(REQUEST_TIMEOUT_SECONDS)}s",
        "-s",
        str(script),
        load.url,
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=True, timeout=seconds + REQUEST_TIMEOUT_SECONDS
    )
    return out.stdout


def run_wrk(load: Load) -> Result:
    """One warm-up run, then the measured run; wrk takes whole seconds."""
    with tempfile.TemporaryDirectory(prefix="agentgw-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(_lua(load))
        if load.warmup > 0:
            _wrk(script, load, max(1, round(load.warmup)))
        out = _wrk(script, load, max(1, round(load.duration)))
    for line in out.splitlines():
        if line.startswith(_WRK_MARK):
            n, us, *errs, p50, p99 = (float(x) for x in line.split()[1:])
            return Result(
                tool="wrk",
                requests=int(n),
                errors=int(sum(errs)),
                seconds=us / 1e6,
                p50_ms=p50 / 1000,
                p99_ms=p99 / 1000,
            )
    raise RuntimeError(f"wrk printed no result:\n{out}")


# -- the aiohttp client, in its own process -------------------------------------------------


def run_client(load: Load) -> Result:
    """Run the aiohttp client in a separate process so it does not share a GIL with us."""
    cmd = [
        sys.executable,
        "-m",
        "tests.perf.loadgen",
        "--url",
        load.url,
        "--body",
        load.body.decode(),
        "--concurrency",
        str(load.concurrency),
        "--duration",
        str(load.duration),
        "--warmup",
        str(load.warmup),
    ]
    for name, value in load.headers.items():
        cmd += ["--header", f"{name}: {value}"]
    for url in load.also:
        cmd += ["--also", url]
    if load.stream:
        cmd.append("--stream")
    if load.vary:
        cmd.append("--vary")
    timeout = load.warmup + load.duration + 2 * REQUEST_TIMEOUT_SECONDS
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=timeout)
    return Result.from_json(json.loads(out.stdout))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    errors: int = 0
    failures: dict[str, int] = field(default_factory=dict)


class _Requests:
    """The URL and body of each next request: URLs in turn, the body made unique if asked."""

    def __init__(self, load: Load) -> None:
        self._urls = load.urls
        self._body = load.body
        self._parts = load.body.split(VARY_MARK.encode()) if load.vary else None
        # Unique across the load processes of one run too (each window is its own process).
        self._prefix = os.urandom(4).hex().encode()
        self._count = 0

    def next(self) -> tuple[str, bytes]:
        n = self._count
        self._count += 1
        url = self._urls[n % len(self._urls)]
        if self._parts is None:
            return url, self._body
        return url, (self._prefix + str(n).encode()).join(self._parts)


async def _one(
    session: aiohttp.ClientSession, load: Load, requests: _Requests, tally: _Tally
) -> None:
    url, body = requests.next()
    started = time.perf_counter()
    first: float | None = None
    failure = "incomplete stream"
    try:
        async with session.post(url, data=body, headers=load.headers) as resp:
            failure = f"HTTP {resp.status}"
            if load.stream:
                tail = b""
                async for chunk in resp.content.iter_any():
                    if first is None:
                        first = time.perf_counter()
                    tail = (tail + chunk)[-64:]
                ok = resp.status == 200 and tail.rstrip().endswith(b"data: [DONE]")
            else:
                await resp.read()
                ok = resp.status == 200
    except (aiohttp.ClientError, TimeoutError) as exc:
        ok, failure = False, type(exc).__name__
    if not ok:
        tally.errors += 1
        tally.failures[failure] = tally.failures.get(failure, 0) + 1
        return
    ended = time.perf_counter()
    tally.latencies.append((ended - started) * 1000)
    if first is not None:
        tally.ttfts.append((first - started) * 1000)


async def _window(
    session: aiohttp.ClientSession, load: Load, requests: _Requests, seconds: float
) -> _Tally:
    tally = _Tally()
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        for _ in range(MAX_REQUESTS_PER_WORKER):
            if time.perf_counter() >= deadline:
                return
            await _one(session, load, requests, tally)

    async with anyio.create_task_group() as tg:
        for _ in range(load.concurrency):
            tg.start_soon(worker)
    return tally


async def drive(load: Load) -> Result:
    """Warm up, then measure `load` from this process."""
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    requests = _Requests(load)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if load.warmup > 0:
            await _window(session, load, requests, load.warmup)
        started = time.perf_counter()
        tally = await _window(session, load, requests, load.duration)
        seconds = time.perf_counter() - started
    lat = sorted(tally.latencies)
    ttft = sorted(tally.ttfts)
    return Result(
        tool="aiohttp",
        requests=len(lat),
        errors=tally.errors,
        seconds=seconds,
        p50_ms=percentile(lat, 0.50),
        p99_ms=percentile(lat, 0.99),
        ttft_p50_ms=percentile(ttft, 0.50) if load.stream else None,
        ttft_p99_ms=percentile(ttft, 0.99) if load.stream else None,
        failures=tally.failures,
    )


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="aiohttp load client; prints one JSON result")
    p.add_argument("--url", required=True)
    p.add_argument("--body", required=True, help="the JSON request body")
    p.add_argument("--header", action="append", default=[], help="'name: value'")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--stream", action="store_true")
    p.add_argument("--also", action="append", default=[], help="more URLs, taken in turn")
    p.add_argument("--vary", action="store_true", help=f"make {VARY_MARK} in the body unique")
    args = p.parse_args(argv)
    if not all(u.startswith(LOCAL_ORIGINS) for u in [args.url, *args.also]):
        p.error("load goes to this machine only (http://127.0.0.1:PORT/…)")
    headers = {"content-type": "application/json"}
    for h in args.header:
        name, _, value = h.partition(":")
        headers[name.strip().lower()] = value.strip()
    load = Load(
        url=args.url,
        body=args.body.encode(),
        headers=headers,
        concurrency=args.concurrency,
        duration=args.duration,
        warmup=args.warmup,
        stream=args.stream,
        also=tuple(args.also),
        vary=args.vary,
    )
    result = anyio.run(drive, load, backend_options={"use_uvloop": True})
    print(json.dumps(result.to_json()))


if __name__ == "__main__":
    main()
