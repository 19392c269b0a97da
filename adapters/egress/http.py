"""The pooled HTTP clients every HTTP provider shares, opened and closed in the lifespan.

aiohttp, chosen by measurement on this machine (at 32 concurrent relayed requests a plain httpx
pool managed ~340 req/s and aiohttp ~2,900, see docs/performance.md), for everything but the
calls every request makes: a chat (or embedding, moderation) POST and its stream go through
`adapters.egress.h1.UpstreamHTTP`, which does that one thing for less than half of aiohttp's CPU.
"""

from __future__ import annotations

import aiohttp

from adapters.egress.h1 import UpstreamHTTP
from core.errors import Internal


class SharedHTTP:
    """Owns the aiohttp session and the hot-path client; providers borrow them."""

    def __init__(self, *, max_connections: int = 1000) -> None:
        self._max = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._upstream: UpstreamHTTP | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """Raises:
        Internal: used before `open()` or after `aclose()`.
        """
        if self._session is None:
            raise Internal("The upstream HTTP client is not open.")
        return self._session

    @property
    def upstream(self) -> UpstreamHTTP:
        """Raises:
        Internal: used before `open()` or after `aclose()`.
        """
        if self._upstream is None:
            raise Internal("The upstream HTTP client is not open.")
        return self._upstream

    async def open(self) -> None:
        self._upstream = UpstreamHTTP(max_connections=self._max)
        connector = aiohttp.TCPConnector(
            limit=self._max, limit_per_host=0, keepalive_timeout=30, enable_cleanup_closed=True
        )
        # Timeouts are set per request by each provider; the session has none of its own.
        # No cookie jar: one session serves every tenant, so a cookie an upstream set for one
        # caller must never ride along on another's request (and no jar is consulted per call).
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=True,
            raise_for_status=False,
            trust_env=False,
        )

    async def aclose(self) -> None:
        if self._upstream is not None:
            await self._upstream.aclose()
            self._upstream = None
        if self._session is not None:
            await self._session.close()
            self._session = None
