"""Alert rows: the SQL behind `core.alert_store.AlertStore` (portable: PostgreSQL runs it too).

`store.memory_alerts` is the same behaviour for `MemoryStore`.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from core.alert_store import AlertQuery, AlertRecord, Delivery

ALERT_FIELDS = (
    "id",
    "at",
    "kind",
    "level",
    "target",
    "severity",
    "message",
    "details",
    "dedupe_key",
    "delivery",
    "attempts",
    "next_attempt_at",
    "delivered_to",
    "delivered_at",
    "last_error",
    "acknowledged_at",
    "acknowledged_by",
)
_COLUMNS = ", ".join(ALERT_FIELDS)
_MARKS = ", ".join("?" for _ in ALERT_FIELDS)
INSERT_ALERT = (
    f"INSERT INTO alerts ({_COLUMNS}) VALUES ({_MARKS}) ON CONFLICT (dedupe_key) DO NOTHING"
)
ACKNOWLEDGE_ALERT = (
    "UPDATE alerts SET acknowledged_at = ?, acknowledged_by = ? "
    "WHERE id = ? AND acknowledged_at IS NULL"
)
SELECT_DUE = (
    f"SELECT {_COLUMNS} FROM alerts WHERE delivery = 'pending' AND next_attempt_at <= ? "
    "ORDER BY next_attempt_at, id LIMIT ?"
)
CLAIM_ALERT = (
    "UPDATE alerts SET attempts = attempts + 1, next_attempt_at = ? "
    "WHERE id = ? AND delivery = 'pending' AND attempts = ?"
)
RECORD_DELIVERY = (
    "UPDATE alerts SET delivery = ?, delivered_to = ?, next_attempt_at = ?, last_error = ?, "
    "delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END WHERE id = ?"
)


class Row(Protocol):
    """A result row readable by column name (sqlite3.Row, asyncpg.Record, a dict)."""

    def __getitem__(self, key: str, /) -> Any: ...


def alert_row(alert: AlertRecord) -> tuple[Any, ...]:
    """The row `INSERT_ALERT` takes."""
    values = {name: getattr(alert, name) for name in ALERT_FIELDS}
    values["details"] = json.dumps(alert.details, sort_keys=True)
    values["delivered_to"] = json.dumps(list(alert.delivered_to))
    return tuple(values[name] for name in ALERT_FIELDS)


def delivery_params(
    alert_id: str,
    delivery: Delivery,
    delivered_to: tuple[str, ...],
    next_attempt_at: float | None,
    last_error: str | None,
    at: float,
) -> tuple[Any, ...]:
    """The parameters of `RECORD_DELIVERY`."""
    return (delivery, json.dumps(list(delivered_to)), next_attempt_at, last_error, delivery, at,
            alert_id)  # fmt: skip


def select_alerts(query: AlertQuery) -> tuple[str, list[Any]]:
    """The SQL and parameters of `query` (newest first)."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("id", query.alert_id),
        ("kind", query.kind),
        ("level", query.level),
        ("target", query.target),
        ("severity", query.severity),
        ("delivery", query.delivery),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if query.acknowledged is not None:
        where.append(f"acknowledged_at IS {'NOT ' if query.acknowledged else ''}NULL")
    if query.since is not None:
        where.append("at >= ?")
        params.append(query.since)
    if query.until is not None:
        where.append("at < ?")
        params.append(query.until)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    params.append(query.limit)
    return f"SELECT {_COLUMNS} FROM alerts{clause} ORDER BY at DESC, id DESC LIMIT ?", params


def alert_from(row: Row) -> AlertRecord:
    """A record from a row selected with `select_alerts` or `SELECT_DUE`."""
    return AlertRecord(
        id=str(row["id"]),
        at=float(row["at"]),
        kind=str(row["kind"]),
        level=str(row["level"]),
        target=str(row["target"]),
        severity=row["severity"],
        message=str(row["message"]),
        details=json.loads(row["details"]),
        dedupe_key=row["dedupe_key"],
        delivery=row["delivery"],
        attempts=int(row["attempts"]),
        next_attempt_at=row["next_attempt_at"],
        delivered_to=tuple(json.loads(row["delivered_to"])),
        delivered_at=row["delivered_at"],
        last_error=row["last_error"],
        acknowledged_at=row["acknowledged_at"],
        acknowledged_by=row["acknowledged_by"],
    )
