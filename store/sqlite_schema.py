"""SQLite plumbing: statements, transactions and the migration runner."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite
import anyio

from store.migrations import SCHEMA_MIGRATIONS_TABLE, Migration, pending


@asynccontextmanager
async def transaction(db: aiosqlite.Connection) -> AsyncIterator[None]:
    # IMMEDIATE takes the write lock at BEGIN, so a busy database fails (after busy_timeout)
    # before any work is done rather than at COMMIT.
    await run(db, "BEGIN IMMEDIATE")
    try:
        yield
        await run(db, "COMMIT")
    except BaseException:
        # Shielded: a cancelled caller must not leave the shared connection inside a transaction.
        with anyio.CancelScope(shield=True):
            if db.in_transaction:
                await run(db, "ROLLBACK")
        raise


async def migrate(db: aiosqlite.Connection) -> None:
    """Apply every pending migration, each in its own transaction.

    Raises:
        store.migrations.UnknownSchemaVersion: the file was written by a newer agentgw.
    """
    await run(db, SCHEMA_MIGRATIONS_TABLE)
    rows = await db.execute_fetchall("SELECT version FROM schema_migrations")
    for migration in pending(int(row["version"]) for row in rows):
        async with transaction(db):
            # Checked again under the write lock: another process may have applied it meanwhile.
            done = await db.execute_fetchall(
                "SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)
            )
            if not list(done):
                await _apply(db, migration)


async def _apply(db: aiosqlite.Connection, migration: Migration) -> None:
    for statement in statements(migration.sql):
        await run(db, statement)
    await run(
        db,
        "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
        (migration.version, time.time()),
    )


def statements(script: str) -> list[str]:
    """Split a script into statements, using SQLite's own parser to find where each ends.

    `executescript` would do it in one call, but it commits any open transaction first, which
    would break the one-transaction-per-migration rule.

    Raises:
        ValueError: the script ends in an unterminated statement.
    """
    found: list[str] = []
    start = 0
    for end, char in enumerate(script):
        if char == ";" and sqlite3.complete_statement(script[start : end + 1]):
            statement = script[start : end + 1].strip()
            if _has_code(statement):
                found.append(statement)
            start = end + 1
    if script[start:].strip():
        raise ValueError(f"migration ends with an unterminated statement: {script[start:]!r}")
    return found


def _has_code(statement: str) -> bool:
    lines = (line.strip() for line in statement.splitlines())
    return any(line and not line.startswith("--") and line != ";" for line in lines)


Statements = Sequence[tuple[str, Sequence[Sequence[Any]]]]
"""A write batch: each statement with its rows (`executemany`)."""


async def write_batch(db: aiosqlite.Connection, statements: Statements) -> None:
    """Run `statements` in one write transaction (BEGIN IMMEDIATE ... COMMIT, or ROLLBACK).

    On aiosqlite the whole transaction runs on the connection's thread in one trip: each
    `await db.executemany(...)` is a round trip to that thread (a queue put, a wake-up, a call
    back into the event loop), and a batch of spans took ten. aiosqlite has no public call for
    "run this function there": `_execute` and `_conn` are what its own methods use (the store
    tests fail if they change). Such a transaction cannot be left open by a cancelled caller:
    it runs to its end on the thread whatever happens to the awaiting task. Any other
    connection (the PostgreSQL adapter, which speaks aiosqlite's calls) runs the statements
    one by one in `transaction`.
    """
    if not isinstance(db, aiosqlite.Connection):
        async with transaction(db):
            for sql, rows in statements:
                await run_many(db, sql, rows)
        return

    def transact(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in statements:
                conn.executemany(sql, rows)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    await db._execute(transact, db._conn)  # type: ignore[no-untyped-call]


async def run(db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> None:
    async with db.execute(sql, params):
        pass


async def run_many(db: aiosqlite.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    async with db.executemany(sql, rows):
        pass


async def changed(db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> int:
    """Run a write and return how many rows it touched."""
    async with db.execute(sql, params) as cursor:
        return cursor.rowcount


def marks(n: int) -> str:
    return ", ".join("?" for _ in range(n))
