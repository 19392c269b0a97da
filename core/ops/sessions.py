"""Console sign-in sessions as the store keeps them: the hash of the cookie's token, never the
token, so a copy of the database signs nobody in; shared by every replica and kept over restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from core.audit import Actor


@dataclass(frozen=True, slots=True)
class StoredSession:
    """One signed-in key: the token's hash, who, and when it was made and last used."""

    token_hash: str
    actor: Actor
    created: float
    last_used: float


class ConsoleSessionStore(Protocol):
    """Console sessions; every store backend keeps them."""

    async def save_console_session(self, session: StoredSession) -> None:
        """Store a new session."""
        ...

    async def console_session(self, token_hash: str) -> StoredSession | None:
        """The session with that token hash, or None."""
        ...

    async def touch_console_session(self, token_hash: str, last_used: float) -> None:
        """Note a use of the session."""
        ...

    async def delete_console_session(self, token_hash: str) -> None:
        """End one session (sign-out, expiry)."""
        ...

    async def delete_console_sessions_before(self, created: float, last_used: float) -> int:
        """End every session made before `created` or unused since `last_used`; how many."""
        ...
