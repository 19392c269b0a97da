"""`agentgw keys create|list|show|update|rotate|revoke`."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from core.access import ROLES
from core.cli_session import (
    AdminSession,
    build,
    config_arg,
    output_arg,
    run_admin,
    show_rows,
    tags_arg,
)
from core.keyring import key_view
from core.keyspec import KeyCreate, KeyPatch, KeyRotate, ScopesPatch, ScopesSpec

KEY_COLUMNS = ("id", "name", "prefix", "org_path", "role", "state", "expires_at")
STATES = ("active", "expiring", "retired", "revoked")


def add_key_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="manage virtual keys")
    ksub = keys.add_subparsers(required=True, metavar="ACTION")

    create = ksub.add_parser("create", help="create a key; its secret is shown only this once")
    config_arg(create)
    create.add_argument("--name", required=True)
    create.add_argument("--org-path", required=True, help="department/team/project")
    create.add_argument("--role", choices=ROLES, default="user")
    _scope_args(create)
    create.add_argument("--egress", choices=["public", "private"], default="public")
    create.add_argument(
        "--privacy-mode",
        action="store_true",
        help="realtime voice: transcribe the caller in the gateway, send the upstream text only",
    )
    expiry = create.add_mutually_exclusive_group()
    expiry.add_argument("--expires-in-days", type=float)
    expiry.add_argument("--expires-at", help="ISO 8601, e.g. 2030-01-01T00:00:00Z")
    create.add_argument("--json", action="store_true", help="print one JSON object")
    create.set_defaults(run=_create)

    lst = ksub.add_parser("list", help="list keys (never their secrets)")
    config_arg(lst)
    lst.add_argument("--org-path", help="only keys within this org path")
    lst.add_argument("--role", choices=ROLES)
    lst.add_argument("--state", choices=STATES)
    output_arg(lst, csv=True)
    lst.set_defaults(run=_list)

    show = ksub.add_parser("show", help="show one key")
    config_arg(show)
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=_show)

    update = ksub.add_parser("update", help="change a key; options left out keep their value")
    config_arg(update)
    update.add_argument("id")
    update.add_argument("--name")
    update.add_argument("--org-path")
    update.add_argument("--role", choices=ROLES)
    _scope_args(update, patch=True)
    update.add_argument("--egress", choices=["public", "private"])
    update.add_argument("--privacy-mode", choices=["on", "off"], help="realtime voice privacy mode")
    expiry = update.add_mutually_exclusive_group()
    expiry.add_argument("--expires-at", help="ISO 8601")
    expiry.add_argument("--no-expiry", action="store_true", help="remove the expiry date")
    update.add_argument("--json", action="store_true")
    update.set_defaults(run=_update)

    rotate = ksub.add_parser("rotate", help="give a key a new secret (shown only this once)")
    config_arg(rotate)
    rotate.add_argument("id")
    rotate.add_argument(
        "--grace-seconds", type=float, default=86400.0, help="how long the old secret still works"
    )
    rotate.add_argument("--json", action="store_true")
    rotate.set_defaults(run=_rotate)

    revoke = ksub.add_parser("revoke", help="revoke a key at once")
    config_arg(revoke)
    revoke.add_argument("id")
    revoke.set_defaults(run=_revoke)


def _scope_args(p: argparse.ArgumentParser, *, patch: bool = False) -> None:
    default: list[str] | None = None if patch else []
    p.add_argument("--models", nargs="*", default=default, metavar="GLOB")
    p.add_argument("--tools", nargs="*", default=default, metavar="GLOB")
    p.add_argument("--modalities", nargs="*", default=default, metavar="MODALITY")
    p.add_argument("--ip-allowlist", nargs="*", default=default, metavar="CIDR")
    p.add_argument("--tag", action="append", metavar="NAME=VALUE", help="a metadata tag")
    p.add_argument("--app")
    p.add_argument("--customer")


def _create(args: argparse.Namespace) -> int:
    spec = build(
        KeyCreate,
        name=args.name,
        org_path=args.org_path,
        role=args.role,
        scopes=build(
            ScopesSpec,
            models=args.models,
            tools=args.tools,
            modalities=args.modalities,
            egress=args.egress,
            ip_allowlist=args.ip_allowlist,
            privacy_mode=args.privacy_mode,
        ),
        expires_at=_expiry(args),
        app=args.app,
        customer=args.customer,
        tags=tags_arg(args.tag),
    )

    async def work(s: AdminSession) -> int:
        record, secret = await s.keyring.create(s.actor, spec)
        if args.json:
            print(json.dumps({**key_view(record, s.keyring.now()), "key": secret}))
        else:
            print(f"created key {record.id} ({record.name}, {record.org_path})")
            print(f"secret (shown only this once): {secret}")
        return 0

    return run_admin(args, work)


def _expiry(args: argparse.Namespace) -> datetime | None:
    if args.expires_in_days is not None:
        return datetime.now(UTC) + timedelta(days=args.expires_in_days)
    if args.expires_at is not None:
        return _instant(args.expires_at)
    return None


def _instant(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"agentgw: {text!r} is not an ISO 8601 time") from None


def _list(args: argparse.Namespace) -> int:
    async def work(s: AdminSession) -> int:
        keys = await s.keyring.list(
            s.actor, org_path=args.org_path, role=args.role, state=args.state
        )
        now = s.keyring.now()
        rows = [key_view(k, now) for k in keys]
        show_rows(args, rows, KEY_COLUMNS, _line)
        return 0

    return run_admin(args, work)


def _line(row: dict[str, Any]) -> str:
    return f"{row['id']}  {row['prefix']}…  {row['state']:8}  {row['org_path']}  {row['name']}"


def _show(args: argparse.Namespace) -> int:
    async def work(s: AdminSession) -> int:
        view = key_view(await s.keyring.get(s.actor, args.id), s.keyring.now())
        print(json.dumps(view) if args.json else json.dumps(view, indent=2))
        return 0

    return run_admin(args, work)


def _update(args: argparse.Namespace) -> int:
    scopes: dict[str, Any] = {
        "models": args.models,
        "tools": args.tools,
        "modalities": args.modalities,
        "egress": args.egress,
        "ip_allowlist": args.ip_allowlist,
        "privacy_mode": None if args.privacy_mode is None else args.privacy_mode == "on",
    }
    fields: dict[str, Any] = {
        "name": args.name,
        "org_path": args.org_path,
        "role": args.role,
        "app": args.app,
        "customer": args.customer,
        "tags": tags_arg(args.tag),
        "expires_at": _instant(args.expires_at) if args.expires_at else None,
    }
    if any(v is not None for v in scopes.values()):
        fields["scopes"] = build(ScopesPatch, **scopes)
    patch = build(KeyPatch, clear=["expires_at"] if args.no_expiry else [], **fields)

    async def work(s: AdminSession) -> int:
        record = await s.keyring.update(s.actor, args.id, patch)
        view = key_view(record, s.keyring.now())
        print(json.dumps(view) if args.json else f"updated {record.id}")
        return 0

    return run_admin(args, work)


def _rotate(args: argparse.Namespace) -> int:
    grace = build(KeyRotate, grace_seconds=float(args.grace_seconds)).grace_seconds

    async def work(s: AdminSession) -> int:
        record, secret = await s.keyring.rotate(s.actor, args.id, grace)
        if args.json:
            print(json.dumps({**key_view(record, s.keyring.now()), "key": secret}))
        else:
            print(
                f"rotated {record.id}; the previous secret works until "
                f"{key_view(record, s.keyring.now())['previous_retires_at']}"
            )
            print(f"new secret (shown only this once): {secret}")
        return 0

    return run_admin(args, work)


def _revoke(args: argparse.Namespace) -> int:
    async def work(s: AdminSession) -> int:
        await s.keyring.revoke(s.actor, args.id)
        print(f"revoked {args.id}")
        return 0

    return run_admin(args, work)
