"""The SQL stores' operations methods (price versions, console sessions, the one-time fill of
the usage aggregates), mixed into `SQLiteStore` and so inherited by `PostgresStore`."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiosqlite

from core.audit import AuditDraft, AuditEvent
from core.ops.prices import PriceVersion
from core.ops.sessions import StoredSession
from core.state import AlreadyExists
from core.tracing import Span
from store.ops_rows import (
    ADVANCE_BACKFILL,
    DELETE_SESSION,
    DELETE_SESSIONS_BEFORE,
    END_BACKFILL,
    INSERT_PRICE,
    INSERT_SESSION,
    SELECT_BACKFILL,
    SELECT_PRICES,
    SELECT_SESSION,
    TOUCH_SESSION,
    price_from,
    price_row,
    session_from,
    session_row,
)
from store.rows import SPAN_COLUMNS, span_from
from store.sqlite_changes import append_event
from store.sqlite_schema import changed, run, run_many
from store.usage import SPAN_PAGE, UPSERT_DAILY, UPSERT_HOURLY, usage_rows

logger = logging.getLogger("agentgw.store")

# Spans counted by one open; a bigger backlog goes on at the next open (or `report rebuild`).
BACKFILL_LIMIT = 1_000_000


class OpsMethods:
    """Needs the SQL store's `_select`, `_connection` and `_transaction`."""

    async def _select(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        raise NotImplementedError

    def _connection(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        raise NotImplementedError

    def _transaction(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        raise NotImplementedError

    # -- price versions (core.ops.prices.PriceVersionStore) ------------------------------------

    async def price_versions(self) -> list[PriceVersion]:
        """Every stored version, oldest effective date first."""
        return [price_from(row) for row in await self._select(SELECT_PRICES)]

    async def commit_price(self, version: PriceVersion, draft: AuditDraft) -> AuditEvent:
        """Store `version` and append `draft` as the next audit event, in one transaction.

        Raises:
            AlreadyExists: that model has a version with that effective date.
        """
        try:
            async with self._transaction() as db:
                await run(db, INSERT_PRICE, price_row(version))
                return await append_event(db, draft)
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(f"price version {version.price.model} exists") from exc

    # -- console sessions (core.ops.sessions.ConsoleSessionStore) ------------------------------

    async def save_console_session(self, session: StoredSession) -> None:
        """Store a new session."""
        async with self._connection() as db:
            await run(db, INSERT_SESSION, session_row(session))

    async def console_session(self, token_hash: str) -> StoredSession | None:
        """The session with that token hash, or None."""
        rows = await self._select(SELECT_SESSION, (token_hash,))
        return session_from(rows[0]) if rows else None

    async def touch_console_session(self, token_hash: str, last_used: float) -> None:
        """Note a use of the session."""
        async with self._connection() as db:
            await run(db, TOUCH_SESSION, (last_used, token_hash))

    async def delete_console_session(self, token_hash: str) -> None:
        """End one session."""
        async with self._connection() as db:
            await run(db, DELETE_SESSION, (token_hash,))

    async def delete_console_sessions_before(self, created: float, last_used: float) -> int:
        """End every session made before `created` or unused since `last_used`; how many."""
        async with self._connection() as db:
            return await changed(db, DELETE_SESSIONS_BEFORE, (created, last_used))

    # -- spans of a window (anomaly baselines of sub-hour buckets) -----------------------------

    async def spans_between(self, since: float, until: float, limit: int) -> list[Span]:
        """Spans started in [since, until), the newest `limit` of them, oldest first."""
        sql = (
            f"SELECT {SPAN_COLUMNS} FROM spans WHERE started_at >= ? AND started_at < ? "
            "ORDER BY started_at DESC LIMIT ?"
        )
        rows = await self._select(sql, (since, until, limit))
        return [span_from(row) for row in reversed(rows)]

    # -- the one-time fill of the usage aggregates ---------------------------------------------

    async def backfill_usage(self, page: int = 5000, limit: int = BACKFILL_LIMIT) -> int:
        """Count the spans recorded before the usage aggregates existed (migration 12 marks
        them: ids up to the newest span then), a page per transaction; the progress is kept in
        the same transaction, so a crash or a second replica never counts a span twice. At
        most about `limit` spans per call; the number counted."""
        counted = 0
        while counted < limit:
            async with self._transaction() as db:
                marker = list(await db.execute_fetchall(SELECT_BACKFILL))
                if not marker:
                    break
                last, end = int(marker[0]["next_id"]), int(marker[0]["end_id"])
                rows = list(await db.execute_fetchall(SPAN_PAGE, (last, end, page)))
                if not rows:
                    await run(db, END_BACKFILL)
                    break
                hourly, daily = usage_rows([span_from(row) for row in rows])
                await run_many(db, UPSERT_HOURLY, hourly)
                await run_many(db, UPSERT_DAILY, daily)
                await run(db, ADVANCE_BACKFILL, (int(rows[-1]["id"]),))
            counted += len(rows)
        return counted

    async def backfill_pending(self) -> bool:
        """Whether spans older than the aggregates are still to be counted."""
        return bool(await self._select(SELECT_BACKFILL))


async def backfill_at_open(store: OpsMethods, limit: int = BACKFILL_LIMIT) -> None:
    """Run the one-time fill if migration 12 asked for it, with a log line before and after."""
    if not await store.backfill_pending():
        return
    logger.warning("usage aggregates: counting spans recorded before they existed (once)")
    started = time.monotonic()
    counted = await store.backfill_usage(limit=limit)
    took = time.monotonic() - started
    if await store.backfill_pending():
        logger.warning(
            "usage aggregates: %d spans counted in %.1f s; the rest continues at the next open "
            "(or run `agentgw report rebuild`)",
            counted,
            took,
        )
    else:
        logger.warning("usage aggregates: %d older spans counted in %.1f s", counted, took)
