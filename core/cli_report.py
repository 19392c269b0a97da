"""`agentgw report …`: spend reports, Top-N, chargeback, customers, sessions and reconciliation,
read from the store's usage aggregates (the same code the admin API runs)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, cast

from pydantic import ValidationError

from core.app import load
from core.cli_session import AdminSession, config_arg, output_arg, run_admin, show_rows
from core.config import Price, load_config
from core.errors import GatewayError
from core.keyspec import explain
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
from core.ops.callchain import load_call_chain
from core.ops.prices import PRICES, PriceBook, PriceVersionStore, price_snapshot
from core.ops.reconciliation import RECONCILIATION_COLUMNS, ReconciliationStore, import_export
from core.replication import announce
from core.reports import BUCKETS, DIMENSIONS, UsageStore
from core.timestamps import iso

# Every price of `Price` but the model's name and dates, as `--input-per-1m 2.5` and so on.
_PRICE_FIELDS = tuple(
    name
    for name, f in Price.model_fields.items()
    if f.annotation in (float, "float", float | None, "float | None")
)


def add_report_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = sub.add_parser("report", help="spend reports, chargeback, sessions, reconciliation")
    rsub = report.add_subparsers(required=True, metavar="REPORT")

    spend = rsub.add_parser("spend", help="spend, tokens, requests and errors by dimensions")
    _grouping(spend)
    spend.add_argument("--bucket", choices=BUCKETS, default="all")
    spend.set_defaults(run=_spend)

    top = rsub.add_parser("top", help="the top-N consumers by spend")
    _grouping(top, default="key")
    top.add_argument("-n", type=int, default=10, help=f"how many (1-{MAX_TOP})")
    top.set_defaults(run=_top)

    bill = rsub.add_parser("chargeback", help="a month's spend per department and project")
    config_arg(bill)
    bill.add_argument("--month", help="YYYY-MM (default: this month, UTC)")
    output_arg(bill, csv=True)
    bill.set_defaults(run=_chargeback)

    customers = rsub.add_parser("customers", help="spend per customer, side by side")
    _grouping(customers, group=False)
    customers.set_defaults(run=_customers)

    session = rsub.add_parser("session", help="an agent session's call chain (JSON)")
    config_arg(session)
    session.add_argument("session", help="session id or trace id")
    session.set_defaults(run=_session)

    rebuild = rsub.add_parser(
        "rebuild", help="recompute the usage aggregates from the stored spans (after an upgrade)"
    )
    config_arg(rebuild)
    rebuild.set_defaults(run=_rebuild)

    rec = rsub.add_parser("reconcile", help="compare a provider's CSV export with the metering")
    config_arg(rec)
    rec.add_argument("--provider", required=True)
    rec.add_argument("--tolerance-pct", type=float, default=1.0)
    rec.add_argument("file", type=Path, help="CSV with date, model and cost or token columns")
    output_arg(rec, csv=True)
    rec.set_defaults(run=_reconcile)

    prices = rsub.add_parser("prices", help="the price catalog: list versions, add one")
    psub = prices.add_subparsers(required=True, metavar="ACTION")
    plist = psub.add_parser("list", help="every price version (config and added), by model")
    config_arg(plist)
    output_arg(plist, csv=True)
    plist.set_defaults(run=_price_list)
    padd = psub.add_parser("add", help="add a price version (now or later; never re-prices)")
    config_arg(padd)
    padd.add_argument("--provider", required=True)
    padd.add_argument("--model", required=True)
    padd.add_argument("--effective-from", help="ISO 8601 or epoch seconds (default: now)")
    for name in _PRICE_FIELDS:
        padd.add_argument("--" + name.replace("_", "-"), type=float, metavar="USD")
    padd.set_defaults(run=_price_add)


def _grouping(p: argparse.ArgumentParser, *, default: str = "", group: bool = True) -> None:
    config_arg(p)
    if group:
        p.add_argument(
            "--group-by", default=default, help=f"comma-separated: {', '.join(DIMENSIONS)}"
        )
    p.add_argument("--since", help="ISO 8601 or epoch seconds")
    p.add_argument("--until", help="ISO 8601 or epoch seconds")
    p.add_argument(
        "--where", action="append", default=[], metavar="DIM=VALUE", help="filter (repeatable)"
    )
    output_arg(p, csv=True)


def _params(args: argparse.Namespace) -> dict[str, str]:
    params = {k: v for k, v in (w.partition("=")[::2] for w in args.where)}
    for name in ("group_by", "bucket", "since", "until"):
        value = getattr(args, name, None)
        if value:
            params[name] = str(value)
    return params


def _show(args: argparse.Namespace, report: Report) -> int:
    def line(row: dict[str, Any]) -> str:
        return "  ".join(f"{c}={row.get(c)}" for c in report.columns if row.get(c) not in (None, 0))

    show_rows(args, report.rows, report.columns, line)
    return 0


def _spend(args: argparse.Namespace) -> int:
    return _run(args, lambda s: spend_report(s, parse_query(_params(args))))


def _top(args: argparse.Namespace) -> int:
    n = max(1, min(args.n, MAX_TOP))
    return _run(args, lambda s: top_consumers(s, parse_query(_params(args)), n))


def _chargeback(args: argparse.Namespace) -> int:
    return _run(args, lambda s: chargeback(s, args.month, time.time()))


def _customers(args: argparse.Namespace) -> int:
    return _run(args, lambda s: customer_comparison(s, parse_query(_params(args))))


def _run(args: argparse.Namespace, make: Any) -> int:
    async def work(session: AdminSession) -> int:
        report: Report = await make(cast(UsageStore, session.store))
        return _show(args, report)

    return _guarded(args, work)


def _guarded(args: argparse.Namespace, work: Any) -> int:
    try:
        return run_admin(args, work)
    except GatewayError as exc:  # a bad parameter raised before the store was touched
        print(f"agentgw: {exc.message}", file=sys.stderr)
        return 2


def _session(args: argparse.Namespace) -> int:
    async def work(session: AdminSession) -> int:
        chain = await load_call_chain(cast(UsageStore, session.store), args.session)
        print(json.dumps(chain, indent=2))
        return 0

    return _guarded(args, work)


def _rebuild(args: argparse.Namespace) -> int:
    async def work(session: AdminSession) -> int:
        counted = await cast(UsageStore, session.store).rebuild_usage()
        print(f"agentgw: usage aggregates rebuilt from {counted} spans")
        return 0

    return _guarded(args, work)


def _reconcile(args: argparse.Namespace) -> int:
    try:
        text = args.file.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"agentgw: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2

    async def work(session: AdminSession) -> int:
        store = cast(UsageStore, session.store)
        imports = cast(ReconciliationStore, session.store)
        record = await import_export(
            store, imports, session.actor.id, args.provider, text, args.tolerance_pct, time.time()
        )
        result = {"id": record.id, **record.result}
        if args.json:
            print(json.dumps(result))
        else:
            _show(args, Report(result["rows"], RECONCILIATION_COLUMNS))
        return 1 if result["differences"] else 0

    return _guarded(args, work)


def _price_list(args: argparse.Namespace) -> int:
    config = load_config(args.config)

    async def work(session: AdminSession) -> int:
        book = PriceBook(PriceCatalog(config.prices), cast(PriceVersionStore, session.store))
        await book.open()
        rows = [
            {**p.model_dump(), "effective_from": None if since == -math.inf else iso(since)}
            for since, p in book.catalog.versions()
        ]
        columns = ("provider", "model", "effective_from", *_PRICE_FIELDS)
        return _show(args, Report(rows, columns))

    return _guarded(args, work)


def _price_add(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    fields = {name: getattr(args, name) for name in _PRICE_FIELDS}
    fields.update(provider=args.provider, model=args.model, effective_from=args.effective_from)
    try:
        price = Price(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        print(f"agentgw: invalid arguments: {explain(exc)[0]}", file=sys.stderr)
        return 2

    async def work(session: AdminSession) -> int:
        book = PriceBook(PriceCatalog(config.prices), cast(PriceVersionStore, session.store))
        await book.open()
        version = await book.add(session.actor, price)
        await announce(config, load, (PRICES,))  # running replicas merge it now
        print(json.dumps(price_snapshot(version)))
        return 0

    return _guarded(args, work)
