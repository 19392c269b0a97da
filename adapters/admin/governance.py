"""`/admin/limits`, `/admin/budgets` and `/admin/alerts`: rules, their current usage, and alerts."""

from __future__ import annotations

from typing import Any

from adapters.admin.http import AdminCall, Endpoint, Listing, Reply, body
from core.alerting import ALERT_COLUMNS, AlertFeed
from core.errors import GovernanceUnavailable
from core.governance import CounterUnavailable
from core.roles import Permission, require
from core.rulebook import Rule, RuleBook, RuleKind, rule_view
from core.rulespec import BudgetPatch, BudgetSpec, LimitPatch, LimitSpec

LIMIT_COLUMNS = ("id", "source", "level", "target", "kind", "amount", "window", "model", "tool",
                 "used")  # fmt: skip
BUDGET_COLUMNS = ("id", "source", "level", "target", "amount_usd", "period", "action", "used_usd")
_WRITERS = "admin"
_READERS = {"limits": "admin, security", "budgets": "admin, finance, security"}


def governance_endpoints(rules: RuleBook, alerts: AlertFeed) -> list[Endpoint]:
    """Every limit, budget and alert endpoint."""
    out: list[Endpoint] = []
    for kind, spec, patch in (("limits", LimitSpec, LimitPatch), ("budgets", BudgetSpec,
                                                                    BudgetPatch)):  # fmt: skip
        out += _rule_endpoints(rules, kind, spec, patch)  # type: ignore[arg-type]

    async def alert_list(call: AdminCall) -> Listing:
        require(call.actor, Permission.GOVERNANCE_READ)
        return Listing(alerts.listing(), ALERT_COLUMNS)

    out.append(
        Endpoint(
            "GET",
            "/admin/alerts",
            alert_list,
            "Budget alerts, newest first.",
            "admin, finance, security",
            exportable=True,
            tags=("governance",),
        )
    )
    return out  # fmt: skip


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
                 _WRITERS, body=spec, status=201, tags=tags),
        Endpoint("GET", f"/admin/{kind}", listing, f"List {kind} with current-window usage.",
                 _READERS[kind], exportable=True, tags=tags),
        Endpoint("GET", one, show, f"Show a {noun} and its usage.", _READERS[kind], tags=tags),
        Endpoint("PATCH", one, update, f"Change a {noun}.", _WRITERS, body=patch, tags=tags),
        Endpoint("DELETE", one, delete, f"Remove a {noun}.", _WRITERS, tags=tags),
        Endpoint("POST", one + "/reset", reset, f"Zero the {noun}'s current-window usage.",
                 _WRITERS, tags=tags),
    ]  # fmt: skip
