"""`agentgw audit verify|list`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from core.audit import EVENT_COLUMNS, MAX_QUERY_LIMIT, AuditQuery, event_view
from core.cli_session import AdminSession, config_arg, instant_arg, output_arg, run_admin, show_rows


def add_audit_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="the tamper-evident audit log")
    asub = audit.add_subparsers(required=True, metavar="ACTION")

    verify = asub.add_parser(
        "verify", help="walk the hash chain; exit 1 naming the first bad event"
    )
    config_arg(verify)
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(run=_verify)

    lst = asub.add_parser("list", help="list events (a trailing * matches a prefix)")
    config_arg(lst)
    lst.add_argument("--actor")
    lst.add_argument("--object")
    lst.add_argument("--action")
    lst.add_argument("--since", type=instant_arg, help="ISO 8601 or epoch seconds")
    lst.add_argument("--until", type=instant_arg, help="ISO 8601 or epoch seconds")
    lst.add_argument("--after-id", type=int, default=0)
    lst.add_argument("--limit", type=int, default=MAX_QUERY_LIMIT)
    output_arg(lst, csv=True)
    lst.set_defaults(run=_list)


def _verify(args: argparse.Namespace) -> int:
    async def work(s: AdminSession) -> int:
        checked, brk = await s.audit.verify()
        if args.json:
            print(
                json.dumps(
                    {
                        "intact": brk is None,
                        "events": checked,
                        "first_bad_event": None if brk is None else brk.event_id,
                        "reason": None if brk is None else brk.reason,
                    }
                )
            )
        elif brk is None:
            print(f"audit chain intact: {checked} events")
        else:
            print(f"audit chain broken at event {brk.event_id}: {brk.reason}")
            print(f"first bad event: {brk.event_id}")
        return 0 if brk is None else 1

    return run_admin(args, work)


def _list(args: argparse.Namespace) -> int:
    query = AuditQuery(
        actor=args.actor,
        object=args.object,
        action=args.action,
        since=args.since,
        until=args.until,
        after_id=args.after_id,
        limit=max(1, min(args.limit, MAX_QUERY_LIMIT)),
    )

    async def work(s: AdminSession) -> int:
        rows = [event_view(e) for e in await s.audit.events(query)]
        show_rows(args, rows, EVENT_COLUMNS, _line)
        return 0

    return run_admin(args, work)


def _line(row: dict[str, Any]) -> str:
    return f"{row['id']:>6}  {row['at']}  {row['actor']:24}  {row['action']:20}  {row['object']}"
