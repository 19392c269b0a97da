"""`/admin/limits`, `/admin/budgets` and `/admin/alerts`: rules, their current usage, and alerts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from adapters.admin.http import (
    AdminCall,
    Endpoint,
    Listing,
    Query,
    Reply,
    body,
    query_instant,
    query_integer,
)
from core.alert_store import DELIVERIES, MAX_ALERT_QUERY, SEVERITIES, AlertQuery, Delivery, Severity
from core.alerting import ALERT_COLUMNS, AlertFeed, alert_view
from core.errors import GovernanceUnavailable, ValidationFailed
from core.governance import CounterUnavailable
from core.roles import Permission, require
from core.rulebook import Rule, RuleBook, RuleKind, rule_view
from core.rulespec import BudgetPatch, BudgetSpec, LimitPatch, LimitSpec

LIMIT_COLUMNS = ("id", "source", "level", "target", "kind", "amount", "window", "model", "tool",
                 "action", "used")  # fmt: skip
BUDGET_COLUMNS = ("id", "source", "level", "target", "amount_usd", "period", "thresholds",
                  "action", "used_usd")  # fmt: skip
_WRITERS = "admin"
_READERS = {"limits": "admin, finance, security", "budgets": "admin, finance, security"}


def governance_endpoints(rules: RuleBook, alerts: AlertFeed) -> list[Endpoint]:
    """Every limit, budget and alert endpoint."""
    out: list[Endpoint] = []
    for kind, spec, patch in (("limits", LimitSpec, LimitPatch), ("budgets", BudgetSpec,
                                                                    BudgetPatch)):  # fmt: skip
        out += _rule_endpoints(rules, kind, spec, patch)  # type: ignore[arg-type]

    out += _alert_endpoints(alerts)
    return out


def _alert_endpoints(alerts: AlertFeed) -> list[Endpoint]:
    async def listing(call: AdminCall) -> Listing:
        require(call.actor, Permission.GOVERNANCE_READ)
        found = await alerts.alerts(alert_query(call.query))
        return Listing([alert_view(a) for a in found], ALERT_COLUMNS)

    async def acknowledge(call: AdminCall) -> Reply:
        return Reply(alert_view(await alerts.acknowledge(call.actor, call.path["alert_id"])))

    tags = ("governance",)
    return [
        Endpoint("GET", "/admin/alerts", listing,
                 "Stored alerts (budget thresholds, circuit trips, anomalies…), newest first.",
                 "admin, finance, security", exportable=True, tags=tags, query=_ALERT_QUERY),
        Endpoint("POST", "/admin/alerts/{alert_id}/acknowledge", acknowledge,
                 "Acknowledge an alert (audited; a second acknowledgement changes nothing).",
                 _WRITERS, tags=tags),
    ]  # fmt: skip


_ALERT_QUERY = (
    Query("kind", "Such as budget_threshold, circuit_open, anomaly, forecast."),
    Query("level", "The level the alert is about (key, team, …)."),
    Query("target", "The target the alert is about."),
    Query("severity", "info, warning or critical."),
    Query("delivery", "none, pending, delivered or failed (webhook delivery)."),
    Query("acknowledged", "true or false.", "boolean"),
    Query("since", "From this time on (ISO 8601 or epoch seconds)."),
    Query("until", "Before this time (ISO 8601 or epoch seconds)."),
    Query("limit", f"At most this many (1-{MAX_ALERT_QUERY}, default 1000).", "integer"),
)


def alert_query(q: Mapping[str, str]) -> AlertQuery:
    """The listing's filters from its query string.

    Raises:
        ValidationFailed: a filter has a value it cannot take.
    """
    severity = _choice(q, "severity", SEVERITIES)
    delivery = _choice(q, "delivery", DELIVERIES)
    acknowledged = _choice(q, "acknowledged", ("true", "false"))
    return AlertQuery(
        kind=q.get("kind"),
        level=q.get("level"),
        target=q.get("target"),
        severity=cast(Severity | None, severity),
        delivery=cast(Delivery | None, delivery),
        acknowledged=None if acknowledged is None else acknowledged == "true",
        since=query_instant(q, "since"),
        until=query_instant(q, "until"),
        limit=query_integer(q, "limit", 1000, 1, MAX_ALERT_QUERY),
    )


def _choice(q: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    value = q.get(name)
    if value is not None and value not in allowed:
        raise ValidationFailed(f"{name}: expected one of {', '.join(allowed)}", param=name)
    return value


def _rule_endpoints(
    rules: RuleBook,
    kind: RuleKind,
    spec: type[LimitSpec] | type[BudgetSpec],
    patch: type[LimitPatch] | type[BudgetPatch],
) -> list[Endpoint]:
    one = f"/admin/{kind}/{{rule_id}}"

    async def view(rule: Rule) -> dict[str, Any]:
        try:
            used = await rules.usage(rule)
        except CounterUnavailable as exc:
            raise GovernanceUnavailable("usage cannot be read: the counter store is down") from exc
        if kind == "budgets":
            return {**rule_view(rule), "used_usd": used / 1_000_000}
        return {**rule_view(rule), "used": used}

    async def create(call: AdminCall) -> Reply:
        rule = await rules.create(call.actor, body(call, spec))
        return Reply(await view(rule), status=201)

    async def listing(call: AdminCall) -> Listing:
        require(call.actor, Permission.GOVERNANCE_READ)
        rows = [await view(r) for r in rules.rules(kind)]
        return Listing(rows, LIMIT_COLUMNS if kind == "limits" else BUDGET_COLUMNS)

    async def show(call: AdminCall) -> Reply:
        require(call.actor, Permission.GOVERNANCE_READ)
        return Reply(await view(rules.get(kind, call.path["rule_id"])))

    async def update(call: AdminCall) -> Reply:
        rule = await rules.update(call.actor, kind, call.path["rule_id"], body(call, patch))
        return Reply(await view(rule))

    async def delete(call: AdminCall) -> Reply:
        return Reply(rule_view(await rules.delete(call.actor, kind, call.path["rule_id"])))

    async def reset(call: AdminCall) -> Reply:
        try:
            rule = await rules.reset(call.actor, kind, call.path["rule_id"])
        except CounterUnavailable as exc:
            raise GovernanceUnavailable("cannot reset: the counter store is down") from exc
        return Reply(await view(rule))

    noun, tags = kind[:-1], ("governance",)
    return [
        Endpoint("POST", f"/admin/{kind}", create, f"Create a {noun}; it applies at once.",
                 _WRITERS, body=spec, status=201, tags=tags,
                 permission=Permission.GOVERNANCE_WRITE),
        Endpoint("GET", f"/admin/{kind}", listing, f"List {kind} with current-window usage.",
                 _READERS[kind], exportable=True, tags=tags),
        Endpoint("GET", one, show, f"Show a {noun} and its usage.", _READERS[kind], tags=tags),
        Endpoint("PATCH", one, update, f"Change a {noun}.", _WRITERS, body=patch, tags=tags,
                 permission=Permission.GOVERNANCE_WRITE),
        Endpoint("DELETE", one, delete, f"Remove a {noun}.", _WRITERS, tags=tags),
        Endpoint("POST", one + "/reset", reset, f"Zero the {noun}'s current-window usage.",
                 _WRITERS, tags=tags),
    ]  # fmt: skip
