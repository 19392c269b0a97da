"""Changes every replica must apply: keys, model routing, governance rules.

The store holds the truth; what replicas exchange is only *that* something changed, so each
one re-reads it. A change made through this replica is applied here at once and announced on
the bus (`ChangeFeed.changed`); a notice from another replica runs the handlers registered for
its topic (drop the key cache, reload a model's routing, reload the rules).

When the bus is down the feed falls back to what works without it: the key cache expires on its
own within its TTL (1 s), and models and rules are re-read every `poll_seconds`. It reconnects
with backoff and, once back, re-reads everything (notices sent meanwhile are lost). `state`
says which mode it is in, for `/readyz`.

`Bus` is the seam (Redis pub/sub in `store.redis_bus`); without `redis:` there is no bus and
one process needs none.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

logger = logging.getLogger("agentgw.bus")

KEYS = "keys"
MODELS = "models"
RULES = "rules"
ALL = ""
"""The subject meaning "anything of this topic may have changed": re-read all of it."""

FeedState = Literal["local", "connecting", "live", "polling"]
_OUTBOX = 1024


@dataclass(frozen=True, slots=True)
class Notice:
    """Something of `topic` changed (`subject` names what, or ALL)."""

    topic: str
    subject: str = ALL


class BusUnavailable(Exception):
    """The bus cannot be reached, or the connection to it was lost."""


class Bus(Protocol):
    """A broadcast channel between replicas; a replica never hears its own notices."""

    async def publish(self, notice: Notice) -> None:
        """Send `notice` to every other replica listening now.

        Raises:
            BusUnavailable: the bus cannot be reached.
        """
        ...

    def subscribe(self) -> AbstractAsyncContextManager[AsyncIterator[Notice]]:
        """Listen: the notices other replicas send from now on, until the connection fails.

        Raises:
            BusUnavailable: on entering, or from the iterator when the connection is lost.
        """
        ...

    async def aclose(self) -> None:
        """Close the connections."""
        ...


Handler = Callable[[str], Awaitable[None]]


class ChangeFeed:
    """Announces this replica's changes and applies the other replicas' (see module doc)."""

    def __init__(
        self,
        bus: Bus | None,
        *,
        poll_seconds: float = 5.0,
        backoff_seconds: tuple[float, float] = (0.1, 5.0),
    ) -> None:
        self._bus = bus
        self._poll = poll_seconds
        self._backoff = backoff_seconds
        self._handlers: dict[str, list[Handler]] = {}
        send, receive = anyio.create_memory_object_stream[Notice](_OUTBOX)
        self._outbox: MemoryObjectSendStream[Notice] = send
        self._inbox: MemoryObjectReceiveStream[Notice] = receive
        self.state: FeedState = "local" if bus is None else "connecting"
        # Set once the feed first listens (tests and startup checks wait on it).
        self.listening = anyio.Event()

    def on(self, topic: str, handler: Handler) -> None:
        """Run `handler(subject)` when another replica announces a change of `topic`."""
        self._handlers.setdefault(topic, []).append(handler)

    def changed(self, topic: str, subject: str = ALL) -> None:
        """Announce a change made here (already applied here). Never blocks: a change is
        queued for the sender; if the queue is full, the other replicas' polling covers it."""
        if self._bus is None:
            return
        try:
            self._outbox.send_nowait(Notice(topic, subject))
        except anyio.WouldBlock:
            logger.warning("replica bus: outbox full; %s change left to polling", topic)

    def announcer(self, topic: str) -> Callable[[str], None]:
        """A callback that announces a change of `topic` with the subject it is given."""
        return lambda subject: self.changed(topic, subject)

    async def run(self) -> None:
        """Send and receive until cancelled (returns at once without a bus)."""
        if self._bus is None:
            return
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._send, self._bus)
                await self._listen(self._bus)
        finally:
            with anyio.CancelScope(shield=True):
                await self._bus.aclose()

    async def _send(self, bus: Bus) -> None:
        async for notice in self._inbox:
            try:
                await bus.publish(notice)
            except BusUnavailable as exc:
                logger.warning(
                    "replica bus: %s change not sent (%s); left to polling", notice.topic, exc
                )
            except Exception:  # the sender's outer boundary, as the listener's
                logger.exception("replica bus: sending a %s change failed", notice.topic)

    async def _listen(self, bus: Bus) -> None:
        delay = self._backoff[0]
        polled = anyio.current_time()
        while True:
            try:
                async with bus.subscribe() as notices:
                    self.state, delay = "live", self._backoff[0]
                    self.listening.set()
                    logger.info("replica bus: listening for changes from other replicas")
                    # What was announced before we listened (since the start, or while away).
                    await self._refresh_all()
                    async for notice in notices:
                        await self._apply(notice)
            except BusUnavailable as exc:
                self._lost(str(exc))
            except Exception:  # the feed's outer boundary: it must never stop the gateway
                logger.exception("replica bus: unexpected failure")
                self._lost("unexpected failure")
            await anyio.sleep(delay)  # reconnect backoff, not a wait for a result
            delay = min(delay * 2, self._backoff[1])
            if anyio.current_time() - polled >= self._poll:
                polled = anyio.current_time()
                await self._refresh_all()

    def _lost(self, reason: str) -> None:
        if self.state != "polling":
            logger.warning(
                "replica bus unavailable (%s): re-reading models and rules every %gs, "
                "keys within their cache TTL, until it is back",
                reason,
                self._poll,
            )
        self.state = "polling"

    async def _refresh_all(self) -> None:
        for topic in self._handlers:
            await self._apply(Notice(topic, ALL), remote=False)

    async def _apply(self, notice: Notice, *, remote: bool = True) -> None:
        for handler in self._handlers.get(notice.topic, []):
            try:
                await handler(notice.subject)
            except Exception:  # the feed's outer boundary: one bad refresh must not stop it
                logger.exception("replica bus: applying a %s change failed", notice.topic)
        if remote:
            logger.info(
                "replica bus: applied %s change from another replica (%s)",
                notice.topic,
                notice.subject or "all",
            )
