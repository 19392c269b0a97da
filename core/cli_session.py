"""What every state-changing CLI command shares: an opened store and the audited services.

The CLI acts as `cli:<os user>` with the admin role and its changes are audited exactly like
admin-API changes. A gateway running against the same store sees them within its key cache's
one second.
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from pydantic import ValidationError

from core.app import load, open_store
from core.audit import Actor, AuditLog
from core.config import load_config
from core.directory import Directory
from core.errors import GatewayError
from core.export import to_csv
from core.keyring import Keyring
from core.keyspec import explain
from core.orgs import parse_tags
from core.replication import announce
from core.state import Store
from core.timestamps import parse_instant

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AdminSession:
    """An opened store with the services that change it, acting as the CLI's user."""

    store: Store
    audit: AuditLog
    keyring: Keyring
    directory: Directory
    actor: Actor


def config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (default: the embedded default)")


def cli_actor() -> Actor:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        user = "unknown"
    return Actor.cli(user, socket.gethostname())


def run_admin(args: argparse.Namespace, work: Callable[[AdminSession], Awaitable[int]]) -> int:
    """Open the configured store, run `work`, close; a refused change prints why and exits 1.

    Raises:
        ConfigError: the config cannot be loaded or names an unavailable store.
    """
    config = load_config(args.config)

    async def run() -> int:
        store = open_store(config.store)
        await store.open()
        try:
            audit = AuditLog(store)
            session = AdminSession(
                store, audit, Keyring(store, audit), Directory(store, audit), cli_actor()
            )
            head = await store.audit_head()
            code = await work(session)
            if await store.audit_head() != head:  # an audited change: running replicas re-read
                await announce(config, load)
            return code
        finally:
            await store.aclose()

    try:
        return anyio.run(run)
    except GatewayError as exc:
        print(f"agentgw: {exc.message}", file=sys.stderr)
        return 1


def build(model: Callable[..., T], *, clear: Sequence[str] = (), **fields: Any) -> T:
    """A spec model from CLI arguments: `None` arguments are left out, so defaults apply, except
    those named in `clear`, which are passed as an explicit null.

    Raises:
        SystemExit: the arguments do not make a valid spec (exit status 2, like argparse).
    """
    given = {k: v for k, v in fields.items() if v is not None}
    given.update({name: None for name in clear})
    try:
        return model(**given)
    except ValidationError as exc:
        message, _ = explain(exc)
        print(f"agentgw: invalid arguments: {message}", file=sys.stderr)
        raise SystemExit(2) from None


def tags_arg(pairs: Sequence[str] | None) -> dict[str, str] | None:
    """`--tag k=v …` as a dict.

    Raises:
        SystemExit: a pair without `=` or a bad tag (exit status 2).
    """
    if pairs is None:
        return None
    tags: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            print(f"agentgw: --tag expects NAME=VALUE, got {pair!r}", file=sys.stderr)
            raise SystemExit(2)
        tags[name] = value
    try:
        return parse_tags(tags)
    except ValueError as exc:
        print(f"agentgw: --tag: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def output_arg(parser: argparse.ArgumentParser, *, csv: bool = False) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--json", action="store_true", help="print JSON")
    if csv:
        group.add_argument("--csv", action="store_true", help="print CSV")


def show_rows(
    args: argparse.Namespace,
    rows: list[dict[str, Any]],
    columns: Sequence[str],
    line: Callable[[dict[str, Any]], str],
) -> None:
    """Rows as JSON (`--json`), CSV (`--csv`) or one text line each."""
    if getattr(args, "json", False):
        print(json.dumps(rows))
    elif getattr(args, "csv", False):
        sys.stdout.write(to_csv(rows, columns))
    else:
        for row in rows:
            print(line(row))


def instant_arg(text: str) -> float:
    """An argparse type for a time: ISO 8601 or epoch seconds."""
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
