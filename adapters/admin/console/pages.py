"""The console's pages: each reads through the same core services the admin API uses and
returns its title and HTML body. Permissions are checked by the site before a page runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from adapters.admin.console.html import bar_chart, e, field, filters, select, table
from adapters.admin.redactions import redaction_query
from core.alert_store import AlertQuery
from core.alerting import AlertFeed, alert_view
from core.audit import AuditLog, AuditQuery
from core.errors import NotFound, ValidationFailed
from core.governance import CounterUnavailable
from core.ops.attribution import parse_query, spend_report, top_consumers
from core.ops.callchain import load_call_chain
from core.ops.forecast import FORECAST_COLUMNS, forecast_view, forecasts
from core.ops.reconciliation import (
    RECONCILIATION_COLUMNS,
    ReconciliationStore,
    import_export,
    reconcile,
)
from core.redaction import RedactionEvent, RedactionStore
from core.reports import BUCKETS, DAY, DIMENSIONS, UsageQuery, UsageStore
from core.rulebook import RuleBook, rule_view
from core.timestamps import iso

Page = tuple[str, str]
EXPLORER_FILTERS = ("team", "key", "model", "provider", "customer", "agent")


@dataclass(frozen=True)
class Sources:
    """What the pages read."""

    usage: UsageStore
    redactions: RedactionStore
    audit: AuditLog
    rules: RuleBook | None
    alerts: AlertFeed | None
    clock: Callable[[], float] = time.time
    imports: ReconciliationStore | None = None


def _period(q: Mapping[str, str], now: float, days: int = 30) -> dict[str, str]:
    """`since`/`until` from the query, defaulting to the last `days` days (whole hours)."""
    return {
        "since": q.get("since") or str(iso(now - days * DAY)),
        "until": q.get("until") or str(iso(now + 3600)),
    }


def _filled(rows: list[dict[str, Any]], bucket: str, period: UsageQuery) -> list[tuple[str, float]]:
    """Chart points with the buckets that had no spend drawn as zero (hours and days)."""
    width = 13 if bucket == "hour" else 10
    spent = {r["bucket"][:width]: float(r["cost_usd"]) for r in rows}
    step = {"hour": 3600, "day": DAY}.get(bucket)
    first, end = period.first_hour, period.end_hour
    if step is None or first is None or end is None or (end - first) // step > 800:
        return sorted(spent.items())
    start = first - first % step
    labels = [str(iso(t))[:width] for t in range(start, end, step)]
    return [(label, spent.get(label, 0.0)) for label in labels]


async def spend(src: Sources, q: Mapping[str, str]) -> Page:
    """The spend dashboard: spend over time as a chart, and the top consumers."""
    period = _period(q, src.clock())
    bucket = q.get("bucket", "day")
    bucket = bucket if bucket in ("hour", "day", "month") else "day"
    over_time = await spend_report(src.usage, parse_query({**period, "bucket": bucket}))
    points = _filled(over_time.rows, bucket, parse_query(period))
    total = sum(r["cost_usd"] for r in over_time.rows)
    calls = sum(r["requests"] for r in over_time.rows)
    parts = [
        filters(
            "/console/spend",
            [
                field("since", "since", period["since"]),
                field("until", "until", period["until"]),
                select("bucket", "bucket", ["hour", "day", "month"], bucket),
            ],
        ),
        f'<div class="card"><strong>Total</strong> {total:.6f} USD over {calls:,} calls</div>',
        f'<div class="card">{bar_chart(points, title=f"Spend per {bucket}")}</div>',
    ]
    for dim in ("key", "team", "model", "customer"):
        top = await top_consumers(src.usage, parse_query({**period, "group_by": dim}), 10)
        cols = (dim, "cost_usd", "requests", "errors", "input_tokens", "output_tokens")
        parts.append(f"<h2>Top {e(dim)}s</h2>" + table(top.rows, cols))
    return "Spend", "".join(parts)


async def explorer(src: Sources, q: Mapping[str, str]) -> tuple[Page, str]:
    """The attribution explorer: any grouping, bucket and filters; also its CSV query."""
    params = {**_period(q, src.clock()), "bucket": q.get("bucket") or "all"}
    groups = [g for g in (q.get("group1"), q.get("group2")) if g]
    params["group_by"] = ",".join(groups) or "team"
    params.update({d: q[d] for d in EXPLORER_FILTERS if q.get(d)})
    query = parse_query(params)
    report = await spend_report(src.usage, query)
    csv_link = "/console/explorer.csv?" + urlencode(params)  # escaped where it is written
    form = filters(
        "/console/explorer",
        [
            select("group1", "group by", list(DIMENSIONS), query.group_by[0]),
            select(
                "group2",
                "then by",
                ["", *DIMENSIONS],
                query.group_by[1] if len(query.group_by) > 1 else "",
            ),
            select("bucket", "bucket", list(BUCKETS), query.bucket),
            field("since", "since", params["since"]),
            field("until", "until", params["until"]),
            *(field(d, d, q.get(d)) for d in EXPLORER_FILTERS),
        ],
        csv=csv_link,
    )
    return ("Attribution explorer", form + table(report.rows, report.columns)), csv_link


async def explorer_csv(
    src: Sources, q: Mapping[str, str]
) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    report = await spend_report(src.usage, parse_query(dict(q)))
    return report.rows, report.columns


async def budgets(src: Sources, q: Mapping[str, str]) -> Page:
    """Budgets with their current use, and the latest alerts (budget thresholds, anomalies)."""
    rows = []
    for rule in src.rules.rules("budgets") if src.rules else []:
        view = rule_view(rule)
        try:
            used = await src.rules.usage(rule) / 1_000_000 if src.rules else 0.0
            view["used_usd"] = round(used, 6)
            view["used_pct"] = (
                round(100 * used / view["amount_usd"], 1) if view["amount_usd"] else None
            )
        except CounterUnavailable:
            view["used_usd"] = "unavailable"
        rows.append(view)
    cols = ("id", "level", "target", "amount_usd", "period", "action", "used_usd", "used_pct")
    alerts: list[dict[str, Any]] = []
    if src.alerts is not None:
        for alert in await src.alerts.alerts(AlertQuery(limit=200)):
            view = alert_view(alert)
            view["at"] = iso(alert.at)
            alerts.append(view)
    acols = ("at", "kind", "severity", "level", "target", "message", "delivery")
    body = "<h2>Budgets</h2>" + table(rows, cols, empty="No budgets.")
    if src.rules is not None:
        projected = await forecasts(src.usage, src.rules.rules("budgets"), src.clock())
        body += "<h2>Projected at period end</h2>" + table(
            [forecast_view(f) for f in projected], FORECAST_COLUMNS, empty="No budgets."
        )
    body += "<h2>Alerts</h2>" + table(alerts, acols, empty="No alerts.")
    return "Budgets and alerts", body


def _tree(nodes: list[dict[str, Any]]) -> str:
    items = []
    for n in nodes:
        findings = ", ".join(f"{f['entity_type']} ({f['action']})" for f in n["findings"])
        cost = "unpriced" if n["cost_usd"] is None else f"{n['cost_usd']:.6f} USD"
        items.append(
            f"<li><strong>{e(n['kind'])}</strong> {e(n['name'])} · {e(n['status'])} · "
            f"in {n['input_tokens']:,} / out {n['output_tokens']:,} tokens · {e(cost)} · "
            f"{n['latency_ms']:.1f} ms · agent {e(n['agent_id'] or '—')}"
            + (f' · <span class="bad">findings: {e(findings)}</span>' if findings else "")
            + f" <small>{e(n['request_id'])}</small>{_tree(n['children'])}</li>"
        )
    return f'<ul class="tree">{"".join(items)}</ul>' if items else ""


async def sessions(src: Sources, q: Mapping[str, str]) -> Page:
    """The call-chain explorer: a session's tree with per-call and per-agent totals."""
    session = (q.get("session") or "").strip()
    body = filters("/console/sessions", [field("session", "session or trace id", session)])
    if session:
        try:
            chain = await load_call_chain(src.usage, session)
        except NotFound as exc:
            return "Call chains", body + f"<p>{e(exc.message)}</p>"
        body += "<h2>Session totals</h2>" + table([chain["totals"]], list(chain["totals"]))
        body += "<h2>Per agent</h2>" + table(chain["agents"], list(chain["agents"][0]))
        body += "<h2>Calls</h2>" + _tree(chain["tree"])
    return "Call chains", body


