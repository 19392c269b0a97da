"""`RedisBus`: the replicas' change notices on one Redis pub/sub channel.

A notice is a small JSON message `{"o": origin, "t": topic, "s": subject}`; each replica has a
random origin id and skips its own notices. Pub/sub keeps nothing for a replica that is not
listening: `core.bus.ChangeFeed` re-reads everything when it reconnects.

The bus has its own connections, separate from the counters' pool: a subscription holds its
connection for as long as it listens, and has no read timeout (it waits for notices). Lost
connections are found by redis-py's health check (a PING on an idle subscription).
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.bus import BusUnavailable, Notice

HEALTH_CHECK_SECONDS = 5
# How long one wait for a message lasts; between waits redis-py runs its health check.
_POLL_SECONDS = 1.0


class RedisBus:
    """A `core.bus.Bus` on Redis pub/sub."""

    def __init__(
        self,
        client: Redis,
        channel: str,
        *,
        origin: str | None = None,
        confirm_seconds: float = 10.0,
    ) -> None:
        self._client = client
        self._channel = channel
        self._confirm_seconds = confirm_seconds
        self.origin = origin or secrets.token_hex(8)

    @classmethod
    def from_url(cls, url: str, channel: str, timeout_ms: int) -> RedisBus:
        """A bus on `channel` of the Redis at `url`; connects on first use."""
        seconds = timeout_ms / 1000
        client = Redis.from_url(
            url,
            socket_connect_timeout=seconds,
            health_check_interval=HEALTH_CHECK_SECONDS,
            max_connections=4,
        )
        return cls(client, channel)

    @property
    def channel(self) -> str:
        return self._channel

    async def publish(self, notice: Notice) -> None:
        """Raises: BusUnavailable."""
        message = json.dumps({"o": self.origin, "t": notice.topic, "s": notice.subject})
        try:
            with anyio.fail_after(5):
                await self._client.publish(self._channel, message)
        except (RedisError, OSError, TimeoutError) as exc:
            raise BusUnavailable(f"redis: {exc}") from exc

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[Notice]]:
        """Raises: BusUnavailable."""
        pubsub = self._client.pubsub()
        try:
            try:
                await pubsub.subscribe(self._channel)
                # Listening only once Redis confirms: a notice sent before that would be lost.
                with anyio.fail_after(self._confirm_seconds):
                    while (await pubsub.get_message(timeout=_POLL_SECONDS) or {}).get(
                        "type"
                    ) != "subscribe":
                        pass
            except (RedisError, OSError, TimeoutError) as exc:
                raise BusUnavailable(f"redis: {exc!r}") from exc
            yield self._notices(pubsub)
        finally:
            with anyio.CancelScope(shield=True):
                # A lost connection has nothing left to close.
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _notices(self, pubsub: Any) -> AsyncIterator[Notice]:
        while True:
            try:
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=_POLL_SECONDS
                )
            except (RedisError, OSError) as exc:
                raise BusUnavailable(f"redis: {exc}") from exc
            if message is None or message.get("type") != "message":
                continue
            notice = self._decode(message.get("data"))
            if notice is not None:
                yield notice

    def _decode(self, data: object) -> Notice | None:
        try:
            body = json.loads(data)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None  # not ours: someone else publishes on this channel
        if not isinstance(body, dict) or body.get("o") == self.origin:
            return None
        topic, subject = body.get("t"), body.get("s", "")
        if not isinstance(topic, str) or not isinstance(subject, str):
            return None
        return Notice(topic, subject)

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._client.aclose()
