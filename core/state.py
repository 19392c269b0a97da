"""The state seams: what every store backend (memory, SQLite, PostgreSQL) provides.

Reads go through the small protocols here. Every change to governed state (keys, org units,
customers, apps, agents, settings) goes through `core.audit.AuditStore.commit`, which writes the
change and its audit event in one transaction. `create_key` and `set_key_status` remain for
bulk tooling and tests; the admin API and the CLI never use them.
"""

from __future__ import annotations

from typing import Protocol

from core.access import KeyRecord, KeyStore
from core.audit import AuditStore
from core.model_versions import ModelVersionStore
from core.orgs import OrgUnit, Party, PartyKind
from core.tracing import SpanStore


class AlreadyExists(Exception):
    """A record with that id or unique name exists already."""


class KeyAlreadyExists(AlreadyExists):
    """A key with that id, name or hash exists already."""


class Stale(Exception):
    """The record to change is gone, or changed since it was read."""


class KeyRegistry(KeyStore, Protocol):
    """Key reads on top of the lookup the request path uses."""

    async def create_key(self, record: KeyRecord) -> None:
        """Store a new key, unaudited.

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
        """Change a key's status, unaudited; False when there is no such key."""
        ...


class OrgDirectory(Protocol):
    """Reads of the organization model."""

    async def get_org_unit(self, path: str) -> OrgUnit | None:
        """The unit with that path, or None."""
        ...

    async def list_org_units(self) -> list[OrgUnit]:
        """Every unit, by path (so a parent comes before its children)."""
        ...

    async def get_party(self, kind: PartyKind, party_id: str) -> Party | None:
        """The customer, app or agent with that id, or None."""
        ...

    async def list_parties(self, kind: PartyKind) -> list[Party]:
        """Every customer, app or agent, by id."""
        ...


class Store(KeyRegistry, OrgDirectory, AuditStore, SpanStore, ModelVersionStore, Protocol):
    """A whole backend: opened once in the lifespan, closed at shutdown."""

    async def open(self) -> None:
        """Connect and bring the schema to the latest migration."""
        ...

    async def aclose(self) -> None:
        """Close connections; everything written before is durable."""
        ...

    async def get_setting(self, name: str) -> str | None:
        """A stored setting (written with `commit(Insert(Setting(…)))`), or None."""
        ...