def _marked(event: RedactionEvent) -> str:
    # The log never holds the text: the view shows where the value was and what replaced it.
    span = "" if event.start is None else f" chars {event.start}-{event.end}"
    return f"{e(event.scope)}{e(span)}: …<mark>[{e(event.entity_type)}]</mark>…"


async def redactions(src: Sources, q: Mapping[str, str]) -> Page:
    """The redaction log for review, filtered; markers in place of values, never the values."""
    picked = {
        k: v
        for k, v in q.items()
        if v and k in ("since", "until", "team", "key_id", "entity_type", "action")
    }
    events = await src.redactions.redaction_events(redaction_query({**picked, "limit": "500"}))
    rows = [
        {
            "at": iso(ev.at),
            "request_id": ev.request_id,
            "key_id": ev.key_id,
            "team": ev.org_path,
            "filter": ev.filter,
            "entity_type": ev.entity_type,
            "action": ev.action,
            "redacted text": _marked(ev),
        }
        for ev in events
    ]
    form = filters(
        "/console/redactions",
        [
            field("entity_type", "entity type", q.get("entity_type")),
            field("team", "team", q.get("team")),
            field("key_id", "key", q.get("key_id")),
            field("since", "since", q.get("since")),
            field("until", "until", q.get("until")),
        ],
    )
    cols = (
        "at",
        "request_id",
        "key_id",
        "team",
        "filter",
        "entity_type",
        "action",
        "redacted text",
    )
    return "Redaction log", form + table(
        rows, cols, raw=("redacted text",), empty="No redaction events match."
    )


