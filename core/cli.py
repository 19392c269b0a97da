"""The `agentgw` command: serve, sim, keys, org, audit."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from core.app import build_app, load
from core.cli_audit import add_audit_commands
from core.cli_keys import add_key_commands
from core.cli_org import add_org_commands
from core.cli_redactions import add_redaction_commands
from core.cli_report import add_report_commands
from core.cli_rules import add_rule_commands
from core.cli_session import config_arg
from core.config import ConfigError, load_config

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
    config_arg(serve)
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

    add_rule_commands(sub)
    add_key_commands(sub)
    add_org_commands(sub)
    add_audit_commands(sub)
    add_redaction_commands(sub)
    add_report_commands(sub)
    return p


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    config = load_config(args.config)
    _log_to_stderr()
    app = build_app(config, config_path=args.config, settle_gc=True)
    host = args.host or config.listen.host
    port = config.listen.port if args.port is None else args.port
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=args.log_level,
            lifespan="on",
            # SIGTERM: stop accepting, let in-flight requests and streams finish until then.
            timeout_graceful_shutdown=config.shutdown.drain_seconds,
            access_log=False,
            # Realtime frames are base64 audio: deflating them costs CPU per frame and saves
            # little, so the WebSocket endpoints do not offer compression.
            ws_per_message_deflate=False,
            # The websockets implementation: websockets-sansio logs every refused Realtime
            # handshake (a denial response) as "returned without completing handshake", and
            # wsproto parses frames in pure Python (measured 120 vs 92 us of gateway CPU per
            # relayed audio frame at 20 sessions, tests/perf/realtime.py). tests/e2e/
            # test_error_shapes.py fails if a refused handshake logs an error again.
            ws="websockets",
        )
    )
    print(f"agentgw listening on http://{host}:{port}", file=sys.stderr, flush=True)
    server.run()
    return 0 if server.started else 1


def _log_to_stderr() -> None:
    # The gateway's own notices (config reloads, dropped spans) go to stderr next to uvicorn's.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("agentgw: %(levelname)s %(name)s: %(message)s"))
    gateway = logging.getLogger("agentgw")
    gateway.addHandler(handler)
    gateway.setLevel(logging.INFO)
    gateway.propagate = False


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


if __name__ == "__main__":
    raise SystemExit(main())
