"""A replica whose Redis goes away: it falls back to polling, says so in /readyz, and goes back
to the live change feed when Redis returns (waits are on the gateway's own log lines)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.procs import Proc, create_key, free_port, start_gateway

CONFIG = """\
listen: {{host: 127.0.0.1}}
store: sqlite:///gw.db
redis: {{url: "redis://127.0.0.1:{port}/0", timeout_ms: 300}}
governance: {{fail: open}}
replicas: {{poll_seconds: 1}}
providers: [{{name: sim, type: sim}}]
models: [{{name: sim, targets: [{{provider: sim, model: sim-1}}]}}]
"""
BODY = {"model": "sim", "messages": [{"role": "user", "content": "still there?"}]}


def redis_server(port: int) -> subprocess.Popen[str]:
    """A Redis of this test's own, returned once it says it is ready."""
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    for line in server.stdout:
        if "Ready to accept connections" in line:
            return server
    raise RuntimeError("redis-server did not start")


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Proc, int, list[subprocess.Popen[str]], str]]:
    port = free_port()
    servers = [redis_server(port)]
    config = tmp_path / "agentgw.yaml"
    config.write_text(CONFIG.format(port=port))
    key = create_key(config, "fallback", "ops/replicas/fallback")["key"]
    gateway = start_gateway(config)
    try:
        yield gateway, port, servers, key
    finally:
        gateway.stop()
        for server in servers:
            if server.poll() is None:
                server.kill()
            server.wait(10)


def test_losing_redis_falls_back_to_polling_and_its_return_goes_live_again(
    setup: tuple[Proc, int, list[subprocess.Popen[str]], str],
) -> None:
    gateway, port, servers, key = setup
    gateway.wait_for("replica bus: listening", since=0)
    assert httpx.get(gateway.url + "/readyz").json()["replication"] == "live"

    mark = len(gateway.lines)
    servers[0].kill()
    servers[0].wait(10)
    gateway.wait_for("replica bus unavailable", since=mark)
    ready = httpx.get(gateway.url + "/readyz")
    assert ready.status_code == 200  # fail open: degraded, still serving
    assert ready.json()["replication"] == "polling"
    headers = {"authorization": f"Bearer {key}"}
    served = httpx.post(gateway.url + "/v1/chat/completions", json=BODY, headers=headers)
    assert served.status_code == 200

    mark = len(gateway.lines)
    servers.append(redis_server(port))
    gateway.wait_for("replica bus: listening", since=mark, timeout=30)
    ready = httpx.get(gateway.url + "/readyz")
    assert ready.json()["replication"] == "live"
