"""Attribution reports as the admin API, the CLI and the console show them.

`spend_report` turns a `UsageQuery` into rows of plain values; Top-N, month-end chargeback and the
customer comparison are the same report with a fixed grouping. Query parameters are parsed here
once, so every surface accepts exactly the same spelling.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from core.errors import ValidationFailed
from core.reports import (
    BUCKETS,
    DIMENSIONS,
    MEASURES,
    Dimension,
    UsageQuery,
    UsageRow,
    UsageStore,
    sort_rows,
)
from core.timestamps import iso, parse_instant

MAX_TOP = 1000


@dataclass(frozen=True, slots=True)
class Report:
    """Report rows with the columns a CSV export writes, in order."""

    rows: list[dict[str, Any]]
    columns: tuple[str, ...]


def parse_query(q: Mapping[str, str]) -> UsageQuery:
    """A report query from parameters: `group_by` (comma-separated dimensions), `bucket`,
    `since`, `until`, and any dimension name as an equality filter.

    Raises:
        ValidationFailed: an unknown dimension or bucket, or a time that does not parse.
    """
    group_by = tuple(g.strip() for g in q.get("group_by", "").split(",") if g.strip())
    for name in group_by:
        _dimension(name, "group_by")
    if len(set(group_by)) != len(group_by):
        raise ValidationFailed("group_by: a dimension is named twice.", param="group_by")
    bucket = q.get("bucket", "all")
    if bucket not in BUCKETS:
        raise ValidationFailed(f"bucket: expected one of {', '.join(BUCKETS)}.", param="bucket")
    filters = {d: q[d] for d in DIMENSIONS if d in q}
    since, until = _instant(q, "since"), _instant(q, "until")
    if since is not None and until is not None and until <= since:
        raise ValidationFailed("until: must be after since.", param="until")
    return UsageQuery(
        group_by=cast(tuple[Dimension, ...], group_by),
        bucket=bucket,
        since=since,
        until=until,
        filters=filters,
    )


def _dimension(name: str, param: str) -> Dimension:
    if name not in DIMENSIONS:
        raise ValidationFailed(
            f"{param}: unknown dimension {name!r} (known: {', '.join(DIMENSIONS)}).", param=param
        )
    return name


def _instant(q: Mapping[str, str], name: str) -> float | None:
    if name not in q:
        return None
    try:
        return parse_instant(q[name])
    except ValueError as exc:
        raise ValidationFailed(f"{name}: {exc}", param=name) from None


def columns_of(query: UsageQuery) -> tuple[str, ...]:
    bucket = () if query.bucket == "all" else ("bucket",)
    return (*bucket, *query.group_by, *MEASURES)


def view(row: UsageRow, query: UsageQuery) -> dict[str, Any]:
    """One row as JSON: bucket as ISO time, dimension values, measures (cost rounded to 1e-9)."""
    out: dict[str, Any] = {}
    if query.bucket != "all":
        out["bucket"] = iso(row.bucket)
    out.update(zip(query.group_by, row.dims, strict=True))
    for name in MEASURES:
        value = getattr(row.totals, name)
        out[name] = round(value, 9) if isinstance(value, float) else value
    return out


async def spend_report(store: UsageStore, query: UsageQuery) -> Report:
    """Spend, tokens by kind, requests and errors, grouped as `query` asks."""
    rows = sort_rows(await store.usage(query))
    return Report([view(r, query) for r in rows], columns_of(query))


async def top_consumers(store: UsageStore, query: UsageQuery, n: int) -> Report:
    """The `n` groups (over the whole period) that spent the most."""
    whole = UsageQuery(query.group_by, "all", query.since, query.until, query.filters)
    rows = sorted(await store.usage(whole), key=lambda r: (-r.totals.cost_usd, r.dims))[:n]
    return Report([view(r, whole) for r in rows], columns_of(whole))


def month_bounds(month: str | None, now: float) -> tuple[float, float]:
    """[start, end) of `YYYY-MM` (UTC), or of the month `now` falls in.

    Raises:
        ValidationFailed: not a `YYYY-MM` month.
    """
    try:
        start = (
            datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
            if month
            else datetime.fromtimestamp(now, UTC).replace(
                day=1, hour=0, minute=0, second=0, microsecond=0
            )
        )
    except ValueError:
        raise ValidationFailed("month: expected YYYY-MM.", param="month") from None
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start.timestamp(), end.timestamp()


async def chargeback(store: UsageStore, month: str | None, now: float) -> Report:
    """Month-end chargeback: the month's spend per department and project."""
    since, until = month_bounds(month, now)
    query = UsageQuery(("department", "project"), "month", since, until)
    return await spend_report(store, query)


async def customer_comparison(store: UsageStore, query: UsageQuery) -> Report:
    """Spend per customer side by side, with each customer's cost per call and share."""
    whole = UsageQuery(("customer",), "all", query.since, query.until, query.filters)
    rows = [r for r in await store.usage(whole) if r.dims[0]]
    total = sum(r.totals.cost_usd for r in rows) or 1.0
    out = []
    for row in sorted(rows, key=lambda r: (-r.totals.cost_usd, r.dims)):
        item = view(row, whole)
        item["cost_per_request"] = round(row.totals.cost_usd / max(row.totals.requests, 1), 9)
        item["share"] = round(row.totals.cost_usd / total, 6)
        out.append(item)
    return Report(out, (*columns_of(whole), "cost_per_request", "share"))
