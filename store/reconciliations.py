"""Reconciliation imports as rows (the comparison's table as JSON text)."""

from __future__ import annotations

import json
from typing import Any

from core.ops.reconciliation import Reconciliation
from store.rows import dump_json

_COLUMNS = (
    "id", "at", "actor", "provider", "measure", "first_day", "last_day", "differences", "result",
)  # fmt: skip
INSERT_RECONCILIATION = (
    f"INSERT INTO reconciliations ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
)
SELECT_RECONCILIATIONS = (
    f"SELECT {', '.join(_COLUMNS)} FROM reconciliations ORDER BY at DESC, id DESC LIMIT ?"
)
SELECT_RECONCILIATION = f"SELECT {', '.join(_COLUMNS)} FROM reconciliations WHERE id = ?"


def reconciliation_row(record: Reconciliation) -> tuple[object, ...]:
    return (
        record.id,
        record.at,
        record.actor,
        record.provider,
        record.measure,
        record.first_day,
        record.last_day,
        record.differences,
        dump_json(record.result),
    )


def reconciliation_from(row: Any) -> Reconciliation:
    return Reconciliation(
        id=row["id"],
        at=float(row["at"]),
        actor=row["actor"],
        provider=row["provider"],
        measure=row["measure"],
        first_day=row["first_day"],
        last_day=row["last_day"],
        differences=int(row["differences"]),
        result=json.loads(row["result"]),
    )
