"""`agentgw limits list|create|delete` and `agentgw budgets list|create|delete`.

Changes are audited as the CLI's user, exactly like admin-API changes. Usage is read from the
configured counters (Redis when `redis:` is set; a CLI process has no in-process counters of its
own, so without Redis it shows 0). A running gateway applies CLI rules at its next start.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from core.app import load
from core.cli_session import AdminSession, build, config_arg, output_arg, run_admin, show_rows
from core.config import load_config
from core.governance import CounterUnavailable
from core.governor import build_governor
from core.rulebook import RuleBook, RuleKind, rule_view
from core.rulespec import BudgetSpec, LimitSpec

KINDS = ("requests", "input_tokens", "output_tokens", "total_tokens", "concurrent",
         "audio_seconds", "images", "video_seconds", "tool_calls")  # fmt: skip
LEVELS = ("key", "project", "team", "department", "organization", "customer", "app", "agent")


def add_rule_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for kind in ("limits", "budgets"):
        parser = sub.add_parser(kind, help=f"manage {kind} (audited)")
        rsub = parser.add_subparsers(required=True, metavar="ACTION")
        lst = rsub.add_parser("list", help=f"list {kind} with current usage")
        config_arg(lst)
        output_arg(lst, csv=True)
        lst.set_defaults(run=_list, kind=kind)
        create = rsub.add_parser("create", help=f"create a {kind[:-1]}")
        config_arg(create)
        create.add_argument("--level", choices=LEVELS, required=True)
        create.add_argument("--target", required=True)
        if kind == "limits":
            create.add_argument("--kind", dest="limit_kind", choices=KINDS, required=True)
            create.add_argument("--amount", type=int, required=True)
            create.add_argument("--window", default="minute")
        else:
            create.add_argument("--amount-usd", type=float, required=True)
            create.add_argument("--period", choices=("day", "month"), default="month")
            create.add_argument("--action", choices=("block", "alert-only"), default="block")
        create.add_argument("--json", action="store_true")
        create.set_defaults(run=_create, kind=kind)
        delete = rsub.add_parser("delete", help=f"remove a {kind[:-1]}")
        config_arg(delete)
        delete.add_argument("id")
        delete.set_defaults(run=_delete, kind=kind)


def _rules(args: argparse.Namespace, session: AdminSession) -> RuleBook:
    config = load_config(args.config)
    return build_governor(config, session.store, session.audit, load, clock=time.time).rules


def _list(args: argparse.Namespace) -> int:
    async def work(session: AdminSession) -> int:
        book = _rules(args, session)
        await book.open()
        rows: list[dict[str, Any]] = []
        for rule in book.rules(args.kind):
            try:
                used: int | None = await book.usage(rule)
            except CounterUnavailable:
                used = None
            rows.append({**rule_view(rule), "used": used})
        columns = ("id", "source", "level", "target", "used")
        show_rows(args, rows, columns, lambda r: f"{r['id']}  {r['level']} {r['target']}  "
                                                 f"used={r['used']}")  # fmt: skip
        return 0

    return run_admin(args, work)


def _create(args: argparse.Namespace) -> int:
    spec: LimitSpec | BudgetSpec
    if args.kind == "limits":
        spec = build(LimitSpec, level=args.level, target=args.target, kind=args.limit_kind,
                     amount=args.amount, window=args.window)  # fmt: skip
    else:
        spec = build(BudgetSpec, level=args.level, target=args.target,
                     amount_usd=args.amount_usd, period=args.period,
                     action=args.action)  # fmt: skip

    async def work(session: AdminSession) -> int:
        book = _rules(args, session)
        await book.open()
        rule = await book.create(session.actor, spec)
        show_rows(args, [rule_view(rule)], ("id",), lambda r: str(r["id"]))
        return 0

    return run_admin(args, work)


def _delete(args: argparse.Namespace) -> int:
    kind: RuleKind = args.kind

    async def work(session: AdminSession) -> int:
        book = _rules(args, session)
        await book.open()
        await book.delete(session.actor, kind, args.id)
        print(f"deleted {args.id}")
        return 0

    return run_admin(args, work)
