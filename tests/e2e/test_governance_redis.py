"""Governance on Redis with real processes: two gateways share one budget exactly, and a Redis
that dies mid-run gets the configured policy without crashing anything."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from tests.e2e.procs import Proc, create_key, free_port, start_gateway

pytestmark = pytest.mark.anyio

COST = 0.001  # 5 output tokens at $200/M: each estimate equals its settled cost
CONFIG = """\
listen: {{host: 127.0.0.1}}
store: sqlite:///gw.db
redis: "{redis}"
governance: {{fail: {fail}, prefix: "{prefix}"}}
providers: [{{name: sim, type: sim}}]
models: [{{name: sim, targets: [{{provider: sim, model: sim-1}}]}}]
prices: [{{provider: sim, model: sim-1, output_per_1m: 200.0}}]
budgets: [{{level: team, target: research/agents, amount_usd: {amount}}}]
"""
TEXT = "one two three four five six seven eight"
BODY = {"model": "sim", "max_tokens": 5, "messages": [{"role": "user", "content": TEXT}]}


def gateway(
    workdir: Path, redis: str, prefix: str, amount: float, fail: str = "closed"
) -> tuple[Proc, str]:
    workdir.mkdir()
    config = workdir / "agentgw.yaml"
    text = CONFIG.format(redis=redis, prefix=prefix, amount=amount, fail=fail)
    config.write_text(text)
    key = create_key(config, "batch", "research/agents/triage")["key"]
    return start_gateway(config), key


def spent(db: Path) -> float:
    with sqlite3.connect(db) as raw:
        (total,) = raw.execute("SELECT COALESCE(SUM(cost_usd), 0) FROM spans WHERE status='ok'")
        return float(total[0])


async def test_two_gateways_on_redis_admit_exactly_what_a_shared_budget_holds(
    tmp_path: Path, redis_prefix: str
) -> None:
    admits = 9
    redis, budget = "redis://127.0.0.1:6379/0", admits * COST
    first, key1 = gateway(tmp_path / "a", redis, redis_prefix, budget)
    second, key2 = gateway(tmp_path / "b", redis, redis_prefix, budget)
    codes: list[int] = []
    errors: list[str] = []
    try:
        async with httpx.AsyncClient(timeout=30) as client:

            async def one(proc: Proc, key: str) -> None:
                resp = await client.post(proc.url + "/v1/chat/completions", json=BODY,
                                         headers={"authorization": f"Bearer {key}"})  # fmt: skip
                codes.append(resp.status_code)
                if resp.status_code != 200:
                    errors.append(resp.json()["error"]["code"])

            async with anyio.create_task_group() as tg:
                for i in range(200):
                    tg.start_soon(one, *((first, key1) if i % 2 else (second, key2)))
    finally:
        first.stop()
        second.stop()
    assert first.stopped_cleanly() and second.stopped_cleanly()
    assert codes.count(200) == admits
    assert errors == ["insufficient_quota"] * (200 - admits)
    total = spent(tmp_path / "a" / "gw.db") + spent(tmp_path / "b" / "gw.db")
    assert total == pytest.approx(admits * COST)


@pytest.fixture
def private_redis() -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """A Redis of this test's own on a free port, so the test may kill it."""
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    for line in server.stdout:  # its own readiness line, not a sleep
        if "Ready to accept connections" in line:
            break
    try:
        yield port, server
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(10)


async def test_redis_dying_mid_run_gets_the_fail_policy_and_nothing_crashes(
    tmp_path: Path, redis_prefix: str, private_redis: tuple[int, subprocess.Popen[str]]
) -> None:
    port, server = private_redis
    proc, key = gateway(tmp_path / "g", f"redis://127.0.0.1:{port}/0", redis_prefix, 1.0)
    headers = {"authorization": f"Bearer {key}"}
    try:
        async with httpx.AsyncClient(base_url=proc.url, timeout=30) as client:
            before = await client.post("/v1/chat/completions", json=BODY, headers=headers)
            server.kill()
            await anyio.to_thread.run_sync(server.wait)
            during = await client.post("/v1/chat/completions", json=BODY, headers=headers)
            ready = await client.get("/readyz")
    finally:
        proc.stop()
    assert proc.stopped_cleanly()
    assert before.status_code == 200
    assert during.status_code == 503
    assert during.json()["error"]["code"] == "governance_unavailable"
    assert (ready.status_code, ready.json()["status"]) == (503, "degraded")
