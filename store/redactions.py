"""Redaction-log rows: written with their spans, queried by the security team, pruned by age.

The SQL here is SQLite's; `store.memory_redactions` is the same behaviour for `MemoryStore`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from core.redaction import REDACTION_COLUMNS, RedactionEvent, RedactionQuery, events_of
from core.tracing import Span

# Every column but the generated id, by name: the one list is `core.redaction.REDACTION_COLUMNS`.
_FIELDS = tuple(name for name in REDACTION_COLUMNS if name != "id")
_COLUMNS = ", ".join(f'"{name}"' for name in _FIELDS)
INSERT_REDACTION = (
    f"INSERT INTO redaction_events ({_COLUMNS}) VALUES ({', '.join('?' * len(_FIELDS))})"
)
_SELECT = f"SELECT id, {_COLUMNS} FROM redaction_events"
SELECT_REDACTIONS = _SELECT


def redaction_rows(spans: Sequence[Span]) -> list[tuple[object, ...]]:
    """The rows of every span's findings, ready for `INSERT_REDACTION`."""
    return [tuple(getattr(e, name) for name in _FIELDS) for s in spans for e in events_of(s)]


def select_redactions(query: RedactionQuery) -> tuple[str, list[Any]]:
    """The SQL and parameters of `query`."""
    where = ["id > ?"]
    params: list[Any] = [query.after_id]
    if query.since is not None:
        where.append("at >= ?")
        params.append(query.since)
    if query.until is not None:
        where.append("at < ?")
        params.append(query.until)
    if query.org_path is not None:
        prefix = query.org_path.rstrip("/")
        where.append("(org_path = ? OR substr(org_path, 1, ?) = ?)")
        params.extend([prefix, len(prefix) + 1, prefix + "/"])
    for column, value in (
        ("key_id", query.key_id),
        ("entity_type", query.entity_type),
        ("action", query.action),
        ("scope", query.scope),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    sql = f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY id LIMIT ?"
    params.append(query.limit)
    return sql, params


def redaction_from(row: sqlite3.Row) -> RedactionEvent:
    """An event from a row selected with `select_redactions`."""
    return RedactionEvent(
        id=int(row["id"]),
        at=float(row["at"]),
        request_id=row["request_id"],
        span_id=row["span_id"],
        key_id=row["key_id"],
        org_path=row["org_path"],
        filter=row["filter"],
        scope=row["scope"],
        entity_type=row["entity_type"],
        score=row["score"],
        action=row["action"],
        start=row["start"],
        end=row["end"],
        value_hash=row["value_hash"],
    )
