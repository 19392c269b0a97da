"""Routing end to end: the `openai` SDK → `agentgw serve` → several `agentgw sim` processes."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tests.e2e.procs import Proc, create_key, start_gateway, start_sim

CONFIG = """\
listen: {{host: 127.0.0.1}}
store: sqlite:///gw.db
providers:
  - {{name: stable, type: openai, base_url: "{stable}/v1"}}
  - {{name: canary, type: openai, base_url: "{canary}/v1"}}
  - {{name: broken, type: openai, base_url: "{broken}/v1"}}
models:
  - name: rollout
    strategy: weighted
    targets:
      - {{provider: stable, model: sim-large, weight: 70}}
      - {{provider: canary, model: sim-large, weight: 30}}
  - name: guarded
    circuit: {{failures: 2, window_seconds: 60, open_seconds: 600}}
    targets:
      - {{provider: broken, model: sim-large}}
      - {{provider: stable, model: sim-large}}
"""
MESSAGES: list[Any] = [{"role": "user", "content": "route me"}]


@dataclass
class Upstreams:
    stable: Proc
    canary: Proc
    broken: Proc

    def clear(self) -> None:
        for proc in (self.stable, self.canary, self.broken):
            httpx.delete(proc.url + "/_sim/requests").raise_for_status()


def received(proc: Proc) -> int:
    return len(httpx.get(proc.url + "/_sim/requests").json())


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    procs: list[Proc] = []
    try:
        for flags in ((), (), ("--fail-rate", "1", "--fail-status", "503")):
            procs.append(start_sim(*flags))
        yield Upstreams(*procs)
    finally:
        for proc in reversed(procs):
            proc.stop()


@pytest.fixture
def gateway(tmp_path: Path, upstreams: Upstreams) -> Iterator[tuple[Proc, str]]:
    config = tmp_path / "agentgw.yaml"
    config.write_text(
        CONFIG.format(
            stable=upstreams.stable.url, canary=upstreams.canary.url, broken=upstreams.broken.url
        )
    )
    key = create_key(config, "router", "platform/routing/e2e")["key"]
    upstreams.clear()
    proc = start_gateway(config)
    try:
        yield proc, key
    finally:
        proc.stop()


def test_a_weighted_model_splits_traffic_seventy_thirty_across_two_sims(
    gateway: tuple[Proc, str], upstreams: Upstreams
) -> None:
    proc, key = gateway
    client = OpenAI(base_url=proc.url + "/v1", api_key=key, max_retries=0)
    for _ in range(300):
        reply = client.chat.completions.create(model="rollout", messages=MESSAGES)
        assert reply.choices[0].message.content
    stable, canary = received(upstreams.stable), received(upstreams.canary)
    assert stable + canary == 300
    # Binomial(300, 0.3): the 99.99 % interval is 90 ± 3.89·√63, about 59..121.
    assert 59 <= canary <= 121


def test_an_open_circuit_keeps_traffic_off_a_failing_sim_end_to_end(
    gateway: tuple[Proc, str], upstreams: Upstreams, tmp_path: Path
) -> None:
    proc, key = gateway
    client = OpenAI(base_url=proc.url + "/v1", api_key=key, max_retries=0)
    request_ids = []
    for _ in range(6):
        raw = client.chat.completions.with_raw_response.create(model="guarded", messages=MESSAGES)
        assert raw.parse().choices[0].message.content  # every call is answered by failover
        request_ids.append(raw.headers["x-request-id"])
    assert received(upstreams.broken) == 2  # two failures opened the circuit; then no more
    assert received(upstreams.stable) == 6
    proc.stop()
    assert proc.stopped_cleanly(), proc.log()

    with sqlite3.connect(tmp_path / "gw.db") as conn:
        conn.row_factory = sqlite3.Row
        rows = {r["request_id"]: r for r in conn.execute("SELECT * FROM spans")}
    tries = [
        [
            (a["provider"], a["status"], a["error_code"])
            for a in json.loads(rows[rid]["attempts_json"])
        ]
        for rid in request_ids
    ]
    failed = [("broken", "error", "upstream_unavailable"), ("stable", "ok", None)]
    skipped = [("broken", "skipped", "circuit_open"), ("stable", "ok", None)]
    assert tries == [failed] * 2 + [skipped] * 4
    assert all(rows[rid]["status"] == "ok" for rid in request_ids)
