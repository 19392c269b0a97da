"""`/admin/reports/*`: spend by any dimension and bucket, Top-N, chargeback and customers."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from adapters.admin.http import AdminCall, Endpoint, Listing, Query, Reply, body, query_integer
from core.config import Price
from core.metering import PriceCatalog
from core.ops.attribution import (
    MAX_TOP,
    Report,
    chargeback,
    customer_comparison,
    parse_query,
    spend_report,
    top_consumers,
)
from core.ops.forecast import FORECAST_COLUMNS, forecast_view, forecasts
from core.ops.prices import PriceBook
from core.reports import DIMENSIONS, UsageStore
from core.roles import Permission, require
from core.rulebook import RuleBook
from core.timestamps import iso

_READERS = "admin, finance"
_TAGS = ("reports",)
_FILTERS = tuple(Query(d, f"Only calls whose {d} is this value.") for d in DIMENSIONS)
_PERIOD = (
    Query("since", "From this time on (ISO 8601 or epoch seconds; whole hours)."),
    Query("until", "Before this time (ISO 8601 or epoch seconds; whole hours)."),
)
_GROUPING = (
    Query("group_by", f"Comma-separated dimensions: {', '.join(DIMENSIONS)}."),
    *_PERIOD,
    *_FILTERS,
)


PRICE_COLUMNS = ("provider", "model", "effective_from", "current", "input_per_1m",
                 "output_per_1m", "cached_input_per_1m", "cache_write_per_1m",
                 "reasoning_per_1m", "per_image", "per_video_second", "per_audio_second",
                 "per_call", "per_gpu_second")  # fmt: skip


def price_view(since: float, price: Price, current: bool) -> dict[str, Any]:
    """One price version; `current` when it is the one that applies now."""
    row = price.model_dump()
    row["effective_from"] = None if math.isinf(since) else iso(since)
    row["current"] = current
    return row


def _listing(report: Report) -> Listing:
    return Listing(report.rows, report.columns)


def report_endpoints(
    store: UsageStore,
    *,
    rules: RuleBook | None = None,
    prices: PriceCatalog | None = None,
    clock: Callable[[], float] = time.time,
    book: PriceBook | None = None,
) -> list[Endpoint]:
    """Every report endpoint, reading the usage aggregates of `store`; adding price versions
    when `book` is given."""

    async def spend(call: AdminCall) -> Listing:
        require(call.actor, Permission.SPEND_READ)
        return _listing(await spend_report(store, parse_query(call.query)))

    async def top(call: AdminCall) -> Listing:
        require(call.actor, Permission.SPEND_READ)
        query = parse_query({"group_by": "key", **call.query})
        n = query_integer(call.query, "n", 10, 1, MAX_TOP)
        return _listing(await top_consumers(store, query, n))

    async def month_end(call: AdminCall) -> Listing:
        require(call.actor, Permission.SPEND_READ)
        return _listing(await chargeback(store, call.query.get("month"), clock()))

    async def customers(call: AdminCall) -> Listing:
        require(call.actor, Permission.SPEND_READ)
        return _listing(await customer_comparison(store, parse_query(call.query)))

    async def projections(call: AdminCall) -> Listing:
        require(call.actor, Permission.SPEND_READ)
        budgets = rules.rules("budgets") if rules is not None else []
        found = await forecasts(store, budgets, clock())
        return Listing([forecast_view(f) for f in found], FORECAST_COLUMNS)

    async def price_list(call: AdminCall) -> Listing:
        require(call.actor, Permission.SPEND_READ)
        if book is not None:
            await book.open()  # versions another process added (the CLI) show at once
        now, rows = clock(), []
        for since, p in prices.versions() if prices else []:
            current = prices is not None and prices.price(p.provider, p.model, now) is p
            rows.append(price_view(since, p, current))
        return Listing(rows, PRICE_COLUMNS)

    async def price_add(call: AdminCall) -> Reply:
        require(call.actor, Permission.MODELS_WRITE)
        assert book is not None, "declared only with a price book"
        version = await book.add(call.actor, body(call, Price))
        current = book.catalog.price(version.price.provider, version.price.model, clock())
        view = price_view(version.since, version.price, current is version.price)
        return Reply({"id": version.id, "added_by": version.added_by, **view}, status=201)

    adding = [] if book is None else [
        Endpoint("POST", "/admin/prices", price_add, "Add a price version from its "
                 "effective_from on (now or later; omitted: now). Past calls keep their price; "
                 "audited, stored, and applied at once.", "admin", body=Price, status=201,
                 tags=_TAGS, permission=Permission.MODELS_WRITE),
    ]  # fmt: skip
    return [
        *adding,
        Endpoint("GET", "/admin/prices", price_list, "The price catalog: every price version "
                 "with its effective date, and which one applies now.", _READERS,
                 exportable=True, tags=_TAGS),
        Endpoint("GET", "/admin/reports/forecast", projections, "Each budget's projected spend "
                 "at the end of its period, from recent usage.", _READERS, exportable=True,
                 tags=_TAGS),
        Endpoint("GET", "/admin/reports/spend", spend, "Spend, tokens by kind, requests and "
                 "errors grouped by dimensions and bucket.", _READERS, exportable=True,
                 tags=_TAGS, query=(*_GROUPING, Query("bucket", "hour, day, month or all."))),
        Endpoint("GET", "/admin/reports/top", top, "The top-N consumers by spend (group_by "
                 "defaults to key).", _READERS, exportable=True, tags=_TAGS,
                 query=(*_GROUPING, Query("n", f"How many (1-{MAX_TOP}, default 10).",
                                          "integer"))),
        Endpoint("GET", "/admin/reports/chargeback", month_end, "Month-end chargeback per "
                 "department and project.", _READERS, exportable=True, tags=_TAGS,
                 query=(Query("month", "YYYY-MM (default: this month, UTC)."),)),
        Endpoint("GET", "/admin/reports/customers", customers, "Spend per customer with cost per "
                 "call and share.", _READERS, exportable=True, tags=_TAGS,
                 query=(*_PERIOD, *_FILTERS)),
    ]  # fmt: skip
