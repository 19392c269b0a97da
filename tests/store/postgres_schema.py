"""PostgreSQL stores for tests, in schemas of their own, so test runs never meet.

The machine's PostgreSQL (127.0.0.1:5432, trust auth, database `test`) is shared by everyone
running tests at the same time: each test process works in its own random schema, dropped when
it exits, and `fresh_postgres` empties its tables after each test.
"""

from __future__ import annotations

import atexit
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import asyncpg

from store.postgres import PostgresStore

PG_SERVER = "postgresql://postgres@127.0.0.1:5432/test"


def schema_name(prefix: str = "agw_test") -> str:
    """A schema name no other run uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def store_url(schema: str, **options: str) -> str:
    """The `store:` URL of `schema` on the test server."""
    query = "&".join(f"{k}={v}" for k, v in {"schema": schema, **options}.items())
    return f"{PG_SERVER}?{query}"


async def drop_schema(schema: str) -> None:
    """Drop `schema` and everything in it."""
    conn = await asyncpg.connect(PG_SERVER)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


# The one migrated schema of this test process, made on first use and dropped at exit: migrating
# a schema per test costs more than emptying its tables between tests.
_SHARED: list[str] = []


async def _shared_schema() -> str:
    if not _SHARED:
        schema = schema_name()
        first = PostgresStore(store_url(schema))
        await first.open()
        await first.aclose()
        _SHARED.append(schema)
        atexit.register(anyio.run, drop_schema, schema)
    return _SHARED[0]


async def empty_tables(schema: str) -> None:
    """Remove every row of `schema` but its migration record; identities start again at 1.

    DELETE rather than TRUNCATE: on tables this small it is many times faster.
    """
    conn = await asyncpg.connect(PG_SERVER)
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1 "
            "AND tablename <> 'schema_migrations'",
            schema,
        )
        sequences = await conn.fetch(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = $1", schema
        )
        script = [f'DELETE FROM "{schema}"."{r["tablename"]}";' for r in tables]
        script += [f'ALTER SEQUENCE "{schema}"."{r["sequencename"]}" RESTART;' for r in sequences]
        await conn.execute("BEGIN; SET CONSTRAINTS ALL DEFERRED; " + " ".join(script) + " COMMIT;")
    finally:
        await conn.close()


@asynccontextmanager
async def fresh_postgres() -> AsyncIterator[PostgresStore]:
    """An opened `PostgresStore` with empty tables (emptied again afterwards)."""
    schema = await _shared_schema()
    opened = PostgresStore(store_url(schema, pool_size="4"))
    try:
        await opened.open()
        yield opened
    finally:
        await opened.aclose()
        await empty_tables(schema)
