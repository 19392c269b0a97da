"""`POST /admin/prices` (audited, stored, applied at once, kept over a restart) and the raw CSV
body of `POST /admin/reconciliations` with its 4xx answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.adapters.admin.reports_support import Stored
from tests.adapters.admin.support import ROOT, Gateway, running

pytestmark = pytest.mark.anyio
PRICES = [{"provider": "sim", "model": "sim-1", "input_per_1m": 1.0, "output_per_1m": 2.0}]


async def last_cost(g: Gateway, stored: Stored, key: str, n: int) -> float:
    assert (await g.chat(key)).status_code == 200
    await stored.wait_for(n)
    [(cost, inp, out)] = g.rows(
        "SELECT cost_usd, input_tokens, output_tokens FROM spans ORDER BY id DESC LIMIT 1"
    )
    assert inp > 0 and out > 0
    return float(cost)


async def test_a_price_added_through_the_api_applies_at_once_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    db = tmp_path / "prices.db"
    async with running(db, prices=PRICES) as g:
        stored = Stored()
        g.app.state.gateway.spans.add_sink(stored)
        key = (await g.create_key(name="caller"))["key"]
        before = await last_cost(g, stored, key, 1)
        [(i1, o1)] = g.rows("SELECT input_tokens, output_tokens FROM spans")
        assert before == pytest.approx((i1 * 1.0 + o1 * 2.0) / 1e6)

        added = await g.admin(
            "POST",
            "/admin/prices",
            json={"provider": "sim", "model": "sim-1", "input_per_1m": 100.0, "per_call": 0.5},
        )
        assert added.status_code == 201, added.text
        view = added.json()
        assert view["current"] is True and view["id"].startswith("price_")
        whoami = (await g.admin("GET", "/admin/whoami")).json()
        assert view["added_by"] == whoami["key_id"] and view["per_call"] == 0.5
        after = await last_cost(g, stored, key, 2)
        [(i2, _)] = g.rows("SELECT input_tokens, output_tokens FROM spans ORDER BY id DESC LIMIT 1")
        assert after == pytest.approx(i2 * 100.0 / 1e6 + 0.5)  # no output price in the new one
        # The earlier call keeps what it was charged.
        [(first,)] = g.rows("SELECT cost_usd FROM spans ORDER BY id LIMIT 1")
        assert first == pytest.approx(before)
        events = (await g.admin("GET", "/admin/audit?action=price.add")).json()["data"]
        assert [e["object"][:16] for e in events] == ["price:sim/sim-1@"]
        assert events[0]["after"]["input_per_1m"] == 100.0

    async with running(db, prices=PRICES) as g:  # a restart: the stored version is merged
        listing = (await g.admin("GET", "/admin/prices")).json()["data"]
        assert [(p["input_per_1m"], p["current"]) for p in listing] == [
            (1.0, False),
            (100.0, True),
        ]


async def test_bad_price_changes_are_refused_and_write_nothing(tmp_path: Path) -> None:
    async with running(tmp_path / "bad.db", prices=PRICES) as g:
        finance = (await g.create_key(name="fin", role="finance"))["key"]
        body = {"provider": "sim", "model": "sim-1", "input_per_1m": 5.0}
        denied = await g.admin("POST", "/admin/prices", json=body, key=finance)
        assert denied.status_code == 403
        past = await g.admin("POST", "/admin/prices", json={**body, "effective_from": "2020-01-01"})
        assert past.status_code == 422 and "in the past" in past.json()["error"]["message"]
        assert past.json()["error"]["param"] == "effective_from"
        for bad in ({**body, "input_per_1m": -1}, {**body, "colour": "red"}, {"model": "m"}):
            refused = await g.admin("POST", "/admin/prices", json=bad)
            assert refused.status_code == 422, bad
        future = {**body, "effective_from": str(g.clock() + 86400)}
        assert (await g.admin("POST", "/admin/prices", json=future)).status_code == 201
        taken = await g.admin("POST", "/admin/prices", json={**future, "input_per_1m": 7.0})
        assert taken.status_code == 409
        listing = (await g.admin("GET", "/admin/prices")).json()["data"]
        assert [(p["input_per_1m"], p["current"]) for p in listing] == [(1.0, True), (5.0, False)]
        assert g.rows("SELECT count(*) FROM price_versions") == [(1,)]
        events = (await g.admin("GET", "/admin/audit?action=price.add")).json()["data"]
        assert len(events) == 1


async def post_csv(
    g: Gateway, text: bytes, *, query: str = "?provider=sim", media: str = "text/csv"
) -> tuple[int, dict[str, object]]:
    reply = await g.client().post(
        "/admin/reconciliations" + query,
        content=text,
        headers={"authorization": f"Bearer {ROOT}", "content-type": media},
    )
    return reply.status_code, reply.json()


async def test_reconciliation_takes_a_raw_csv_body(tmp_path: Path) -> None:
    async with running(tmp_path / "csv.db", prices=PRICES) as g:
        stored = Stored()
        g.app.state.gateway.spans.add_sink(stored)
        key = (await g.create_key(name="caller"))["key"]
        for _ in range(3):
            assert (await g.chat(key)).status_code == 200
        await stored.wait_for(3)
        day = await g.admin("GET", "/admin/reports/spend?group_by=upstream_model&bucket=day")
        [row] = day.json()["data"]
        planted = row["cost_usd"] * 1.07
        text = f"date,model,cost\r\n{row['bucket'][:10]},sim-1,{planted:.12f}\r\n".encode()
        status, body = await post_csv(
            g, text, query="?provider=sim&tolerance_pct=1", media="text/csv; charset=utf-8"
        )
        assert status == 201, body
        assert body["differences"] == 1 and body["provider"] == "sim"
        rows = body["rows"]
        assert isinstance(rows, list) and rows[0]["gap_pct"] == pytest.approx(7.0, abs=0.01)

        bad_line = b"date,model,cost\n2026-01-01,sim-1,1.0\n2026-01-02,sim-1,lots\n"
        status, body = await post_csv(g, bad_line)
        assert status == 422 and "line 3" in str(body["error"]), body
        status, body = await post_csv(g, b"date,model,cost\nnot-a-date,sim-1,1\n")
        assert status == 422 and "line 2" in str(body["error"]), body
        status, body = await post_csv(g, b"date,model,cost\n2026-01-01,sim-1,\xff\n")
        assert status == 400 and "line 2" in str(body["error"]), body
        status, body = await post_csv(g, text, query="")
        assert status == 422 and "provider" in str(body["error"]), body
        status, body = await post_csv(g, text, media="application/xml")
        assert status == 415, body
        status, body = await post_csv(g, text, media="text/csv; charset=latin-1")
        assert status == 415, body
        huge = b"date,model,cost\n" + b"2026-01-01,sim-1,1\n" * 60_000
        status, body = await post_csv(g, huge)
        assert status == 413, body
        finance = (await g.create_key(name="fin", role="finance"))["key"]
        reply = await g.client().post(
            "/admin/reconciliations?provider=sim",
            content=text,
            headers={"authorization": f"Bearer {finance}", "content-type": "text/csv"},
        )
        assert reply.status_code == 201, reply.text
        kept = (await g.admin("GET", "/admin/reconciliations")).json()["data"]
        assert len(kept) == 2  # the refused ones wrote nothing
