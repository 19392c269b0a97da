"""`agentgw limits|budgets list|create|update|delete|reset` and `agentgw alerts list|ack`.

Changes are audited as the CLI's user, exactly like admin-API changes. Usage is read from the
configured counters (Redis when `redis:` is set; a CLI process has no in-process counters of its
own, so without Redis it shows 0). A running gateway applies CLI rules at its next start.

`reset` zeroes a rule's current-window counter. With Redis the CLI resets the shared counter
itself (every replica sees it at once). Without Redis the counters live inside the running
gateway, so the CLI asks that gateway to do it through the admin API (`--gateway`, by default
the config's `listen` address, with the config's admin key); the gateway audits it.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, cast, get_args

import anyio

from core.alert_store import SEVERITIES, AlertQuery, AlertStore
from core.alerting import ALERT_COLUMNS, AlertFeed, alert_view
from core.app import load
from core.cli_gateway import GatewayCallFailed, call_gateway
from core.cli_session import AdminSession, build, config_arg, output_arg, run_admin, show_rows
from core.config import Config, load_config
from core.governance import CounterUnavailable
from core.governor import build_governor
from core.rulebook import RuleBook, RuleKind, rule_view
from core.rulespec import (
    BudgetAction,
    BudgetPatch,
    BudgetSpec,
    Kind,
    Level,
    LimitPatch,
    LimitSpec,
)

KINDS: tuple[str, ...] = get_args(Kind)
LEVELS: tuple[str, ...] = get_args(Level)
ACTIONS: tuple[str, ...] = get_args(BudgetAction)
GATEWAY_HELP = "the running gateway's URL, asked without redis: (default: the config's listen)"


def add_rule_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for kind in ("limits", "budgets"):
        parser = sub.add_parser(kind, help=f"manage {kind} (audited)")
        rsub = parser.add_subparsers(required=True, metavar="ACTION")
        lst = rsub.add_parser("list", help=f"list {kind} with current usage")
        config_arg(lst)
        output_arg(lst, csv=True)
        lst.add_argument("--gateway", help=GATEWAY_HELP)
        lst.set_defaults(run=_list, kind=kind)
        _add_create(rsub, kind)
        _add_update(rsub, kind)
        delete = rsub.add_parser("delete", help=f"remove a {kind[:-1]}")
        config_arg(delete)
        delete.add_argument("id")
        delete.set_defaults(run=_delete, kind=kind)
        reset = rsub.add_parser("reset", help=f"zero a {kind[:-1]}'s current-window usage")
        config_arg(reset)
        reset.add_argument("id")
        reset.add_argument("--gateway", help=GATEWAY_HELP)
        reset.add_argument("--json", action="store_true")
        reset.set_defaults(run=_reset, kind=kind)
    _add_alerts(sub)


def _add_alerts(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("alerts", help="list and acknowledge alerts")
    asub = parser.add_subparsers(required=True, metavar="ACTION")
    lst = asub.add_parser("list", help="stored alerts, newest first")
    config_arg(lst)
    lst.add_argument("--kind")
    lst.add_argument("--severity", choices=SEVERITIES)
    lst.add_argument("--open", action="store_true", help="only unacknowledged alerts")
    lst.add_argument("--limit", type=int, default=100)
    output_arg(lst, csv=True)
    lst.set_defaults(run=_alerts_list)
    ack = asub.add_parser("ack", help="acknowledge an alert (audited)")
    config_arg(ack)
    ack.add_argument("id")
    ack.set_defaults(run=_alerts_ack)


def _add_create(rsub: argparse._SubParsersAction[argparse.ArgumentParser], kind: str) -> None:
    create = rsub.add_parser("create", help=f"create a {kind[:-1]}")
    config_arg(create)
    create.add_argument("--level", choices=LEVELS, required=True)
    create.add_argument("--target", required=True)
    if kind == "limits":
        create.add_argument("--kind", dest="limit_kind", choices=KINDS, required=True)
        create.add_argument("--amount", type=int, required=True)
        create.add_argument("--window", default="minute")
        create.add_argument("--model", help="only calls to this virtual model")
        create.add_argument("--tool", help="only calls of this MCP tool")
    else:
        create.add_argument("--amount-usd", type=float, required=True)
        create.add_argument("--period", choices=("day", "month"), default="month")
        create.add_argument("--thresholds", type=float, nargs="+", metavar="FRACTION")
    create.add_argument(
        "--action",
        choices=ACTIONS,
        default="block",
        help="alert-only: count and alert, never refuse (shadow mode)",
    )
    create.add_argument("--json", action="store_true")
    create.set_defaults(run=_create, kind=kind)


def _add_update(rsub: argparse._SubParsersAction[argparse.ArgumentParser], kind: str) -> None:
    update = rsub.add_parser("update", help=f"change a {kind[:-1]} set through the admin API/CLI")
    config_arg(update)
    update.add_argument("id")
    if kind == "limits":
        update.add_argument("--kind", dest="limit_kind", choices=KINDS)
        update.add_argument("--amount", type=int)
        update.add_argument("--window")
    else:
        update.add_argument("--amount-usd", type=float)
        update.add_argument("--period", choices=("day", "month"))
        update.add_argument("--thresholds", type=float, nargs="+", metavar="FRACTION")
    update.add_argument("--action", choices=ACTIONS)
    update.add_argument("--json", action="store_true")
    update.set_defaults(run=_update, kind=kind)


async def _rules(args: argparse.Namespace, session: AdminSession) -> RuleBook:
    """The rule book of the config, opened."""
    config = load_config(args.config)
    book = build_governor(config, session.store, session.audit, load, clock=time.time).rules
    await book.open()
    return book


def _list(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    used_column = "used" if args.kind == "limits" else "used_usd"

    async def work(session: AdminSession) -> int:
        book = await _rules(args, session)
        usage = await _usage(args, config, book)
        rows = [{**rule_view(r), used_column: usage.get(r.id)} for r in book.rules(args.kind)]
        columns = ("id", "source", "level", "target", used_column)
        show_rows(
            args,
            rows,
            columns,
            lambda r: f"{r['id']}  {r['level']} {r['target']}  used={r[used_column]}",
        )
        return 0

    return run_admin(args, work)


async def _usage(args: argparse.Namespace, config: Config, book: RuleBook) -> dict[str, Any]:
    """Each rule's current-window use (None when it cannot be known: say why on stderr)."""
    if config.redis is None:  # the counters are the running gateway's
        try:
            rows = await anyio.to_thread.run_sync(
                call_gateway, config, args.gateway, "GET", f"/admin/{args.kind}"
            )
        except GatewayCallFailed as exc:
            print(f"agentgw: usage unknown: {exc}", file=sys.stderr)
            return {}
        return {r["id"]: r.get("used", r.get("used_usd")) for r in rows["data"]}
    usage: dict[str, Any] = {}
    for rule in book.rules(args.kind):
        try:
            used = await book.usage(rule)
        except CounterUnavailable:
            print("agentgw: usage unknown: the counter store (redis) is down", file=sys.stderr)
            return {}
        usage[rule.id] = used if args.kind == "limits" else used / 1_000_000
    return usage


