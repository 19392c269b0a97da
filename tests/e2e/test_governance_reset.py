"""`agentgw limits reset` against a running gateway: in-process counters (through its admin API)
and Redis counters (reset by the CLI itself); both audited, both let the next call through."""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import httpx

from core.cli import main
from tests.e2e.procs import create_key, free_port, start_gateway

ROOT = "agw_root-reset-test-secret"
CONFIG = """\
listen: {{host: 127.0.0.1}}
store: sqlite:///gw.db
admin_key: {root}
{redis}
providers: [{{name: sim, type: sim}}]
models: [{{name: sim, targets: [{{provider: sim, model: sim-1}}]}}]
limits: [{{level: team, target: research/agents, kind: requests, amount: 1, window: day}}]
"""
BODY = {"model": "sim", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in this process (its code path is the command's own; a subprocess would only add
    an interpreter start)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(config.parent), redirect_stdout(out), redirect_stderr(err):
        code = main([*args, "--config", str(config)])
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def audit_actors(db: Path) -> list[str]:
    with sqlite3.connect(db) as raw:
        rows = raw.execute("SELECT actor FROM audit_events WHERE action = 'limit.reset'")
        return [r[0] for r in rows]


def run_case(workdir: Path, redis_line: str) -> tuple[list[int], str, list[str]]:
    """Two calls (the second over the limit), a CLI reset, a third call."""
    config = workdir / "agentgw.yaml"
    config.write_text(CONFIG.format(root=ROOT, redis=redis_line))
    key = create_key(config, "k", "research/agents/triage")["key"]
    proc = start_gateway(config)
    try:
        headers = {"authorization": f"Bearer {key}"}
        with httpx.Client(base_url=proc.url, headers=headers, timeout=30) as client:
            codes = [client.post("/v1/chat/completions", json=BODY).status_code for _ in range(2)]
            listed = cli(config, "limits", "list", "--json", "--gateway", proc.url)
            assert json.loads(listed.stdout)[0]["used"] == 1, (
                listed.stderr
            )  # the refused call held none
            reset = cli(config, "limits", "reset", "config-limit-0", "--gateway", proc.url)
            codes.append(client.post("/v1/chat/completions", json=BODY).status_code)
    finally:
        proc.stop()
    assert reset.returncode == 0, reset.stderr
    return codes, reset.stdout, audit_actors(workdir / "gw.db")


def test_the_cli_resets_in_process_counters_through_the_running_gateway(tmp_path: Path) -> None:
    codes, out, actors = run_case(tmp_path, "")
    nobody = cli(tmp_path / "agentgw.yaml", "limits", "reset", "config-limit-0",
                 "--gateway", f"http://127.0.0.1:{free_port()}")  # fmt: skip
    assert codes == [200, 429, 200]
    assert out.strip() == "reset config-limit-0  used=0"
    assert len(actors) == 1 and not actors[0].startswith("cli:")  # the gateway's admin key
    assert nobody.returncode == 1 and "no gateway answered" in nobody.stderr


def test_the_cli_resets_redis_counters_itself(tmp_path: Path, redis_prefix: str) -> None:
    redis = f'redis: "redis://127.0.0.1:6379/0"\ngovernance: {{prefix: "{redis_prefix}"}}'
    codes, out, actors = run_case(tmp_path, redis)
    unknown = cli(tmp_path / "agentgw.yaml", "limits", "reset", "lim_nope")
    assert codes == [200, 429, 200]
    assert out.strip() == "reset config-limit-0  used=0"
    assert len(actors) == 1 and actors[0].startswith("cli:")
    assert unknown.returncode == 1 and "lim_nope" in unknown.stderr
