"""`agentgw org units|customers|apps|agents list|create|show|update|delete`."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any, cast

from core.cli_session import (
    AdminSession,
    build,
    config_arg,
    output_arg,
    run_admin,
    show_rows,
    tags_arg,
)
from core.directory import (
    OrgUnitCreate,
    OrgUnitPatch,
    PartyCreate,
    PartyPatch,
    party_view,
    unit_view,
)
from core.orgs import PARTY_KINDS, PartyKind

UNIT_COLUMNS = ("path", "level", "title", "tags", "created_at")
PARTY_COLUMNS = ("kind", "id", "name", "org_path", "tags", "created_at", "last_seen")

# A runtime alias would fail: argparse's private class is not subscriptable before 3.12.
if TYPE_CHECKING:
    Parsers = argparse._SubParsersAction[argparse.ArgumentParser]


def add_org_commands(sub: Parsers) -> None:
    org = sub.add_parser("org", help="manage org units, customers, apps and agents")
    osub = org.add_subparsers(required=True, metavar="KIND")
    _unit_commands(osub)
    for kind in PARTY_KINDS:
        _party_commands(osub, kind)


def _action(parent: Parsers, name: str, help_text: str, run: Any) -> argparse.ArgumentParser:
    p = parent.add_parser(name, help=help_text)
    config_arg(p)
    if name in ("create", "show", "update"):
        p.add_argument("--json", action="store_true", help="print one line of JSON")
    p.set_defaults(run=run)
    return p


def _unit_commands(osub: Parsers) -> None:
    units = osub.add_parser("units", help="departments, teams and projects")
    usub = units.add_subparsers(required=True, metavar="ACTION")
    output_arg(_action(usub, "list", "list org units", _units_list), csv=True)
    create = _action(usub, "create", "create an org unit (its parent must exist)", _unit_create)
    create.add_argument("path", help="department[/team[/project]]")
    create.add_argument("--title")
    create.add_argument("--tag", action="append", metavar="NAME=VALUE")
    _action(usub, "show", "show an org unit", _unit_show).add_argument("path")
    update = _action(usub, "update", "change an org unit's title or tags", _unit_update)
    update.add_argument("path")
    update.add_argument("--title")
    update.add_argument("--tag", action="append", metavar="NAME=VALUE")
    _action(usub, "delete", "delete an org unit without children", _unit_delete).add_argument(
        "path"
    )


def _party_commands(osub: Parsers, kind: PartyKind) -> None:
    parties = osub.add_parser(f"{kind}s", help=f"{kind}s")
    psub = parties.add_subparsers(required=True, metavar="ACTION")
    output_arg(_action(psub, "list", f"list {kind}s", _parties_list), csv=True)
    create = _action(psub, "create", f"register a {kind}", _party_create)
    create.add_argument("id")
    create.add_argument("--name")
    create.add_argument("--org-path")
    create.add_argument("--tag", action="append", metavar="NAME=VALUE")
    _action(psub, "show", f"show a {kind}", _party_show).add_argument("id")
    update = _action(psub, "update", f"change a {kind}", _party_update)
    update.add_argument("id")
    update.add_argument("--name")
    where = update.add_mutually_exclusive_group()
    where.add_argument("--org-path")
    where.add_argument("--no-org-path", action="store_true", help="clear the org path")
    update.add_argument("--tag", action="append", metavar="NAME=VALUE")
    _action(psub, "delete", f"delete a {kind}", _party_delete).add_argument("id")
    parties.set_defaults(kind=kind)


def _print(view: dict[str, Any], args: argparse.Namespace) -> None:
    print(json.dumps(view) if args.json else json.dumps(view, indent=2))


def _units_list(args: argparse.Namespace) -> int:
    async def work(s: AdminSession) -> int:
        rows = [unit_view(u) for u in await s.directory.list_units(s.actor)]
        show_rows(
            args, rows, UNIT_COLUMNS, lambda r: f"{r['path']:40} {r['level']:10} {r['title']}"
        )
        return 0

    return run_admin(args, work)


def _unit_create(args: argparse.Namespace) -> int:
    spec = build(OrgUnitCreate, path=args.path, title=args.title, tags=tags_arg(args.tag))

    async def work(s: AdminSession) -> int:
        _print(unit_view(await s.directory.create_unit(s.actor, spec)), args)
        return 0

    return run_admin(args, work)


def _unit_show(args: argparse.Namespace) -> int:
    async def work(s: AdminSession) -> int:
        _print(unit_view(await s.directory.get_unit(s.actor, args.path)), args)
        return 0

    return run_admin(args, work)


def _unit_update(args: argparse.Namespace) -> int:
    patch = build(OrgUnitPatch, title=args.title, tags=tags_arg(args.tag))

    async def work(s: AdminSession) -> int:
        _print(unit_view(await s.directory.update_unit(s.actor, args.path, patch)), args)
        return 0

    return run_admin(args, work)


def _unit_delete(args: argparse.Namespace) -> int:
    async def work(s: AdminSession) -> int:
        unit = await s.directory.delete_unit(s.actor, args.path)
        print(f"deleted org unit {unit.path}")
        return 0

    return run_admin(args, work)


def _kind(args: argparse.Namespace) -> PartyKind:
    return cast(PartyKind, args.kind)


def _parties_list(args: argparse.Namespace) -> int:
    async def work(s: AdminSession) -> int:
        rows = [party_view(p) for p in await s.directory.list_parties(s.actor, _kind(args))]
        show_rows(args, rows, PARTY_COLUMNS, lambda r: f"{r['id']:40} {r['name']}")
        return 0

    return run_admin(args, work)


def _party_create(args: argparse.Namespace) -> int:
    spec = build(
        PartyCreate, id=args.id, name=args.name, org_path=args.org_path, tags=tags_arg(args.tag)
    )

    async def work(s: AdminSession) -> int:
        _print(party_view(await s.directory.create_party(s.actor, _kind(args), spec)), args)
        return 0

    return run_admin(args, work)


def _party_show(args: argparse.Namespace) -> int:
    async def work(s: AdminSession) -> int:
        _print(party_view(await s.directory.get_party(s.actor, _kind(args), args.id)), args)
        return 0

    return run_admin(args, work)


def _party_update(args: argparse.Namespace) -> int:
    patch = build(
        PartyPatch,
        clear=["org_path"] if args.no_org_path else [],
        name=args.name,
        org_path=args.org_path,
        tags=tags_arg(args.tag),
    )

    async def work(s: AdminSession) -> int:
        _print(
            party_view(await s.directory.update_party(s.actor, _kind(args), args.id, patch)), args
        )
        return 0

    return run_admin(args, work)


def _party_delete(args: argparse.Namespace) -> int:
    async def work(s: AdminSession) -> int:
        party = await s.directory.delete_party(s.actor, _kind(args), args.id)
        print(f"deleted {party.kind} {party.id}")
        return 0

    return run_admin(args, work)
