"""Rows of the operations tables of migration 12: price versions, console sessions, and the
one-time fill of the usage aggregates from spans older than them."""

from __future__ import annotations

import json
from typing import Any

from core.audit import Actor
from core.config import Price
from core.ops.prices import PriceVersion
from core.ops.sessions import StoredSession
from store.rows import dump_json

INSERT_PRICE = (
    "INSERT INTO price_versions (id, provider, model, effective_from, price, added_at, added_by) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
SELECT_PRICES = (
    "SELECT id, price, effective_from, added_at, added_by FROM price_versions "
    "ORDER BY effective_from, id"
)
INSERT_SESSION = (
    "INSERT INTO console_sessions (token_hash, actor, created, last_used) VALUES (?, ?, ?, ?)"
)
SELECT_SESSION = (
    "SELECT token_hash, actor, created, last_used FROM console_sessions WHERE token_hash = ?"
)
TOUCH_SESSION = "UPDATE console_sessions SET last_used = ? WHERE token_hash = ?"
DELETE_SESSION = "DELETE FROM console_sessions WHERE token_hash = ?"
DELETE_SESSIONS_BEFORE = "DELETE FROM console_sessions WHERE created < ? OR last_used < ?"
SELECT_BACKFILL = "SELECT next_id, end_id FROM usage_backfill WHERE name = 'spans'"
ADVANCE_BACKFILL = "UPDATE usage_backfill SET next_id = ? WHERE name = 'spans'"
END_BACKFILL = "DELETE FROM usage_backfill"


def price_row(version: PriceVersion) -> tuple[object, ...]:
    p = version.price
    return (
        version.id,
        p.provider,
        p.model,
        version.since,
        dump_json(p.model_dump()),
        version.added_at,
        version.added_by,
    )


def price_from(row: Any) -> PriceVersion:
    return PriceVersion(
        id=row["id"],
        price=Price.model_validate(json.loads(row["price"])),
        since=float(row["effective_from"]),
        added_at=float(row["added_at"]),
        added_by=row["added_by"],
    )


def session_row(session: StoredSession) -> tuple[object, ...]:
    a = session.actor
    actor = dump_json({"id": a.id, "role": a.role, "org_path": a.org_path, "address": a.address})
    return (session.token_hash, actor, session.created, session.last_used)


def session_from(row: Any) -> StoredSession:
    return StoredSession(
        token_hash=row["token_hash"],
        actor=Actor(**json.loads(row["actor"])),
        created=float(row["created"]),
        last_used=float(row["last_used"]),
    )