def _create(args: argparse.Namespace) -> int:
    spec: LimitSpec | BudgetSpec
    fields = {"level": args.level, "target": args.target, **_rule_fields(args)}
    if args.kind == "limits":
        spec = build(_limit_spec, virtual_model=args.model, tool=args.tool, **fields)
    else:
        spec = build(BudgetSpec, **fields)

    async def work(session: AdminSession) -> int:
        book = await _rules(args, session)
        rule = await book.create(session.actor, spec)
        show_rows(args, [rule_view(rule)], ("id",), lambda r: str(r["id"]))
        return 0

    return run_admin(args, work)


def _feed(session: AdminSession) -> AlertFeed:
    # No webhooks: the CLI lists and acknowledges; the gateway delivers.
    return AlertFeed([], store=cast(AlertStore, session.store), audit=session.audit)


def _alerts_list(args: argparse.Namespace) -> int:
    query = AlertQuery(
        kind=args.kind,
        severity=args.severity,
        acknowledged=False if args.open else None,
        limit=max(1, args.limit),
    )

    async def work(session: AdminSession) -> int:
        rows = [alert_view(a) for a in await _feed(session).alerts(query)]
        show_rows(
            args,
            rows,
            ALERT_COLUMNS,
            lambda r: f"{r['id']}  {r['severity']:<8} {r['kind']}  {r['message']}",
        )
        return 0

    return run_admin(args, work)


