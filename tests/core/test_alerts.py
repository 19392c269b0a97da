"""Alerts: stored on every backend, deduplicated, delivered to webhooks with backoff, resumed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.alert_store import AlertQuery, AlertRecord, AlertStore
from core.alerting import AlertFeed, CircuitAlerts
from core.audit import Actor, AuditLog, AuditQuery, AuditStore
from core.circuit import MemoryCircuitStore
from core.config import Circuit
from core.errors import NotFound, PermissionDenied
from core.governance import Alert
from store import SQLiteStore
from tests.core.governance_support import Clock
from tests.store.test_stores import backend

__all__ = ["backend"]  # the fixture, imported so pytest finds it here too

pytestmark = pytest.mark.anyio
HOOK = "http://hooks.test/agentgw?token=sekret"
ADMIN = Actor("key_admin", "admin")


class Hook:
    """A webhook receiver as a real ASGI app: answers each POST with the next scripted status."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.received: list[dict[str, Any]] = []

    async def receive(self, request: Request) -> Response:
        self.received.append(await request.json())
        status = self.statuses.pop(0) if self.statuses else 204
        return Response(status_code=status)

    def transport(self) -> httpx.ASGITransport:
        app = Starlette(routes=[Route("/agentgw", self.receive, methods=["POST"])])
        return httpx.ASGITransport(app=app)


@pytest.fixture
def store(backend: AlertStore) -> AlertStore:
    """Each backend (memory, SQLite, PostgreSQL), as the alert store it is."""
    return backend


def feed(store: AlertStore, clock: Clock, hook: Hook | None = None, **options: Any) -> AlertFeed:
    hooks = [] if hook is None else [HOOK]
    transport = None if hook is None else hook.transport()
    audit = AuditLog(cast(AuditStore, store), clock=clock)  # both backends are audit stores
    return AlertFeed(hooks, store=store, audit=audit, clock=clock, transport=transport, **options)


def record(n: int, **changes: Any) -> AlertRecord:
    fields: dict[str, Any] = {"id": f"alt_{n}", "at": 1000.0 + n, "kind": "anomaly",
                              "level": "team", "target": "research/agents",
                              "severity": "warning", "message": f"alert {n}",
                              "details": {"n": n, "nested": {"x": [1, 2]}}}  # fmt: skip
    return AlertRecord(**{**fields, **changes})


async def test_every_backend_stores_lists_and_filters_alerts_newest_first(
    store: AlertStore,
) -> None:
    for n, kind, severity in ((1, "anomaly", "info"), (2, "forecast", "critical"),
                              (3, "anomaly", "critical")):  # fmt: skip
        assert await store.add_alert(record(n, kind=kind, severity=severity))
    everything = await store.list_alerts(AlertQuery())
    anomalies = await store.list_alerts(AlertQuery(kind="anomaly"))
    critical = await store.list_alerts(AlertQuery(severity="critical", limit=1))
    window = await store.list_alerts(AlertQuery(since=1001.5, until=1003.0))
    assert [a.id for a in everything] == ["alt_3", "alt_2", "alt_1"]
    assert everything[2] == record(1, severity="info")  # details survive the round trip
    assert [a.id for a in anomalies] == ["alt_3", "alt_1"]
    assert [a.id for a in critical] == ["alt_3"]
    assert [a.id for a in window] == ["alt_2"]


async def test_a_dedupe_key_stores_an_alert_once(store: AlertStore) -> None:
    assert await store.add_alert(record(1, dedupe_key="budget:team:x:50"))
    assert not await store.add_alert(record(2, dedupe_key="budget:team:x:50"))
    assert await store.add_alert(record(3))
    assert await store.add_alert(record(4))  # no key: never deduplicated
    assert [a.id for a in await store.list_alerts(AlertQuery())] == ["alt_4", "alt_3", "alt_1"]


