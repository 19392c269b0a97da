"""agentgw's own CPU per request, without uvicorn and without the load client in the count.

The ASGI app is built from a real config (SQLite store, a real key, the sim over real HTTP,
spans written) and driven in this process by 32 concurrent tasks that hand it ready-made
requests; the process's CPU time (all threads: the span writer's included) is read around a
fixed number of requests. What is left is agentgw's own work plus its egress client (aiohttp),
so a change shows up undiluted by the server and the load client, and `--relay` gives the
same figure for the minimal relay's app. The garbage collector is settled as `agentgw serve`
settles it (`core.app.settle_garbage_collector`).

    python -m tests.perf.inproc --requests 3000 [--stream] [--pii] [--unique] [--relay]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import orjson
from starlette.applications import Starlette
from starlette.types import Message

from core.app import build_app, settle_garbage_collector
from core.config import load_config
from tests.e2e.procs import create_key, start_sim
from tests.perf.loadgen import VARY_MARK
from tests.perf.relay import build_relay
from tests.perf.stack import (
    CHAT_PATH,
    GATEWAY_CONFIG,
    PII_PATTERN,
    PII_PROMPT,
    SIM_MODEL,
    VIRTUAL_MODEL,
)

CLIENTS = 32
WARMUP = 256
FIXED_PROMPT = "Say hello in a few words."


_RUN = os.urandom(4).hex()


def _prompt(unique: bool, n: int) -> str:
    if not unique:
        return FIXED_PROMPT
    # New per request and made as the load client makes it (`tests.perf.loadgen`: a random
    # prefix per run, then the request's number), so no cache can answer.
    return PII_PROMPT.replace(VARY_MARK, f"{_RUN}{n}")


class Driver:
    """Sends requests straight into an ASGI app and checks each one ends in a 200."""

    def __init__(self, app: Starlette, key: str, *, stream: bool, unique: bool) -> None:
        self._app = app
        self._auth = f"Bearer {key}".encode()
        self._stream = stream
        self._unique = unique
        self._sent = 0

    async def one(self) -> None:
        self._sent += 1
        body = orjson.dumps(
            {
                "model": VIRTUAL_MODEL,
                "stream": self._stream,
                "messages": [{"role": "user", "content": _prompt(self._unique, self._sent)}],
            }
        )
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": CHAT_PATH,
            "raw_path": CHAT_PATH.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"agentgw"),
                (b"content-type", b"application/json"),
                (b"authorization", self._auth),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        finished = asyncio.Event()
        pending = [body]
        status = 0

        async def receive() -> Message:
            if pending:
                return {"type": "http.request", "body": pending.pop(), "more_body": False}
            await finished.wait()  # as uvicorn: a disconnect only once the reply is out
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif not message.get("more_body", False):
                finished.set()

        await self._app(scope, receive, send)
        finished.set()
        if status != 200:
            raise SystemExit(f"request {self._sent} answered {status}")

    async def run(self, requests: int) -> None:
        async def client(n: int) -> None:
            for _ in range(n):
                await self.one()

        await asyncio.gather(*(client(requests // CLIENTS) for _ in range(CLIENTS)))


async def measure(app: Starlette, key: str, args: argparse.Namespace) -> float:
    """CPU µs per request of `app`, after a warm-up."""
    driver = Driver(app, key, stream=args.stream, unique=args.unique)
    async with app.router.lifespan_context(app):
        await driver.run(WARMUP)
        settle_garbage_collector()
        started = time.process_time()
        await driver.run(args.requests)
        spent = time.process_time() - started
    counted: int = args.requests // CLIENTS * CLIENTS
    return spent / counted * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--pii", action="store_true", help="pattern-mode PII filter on")
    parser.add_argument("--unique", action="store_true", help="a new PII-bearing prompt each")
    parser.add_argument("--relay", action="store_true", help="the minimal relay's app instead")
    parser.add_argument(
        "--relay-client", choices=("h1", "aiohttp"), default="h1", help="the relay's client"
    )
    args = parser.parse_args(argv)
    import uvloop  # what uvicorn runs on, as `agentgw serve` does

    with tempfile.TemporaryDirectory(prefix="agentgw-inproc-") as tmp:
        sim = start_sim("--reply-words", "20")
        try:
            config = Path(tmp) / "agentgw.yaml"
            extra = PII_PATTERN if args.pii else ""
            config.write_text(
                GATEWAY_CONFIG.format(sim=sim.url, model=VIRTUAL_MODEL, sim_model=SIM_MODEL) + extra
            )
            key = create_key(config, "perf", "engineering/platform/perf")["key"]
            os.chdir(tmp)  # the config's SQLite path is relative
            relay = build_relay(sim.url + CHAT_PATH, args.relay_client) if args.relay else None
            app = relay or build_app(load_config(config))
            us = uvloop.run(measure(app, key, args))
        finally:
            sim.stop()
    what = (
        f"relay ({args.relay_client})" if args.relay else "agentgw" + (" + PII" if args.pii else "")
    )
    mode = "stream" if args.stream else "plain"
    prompt = "new PII-bearing prompts" if args.unique else "fixed prompt"
    print(f"{what}, {mode}, {prompt}: {us:.0f} µs CPU per request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
