"""Alerts in the running app: kept across restarts, deduplicated, acknowledged, resumed."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.adapters.admin.support import running
from tests.core.test_governance_app import COST, PRICES, chat
from tests.e2e.procs import free_port

pytestmark = pytest.mark.anyio
BUDGET = {"kind": "budget_threshold"}  # other layers raise alerts too (forecasts, anomalies)
SHADOW = {"level": "organization", "target": "*", "amount_usd": 2 * COST, "action": "alert-only"}


@contextmanager
def webhook(
    statuses: list[int], hold: threading.Event | None = None
) -> Iterator[tuple[str, list[dict[str, Any]], threading.Event]]:
    """A real HTTP webhook answering each POST with the next of `statuses` (then 204); with
    `hold`, each answer waits until `hold` is set (a webhook that hangs)."""
    received: list[dict[str, Any]] = []
    accepted = threading.Event()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            if hold is not None:
                hold.wait(30)
            status = statuses.pop(0) if statuses else 204
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()
            if status < 300:
                accepted.set()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", received, accepted
    finally:
        if hold is not None:
            hold.set()
        server.shutdown()
        server.server_close()


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as raw:
        return list(raw.execute(sql).fetchall())


def sample(text: str, name: str, labels: dict[str, str]) -> float:
    """One sample of the Prometheus exposition `text` (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


def budgetary(posted: dict[str, Any]) -> bool:
    return bool(posted["alert"]["kind"] == "budget_threshold")


async def until(condition: Any) -> None:
    """Yield to the app's tasks until `condition()` holds (5 s deadline, no sleep)."""
    with anyio.fail_after(5):
        while not condition():
            await anyio.lowlevel.checkpoint()


async def test_a_delivery_pending_at_shutdown_is_made_after_the_restart(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    failing = [503] * 100  # every post fails until the list is emptied
    with webhook(failing) as (url, received, accepted):
        hooks = {"webhooks": [{"url": url}], "backoff_seconds": 0.01}
        async with running(db, prices=PRICES, budgets=[SHADOW], alerts=hooks) as gw:
            secret = (await gw.create_key(name="k"))["key"]
            assert (await chat(gw, secret)).status_code == 200  # crosses 50 %
            failed = (
                "SELECT 1 FROM alerts WHERE delivery = 'pending' AND last_error IS NOT NULL "
                "AND kind = 'budget_threshold'"
            )
            await until(lambda: rows(db, failed))
        assert not accepted.is_set()
        failing.clear()  # the webhook is back
        async with running(db, prices=PRICES, budgets=[SHADOW], alerts=hooks) as gw:
            with anyio.fail_after(5):
                await anyio.to_thread.run_sync(accepted.wait, 5)
            done = "SELECT 1 FROM alerts WHERE delivery = 'delivered' AND kind = 'budget_threshold'"
            await until(lambda: rows(db, done))
            listed = (await gw.admin("GET", "/admin/alerts", params=BUDGET)).json()["data"]
    thresholds = [r["alert"]["details"]["threshold"] for r in received if budgetary(r)]
    assert thresholds == [0.5, 0.5]  # one failed attempt before the restart, one after
    assert [(a["delivery"], a["attempts"]) for a in listed] == [("delivered", 2)]


async def test_alerts_outlive_a_restart_fire_once_per_window_and_are_acknowledged(
    tmp_path: Path,
) -> None:
    db = tmp_path / "g.db"
    async with running(db, prices=PRICES, budgets=[SHADOW]) as gw:
        secret = (await gw.create_key(name="k"))["key"]
        assert (await chat(gw, secret)).status_code == 200  # 50 %
    # In-process counters start from zero again: spend crosses 50 % a second time, then 100 %.
    async with running(db, prices=PRICES, budgets=[SHADOW]) as gw:
        codes = [(await chat(gw, secret)).status_code for _ in range(2)]
        finance = (await gw.create_key(name="f", role="finance"))["key"]
        listed = (await gw.admin("GET", "/admin/alerts", key=finance, params=BUDGET)).json()["data"]
        critical = await gw.admin("GET", "/admin/alerts", params={"severity": "critical", **BUDGET})
        bad = await gw.admin("GET", "/admin/alerts", params={"severity": "dire"})
        alert_id = critical.json()["data"][0]["id"]
        path = f"/admin/alerts/{alert_id}/acknowledge"
        refused = await gw.admin("POST", path, key=finance)
        acked = await gw.admin("POST", path)
        again = await gw.admin("POST", path)
        unknown = await gw.admin("POST", "/admin/alerts/alt_nope/acknowledge")
        open_ = await gw.admin("GET", "/admin/alerts", params={"acknowledged": "false", **BUDGET})
        csv = await gw.admin(
            "GET", "/admin/alerts", params={"format": "csv", "kind": "budget_threshold"}
        )
    assert codes == [200, 200]
    assert sorted(a["details"]["threshold"] for a in listed) == [0.5, 0.8, 1.0]
    assert (bad.status_code, bad.json()["error"]["param"]) == (422, "severity")
    assert (refused.status_code, acked.status_code, again.status_code) == (403, 200, 200)
    assert acked.json()["acknowledged_by"] is not None
    assert acked.json() == again.json()  # the first acknowledgement stands
    assert unknown.status_code == 404
    assert alert_id not in {a["id"] for a in open_.json()["data"]}
    assert len(open_.json()["data"]) == 2
    assert len(csv.text.strip().splitlines()) == 4
    audit = rows(db, "SELECT action, object FROM audit_events WHERE action LIKE 'alert.%'")
    assert audit == [("alert.acknowledge", f"alert:{alert_id}")]


async def test_a_hanging_webhook_never_holds_traffic(tmp_path: Path) -> None:
    db, hold = tmp_path / "g.db", threading.Event()
    with webhook([], hold) as (url, received, accepted):
        hooks = {"webhooks": [{"url": url}], "timeout_seconds": 60}
        async with running(db, prices=PRICES, budgets=[SHADOW], alerts=hooks) as gw:
            secret = (await gw.create_key(name="k"))["key"]
            first = await chat(gw, secret)  # crosses 50 %: its delivery starts and hangs
            await until(lambda: len(received) == 1)
            codes = [(await chat(gw, secret)).status_code for _ in range(5)]  # 80 %, 100 %, …
            listed = (await gw.admin("GET", "/admin/alerts", params=BUDGET)).json()["data"]
            held = (len(received), accepted.is_set())
            hold.set()
            delivered = (
                "SELECT count(*) FROM alerts WHERE delivery = 'delivered' "
                "AND kind = 'budget_threshold'"
            )
            await until(lambda: rows(db, delivered) == [(3,)])
            metrics = (await gw.client().get("/metrics")).text
    assert first.status_code == 200 and codes == [200] * 5
    assert held == (1, False)  # every call above was answered while the webhook hung
    assert len(listed) == 3
    thresholds = sorted(r["alert"]["details"]["threshold"] for r in received if budgetary(r))
    assert thresholds == [0.5, 0.8, 1.0]
    assert sample(metrics, "agentgw_alert_deliveries_total", {"outcome": "delivered"}) >= 3


async def test_a_failing_target_tripping_its_circuit_is_an_alert(tmp_path: Path) -> None:
    down = {"name": "sim", "type": "sim", "sim": {"fail_rate": 1.0, "fail_status": 503}}
    circuit = {"failures": 2, "window_seconds": 60, "open_seconds": 60}
    model = {"name": "sim", "targets": [{"provider": "sim", "model": "sim-1"}], "circuit": circuit}
    async with running(tmp_path / "g.db", providers=[down], models=[model]) as gw:
        secret = (await gw.create_key(name="k"))["key"]
        codes = [(await gw.chat(secret)).status_code for _ in range(3)]
        listed = await gw.admin("GET", "/admin/alerts", params={"kind": "circuit_open"})
    assert codes[-1] == 503
    assert [(a["target"], a["severity"]) for a in listed.json()["data"]] == [
        ("sim/sim-1", "warning")
    ]


async def test_a_shadow_limit_from_the_admin_api_lets_calls_through_and_alerts_once(
    tmp_path: Path,
) -> None:
    async with running(tmp_path / "g.db", prices=PRICES) as gw:
        key = await gw.create_key(name="k")
        rule = {"level": "key", "target": key["id"], "kind": "requests", "amount": 1,
                "window": "hour", "action": "alert-only"}  # fmt: skip
        created = await gw.admin("POST", "/admin/limits", json=rule)
        replies = [await chat(gw, key["key"]) for _ in range(3)]
        listed = await gw.admin("GET", "/admin/alerts", params={"kind": "limit_exceeded_shadow"})
        shown = (await gw.admin("GET", f"/admin/limits/{created.json()['id']}")).json()
        metrics = (await gw.client().get("/metrics")).text
    assert [r.status_code for r in replies] == [200] * 3
    assert all("x-ratelimit-limit-requests" not in r.headers for r in replies)
    shadow = listed.json()["data"]
    assert [(a["kind"], a["details"]["used"]) for a in shadow] == [("limit_exceeded_shadow", 2)]
    assert "would have refused" in shadow[0]["message"]
    assert (shown["action"], shown["used"]) == ("alert-only", 3)
    labels = {"kind": "limit_exceeded_shadow", "severity": "warning"}
    assert sample(metrics, "agentgw_alerts_total", labels) == 1.0