async def test_the_first_acknowledgement_stands(store: AlertStore) -> None:
    await store.add_alert(record(1))
    assert await store.acknowledge_alert("alt_1", "alice", 2000.0)
    assert not await store.acknowledge_alert("alt_1", "bob", 2001.0)
    assert not await store.acknowledge_alert("alt_nope", "bob", 2001.0)
    (alert,) = await store.list_alerts(AlertQuery(acknowledged=True))
    assert (alert.acknowledged_by, alert.acknowledged_at) == ("alice", 2000.0)
    assert await store.list_alerts(AlertQuery(acknowledged=False)) == []


async def test_a_delivery_attempt_is_claimed_once(store: AlertStore) -> None:
    await store.add_alert(record(1, delivery="pending", next_attempt_at=1001.0))
    await store.add_alert(record(2, delivery="pending", next_attempt_at=5000.0))
    due = await store.due_alerts(2000.0, 10)
    assert [a.id for a in due] == ["alt_1"]
    assert await store.claim_alert("alt_1", 0, 2060.0)
    assert not await store.claim_alert("alt_1", 0, 2060.0)  # a second replica loses the race
    assert await store.due_alerts(2000.0, 10) == []  # leased until 2060
    await store.record_delivery("alt_1", "delivered", ("h1",), None, None, 2001.0)
    (done,) = await store.list_alerts(AlertQuery(alert_id="alt_1"))
    assert (done.delivery, done.attempts, done.delivered_to, done.delivered_at) == (
        "delivered", 1, ("h1",), 2001.0)  # fmt: skip
    assert await store.due_alerts(9999.0, 10) == [await _one(store, "alt_2")]


async def _one(store: AlertStore, alert_id: str) -> AlertRecord:
    (found,) = await store.list_alerts(AlertQuery(alert_id=alert_id))
    return found


async def test_a_raised_alert_is_delivered_and_its_webhook_url_is_not_stored(
    store: AlertStore,
) -> None:
    hook, clock = Hook(), Clock()
    alerts = feed(store, clock, hook)
    raised = await alerts.raise_alert("anomaly", "spend of team x is 5x its baseline",
                                      level="team", target="x", details={"ratio": 5.0},
                                      dedupe_key="anomaly:x:1")  # fmt: skip
    again = await alerts.raise_alert("anomaly", "again", dedupe_key="anomaly:x:1")
    assert await alerts.deliver_due() == 1
    assert await alerts.deliver_due() == 0
    stored = await _one(store, raised.id if raised else "")
    assert again is None
    assert [r["type"] for r in hook.received] == ["alert"]
    assert hook.received[0]["alert"]["details"] == {"ratio": 5.0}
    assert (stored.delivery, stored.attempts) == ("delivered", 1)
    assert "sekret" not in repr(stored)


async def test_a_failing_webhook_is_retried_with_doubling_backoff_then_given_up(
    store: AlertStore,
) -> None:
    hook, clock = Hook(503, 503, 503), Clock()
    alerts = feed(store, clock, hook, attempts=3, backoff_seconds=10.0)
    raised = await alerts.raise_alert("forecast", "month spend will exceed the budget")
    assert raised is not None
    waits = []
    for _ in range(3):
        assert await alerts.deliver_due() == 1
        assert await alerts.deliver_due() == 0  # not due again before its backoff
        state = await _one(store, raised.id)
        if state.next_attempt_at is not None:
            waits.append(state.next_attempt_at - clock.now)
            clock.now = state.next_attempt_at
    assert waits == [10.0, 20.0]
    assert (state.delivery, state.attempts, alerts.failed) == ("failed", 3, 1)
    assert len(hook.received) == 3


async def test_a_webhook_refusing_the_payload_is_not_retried(store: AlertStore) -> None:
    hook, clock = Hook(400), Clock()
    alerts = feed(store, clock, hook)
    raised = await alerts.raise_alert("anomaly", "x")
    assert raised is not None
    await alerts.deliver_due()
    assert (await _one(store, raised.id)).delivery == "delivered"
    assert len(hook.received) == 1


