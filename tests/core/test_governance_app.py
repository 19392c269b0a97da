"""Governance wired into the running app: budgets, limits, shadow mode, alerts, admin API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.adapters.admin.support import Gateway, running
from tests.e2e.procs import free_port

pytestmark = pytest.mark.anyio

# Only output tokens are priced, and every request asks for exactly the 5 tokens the sim returns
# (its echo is cut to max_tokens), so each estimate equals the settled cost: 1000 micro-dollars.
PRICES = [{"provider": "sim", "model": "sim-1", "output_per_1m": 200.0}]
COST = 0.001
LONG = "one two three four five six seven eight nine ten"


def body(stream: bool = False) -> dict[str, Any]:
    return {"model": "sim", "max_tokens": 5, "stream": stream,
            "messages": [{"role": "user", "content": LONG}]}  # fmt: skip


async def chat(gw: Gateway, secret: str, *, stream: bool = False) -> httpx.Response:
    headers = {"authorization": f"Bearer {secret}"}
    return await gw.client().post("/v1/chat/completions", headers=headers, json=body(stream))


def spent(gw: Gateway) -> float:
    rows = gw.rows("SELECT COALESCE(SUM(cost_usd), 0) FROM spans WHERE status = 'ok'")
    return float(rows[0][0])


async def test_concurrent_requests_against_a_budget_admit_exactly_what_it_holds(
    tmp_path: Path,
) -> None:
    admits = 7
    budget = {"level": "team", "target": "research/agents", "amount_usd": admits * COST}
    codes: list[int] = []
    errors: list[str] = []
    async with running(tmp_path / "g.db", prices=PRICES, budgets=[budget]) as gw:
        secret = (await gw.create_key(name="batch"))["key"]

        async def one() -> None:
            resp = await chat(gw, secret)
            codes.append(resp.status_code)
            if resp.status_code != 200:
                errors.append(resp.json()["error"]["code"])

        async with anyio.create_task_group() as tg:
            for _ in range(200):
                tg.start_soon(one)
        listed = (await gw.admin("GET", "/admin/budgets")).json()["data"]
    assert codes.count(200) == admits
    assert errors == ["insufficient_quota"] * (200 - admits)
    assert spent(gw) == pytest.approx(admits * COST)
    assert listed[0]["used_usd"] == pytest.approx(spent(gw))


async def test_a_tighter_team_budget_stops_a_key_whose_own_budget_is_not_spent(
    tmp_path: Path,
) -> None:
    async with running(tmp_path / "g.db", prices=PRICES) as gw:
        secret = await gw.create_key(name="k")
        for rule in (
            {"level": "key", "target": secret["id"], "amount_usd": 1.0},
            {"level": "team", "target": "research/agents", "amount_usd": 2 * COST},
        ):
            assert (await gw.admin("POST", "/admin/budgets", json=rule)).status_code == 201
        assert [(await chat(gw, secret["key"])).status_code for _ in range(2)] == [200, 200]
        refused = await chat(gw, secret["key"])
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "insufficient_quota"
    assert "team research/agents" in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) >= 1


async def test_a_token_limit_counts_streamed_usage_and_refuses_the_next_stream(
    tmp_path: Path,
) -> None:
    async with running(tmp_path / "g.db", prices=PRICES) as gw:
        secret = await gw.create_key(name="k")
        limit = {"level": "key", "target": secret["id"], "kind": "output_tokens", "amount": 8}
        created = await gw.admin("POST", "/admin/limits", json=limit)
        assert created.status_code == 201
        first = await chat(gw, secret["key"], stream=True)
        usage = await gw.admin("GET", f"/admin/limits/{created.json()['id']}")
        second = await chat(gw, secret["key"], stream=True)
    assert first.status_code == 200 and "[DONE]" in first.text
    assert first.headers["x-ratelimit-limit-tokens"] == "8"
    assert usage.json()["used"] == 5  # the streamed usage, not the estimate
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "rate_limit_exceeded"
    assert "retry-after" in second.headers


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[dict[str, Any]], threading.Event]]:
    received: list[dict[str, Any]] = []
    arrived = threading.Event()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["content-length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()
            arrived.set()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = HTTPServer(("127.0.0.1", free_port()), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", received, arrived
    finally:
        server.shutdown()
        server.server_close()


async def test_shadow_mode_lets_traffic_through_and_raises_the_alert(tmp_path: Path) -> None:
    shadow = {"level": "organization", "target": "*", "amount_usd": 2 * COST,
              "action": "alert-only"}  # fmt: skip
    with webhook_receiver() as (url, received, arrived):
        alerts = {"webhooks": [{"url": url}]}
        async with running(tmp_path / "g.db", prices=PRICES, budgets=[shadow], alerts=alerts) as gw:
            secret = (await gw.create_key(name="k"))["key"]
            codes = [(await chat(gw, secret)).status_code for _ in range(4)]
            only = {"kind": "budget_threshold"}  # other layers raise alerts too (forecasts, …)
            listed = (await gw.admin("GET", "/admin/alerts", params=only)).json()["data"]
            csv = await gw.admin("GET", "/admin/alerts", params={"format": "csv", **only})
            with anyio.fail_after(5):  # other alerts (a forecast) may be posted first
                while True:
                    arrived.clear()  # before looking, so a post made meanwhile sets it again
                    if any(r["type"] == "budget_alert" for r in received):
                        break
                    await anyio.to_thread.run_sync(arrived.wait, 5)
    assert codes == [200] * 4
    assert sorted(a["details"]["threshold"] for a in listed) == [0.5, 0.8, 1.0]  # each once
    assert all(a["details"]["action"] == "alert-only" for a in listed)
    severity = {a["details"]["threshold"]: a["severity"] for a in listed}
    assert severity == {0.5: "info", 0.8: "warning", 1.0: "critical"}
    assert csv.text.startswith("id,at,kind,level,target,severity,message")
    budget_posts = [r for r in received if r["type"] == "budget_alert"]
    assert budget_posts and budget_posts[0]["alert"]["level"] == "organization"


async def test_bad_limit_and_budget_input_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    good = {"level": "key", "target": "k1", "kind": "requests", "amount": 3}
    async with running(tmp_path / "g.db", prices=PRICES) as gw:
        before = gw.state()
        bad = [
            ("POST", "/admin/limits", {**good, "color": "red"}),
            ("POST", "/admin/limits", {**good, "amount": "3"}),
            ("POST", "/admin/limits", {**good, "window": "fortnight"}),
            ("POST", "/admin/budgets", {"level": "galaxy", "target": "x", "amount_usd": 1}),
            ("PATCH", "/admin/limits/lim_nope", {"amount": 4}),
            ("DELETE", "/admin/budgets/bud_nope", None),
            ("POST", "/admin/limits/lim_nope/reset", None),
        ]
        codes = [(await gw.admin(m, p, json=b)).status_code for m, p, b in bad]
        assert gw.state() == before
        created = await gw.admin("POST", "/admin/limits", json=good)
        rule_id = created.json()["id"]
        patched = await gw.admin("PATCH", f"/admin/limits/{rule_id}", json={"amount": 9})
        deleted = await gw.admin("DELETE", f"/admin/limits/{rule_id}")
        left = (await gw.admin("GET", "/admin/limits")).json()["data"]
        actions = [r[0] for r in gw.rows("SELECT action FROM audit_events ORDER BY id")]
    assert codes == [422, 422, 422, 422, 404, 404, 404]
    assert patched.json()["amount"] == 9
    assert deleted.status_code == 200 and left == []
    assert actions[-3:] == ["limit.create", "limit.update", "limit.delete"]


async def test_only_admins_write_rules_and_finance_reads_budgets(tmp_path: Path) -> None:
    rule = {"level": "organization", "target": "*", "amount_usd": 5.0}
    async with running(tmp_path / "g.db", prices=PRICES) as gw:
        finance = (await gw.create_key(name="f", role="finance"))["key"]
        refused = await gw.admin("POST", "/admin/budgets", key=finance, json=rule)
        assert (await gw.admin("POST", "/admin/budgets", json=rule)).status_code == 201
        seen = await gw.admin("GET", "/admin/budgets", key=finance)
    assert refused.status_code == 403
    assert seen.status_code == 200 and len(seen.json()["data"]) == 1


async def test_an_admin_budget_reset_zeroes_its_spend_and_is_audited(tmp_path: Path) -> None:
    async with running(tmp_path / "g.db", prices=PRICES) as gw:
        key = await gw.create_key(name="k")
        budget = {"level": "key", "target": key["id"], "amount_usd": COST}
        rule_id = (await gw.admin("POST", "/admin/budgets", json=budget)).json()["id"]
        codes = [(await chat(gw, key["key"])).status_code for _ in range(2)]
        reset = await gw.admin("POST", f"/admin/budgets/{rule_id}/reset")
        again = await chat(gw, key["key"])
        actions = [r[0] for r in gw.rows("SELECT action FROM audit_events ORDER BY id")]
    assert codes == [200, 429]
    assert reset.json()["used_usd"] == 0
    assert again.status_code == 200
    assert actions[-1] == "budget.reset"


async def test_an_admin_reset_zeroes_the_current_window(tmp_path: Path) -> None:
    async with running(tmp_path / "g.db", prices=PRICES) as gw:
        secret = await gw.create_key(name="k")
        limit = {"level": "key", "target": secret["id"], "kind": "requests", "amount": 1}
        rule_id = (await gw.admin("POST", "/admin/limits", json=limit)).json()["id"]
        first = await chat(gw, secret["key"])
        blocked = await chat(gw, secret["key"])
        reset = await gw.admin("POST", f"/admin/limits/{rule_id}/reset")
        again = await chat(gw, secret["key"])
    assert (first.status_code, blocked.status_code) == (200, 429)
    assert reset.json()["used"] == 0
    assert again.status_code == 200


@pytest.mark.parametrize(("policy", "status"), [("closed", 503), ("open", 200)])
async def test_redis_unavailable_at_start_applies_and_reports_the_fail_policy(
    tmp_path: Path, policy: str, status: int
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    budget = {"level": "organization", "target": "*", "amount_usd": 1.0}
    async with running(
        tmp_path / "g.db", prices=PRICES, budgets=[budget], redis=dead,
        governance={"fail": policy},
    ) as gw:  # fmt: skip
        secret = (await gw.create_key(name="k"))["key"]
        reply = await chat(gw, secret)
        again = await chat(gw, secret)
        ready = await gw.client().get("/readyz")
        only = {"kind": "governance_unavailable"}
        alerts = (await gw.admin("GET", "/admin/alerts", params=only)).json()["data"]
    assert reply.status_code == again.status_code == status
    # Reported as one critical alert (not one per call), naming what the gate did.
    assert [(a["kind"], a["severity"]) for a in alerts] == [("governance_unavailable", "critical")]
    assert f"fail: {policy}" in alerts[0]["message"]
    if policy == "closed":
        assert reply.json()["error"]["code"] == "governance_unavailable"
    readiness = ready.json()  # other parts (the replica bus) may report beside governance
    assert (readiness["status"], readiness["governance"]) == ("degraded", "redis unavailable")
    assert ready.status_code == (503 if policy == "closed" else 200)