def _alerts_ack(args: argparse.Namespace) -> int:
    async def work(session: AdminSession) -> int:
        alert = await _feed(session).acknowledge(session.actor, args.id)
        print(f"acknowledged {alert.id} (by {alert.acknowledged_by})")
        return 0

    return run_admin(args, work)


def _rule_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The fields `create` and `update` both take from the command line, for the rule kind."""
    if args.kind == "limits":
        return {
            "kind": args.limit_kind,
            "amount": args.amount,
            "window": args.window,
            "action": args.action,
        }
    return {
        "amount_usd": args.amount_usd,
        "period": args.period,
        "thresholds": args.thresholds,
        "action": args.action,
    }


def _limit_spec(virtual_model: str | None = None, **fields: Any) -> LimitSpec:
    # `build` takes its model class as a parameter named `model`, the name of a LimitSpec field.
    return LimitSpec(model=virtual_model, **fields)


def _update(args: argparse.Namespace) -> int:
    kind: RuleKind = args.kind
    patch: LimitPatch | BudgetPatch
    if kind == "limits":
        patch = build(LimitPatch, **_rule_fields(args))
    else:
        patch = build(BudgetPatch, **_rule_fields(args))

    async def work(session: AdminSession) -> int:
        book = await _rules(args, session)
        rule = await book.update(session.actor, kind, args.id, patch)
        show_rows(args, [rule_view(rule)], ("id",), lambda r: f"updated {r['id']}")
        return 0

    return run_admin(args, work)


def _delete(args: argparse.Namespace) -> int:
    kind: RuleKind = args.kind

    async def work(session: AdminSession) -> int:
        book = await _rules(args, session)
        await book.delete(session.actor, kind, args.id)
        print(f"deleted {args.id}")
        return 0

    return run_admin(args, work)


def _reset(args: argparse.Namespace) -> int:
    kind: RuleKind = args.kind
    config = load_config(args.config)
    if config.redis is None:
        return _reset_in_gateway(args, config)

    async def work(session: AdminSession) -> int:
        book = await _rules(args, session)
        try:
            rule = await book.reset(session.actor, kind, args.id)
        except CounterUnavailable:
            print(
                "agentgw: cannot reset: the counter store (redis) is unavailable", file=sys.stderr
            )
            return 1
        used = await book.usage(rule)
        shown = {"used": used} if kind == "limits" else {"used_usd": used / 1_000_000}
        _show_reset(args, {**rule_view(rule), **shown})
        return 0

    return run_admin(args, work)


def _reset_in_gateway(args: argparse.Namespace, config: Config) -> int:
    """In-process counters belong to the gateway process: reset them through its admin API."""
    try:
        answer = call_gateway(config, args.gateway, "POST", f"/admin/{args.kind}/{args.id}/reset")
    except GatewayCallFailed as exc:
        print(f"agentgw: {exc}", file=sys.stderr)
        return 1
    _show_reset(args, answer)
    return 0


def _show_reset(args: argparse.Namespace, row: dict[str, Any]) -> None:
    used = row.get("used", row.get("used_usd"))
    show_rows(args, [row], ("id",), lambda r: f"reset {r['id']}  used={used}")