async def test_a_pending_delivery_survives_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    first = SQLiteStore(str(tmp_path / "a.db"))
    await first.open()
    down = Hook(502)
    raised = await feed(first, clock, down).raise_alert("anomaly", "x")
    await feed(first, clock, down).deliver_due()
    await first.aclose()
    clock.now += 3600
    second = SQLiteStore(str(tmp_path / "a.db"))
    await second.open()
    up = Hook()
    try:
        assert await feed(second, clock, up).deliver_due() == 1
        stored = await _one(second, raised.id if raised else "")
    finally:
        await second.aclose()
    assert len(down.received) == 1 and len(up.received) == 1
    assert (stored.delivery, stored.attempts) == ("delivered", 2)


async def test_two_feeds_on_one_store_deliver_an_alert_once(store: AlertStore) -> None:
    hook, clock = Hook(), Clock()
    one, two = feed(store, clock, hook), feed(store, clock, hook)
    await one.raise_alert("anomaly", "x")
    assert await one.deliver_due() + await two.deliver_due() == 1
    assert len(hook.received) == 1


async def test_a_budget_alert_from_the_gate_is_stored_once_per_window(store: AlertStore) -> None:
    clock = Clock()
    alerts = feed(store, clock)
    crossing = Alert("team", "research/agents", 0.8, 400.0, 500.0, "month", "block", "202701")
    await alerts(crossing)
    await alerts(crossing)  # a restarted process with fresh counters crosses it again
    await alerts(Alert("team", "research/agents", 0.8, 400.0, 500.0, "month", "block", "202702"))
    listed = await alerts.alerts(AlertQuery(kind="budget_threshold"))
    assert len(listed) == 2
    assert listed[0].severity == "warning" and listed[0].delivery == "none"
    assert (
        listed[0].message
        == "budget of team research/agents reached 80% ($400.00 of $500.00 this month)"
    )
    assert listed[0].details["threshold"] == 0.8


async def test_acknowledging_is_audited_once_and_needs_a_writer(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "a.db"))
    await store.open()
    try:
        clock = Clock()
        alerts = feed(store, clock)
        raised = await alerts.raise_alert("anomaly", "x")
        assert raised is not None
        with pytest.raises(PermissionDenied):
            await alerts.acknowledge(Actor("key_f", "finance"), raised.id)
        first = await alerts.acknowledge(ADMIN, raised.id)
        second = await alerts.acknowledge(Actor("key_other", "admin"), raised.id)
        with pytest.raises(NotFound):
            await alerts.acknowledge(ADMIN, "alt_nope")
        events = await AuditLog(store).events(AuditQuery())
    finally:
        await store.aclose()
    assert first.acknowledged_by == second.acknowledged_by == "key_admin"
    assert [(e.action, e.object) for e in events][-1:] == [
        ("alert.acknowledge", f"alert:{raised.id}")
    ]
    assert sum(e.action == "alert.acknowledge" for e in events) == 1


async def test_a_circuit_tripping_raises_one_alert_until_it_closes_again(
    store: AlertStore,
) -> None:
    alerts = feed(store, Clock())
    circuits = CircuitAlerts(MemoryCircuitStore(), alerts)
    policy = Circuit(failures=2, window_seconds=30, open_seconds=10)
    await circuits.record("sim/m", False, policy, 100.0)
    assert await alerts.alerts(AlertQuery()) == []
    await circuits.record("sim/m", False, policy, 101.0)  # trips
    await circuits.record("sim/m", False, policy, 102.0)  # a straggler while open
    assert await circuits.admit("sim/m", policy, 112.0)  # the half-open probe…
    await circuits.record("sim/m", False, policy, 112.5)  # …fails: open again, no new alert
    assert len(await alerts.alerts(AlertQuery(kind="circuit_open"))) == 1
    assert await circuits.admit("sim/m", policy, 123.0)
    await circuits.record("sim/m", True, policy, 123.5)  # closed
    for now in (130.0, 131.0):
        await circuits.record("sim/m", False, policy, now)  # trips again
    tripped = await alerts.alerts(AlertQuery(kind="circuit_open"))
    assert [(a.level, a.target, a.severity) for a in tripped] == [
        ("target", "sim/m", "warning")
    ] * 2
    assert "circuit of sim/m opened after 2 failures within 30s" in tripped[0].message
