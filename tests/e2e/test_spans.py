"""Every call leaves exactly one complete span; a clean shutdown under load loses none."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.e2e.conftest import CONFIG
from tests.e2e.procs import Proc, agentgw, create_key, free_port, start_gateway, start_sim

MESSAGES = [{"role": "user", "content": "count the spans"}]


@pytest.fixture
def upstreams() -> Iterator[tuple[Proc, Proc]]:
    good = start_sim("--latency-ms", "20", "--cached-fraction", "0.5")
    bad = start_sim("--fail-rate", "1", "--fail-status", "500")
    try:
        yield good, bad
    finally:
        good.stop()
        bad.stop()


def configure(tmp_path: Path, good: Proc, bad: Proc) -> tuple[Path, dict[str, str]]:
    config = tmp_path / "agentgw.yaml"
    config.write_text(CONFIG.format(good=good.url, bad=bad.url, dead=free_port()))
    key = create_key(config, "spans", "finance/ledger/close")
    return config, key


def spans(db: Path) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute("SELECT * FROM spans")]
    by_id = {r["request_id"]: r for r in rows}
    assert len(by_id) == len(rows), "a request id has more than one span"
    return by_id


def test_mixed_calls_leave_exactly_one_complete_span_each(
    tmp_path: Path, upstreams: tuple[Proc, Proc]
) -> None:
    config, key = configure(tmp_path, *upstreams)
    gateway = start_gateway(config)
    auth = {
        "authorization": f"Bearer {key['key']}",
        "x-agent-id": "planner",
        "x-session-id": "session-7",
    }
    seen: dict[str, tuple[str, int]] = {}
    try:
        with httpx.Client(base_url=gateway.url + "/v1", headers=auth, timeout=30) as c:
            calls: list[tuple[str, str, dict[str, Any]]] = [
                ("chat", "/chat/completions", {"model": "chat", "messages": MESSAGES}),
                (
                    "stream",
                    "/chat/completions",
                    {"model": "chat", "messages": MESSAGES, "stream": True},
                ),
                ("embed", "/embeddings", {"model": "embed", "input": "hello"}),
                ("failover", "/chat/completions", {"model": "failover", "messages": MESSAGES}),
                ("down", "/chat/completions", {"model": "down", "messages": MESSAGES}),
                ("unknown", "/chat/completions", {"model": "nope", "messages": MESSAGES}),
                ("invalid", "/chat/completions", {"model": "chat"}),
            ]
            for name, path, body in calls:
                resp = c.post(path, json=body)
                seen[name] = (resp.headers["x-request-id"], resp.status_code)
            unauthenticated = httpx.post(gateway.url + "/v1/chat/completions", json={})
            assert unauthenticated.status_code == 401
    finally:
        gateway.stop()
    assert gateway.stopped_cleanly(), gateway.log()

    rows = spans(tmp_path / "gw.db")
    assert set(rows) == {rid for rid, _ in seen.values()}
    for name, (rid, status) in seen.items():
        row = rows[rid]
        assert row["http_status"] == status, name
        assert row["key_id"] == key["id"]
        assert row["org_path"] == "finance/ledger/close"
        assert row["agent_id"] == "planner"
        assert row["session_id"] == "session-7"
        assert len(row["trace_id"]) == 32 and len(row["span_id"]) == 16
        assert row["latency_ms"] > 0
    # One trace for the whole session.
    assert len({r["trace_id"] for r in rows.values()}) == 1

    chat = rows[seen["chat"][0]]
    assert chat["status"] == "ok"
    assert (chat["provider"], chat["upstream_model"]) == ("good", "sim-large")
    assert chat["input_tokens"] > 0 and chat["output_tokens"] > 0
    assert chat["cached_tokens"] == int(chat["input_tokens"] * 0.5)  # the sim caches half
    uncached = chat["input_tokens"] - chat["cached_tokens"]
    expected = (uncached * 2.0 + chat["cached_tokens"] * 0.5 + chat["output_tokens"] * 8.0) / 1e6
    assert chat["cost_usd"] == pytest.approx(expected)

    stream = rows[seen["stream"][0]]
    assert stream["stream"] == 1 and stream["ttft_ms"] is not None
    assert stream["input_tokens"] == chat["input_tokens"]
    assert "usage_estimated" not in json.loads(stream["flags"])

    failover = rows[seen["failover"][0]]
    assert failover["attempts"] == 2
    tries = json.loads(failover["attempts_json"])
    assert [(a["provider"], a["status"]) for a in tries] == [("bad", "error"), ("good", "ok")]
    assert failover["status"] == "ok"

    down = rows[seen["down"][0]]
    assert (down["status"], down["error_code"], down["attempts"]) == (
        "error",
        "all_targets_failed",
        2,
    )
    assert down["cost_usd"] is None and down["input_tokens"] == 0
    assert rows[seen["unknown"][0]]["error_code"] == "model_not_found"
    assert rows[seen["invalid"][0]]["error_code"] == "invalid_request"
    assert rows[seen["embed"][0]]["modality"] == "embedding"


@pytest.mark.anyio
async def test_clean_shutdown_under_load_loses_no_span(
    tmp_path: Path, upstreams: tuple[Proc, Proc]
) -> None:
    config, key = configure(tmp_path, *upstreams)
    gateway = start_gateway(config)
    succeeded: list[str] = []
    enough = anyio.Event()
    headers = {"authorization": f"Bearer {key['key']}"}
    body = {"model": "chat", "messages": MESSAGES}

    async def worker(client: httpx.AsyncClient) -> None:
        while True:
            try:
                resp = await client.post("/v1/chat/completions", json=body)
            except httpx.TransportError:
                return  # the gateway has stopped accepting: this worker is done
            if resp.status_code != 200:
                return
            succeeded.append(resp.headers["x-request-id"])
            if len(succeeded) >= 40:
                enough.set()

    client = httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=60)
    async with client, anyio.create_task_group() as tg:
        for _ in range(16):
            tg.start_soon(worker, client)
        with anyio.fail_after(60):
            await enough.wait()
        # Requests are in flight right now: SIGTERM must finish them and flush their spans.
        await anyio.to_thread.run_sync(gateway.stop)
    assert gateway.stopped_cleanly(), gateway.log()
    rows = spans(tmp_path / "gw.db")
    assert len(succeeded) >= 40
    missing = [rid for rid in succeeded if rid not in rows]
    assert missing == []
    assert all(rows[rid]["status"] == "ok" for rid in succeeded)


def test_bad_config_stops_serve_with_a_message_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "agentgw.yaml"
    config.write_text(
        "providers: [{name: p, type: sim}]\n"
        "models: [{name: m, targets: [{provider: p, model: x, weight: heavy}]}]\n"
    )
    result = subprocess.run(
        agentgw("serve", "--config", str(config), "--port", str(free_port())),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert "models[0].targets[0].weight" in result.stderr
    assert str(config) in result.stderr
