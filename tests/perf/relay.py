"""The minimal relay: the floor that agentgw's overhead is measured against.

A Starlette app under uvicorn that forwards the POST body to one upstream URL with the client
agentgw's chat calls go out through (`adapters.egress.h1`: the same HTTP client, as the
benchmark asks) and relays the reply, a stream block by block. No auth, no parsing, no spans:
whatever agentgw costs on top of this is its own.

`--client aiohttp` runs it on aiohttp (one shared session) instead: the client agentgw used for
every call until its own, and the relay of every figure measured before that (docs/performance.md).

    python -m tests.perf.relay --port 9100 --upstream http://127.0.0.1:9000/v1/chat/completions
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from adapters.egress.h1 import UpstreamHTTP, header_block

_HEADERS = {"content-type": "application/json"}


class AiohttpRelay:
    """Forwards every POST to `upstream` over one pooled aiohttp session."""

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream
        self._session: aiohttp.ClientSession | None = None

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=1000, limit_per_host=0, keepalive_timeout=30)
        async with aiohttp.ClientSession(connector=connector) as session:
            self._session = session
            yield

    async def forward(self, request: Request) -> Response:
        assert self._session is not None, "used outside the lifespan"
        body = await request.body()
        resp = await self._session.post(self._upstream, data=body, headers=_HEADERS)
        if resp.content_type != "text/event-stream":
            try:
                data = await resp.read()
            finally:
                resp.release()
            return Response(data, resp.status, media_type=resp.content_type)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in resp.content.iter_any():
                    yield chunk
            finally:
                resp.release()

        return StreamingResponse(chunks(), resp.status, media_type="text/event-stream")


class Relay:
    """Forwards every POST to `upstream` over agentgw's hot-path client, connections kept."""

    _head = header_block(_HEADERS)

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream
        self._client: UpstreamHTTP | None = None

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._client = UpstreamHTTP()
        try:
            yield
        finally:
            await self._client.aclose()

    async def forward(self, request: Request) -> Response:
        assert self._client is not None, "used outside the lifespan"
        body = await request.body()
        opened = self._client.stream(self._upstream, body, self._head, read=None, connect=None)
        resp = await opened.__aenter__()
        kind = resp.header("content-type") or "application/json"
        if not kind.startswith("text/event-stream"):
            try:
                data = await resp.read()
            finally:
                await opened.__aexit__(None, None, None)
            return Response(data, resp.status, media_type=kind)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in resp.blocks():
                    yield chunk
            finally:
                await opened.__aexit__(None, None, None)

        return StreamingResponse(chunks(), resp.status, media_type="text/event-stream")


def build_relay(upstream: str, client: str = "h1") -> Starlette:
    """The relay app for one upstream URL, on `client` (h1: agentgw's own, or aiohttp)."""
    relay = AiohttpRelay(upstream) if client == "aiohttp" else Relay(upstream)
    return Starlette(
        routes=[Route("/v1/chat/completions", relay.forward, methods=["POST"])],
        lifespan=relay.lifespan,
    )


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True, help="full URL of the upstream endpoint")
    p.add_argument("--client", choices=("h1", "aiohttp"), default="h1")
    args = p.parse_args(argv)
    # The same server settings as `agentgw serve`: uvloop + httptools, no access log.
    uvicorn.Server(
        uvicorn.Config(
            build_relay(args.upstream, args.client),
            host="127.0.0.1",
            port=args.port,
            log_level="info",
            access_log=False,
        )
    ).run()


if __name__ == "__main__":
    main()
