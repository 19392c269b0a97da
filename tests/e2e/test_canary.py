"""Canary and rollback end to end: the `openai` SDK → `agentgw serve` → two `agentgw sim`s.

Weights move through the admin API and through the config file (SIGHUP); the split of real
traffic follows at once, without a restart.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tests.e2e.procs import Proc, create_key, start_gateway, start_sim

ADMIN = "agw_admin-secret-for-canary-e2e"
CONFIG = """\
listen: {{host: 127.0.0.1}}
store: sqlite:///gw.db
providers:
  - {{name: stable, type: openai, base_url: "{stable}/v1"}}
  - {{name: canary, type: openai, base_url: "{canary}/v1"}}
models:
  - name: rollout
    strategy: weighted
    targets:
      - {{provider: stable, model: sim-large, weight: {stable_weight}}}
      - {{provider: canary, model: sim-large, weight: {canary_weight}}}
"""
PER_PHASE = 1000
# Binomial(1000, p) within its 99.9 % interval (mean ± 3.29 sd), p = 0.1 or 0.5: disjoint ranges.
TEN_PERCENT = range(69, 132)  # 100 ± 31.2
HALF = range(448, 553)  # 500 ± 52.0
FIFTY_FIFTY = {
    "strategy": "weighted",
    "targets": [
        {"provider": "stable", "model": "sim-large", "weight": 50},
        {"provider": "canary", "model": "sim-large", "weight": 50},
    ],
}


@pytest.fixture(scope="module")
def sims() -> Iterator[tuple[Proc, Proc]]:
    stable = start_sim()
    try:
        canary = start_sim()
        try:
            yield stable, canary
        finally:
            canary.stop()
    finally:
        stable.stop()


@pytest.fixture
def deployment(tmp_path: Path, sims: tuple[Proc, Proc]) -> Iterator[tuple[Proc, str, Path]]:
    config = tmp_path / "agentgw.yaml"
    write_config(config, sims, 90, 10)
    key = create_key(config, "canary-e2e", "platform/routing/e2e")["key"]
    proc = start_gateway(config, env={"AGENTGW_ADMIN_KEY": ADMIN})
    try:
        yield proc, key, config
    finally:
        proc.stop()


def write_config(path: Path, sims: tuple[Proc, Proc], stable: int, canary: int) -> None:
    path.write_text(
        CONFIG.format(
            stable=sims[0].url, canary=sims[1].url, stable_weight=stable, canary_weight=canary
        )
    )


def canary_share(proc: Proc, key: str, sims: tuple[Proc, Proc]) -> int:
    """Send a phase of requests; how many the canary sim received."""
    for sim in sims:
        httpx.delete(sim.url + "/_sim/requests").raise_for_status()
    client = OpenAI(base_url=proc.url + "/v1", api_key=key, max_retries=0)

    def one(_: int) -> str | None:
        reply = client.chat.completions.create(
            model="rollout", messages=[{"role": "user", "content": "route me"}]
        )
        return reply.choices[0].message.content

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert all(pool.map(one, range(PER_PHASE)))
    stable, canary = (len(httpx.get(s.url + "/_sim/requests").json()) for s in sims)
    assert stable + canary == PER_PHASE
    return canary


def admin(proc: Proc, method: str, path: str, body: Any = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {ADMIN}"}
    return httpx.request(method, proc.url + path, json=body, headers=headers)


def test_a_canary_moves_to_fifty_fifty_and_rolls_back_to_ninety_ten_without_restart(
    deployment: tuple[Proc, str, Path], sims: tuple[Proc, Proc]
) -> None:
    proc, key, _ = deployment
    assert canary_share(proc, key, sims) in TEN_PERCENT

    changed = admin(proc, "PUT", "/admin/models/rollout", FIFTY_FIFTY)
    assert changed.status_code == 200, changed.text
    assert changed.json()["version"] == 2
    assert canary_share(proc, key, sims) in HALF

    rolled = admin(proc, "POST", "/admin/models/rollout/rollback", {"version": 1})
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["version"] == 3
    assert canary_share(proc, key, sims) in TEN_PERCENT

    audit = admin(proc, "GET", "/admin/audit?object=model:rollout").json()["data"]
    assert [e["action"] for e in audit] == ["model.update", "model.rollback"]
    weights = [
        (
            [t["weight"] for t in e["before"]["targets"]],
            [t["weight"] for t in e["after"]["targets"]],
        )
        for e in audit
    ]
    assert weights == [([90, 10], [50, 50]), ([50, 50], [90, 10])]
    assert proc.popen.poll() is None  # the same process served every phase


def routing(proc: Proc) -> tuple[int, list[float]]:
    shown = admin(proc, "GET", "/admin/models/rollout").json()
    return shown["version"], [t["weight"] for t in shown["routing"]["targets"]]


def test_sighup_reloads_the_weights_and_a_broken_file_keeps_the_old_ones(
    deployment: tuple[Proc, str, Path], sims: tuple[Proc, Proc]
) -> None:
    proc, _, config = deployment
    assert routing(proc) == (1, [90, 10])

    write_config(config, sims, 50, 50)
    mark = len(proc.lines)
    proc.hang_up()
    proc.wait_for("config reloaded", since=mark)
    assert routing(proc) == (2, [50, 50])

    config.write_text(config.read_text().replace("weight: 50}", "weight: -5}", 1))
    mark = len(proc.lines)
    proc.hang_up()
    failed = proc.wait_for("config reload failed", since=mark)
    assert "models[0].targets[0].weight" in proc.log()[proc.log().index(failed) :]
    assert routing(proc) == (2, [50, 50])
    assert proc.popen.poll() is None
