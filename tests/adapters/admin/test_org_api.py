"""The organization through the admin API: the unit tree, parties, agents seen in traffic."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from store import SQLiteStore
from tests.adapters.admin.support import Gateway, running

pytestmark = pytest.mark.anyio


async def test_org_units_form_a_tree_listed_by_path(gw: Gateway) -> None:
    for path, title in (("research", "Research"), ("research/agents", ""), ("ops", "")):
        resp = await gw.admin("POST", "/admin/org-units", json={"path": path, "title": title})
        assert resp.status_code == 201, resp.text
    demo = await gw.admin(
        "POST", "/admin/org-units", json={"path": "research/agents/demo", "tags": {"cc": "7"}}
    )
    assert (demo.json()["level"], demo.json()["parent"]) == ("project", "research/agents")
    listed = (await gw.admin("GET", "/admin/org-units")).json()["data"]
    assert [(u["path"], u["level"]) for u in listed] == [
        ("ops", "department"),
        ("research", "department"),
        ("research/agents", "team"),
        ("research/agents/demo", "project"),
    ]
    shown = await gw.admin("GET", "/admin/org-units/research/agents/demo")
    assert shown.json()["tags"] == {"cc": "7"}
    patched = await gw.admin("PATCH", "/admin/org-units/ops", json={"title": "Operations"})
    assert patched.json()["title"] == "Operations"
    assert (await gw.admin("DELETE", "/admin/org-units/ops")).status_code == 200
    exported = await gw.admin("GET", "/admin/org-units", params={"format": "csv"})
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["path"] for r in rows] == ["research", "research/agents", "research/agents/demo"]


@pytest.mark.parametrize("kind", ["customer", "app", "agent"])
async def test_customers_apps_and_agents_have_the_same_lifecycle(gw: Gateway, kind: str) -> None:
    many = f"/admin/{kind}s"
    ident = "acme/eu" if kind == "agent" else "acme"
    created = await gw.admin("POST", many, json={"id": ident, "name": "Acme", "tags": {"t": "1"}})
    assert created.status_code == 201, created.text
    assert (created.json()["kind"], created.json()["org_path"]) == (kind, None)
    moved = await gw.admin("PATCH", f"{many}/{ident}", json={"org_path": "sales/emea"})
    assert moved.json()["org_path"] == "sales/emea"
    cleared = await gw.admin("PATCH", f"{many}/{ident}", json={"org_path": None})
    assert cleared.json()["org_path"] is None
    assert [p["id"] for p in (await gw.admin("GET", many)).json()["data"]] == [ident]
    assert (await gw.admin("DELETE", f"{many}/{ident}")).status_code == 200
    assert (await gw.admin("GET", f"{many}/{ident}")).status_code == 404


async def test_an_agent_seen_in_traffic_registers_itself_and_can_be_named(tmp_path: Path) -> None:
    db = tmp_path / "agentgw.db"
    async with running(db) as gw:
        key = (await gw.create_key(name="app"))["key"]
        for _ in range(3):
            resp = await gw.chat(key, **{"x-agent-id": "planner@v2"})
            assert resp.status_code == 200
    # The spans (and with them the sighting) are written behind; the lifespan flushed them.
    store = SQLiteStore(str(db))
    await store.open()
    try:
        agent = await store.get_party("agent", "planner@v2")
    finally:
        await store.aclose()
    assert agent is not None
    assert (agent.org_path, agent.name) == ("research/agents/demo", "")
    assert agent.last_seen is not None and agent.last_seen >= agent.created_at
    async with running(db) as gw:
        named = await gw.admin("PATCH", "/admin/agents/planner@v2", json={"name": "Planner"})
        assert named.status_code == 200, named.text
        assert named.json()["name"] == "Planner"
        events = (await gw.admin("GET", "/admin/audit", params={"object": "agent:*"})).json()
        assert [e["action"] for e in events["data"]] == ["agent.update"]
