"""Audited changes on SQLite: apply `Insert` / `Update` / `Delete` and append the chained event.

Both run inside the caller's transaction. The next event links to the chain head recorded in
`audit_head` (not to whatever row happens to be last), so deleting the newest events and then
writing a new one leaves a gap `verify` finds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, assert_never

import aiosqlite

from core.audit import (
    ZERO_HASH,
    AuditDraft,
    AuditEvent,
    AuditQuery,
    Change,
    Delete,
    Insert,
    Update,
    seal,
)
from core.state import AlreadyExists, KeyAlreadyExists, Stale
from store.rows import AUDIT_COLUMNS, Row, audit_row, row_of
from store.sqlite_schema import changed, marks, run

# "before" and "after" are SQL keywords: quoted, as in the migration.
_AUDIT_NAMES = ", ".join(f'"{c}"' for c in AUDIT_COLUMNS)
_INSERT_EVENT = f"INSERT INTO audit_events ({_AUDIT_NAMES}) VALUES ({marks(len(AUDIT_COLUMNS))})"
_MOVE_HEAD = (
    "INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET last_id = excluded.last_id, last_hash = excluded.last_hash"
)


async def apply_change(db: aiosqlite.Connection, change: Change) -> None:
    """Raises:
    AlreadyExists: an insert collides with a stored id or unique name.
    Stale: an update or delete found the row changed or gone, or still referenced.
    """
    match change:
        case Insert(record=record):
            row = row_of(record)
            columns = ", ".join(row.values)
            sql = f"INSERT INTO {row.table} ({columns}) VALUES ({marks(len(row.values))})"
            await _guarded(db, row, sql, tuple(row.values.values()))
        case Update(before=before, after=after):
            old, new = row_of(before), row_of(after)
            if (old.table, old.key_values) != (new.table, new.key_values):
                raise ValueError("an update cannot change a record's table or primary key")
            sets = ", ".join(f"{c} = ?" for c in new.values)
            where, params = _matching(old)
            sql = f"UPDATE {new.table} SET {sets} WHERE {where}"
            await _guarded(db, new, sql, (*new.values.values(), *params), expect_one=True)
        case Delete(record=record):
            row = row_of(record)
            where, params = _matching(row)
            await _guarded(
                db, row, f"DELETE FROM {row.table} WHERE {where}", params, expect_one=True
            )
        case _:
            assert_never(change)


def _matching(row: Row) -> tuple[str, tuple[object, ...]]:
    """A WHERE clause that matches `row` only if it is still stored exactly as read."""
    columns = [*row.key, *(c for c in row.compared if c not in row.key)]
    return " AND ".join(f"{c} IS ?" for c in columns), tuple(row.values[c] for c in columns)


async def _guarded(
    db: aiosqlite.Connection,
    row: Row,
    sql: str,
    params: Sequence[Any],
    *,
    expect_one: bool = False,
) -> None:
    name = f"{row.table} {'/'.join(str(v) for v in row.key_values)}"
    try:
        count = await changed(db, sql, params)
    except sqlite3.IntegrityError as exc:
        if "FOREIGN KEY" in str(exc):
            raise Stale(
                f"{name}: a record it refers to is gone, or others still refer to it"
            ) from exc
        error = KeyAlreadyExists if row.table == "keys" else AlreadyExists
        raise error(f"{name}: the id or a unique name is taken") from exc
    if expect_one and count != 1:
        raise Stale(f"{name} is gone or was changed meanwhile")


async def append_event(db: aiosqlite.Connection, draft: AuditDraft) -> AuditEvent:
    """Number `draft`, link it to the chain head, store it and move the head."""
    head = list(await db.execute_fetchall("SELECT last_id, last_hash FROM audit_head WHERE id = 1"))
    if head:
        last_id, last_hash = int(head[0]["last_id"]), str(head[0]["last_hash"])
    else:
        last = list(
            await db.execute_fetchall("SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1")
        )
        last_id, last_hash = (int(last[0]["id"]), str(last[0]["hash"])) if last else (0, ZERO_HASH)
    event = seal(draft, last_id + 1, last_hash)
    await run(db, _INSERT_EVENT, audit_row(event))
    await run(db, _MOVE_HEAD, (event.id, event.hash))
    return event


def audit_select(query: AuditQuery) -> tuple[str, list[object]]:
    """The SELECT for `query`; a trailing `*` is a prefix match (no LIKE: `%` and `_` are data)."""
    clauses: list[str] = ["id > ?"]
    params: list[object] = [query.after_id]
    for column, pattern in (
        ("actor", query.actor),
        ("object", query.object),
        ("action", query.action),
    ):
        if pattern is None:
            continue
        if pattern.endswith("*"):
            clauses.append(f"substr({column}, 1, ?) = ?")
            params += [len(pattern) - 1, pattern[:-1]]
        else:
            clauses.append(f"{column} = ?")
            params.append(pattern)
    if query.since is not None:
        clauses.append("at >= ?")
        params.append(query.since)
    if query.until is not None:
        clauses.append("at < ?")
        params.append(query.until)
    sql = (
        f"SELECT {_AUDIT_NAMES} FROM audit_events WHERE {' AND '.join(clauses)} ORDER BY id LIMIT ?"
    )
    return sql, [*params, query.limit]
