"""In-flight requests, counted so a shutdown can wait for the last of them.

On SIGTERM uvicorn stops accepting, lets in-flight requests and streams run until its graceful
deadline (`shutdown.drain_seconds`), then cancels what is left and starts the lifespan's
shutdown. A cancelled request still records its span (in a shielded `finally`), but that runs
a moment later: the lifespan waits here until every request has left before it flushes the
span queue, so no span is lost to that race.
"""

from __future__ import annotations

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send


class InFlight:
    """How many HTTP and WebSocket requests are running now; an event when none is."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = anyio.Event()
        self._idle.set()

    async def wait_idle(self, seconds: float) -> bool:
        """Wait until no request runs, at most `seconds`; whether none runs."""
        with anyio.move_on_after(seconds):
            await self._idle.wait()
        return self.count == 0

    def enter(self) -> None:
        if self.count == 0:
            self._idle = anyio.Event()
        self.count += 1

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()


class InFlightMiddleware:
    """Counts each HTTP and WebSocket request in an `InFlight` for as long as it runs."""

    def __init__(self, app: ASGIApp, inflight: InFlight) -> None:
        self.app = app
        self.inflight = inflight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        self.inflight.enter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight.leave()
