"""`Outage`: how a Redis-backed optimization behaves while Redis is unreachable.

After a failure the caller skips Redis for `cooldown_seconds` and decides locally, instead of
paying a connection timeout on every request (a Redis that drops packets, rather than refusing,
would otherwise add `timeout_ms` to each call). The first loss and the return are logged once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

logger = logging.getLogger("agentgw.redis")

DEFAULT_COOLDOWN_SECONDS = 1.0


class Outage:
    """Whether to skip Redis now, for one named use of it (`what`)."""

    def __init__(
        self,
        what: str,
        *,
        cooldown_seconds: float = DEFAULT_COOLDOWN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._what = what
        self._cooldown = cooldown_seconds
        self._clock = clock
        self._retry_at: float | None = None

    @property
    def down(self) -> bool:
        return self._retry_at is not None

    def skip(self) -> bool:
        """True while Redis failed less than the cooldown ago: decide without it."""
        return self._retry_at is not None and self._clock() < self._retry_at

    def lost(self, exc: BaseException) -> None:
        if self._retry_at is None:
            logger.warning("%s: redis unavailable (%s); working without it", self._what, exc)
        self._retry_at = self._clock() + self._cooldown

    def back(self) -> None:
        if self._retry_at is not None:
            logger.info("%s: redis is back; shared again", self._what)
        self._retry_at = None