async def audit(src: Sources, q: Mapping[str, str]) -> Page:
    """Key change history and the audit chain's status."""
    checked, broken = await src.audit.verify()
    status = (
        f'<p class="ok">Audit chain intact: {checked:,} events verified.</p>'
        if broken is None
        else f'<p class="bad">Audit chain broken at event {broken.event_id}: {e(broken.reason)}</p>'
    )
    events = await src.audit.events(AuditQuery(object="key:*", limit=10_000))
    rows = []
    for ev in reversed(events[-200:]):
        before, after = ev.before or {}, ev.after or {}
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        row = {"at": iso(ev.at), "actor": ev.actor, "role": ev.actor_role, "action": ev.action}
        rows.append({**row, "object": ev.object, "changed": ", ".join(changed)})
    cols = ("at", "actor", "role", "action", "object", "changed")
    return "Keys and audit", status + "<h2>Key change history</h2>" + table(rows, cols)


def _reconcile_form(q: Mapping[str, str]) -> str:
    return (
        '<form method="post" action="/console/reconcile" class="card">'
        f'<input type="hidden" name="csrf" value="{e(q.get("_csrf"))}">'
        f"{field('provider', 'provider', q.get('provider'))} "
        f"{field('tolerance_pct', 'tolerance %', q.get('tolerance_pct') or '1')}<br>"
        "<label>Provider export (CSV: date, model, and cost or token columns)<br>"
        f'<textarea name="csv" rows="10" cols="90" required>{e(q.get("csv"))}</textarea>'
        "</label><br><button>Compare</button></form>"
    )


async def reconcile_page(src: Sources, q: Mapping[str, str]) -> Page:
    """The reconciliation form (its result comes back from the POST)."""
    return "Reconciliation", _reconcile_form(q)


async def reconcile_result(src: Sources, form: Mapping[str, str], actor: str) -> Page:
    """Differences by day and model between the posted export and the metered usage (the import
    is kept, as one through the admin API is).

    Raises:
        ValidationFailed: no provider, a bad tolerance, or an export that cannot be read.
    """
    provider = (form.get("provider") or "").strip()
    if not provider:
        raise ValidationFailed("provider: name the provider the export is from.", param="provider")
    try:
        tolerance = float(form.get("tolerance_pct") or "1")
    except ValueError:
        raise ValidationFailed("tolerance_pct: expected a number.", param="tolerance_pct") from None
    text = form.get("csv") or ""
    if src.imports is not None:
        record = await import_export(
            src.usage, src.imports, actor, provider, text, tolerance, src.clock()
        )
        result = record.result
    else:
        result = await reconcile(src.usage, provider, text, tolerance)
    summary = (
        f'<p class="{"bad" if result["differences"] else "ok"}">{result["differences"]} '
        f"difference(s) over {len(result['rows'])} day and model rows "
        f"(measure {e(result['measure'])}, tolerance {tolerance}%).</p>"
    )
    rows = result["rows"]
    return "Reconciliation", summary + table(rows, RECONCILIATION_COLUMNS) + _reconcile_form(form)
