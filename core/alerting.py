"""Budget alerts: kept for the admin API and delivered to the configured webhooks.

The gate's alert sink only appends and enqueues, so a slow or dead webhook never holds a request:
delivery runs in a background task that retries each webhook with exponential backoff. The queue
is bounded; when it is full an alert is still listed but its delivery is dropped and counted.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
import httpx
from anyio.abc import TaskGroup

from core.governance import Alert

logger = logging.getLogger("agentgw.alerts")

ALERT_COLUMNS = (
    "at",
    "level",
    "target",
    "threshold",
    "spent_usd",
    "budget_usd",
    "period",
    "action",
)


class AlertFeed:
    """The latest alerts (newest first) and their webhook deliveries."""

    def __init__(
        self,
        webhooks: list[str],
        *,
        keep: int = 1000,
        queue_size: int = 1000,
        attempts: int = 5,
        backoff_seconds: float = 0.2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._webhooks = list(webhooks)
        self._alerts: deque[dict[str, Any]] = deque(maxlen=keep)
        self._send, self._receive = anyio.create_memory_object_stream[dict[str, Any]](queue_size)
        self._attempts, self._backoff, self._clock = attempts, backoff_seconds, clock
        self.dropped = 0
        self.failed = 0

    async def __call__(self, alert: Alert) -> None:
        """The gate's alert sink: record, then queue for delivery without waiting."""
        row = {"at": round(self._clock(), 6), **dataclasses.asdict(alert)}
        self._alerts.appendleft(row)
        logger.warning("budget alert: %s", row)
        if not self._webhooks:
            return
        try:
            self._send.send_nowait(row)
        except anyio.WouldBlock:
            self.dropped += 1

    def listing(self) -> list[dict[str, Any]]:
        return list(self._alerts)

    def start(self, tg: TaskGroup) -> None:
        if self._webhooks:
            tg.start_soon(self._deliver)

    async def _deliver(self) -> None:
        async with httpx.AsyncClient(timeout=5.0) as client:
            async for row in self._receive:
                for url in self._webhooks:
                    await self._post(client, url, row)

    async def _post(self, client: httpx.AsyncClient, url: str, row: dict[str, Any]) -> None:
        delay = self._backoff
        for attempt in range(self._attempts):
            try:
                reply = await client.post(url, json={"type": "budget_alert", "alert": row})
                if reply.status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            if attempt + 1 < self._attempts:
                await anyio.sleep(delay)  # backoff between attempts, not a wait for an event
                delay *= 2
        self.failed += 1
        logger.warning("alert webhook %s failed after %d attempts", url, self._attempts)
