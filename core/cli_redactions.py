"""`agentgw redactions list`: the redaction log from the store (never the values)."""

from __future__ import annotations

import argparse
from typing import Any, cast

from core.cli_session import AdminSession, config_arg, instant_arg, output_arg, run_admin, show_rows
from core.envelope import Scope
from core.redaction import (
    MAX_QUERY_LIMIT,
    REDACTION_COLUMNS,
    RedactionQuery,
    RedactionStore,
    redaction_view,
)


def add_redaction_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    redactions = sub.add_parser("redactions", help="the redaction log (PII and moderation)")
    rsub = redactions.add_subparsers(required=True, metavar="ACTION")
    lst = rsub.add_parser("list", help="list redaction events, filtered")
    config_arg(lst)
    lst.add_argument("--since", type=instant_arg, help="ISO 8601 or epoch seconds")
    lst.add_argument("--until", type=instant_arg, help="ISO 8601 or epoch seconds")
    lst.add_argument("--org-path", "--team", dest="org_path", help="this unit and below")
    lst.add_argument("--key-id")
    lst.add_argument("--entity-type")
    lst.add_argument("--action")
    lst.add_argument("--scope", choices=[s.value for s in Scope], help="where it was found")
    lst.add_argument("--after-id", type=int, default=0)
    lst.add_argument("--limit", type=int, default=1000)
    output_arg(lst, csv=True)
    lst.set_defaults(run=_list)


def _list(args: argparse.Namespace) -> int:
    query = RedactionQuery(
        since=args.since,
        until=args.until,
        org_path=args.org_path,
        key_id=args.key_id,
        entity_type=args.entity_type,
        action=args.action,
        scope=args.scope,
        after_id=args.after_id,
        limit=max(1, min(args.limit, MAX_QUERY_LIMIT)),
    )

    async def work(s: AdminSession) -> int:
        events = await cast(RedactionStore, s.store).redaction_events(query)
        show_rows(args, [redaction_view(e) for e in events], REDACTION_COLUMNS, _line)
        return 0

    return run_admin(args, work)


def _line(row: dict[str, Any]) -> str:
    where = f"{row['scope']}[{row['start']}:{row['end']}]"
    return (
        f"{row['id']:>6}  {row['at']}  {row['request_id']}  {row['org_path'] or '-':24}  "
        f"{row['entity_type']:16}  {row['action']:12}  {where}"
    )
