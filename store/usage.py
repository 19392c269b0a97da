"""Usage aggregates in SQL: the hourly and daily rows kept with every span batch, and the report
queries over them.

A report over whole days reads `usage_daily` (24 times fewer rows); the hours at either end of a
period that does not start or end on a day boundary come from `usage_hourly`, and the parts are
merged. Portable SQL only (PostgreSQL runs the same statements): `INSERT … ON CONFLICT … DO
UPDATE`, integer bucket arithmetic, and '' rather than NULL for an absent dimension, so the unique
key holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from core.reports import (
    DAY,
    DIMENSION_COLUMNS,
    DIMENSIONS,
    MEASURES,
    Totals,
    UsageKey,
    UsageQuery,
    UsageRow,
    aggregate,
    roll_up,
)
from core.tracing import Span
from store.rows import SPAN_COLUMNS

_DIMS = tuple(DIMENSION_COLUMNS[d] for d in DIMENSIONS)
_COLUMNS = ("bucket", "dims", *_DIMS, *MEASURES)
HOURLY, DAILY = "usage_hourly", "usage_daily"


def _upsert(table: str) -> str:
    return (
        f"INSERT INTO {table} ({', '.join(_COLUMNS)}) "
        f"VALUES ({', '.join('?' for _ in _COLUMNS)}) "
        "ON CONFLICT (bucket, dims) DO UPDATE SET "
        + ", ".join(f"{m} = {table}.{m} + excluded.{m}" for m in MEASURES)
    )


UPSERT_HOURLY = _upsert(HOURLY)
UPSERT_DAILY = _upsert(DAILY)
# A page of spans for `rebuild_usage`, by id.
SPAN_PAGE = f"SELECT id, {SPAN_COLUMNS} FROM spans WHERE id > ? AND id <= ? ORDER BY id LIMIT ?"


def usage_rows(spans: Sequence[Span]) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The upsert parameters of a batch: (hourly rows, daily rows), one per bucket and dims."""
    hourly = aggregate(spans)
    daily: dict[UsageKey, Totals] = {}
    for key, totals in hourly.items():
        day = UsageKey(key.bucket - key.bucket % DAY, key.dims)
        known = daily.get(day)
        if known is None:
            daily[day] = replace(totals)
        else:
            known.add(totals)
    return _params(hourly), _params(daily)


def _params(rows: dict[UsageKey, Totals]) -> list[tuple[object, ...]]:
    return [
        (key.bucket, dims_digest(key.dims), *key.dims, *totals.values())
        for key, totals in rows.items()
    ]


def dims_digest(dims: Sequence[str]) -> str:
    """The unique key of a dimension combination (128 bits: collisions are not a concern)."""
    return hashlib.blake2b("\x1f".join(dims).encode(), digest_size=16).hexdigest()


def plan(query: UsageQuery) -> list[tuple[str, int | None, int | None]]:
    """(table, first bucket, end bucket) parts that cover the query's hours exactly."""
    first, end = query.first_hour, query.end_hour
    if query.bucket == "hour":
        return [(HOURLY, first, end)]
    day_first = None if first is None else -(-first // DAY) * DAY
    day_end = None if end is None else end - end % DAY
    if day_first is not None and day_end is not None and day_first >= day_end:
        return [(HOURLY, first, end)]  # not one whole day inside
    parts: list[tuple[str, int | None, int | None]] = [(DAILY, day_first, day_end)]
    if first is not None and day_first is not None and first < day_first:
        parts.append((HOURLY, first, day_first))
    if end is not None and day_end is not None and day_end < end:
        parts.append((HOURLY, day_end, end))
    return parts


def select_usage(
    query: UsageQuery, table: str, first: int | None, end: int | None
) -> tuple[str, list[Any]]:
    """The SQL of one part of a report (month buckets are selected by day)."""
    dims = [DIMENSION_COLUMNS[d] for d in query.group_by]
    match query.bucket:
        case "hour":
            bucket = "bucket"
        case "day" | "month":
            bucket = f"bucket - (bucket % {DAY})"
        case "all":
            bucket = "NULL"
    where: list[str] = []
    params: list[Any] = []
    if first is not None:
        where.append("bucket >= ?")
        params.append(first)
    if end is not None:
        where.append("bucket < ?")
        params.append(end)
    for dim, value in query.filters.items():
        where.append(f"{DIMENSION_COLUMNS[dim]} = ?")
        params.append(value)
    sums = ", ".join(f"SUM({m}) AS {m}" for m in MEASURES)
    selected = ", ".join([f"{bucket} AS b", *dims, sums])
    sql = f"SELECT {selected} FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    groups = ([] if query.bucket == "all" else ["b"]) + dims
    if groups:
        sql += " GROUP BY " + ", ".join(groups)
    return sql, params


async def usage_report(
    query: UsageQuery, select: Callable[[str, list[Any]], Awaitable[Sequence[Any]]]
) -> list[UsageRow]:
    """A report's rows: each part selected with `select(sql, params)`, then merged."""
    dims = [DIMENSION_COLUMNS[d] for d in query.group_by]
    out: list[UsageRow] = []
    for table, first, end in plan(query):
        sql, params = select_usage(query, table, first, end)
        for row in await select(sql, params):
            if row["requests"] is None:  # SUM over no rows at all
                continue
            totals = Totals(**{m: row[m] for m in MEASURES})
            bucket = None if row["b"] is None else float(row["b"])
            out.append(UsageRow(bucket, tuple(row[d] for d in dims), totals))
    return out if query.bucket == "hour" else roll_up(out, query.bucket)
