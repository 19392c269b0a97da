"""The operations tables of migration 12 on every backend: price versions (with their audit
event), console sessions, and the one-time fill of the usage aggregates from older spans."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import pytest

from core.audit import Actor, AuditLog, AuditQuery, verify_chain
from core.config import Price
from core.errors import Conflict, ValidationFailed
from core.metering import PriceCatalog
from core.ops.prices import PriceBook, PriceVersionStore
from core.ops.sessions import ConsoleSessionStore, StoredSession
from core.reports import UsageQuery, UsageStore
from core.tracing import Span
from store import SQLiteStore
from store.postgres import PostgresStore
from tests.store.postgres_schema import (
    PG_SERVER,
    drop_schema,
    schema_name,
    store_url,
)
from tests.store.test_stores import backend

__all__ = ["backend"]  # the fixture, imported so pytest finds it here too

pytestmark = pytest.mark.anyio

NOW = 1_780_000_000.0
ADMIN = Actor("key_admin", "admin", "", "127.0.0.1")


class OpsStore(PriceVersionStore, ConsoleSessionStore, UsageStore):
    async def record_spans(self, spans: list[Span]) -> None: ...


def price(**changes: Any) -> Price:
    fields: dict[str, Any] = {"provider": "p", "model": "m", "input_per_1m": 1.0, **changes}
    return Price(**fields)


async def test_price_versions_are_stored_audited_and_applied(backend: OpsStore) -> None:
    clock = [NOW]
    catalog = PriceCatalog([price()], clock=lambda: clock[0])
    book = PriceBook(catalog, backend, clock=lambda: clock[0])
    later = await book.add(ADMIN, price(input_per_1m=5.0, effective_from=str(NOW + 3600)))
    now = await book.add(ADMIN, Price(provider="p", model="new", per_call=0.01))
    assert later.price.effective_from == "2026-05-28T21:26:40Z"
    # Applied at once, from its date on; the past keeps its price.
    assert catalog.price("p", "m", NOW - 10) is not None
    assert catalog.price("p", "m", NOW + 10).input_per_1m == 1.0  # type: ignore[union-attr]
    assert catalog.price("p", "m", NOW + 3600).input_per_1m == 5.0  # type: ignore[union-attr]
    assert catalog.price("p", "new", NOW) == now.price
    # Stored: a new process (another catalog) merges them at open.
    stored = await backend.price_versions()
    assert [v.id for v in stored] == [now.id, later.id]
    assert stored[1].price == later.price and stored[1].added_by == ADMIN.id
    fresh = PriceCatalog([price()])
    await PriceBook(fresh, backend).open()
    assert len(fresh.versions()) == 3
    # Audited: one event each, the chain intact.
    events = await AuditLog(backend).events(AuditQuery(action="price.add"))
    assert [e.object for e in events] == [
        "price:p/m@2026-05-28T21:26:40Z",
        "price:p/new@2026-05-28T20:26:40Z",
    ]
    assert events[0].after is not None and events[0].after["input_per_1m"] == 5.0
    assert (await verify_chain(backend))[1] is None


async def test_a_past_date_or_a_taken_date_is_refused_and_writes_nothing(
    backend: OpsStore,
) -> None:
    book = PriceBook(PriceCatalog([price()]), backend, clock=lambda: NOW)
    with pytest.raises(ValidationFailed, match="in the past"):
        await book.add(ADMIN, price(effective_from=str(NOW - 3600)))
    await book.add(ADMIN, price(effective_from=str(NOW + 60)))
    with pytest.raises(Conflict, match="has a price from"):
        await book.add(ADMIN, price(input_per_1m=9.0, effective_from=str(NOW + 60)))
    # Another replica's catalog does not know it yet: the store's unique date still holds.
    other = PriceBook(PriceCatalog([]), backend, clock=lambda: NOW)
    with pytest.raises(Conflict):
        await other.add(ADMIN, price(input_per_1m=9.0, effective_from=str(NOW + 60)))
    assert len(await backend.price_versions()) == 1
    assert len(await AuditLog(backend).events(AuditQuery(action="price.add"))) == 1


async def test_console_sessions(backend: OpsStore) -> None:
    one = StoredSession("h1", ADMIN, NOW, NOW)
    two = StoredSession("h2", dataclasses.replace(ADMIN, role="finance"), NOW - 100, NOW - 100)
    await backend.save_console_session(one)
    await backend.save_console_session(two)
    assert await backend.console_session("h1") == one
    assert await backend.console_session("nope") is None
    await backend.touch_console_session("h1", NOW + 5)
    assert (await backend.console_session("h1")) == dataclasses.replace(one, last_used=NOW + 5)
    assert await backend.delete_console_sessions_before(NOW - 50, NOW - 50) == 1
    assert await backend.console_session("h2") is None
    await backend.delete_console_session("h1")
    assert await backend.console_session("h1") is None


def span(n: int, **changes: Any) -> Span:
    base = Span(
        request_id=f"req_{n:024x}",
        span_id=f"{n:016x}",
        trace_id=f"{n:032x}",
        started_at=NOW + 1200 * n,
        key_id=f"key_{n % 3}",
        provider="p",
        upstream_model="m",
        input_tokens=n,
        cost_usd=0.5,
    )
    return dataclasses.replace(base, **changes)


async def _downgrade_sqlite(path: str) -> None:
    """The file as a build before migration 10 left it: spans, no aggregates, no version 12."""
    async with aiosqlite.connect(path) as db:
        for sql in ("DELETE FROM usage_hourly", "DELETE FROM usage_daily",
                    "DROP TABLE price_versions", "DROP TABLE console_sessions",
                    "DROP TABLE usage_backfill",
                    "DELETE FROM schema_migrations WHERE version = 12"):  # fmt: skip
            await db.execute(sql)
        await db.commit()


async def _downgrade_postgres(schema: str) -> None:
    conn = await asyncpg.connect(PG_SERVER)
    try:
        await conn.execute(
            f'SET search_path TO "{schema}"; DELETE FROM usage_hourly; DELETE FROM usage_daily; '
            "DROP TABLE price_versions; DROP TABLE console_sessions; DROP TABLE usage_backfill; "
            "DELETE FROM schema_migrations WHERE version = 12;"
        )
    finally:
        await conn.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_older_spans_are_counted_once_at_open(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spans = [span(n) for n in range(1, 24)]
    schema = schema_name()
    make: Any
    if kind == "sqlite":
        path = str(tmp_path / "old.db")

        def make() -> SQLiteStore:
            return SQLiteStore(path)

        async def downgrade() -> None:
            await _downgrade_sqlite(path)
    else:

        def make() -> SQLiteStore:
            return PostgresStore(store_url(schema, pool_size="2"))

        async def downgrade() -> None:
            await _downgrade_postgres(schema)

    try:
        first = make()
        await first.open()
        await first.record_spans(spans)
        query = UsageQuery(("key",), "hour")
        expected = sorted((r.bucket, r.dims, r.totals) for r in await first.usage(query))
        await first.aclose()
        await downgrade()

        caplog.set_level(logging.WARNING, "agentgw.store")
        again = make()
        await again.open()
        try:
            got = sorted((r.bucket, r.dims, r.totals) for r in await again.usage(query))
            assert got == expected and len(got) > 3
            assert "23 older spans counted" in caplog.text
            assert not await again.backfill_pending()
            # A later span counts itself; a second open counts nothing again.
            await again.record_spans([span(99)])
        finally:
            await again.aclose()
        caplog.clear()
        third = make()
        await third.open()
        try:
            total = await third.usage(UsageQuery())
            assert total[0].totals.requests == 24
            assert "older spans" not in caplog.text
        finally:
            await third.aclose()
    finally:
        if kind == "postgres":
            await drop_schema(schema)


async def test_backfill_goes_page_by_page_and_stops_at_its_limit(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    store = SQLiteStore(path)
    await store.open()
    try:
        await store.record_spans([span(n) for n in range(1, 11)])
        # The state migration 12 leaves behind an older file: no aggregates, a marked backlog.
        async with aiosqlite.connect(path) as db:
            await db.execute("DELETE FROM usage_hourly")
            await db.execute("DELETE FROM usage_daily")
            await db.execute("INSERT INTO usage_backfill VALUES ('spans', 0, 10)")
            await db.commit()
        assert await store.backfill_pending()
        assert await store.backfill_usage(page=3, limit=4) == 6
        assert await store.backfill_usage(page=3, limit=4) == 4
        assert await store.backfill_usage(page=3, limit=4) == 0
        assert not await store.backfill_pending()
        total = await store.usage(UsageQuery())
        assert total[0].totals.requests == 10
    finally:
        await store.aclose()
