"""The report, session and reconciliation endpoints: roles, CSV, bad input, real traffic."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.tracing import Span
from tests.adapters.admin.reports_support import Stored
from tests.adapters.admin.support import Gateway, running

PRICES = [
    {"provider": "sim", "model": "sim-1", "input_per_1m": 1.0, "output_per_1m": 2.0},
    {"provider": "sim", "model": "sim-2", "input_per_1m": 3.0, "output_per_1m": 4.0},
]


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[tuple[Gateway, Stored]]:
    async with running(tmp_path / "agentgw.db", prices=PRICES) as gateway:
        stored = Stored()
        gateway.app.state.gateway.spans.add_sink(stored)
        yield gateway, stored


async def traffic(gw: Gateway, stored: Stored) -> dict[str, dict[str, Any]]:
    keys = {
        "a": await gw.create_key(name="a", org_path="research/nlp/chat"),
        "b": await gw.create_key(name="b", org_path="research/vision/ocr"),
        "c": await gw.create_key(name="c", org_path="finance/ledger/close"),
    }
    calls = 0
    for name, model, times in (
        ("a", "sim", 3),
        ("b", "sim-b", 2),
        ("c", "sim", 1),
        ("a", "sim-b", 1),
    ):
        for _ in range(times):
            reply = await gw.chat(keys[name]["key"], model, **{"x-session-id": f"s-{name}"})
            assert reply.status_code == 200, reply.text
            calls += 1
    await stored.wait_for(calls)
    return keys


@pytest.mark.anyio
async def test_finance_reads_reports_and_security_may_not(gw: tuple[Gateway, Stored]) -> None:
    g, stored = gw
    keys = await traffic(g, stored)
    finance = (await g.create_key(name="fin", role="finance"))["key"]
    security = (await g.create_key(name="sec", role="security"))["key"]
    reply = await g.admin("GET", "/admin/reports/spend?group_by=team,model", key=finance)
    assert reply.status_code == 200, reply.text
    rows = {(r["team"], r["model"]): r for r in reply.json()["data"]}
    assert rows[("research/nlp", "sim")]["requests"] == 3
    assert rows[("research/vision", "sim-b")]["requests"] == 2
    assert sum(r["requests"] for r in rows.values()) == 7
    assert all(r["cost_usd"] > 0 for r in rows.values())
    top = await g.admin("GET", "/admin/reports/top?n=1", key=finance)
    assert [r["key"] for r in top.json()["data"]] in ([keys["a"]["id"]], [keys["b"]["id"]])
    denied = await g.admin("GET", "/admin/reports/spend", key=security)
    assert denied.status_code == 403 and denied.json()["error"]["type"]
    user = await g.admin("GET", "/admin/reports/spend", key=keys["a"]["key"])
    assert user.status_code == 403


@pytest.mark.anyio
async def test_csv_export_matches_the_json_report(gw: tuple[Gateway, Stored]) -> None:
    g, stored = gw
    await traffic(g, stored)
    path = "/admin/reports/spend?group_by=key,upstream_model&bucket=day"
    data = (await g.admin("GET", path)).json()["data"]
    text = (await g.admin("GET", path + "&format=csv")).text
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert len(parsed) == len(data) > 0
    for row, want in zip(parsed, data, strict=True):
        assert row["key"] == want["key"] and row["bucket"] == want["bucket"]
        assert int(row["requests"]) == want["requests"]
        assert float(row["cost_usd"]) == pytest.approx(want["cost_usd"])


@pytest.mark.anyio
async def test_bad_report_parameters_get_a_clear_422(gw: tuple[Gateway, Stored]) -> None:
    g, _ = gw
    for query, param in (
        ("group_by=colour", "group_by"),
        ("bucket=week", "bucket"),
        ("since=someday", "since"),
        ("shoe_size=9", "shoe_size"),
        ("format=xml", "format"),
    ):
        reply = await g.admin("GET", f"/admin/reports/spend?{query}")
        assert reply.status_code == 422, query
        assert reply.json()["error"]["param"] == param
    bad_month = await g.admin("GET", "/admin/reports/chargeback?month=2026-13")
    assert bad_month.status_code == 422


@pytest.mark.anyio
async def test_session_tree_and_reconciliation_over_real_calls(gw: tuple[Gateway, Stored]) -> None:
    g, stored = gw
    await traffic(g, stored)
    security = (await g.create_key(name="sec", role="security"))["key"]
    chain = await g.admin("GET", "/admin/sessions/s-a", key=security)
    assert chain.status_code == 200, chain.text
    assert chain.json()["totals"]["calls"] == 4
    assert (await g.admin("GET", "/admin/sessions/none")).status_code == 404
    day = (await g.admin("GET", "/admin/reports/spend?group_by=upstream_model&bucket=day")).json()
    lines = ["date,model,cost"] + [
        f"{r['bucket'][:10]},{r['upstream_model']},{r['cost_usd']}" for r in day["data"]
    ]
    reply = await g.admin(
        "POST", "/admin/reconciliations", json={"provider": "sim", "csv": "\n".join(lines)}
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()["differences"] == 0 and len(reply.json()["rows"]) == 2
    kept = (await g.admin("GET", "/admin/reconciliations")).json()["data"]
    assert [r["id"] for r in kept] == [reply.json()["id"]] and kept[0]["provider"] == "sim"
    again = await g.admin("GET", f"/admin/reconciliations/{kept[0]['id']}")
    assert again.json()["rows"] == reply.json()["rows"]
    assert (await g.admin("GET", "/admin/reconciliations/rec_nope")).status_code == 404
    for body in ({"provider": "sim"}, {"provider": "sim", "csv": "model,cost\nx,1"}, [1]):
        refused = await g.admin("POST", "/admin/reconciliations", json=body)
        assert refused.status_code in (400, 422), body
    assert len((await g.admin("GET", "/admin/reconciliations")).json()["data"]) == 1


@pytest.mark.anyio
async def test_a_self_hosted_target_is_charged_for_its_gpu_time(tmp_path: Path) -> None:
    gpu = [{"provider": "sim", "model": "sim-1", "per_gpu_second": 3.6}]  # USD per GPU-second
    async with running(tmp_path / "gpu.db", prices=gpu) as g:
        stored = Stored()
        g.app.state.gateway.spans.add_sink(stored)
        key = await g.create_key(name="gpu")
        assert (await g.chat(key["key"])).status_code == 200
        await stored.wait_for(1)
        [(cost, upstream_ms)] = g.rows("SELECT cost_usd, upstream_ms FROM spans")
        assert upstream_ms > 0 and cost == pytest.approx(upstream_ms / 1000 * 3.6)
        listing = (await g.admin("GET", "/admin/prices")).json()["data"]
        assert [(p["model"], p["per_gpu_second"], p["current"]) for p in listing] == [
            ("sim-1", 3.6, True)
        ]


def call(n: int, at: float, key: str, cost: float) -> Span:
    return Span(f"req_{n}", f"{n:016x}", f"{n:032x}", at, key_id=key,
                org_path="research/agents/demo", cost_usd=cost)  # fmt: skip


@pytest.mark.anyio
async def test_a_spend_spike_through_the_gateways_span_writer_raises_one_stored_alert(
    tmp_path: Path,
) -> None:
    anomaly = {"anomaly": {"bucket_seconds": 60, "min_buckets": 12}}
    async with running(tmp_path / "spike.db", alerts=anomaly) as g:
        stored = Stored()
        writer = g.app.state.gateway.spans
        writer.add_sink(stored)
        t0, n = 1_767_225_600.0, 0
        for minute in range(20):  # the baseline: three small calls a minute for two keys
            for key in ("key_a", "key_b"):
                for i in range(3):
                    n += 1
                    cost = 0.001 + 0.0001 * ((minute * 7 + i) % 5)
                    await writer.submit(call(n, t0 + minute * 60 + i, key, cost))
        for i in range(8):  # minute 20: key_a spends ten times its usual
            n += 1
            await writer.submit(call(n, t0 + 1200 + i, "key_a", 0.01))
        await stored.wait_for(n)
        alerts = (await g.admin("GET", "/admin/alerts")).json()["data"]
        anomalies = [a for a in alerts if a["kind"].startswith("anomaly_")]
        assert [(a["kind"], a["level"], a["target"]) for a in anomalies] == [
            ("anomaly_spend", "key", "key_a")
        ]
