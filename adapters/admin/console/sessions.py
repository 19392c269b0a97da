"""Console sign-in sessions: an opaque cookie per signed-in key, with a CSRF token for forms.

The cookie holds only a random token; the store keeps its SHA-256 hash (never the token), the
signed-in actor, and when the session was made and last used, so a restart signs nobody out and
every replica knows every session. The CSRF token is derived from the cookie's token (a keyed
hash of it), so it is stored nowhere and a copy of the database yields neither. Sessions end after
`idle_seconds` without use, after `max_seconds` in any case, on sign-out (the row is deleted),
and when the key behind them stops being usable (checked on every page).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from core.audit import Actor
from core.ops.sessions import ConsoleSessionStore, StoredSession

COOKIE = "agw_console"
CONSOLE_ROLES = frozenset({"admin", "finance", "security"})
# A use is written back at most this often per session (pages do not each cost a write).
TOUCH_SECONDS = 60.0


@dataclass(slots=True)
class ConsoleSession:
    """One signed-in key."""

    actor: Actor
    csrf: str
    created: float
    last_used: float

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token, self.csrf)


class ConsoleSessions:
    """The signed-in sessions, in the store."""

    def __init__(
        self,
        store: ConsoleSessionStore,
        *,
        idle_seconds: float = 1800,
        max_seconds: float = 8 * 3600,
    ) -> None:
        self._store = store
        self._idle, self._max = idle_seconds, max_seconds

    async def start(self, actor: Actor, now: float) -> str:
        """A new session for `actor`; the cookie value. Expired sessions are swept first."""
        await self._store.delete_console_sessions_before(now - self._max, now - self._idle)
        token = secrets.token_urlsafe(32)
        await self._store.save_console_session(StoredSession(_digest(token), actor, now, now))
        return token

    async def find(self, token: str | None, now: float) -> ConsoleSession | None:
        """The live session of a cookie value, or None (an expired one is ended)."""
        if not token:
            return None
        digest = _digest(token)
        stored = await self._store.console_session(digest)
        if stored is None:
            return None
        if now - stored.last_used > self._idle or now - stored.created > self._max:
            await self._store.delete_console_session(digest)
            return None
        if now - stored.last_used >= TOUCH_SECONDS:
            await self._store.touch_console_session(digest, now)
        return ConsoleSession(stored.actor, _csrf(token), stored.created, now)

    async def end(self, token: str | None) -> None:
        if token:
            await self._store.delete_console_session(_digest(token))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _csrf(token: str) -> str:
    return hmac.new(token.encode(), b"agentgw console csrf", hashlib.sha256).hexdigest()
