"""The state seams: what every store backend (memory, SQLite, PostgreSQL) provides."""

from __future__ import annotations

from typing import Protocol

from core.access import KeyRecord, KeyStore
from core.tracing import SpanStore


class KeyAlreadyExists(Exception):
    """A key with that id or name exists already."""


class KeyRegistry(KeyStore, Protocol):
    """Key management on top of the lookup the request path uses."""

    async def create_key(self, record: KeyRecord) -> None:
        """Store a new key.

        Raises:
            KeyAlreadyExists: the id or the name is taken.
        """
        ...

    async def get_key(self, key_id: str) -> KeyRecord | None:
        """The key with that id, or None."""
        ...

    async def list_keys(self) -> list[KeyRecord]:
        """Every key, oldest first."""
        ...

    async def set_key_status(self, key_id: str, status: str) -> bool:
        """Change a key's status (`active`, `revoked` …); False when there is no such key."""
        ...


class Store(KeyRegistry, SpanStore, Protocol):
    """A whole backend: opened once in the lifespan, closed at shutdown."""

    async def open(self) -> None:
        """Connect and bring the schema to the latest migration."""
        ...

    async def aclose(self) -> None:
        """Close connections; everything written before is durable."""
        ...
