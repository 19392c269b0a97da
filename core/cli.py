"""The `agentgw` command: serve, sim, keys."""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

import anyio

from core.access import DISPLAY_PREFIX_LEN, KeyRecord, Scopes, hash_secret, new_secret
from core.app import build_app, load, open_store
from core.config import Config, ConfigError, load_config
from core.state import KeyAlreadyExists, Store

SIM_SERVER = "adapters.egress.sim_server"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.run(args)
        return result
    except ConfigError as exc:
        print(f"agentgw: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="agentgw", description="The agent gateway.")
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the gateway")
    _config_arg(serve)
    serve.add_argument("--host", help="listen address (default from config: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default from config: 8080)")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(run=_serve)

    sim = sub.add_parser("sim", help="serve the simulated provider over the OpenAI wire")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8090)
    sim.add_argument("--latency-ms", type=float, default=0.0)
    sim.add_argument("--ttft-ms", type=float, default=0.0)
    sim.add_argument("--chunk-delay-ms", type=float, default=0.0)
    sim.add_argument("--fail-rate", type=float, default=0.0)
    sim.add_argument("--fail-status", type=int, default=500)
    sim.add_argument("--drop-after-chunks", type=int, default=None)
    sim.add_argument("--reply-words", type=int, default=None)
    sim.add_argument("--hold-after-chunks", type=int, default=None)
    sim.add_argument("--cached-fraction", type=float, default=0.0)
    sim.add_argument("--seed", type=int, default=0)
    sim.set_defaults(run=_sim)

    keys = sub.add_parser("keys", help="manage virtual keys")
    ksub = keys.add_subparsers(required=True, metavar="ACTION")
    create = ksub.add_parser("create", help="create a key; its secret is shown only this once")
    _config_arg(create)
    create.add_argument("--name", required=True)
    create.add_argument("--org-path", required=True, help="department/team/project")
    create.add_argument("--models", nargs="*", default=[], metavar="GLOB")
    create.add_argument("--modalities", nargs="*", default=[])
    create.add_argument("--egress", choices=["public", "private"], default="public")
    create.add_argument("--app")
    create.add_argument("--customer")
    create.add_argument("--expires-in-days", type=float)
    create.add_argument("--json", action="store_true", help="print one JSON object")
    create.set_defaults(run=_keys_create)
    lst = ksub.add_parser("list", help="list keys (never their secrets)")
    _config_arg(lst)
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(run=_keys_list)
    revoke = ksub.add_parser("revoke", help="revoke a key at once")
    _config_arg(revoke)
    revoke.add_argument("id")
    revoke.set_defaults(run=_keys_revoke)
    return p


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (default: the embedded default)")


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    config = load_config(args.config)
    app = build_app(config)
    host = args.host or config.listen.host
    port = config.listen.port if args.port is None else args.port
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=args.log_level,
            lifespan="on",
            timeout_graceful_shutdown=30,
            access_log=False,
        )
    )
    print(f"agentgw listening on http://{host}:{port}", file=sys.stderr, flush=True)
    server.run()
    return 0 if server.started else 1


def _sim(args: argparse.Namespace) -> int:
    try:
        options = _sim_options(args)
    except ValueError as exc:
        print(f"agentgw sim: {exc}", file=sys.stderr)
        return 2
    load(f"{SIM_SERVER}:serve_sim")(args.host, args.port, options)
    return 0


def _sim_options(args: argparse.Namespace) -> Any:
    return load(f"{SIM_SERVER}:SimOptions").from_mapping(
        {
            "latency_ms": args.latency_ms,
            "ttft_ms": args.ttft_ms,
            "chunk_delay_ms": args.chunk_delay_ms,
            "fail_rate": args.fail_rate,
            "fail_status": args.fail_status,
            "drop_after_chunks": args.drop_after_chunks,
            "reply_words": args.reply_words,
            "hold_after_chunks": args.hold_after_chunks,
            "cached_fraction": args.cached_fraction,
            "seed": args.seed,
        }
    )


def _with_store(config: Config, work: Any) -> Any:
    async def run() -> Any:
        store = open_store(config.store)
        await store.open()
        try:
            return await work(store)
        finally:
            await store.aclose()

    return anyio.run(run)


def _keys_create(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    secret = new_secret()
    now = time.time()
    record = KeyRecord(
        id="key_" + uuid.uuid4().hex[:16],
        name=args.name,
        key_hash=hash_secret(secret),
        prefix=secret[:DISPLAY_PREFIX_LEN],
        org_path=_org_path(args.org_path),
        app=args.app,
        customer=args.customer,
        scopes=Scopes(
            models=tuple(args.models), modalities=tuple(args.modalities), egress=args.egress
        ),
        created_at=now,
        expires_at=now + args.expires_in_days * 86400 if args.expires_in_days else None,
    )

    async def create(store: Store) -> None:
        await store.create_key(record)

    try:
        _with_store(config, create)
    except KeyAlreadyExists:
        print(f"agentgw: a key named '{args.name}' exists already", file=sys.stderr)
        return 1
    out = {
        "id": record.id,
        "key": secret,
        "name": record.name,
        "org_path": record.org_path,
        "prefix": record.prefix,
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(f"created key {record.id} ({record.name}, {record.org_path})")
        print(f"secret (shown only this once): {secret}")
    return 0


def _org_path(path: str) -> str:
    parts = [p for p in path.strip().split("/") if p]
    if (
        not parts
        or len(parts) > 3
        or any(not p.replace("-", "").replace("_", "").isalnum() for p in parts)
    ):
        raise ConfigError(
            f"--org-path: expected department/team/project of letters, digits, - and _ "
            f"(got {path!r})"
        )
    return "/".join(parts)


def _keys_list(args: argparse.Namespace) -> int:
    config = load_config(args.config)

    async def work(store: Store) -> list[KeyRecord]:
        return await store.list_keys()

    keys: list[KeyRecord] = _with_store(config, work)
    rows = [
        {
            "id": k.id,
            "name": k.name,
            "prefix": k.prefix,
            "org_path": k.org_path,
            "status": k.status,
            "models": list(k.scopes.models),
        }
        for k in keys
    ]
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            print(f"{r['id']}  {r['prefix']}…  {r['status']:8}  {r['org_path']}  {r['name']}")
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    config = load_config(args.config)

    async def work(store: Store) -> bool:
        return await store.set_key_status(args.id, "revoked")

    if not _with_store(config, work):
        print(f"agentgw: no key with id {args.id}", file=sys.stderr)
        return 1
    print(f"revoked {args.id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
