"""`PostgresStore`: the store for replicas, on PostgreSQL through asyncpg.

It is `SQLiteStore` with other connections: every query method is inherited, so a method added
to `store/sqlite.py` works here too, unchanged. What differs lives below the methods:

- `store.postgres_connection.PgConnection` offers the aiosqlite calls the SQL code makes on an
  asyncpg connection (statements translated by `store.postgres_sql`).
- A small pool of connections replaces SQLite's one connection and its lock: reads run in
  parallel. A write transaction (`BEGIN IMMEDIATE` in the shared code) takes one advisory lock
  right after `BEGIN`, so writers are serialized across every connection and every replica as
  SQLite serializes them: the audit chain's "read the head, append the next" stays one step.
- Migrations are the same versions from `store.migrations`, translated, applied under a
  session advisory lock, so replicas starting together apply each exactly once.

URL: `postgresql://user@host:port/db` plus two options of ours: `schema=NAME` (created if
missing; the tables live there) and `pool_size=N` (default 10). Any other query parameter is
asyncpg's (server settings, `sslmode`, …).
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiosqlite
import anyio

from store.migrations import SCHEMA_MIGRATIONS_TABLE, Migration, pending
from store.ops_store import backfill_at_open
from store.postgres_connection import ConnectionLost, PgConnection, PgPool, close_quietly
from store.postgres_sql import translate
from store.sqlite import SQLiteStore
from store.sqlite_schema import statements, transaction

POSTGRES_URL_PREFIXES = ("postgresql://", "postgres://")
DEFAULT_POOL_SIZE = 10
# Advisory lock key (any fixed 64-bit number) held while migrations are applied.
MIGRATION_LOCK = 0x6167_7700_0001
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def parse_url(url: str) -> tuple[str, str | None, int]:
    """The asyncpg DSN, the schema and the pool size a `postgresql://` URL names.

    Raises:
        ValueError: not a PostgreSQL URL, or a bad `schema` / `pool_size`.
    """
    if not url.startswith(POSTGRES_URL_PREFIXES):
        raise ValueError(f"expected postgresql://…, got {url.split('://', 1)[0]!r}")
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in ("schema", "pool_size")}
    rest = [(k, v) for k, v in query if k not in ours]
    schema = ours.get("schema") or None
    if schema is not None and not _SCHEMA_NAME.match(schema):
        raise ValueError(f"schema: {schema!r} is not a plain SQL name (letters, digits, _)")
    try:
        size = int(ours.get("pool_size", DEFAULT_POOL_SIZE))
    except ValueError as exc:
        raise ValueError(f"pool_size: expected an integer, got {ours['pool_size']!r}") from exc
    if size < 1:
        raise ValueError("pool_size: must be at least 1")
    return urlunsplit(parts._replace(query=urlencode(rest))), schema, size


class PostgresStore(SQLiteStore):
    """A `core.state.Store` on PostgreSQL; every query method is `SQLiteStore`'s."""

    def __init__(self, url: str) -> None:
        # SQLite's file path means nothing here; keep credentials out of it all the same.
        super().__init__(url.rpartition("@")[2])
        self._dsn, self._schema, self._pool_size = parse_url(url)
        self._pool: PgPool | None = None

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        """The store for a `postgresql://…` URL.

        Raises:
            ValueError: the URL is not a PostgreSQL URL or has a bad option.
        """
        return cls(url)

    @property
    def schema(self) -> str | None:
        """The schema the tables live in (None: the server's default search path)."""
        return self._schema

    async def open(self) -> None:
        """Connect, create the schema if missing, and apply pending migrations.

        Raises:
            store.migrations.UnknownSchemaVersion: the database was written by a newer agentgw.
            OSError, asyncpg.PostgresError: the server cannot be reached or refuses us.
        """
        async with self._lock:
            if self._pool is not None:
                return
            settings = {"search_path": self._schema} if self._schema else {}
            pool = PgPool(self._dsn, self._pool_size, settings)
            first = await pool.connect()
            try:
                await _migrate(first, self._schema)
            finally:
                await close_quietly(first)
            self._pool = pool
        await backfill_at_open(self)

    async def aclose(self) -> None:
        """Wait for the statements in progress, then close every connection."""
        async with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            with anyio.CancelScope(shield=True):
                await pool.aclose()

    async def _select(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        # A read is safe to run twice: after a server restart every pooled connection is dead,
        # and the first read on each would fail without this one retry on a fresh connection.
        try:
            async with self._connection() as db:
                return list(await db.execute_fetchall(sql, params))
        except ConnectionLost:
            async with self._connection() as db:
                return list(await db.execute_fetchall(sql, params))

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[aiosqlite.Connection]:
        if self._pool is None:
            raise RuntimeError("PostgresStore is not open: await open() first")
        async with self._pool.acquire() as conn:
            # The shared code is typed against aiosqlite; PgConnection offers what it calls.
            yield cast(aiosqlite.Connection, conn)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._connection() as db, transaction(db):
            yield db


async def _migrate(conn: PgConnection, schema: str | None) -> None:
    """Apply the pending migrations, one transaction each, under a session advisory lock."""
    raw = conn.raw
    await raw.execute(f"SELECT pg_advisory_lock({MIGRATION_LOCK})")
    try:
        if schema is not None:
            await raw.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await raw.execute(translate(SCHEMA_MIGRATIONS_TABLE))
        done = await raw.fetch("SELECT version FROM schema_migrations")
        for migration in pending(int(row["version"]) for row in done):
            async with raw.transaction():
                await _apply(conn, migration)
    finally:
        with anyio.CancelScope(shield=True):
            await raw.execute(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})")


async def _apply(conn: PgConnection, migration: Migration) -> None:
    for statement in statements(migration.sql):
        await conn.raw.execute(translate(statement))
    await conn.raw.execute(
        "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
        migration.version,
        time.time(),
    )
