"""`/admin/audit`: one event per change with its exact before and after; tampering shows."""

from __future__ import annotations

import csv
import io
import sqlite3
from typing import Any

import pytest

from core.access import hash_secret
from tests.adapters.admin.support import Gateway

pytestmark = pytest.mark.anyio

Expected = tuple[str, str, dict[str, Any] | None, dict[str, Any] | None]


def key_snapshot(view: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in view.items() if k not in ("state", "key")}


def party_snapshot(view: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in view.items() if k != "last_seen"}


class Recorder:
    """Runs admin calls and notes the event each successful change must leave."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.expected: list[Expected] = []
        self.secrets: list[str] = []

    async def change(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        action: str,
        obj: str,
        before: dict[str, Any] | None,
        snapshot: Any = lambda view: view,
        deleting: bool = False,
    ) -> dict[str, Any]:
        resp = await self.gw.admin(method, path, json=body)
        assert resp.status_code in (200, 201), resp.text
        view: dict[str, Any] = resp.json()
        if "key" in view:
            self.secrets.append(view["key"])
        self.expected.append((action, obj, before, None if deleting else snapshot(view)))
        return view


async def run_every_kind_of_change(gw: Gateway) -> Recorder:
    r = Recorder(gw)
    k = await r.change(
        "POST",
        "/admin/keys",
        {"name": "alice", "org_path": "research/agents/demo", "scopes": {"models": ["sim"]}},
        "key.create",
        "",
        None,
        key_snapshot,
    )
    obj, one = f"key:{k['id']}", f"/admin/keys/{k['id']}"
    r.expected[-1] = (r.expected[-1][0], obj, *r.expected[-1][2:])
    k2 = await r.change(
        "PATCH",
        one,
        {"name": "alice2", "scopes": {"egress": "private"}},
        "key.update",
        obj,
        key_snapshot(k),
        key_snapshot,
    )
    k3 = await r.change(
        "POST",
        one + "/rotate",
        {"grace_seconds": 60},
        "key.rotate",
        obj,
        key_snapshot(k2),
        key_snapshot,
    )
    await r.change("DELETE", one, None, "key.revoke", obj, key_snapshot(k3), key_snapshot)

    research = await r.change(
        "POST",
        "/admin/org-units",
        {"path": "research"},
        "org_unit.create",
        "org_unit:research",
        None,
    )
    agents = await r.change(
        "POST",
        "/admin/org-units",
        {"path": "research/agents"},
        "org_unit.create",
        "org_unit:research/agents",
        None,
    )
    await r.change(
        "PATCH",
        "/admin/org-units/research",
        {"title": "Research", "tags": {"a": "b"}},
        "org_unit.update",
        "org_unit:research",
        research,
    )
    await r.change(
        "DELETE",
        "/admin/org-units/research/agents",
        None,
        "org_unit.delete",
        "org_unit:research/agents",
        agents,
        deleting=True,
    )

    for kind, ident in (("customer", "acme"), ("app", "helpdesk"), ("agent", "planner/v2")):
        many = f"/admin/{kind}s"
        created = await r.change(
            "POST",
            many,
            {"id": ident, "name": ident.upper()},
            f"{kind}.create",
            f"{kind}:{ident}",
            None,
            party_snapshot,
        )
        renamed = await r.change(
            "PATCH",
            f"{many}/{ident}",
            {"org_path": "research"},
            f"{kind}.update",
            f"{kind}:{ident}",
            party_snapshot(created),
            party_snapshot,
        )
        await r.change(
            "DELETE",
            f"{many}/{ident}",
            None,
            f"{kind}.delete",
            f"{kind}:{ident}",
            party_snapshot(renamed),
            deleting=True,
        )
    return r


async def test_every_admin_change_appears_once_with_its_exact_before_and_after(
    gw: Gateway,
) -> None:
    r = await run_every_kind_of_change(gw)
    # Reads and refused requests leave no event.
    await gw.admin("GET", "/admin/keys")
    await gw.admin("POST", "/admin/org-units", json={"path": "research"})  # duplicate
    await gw.admin("PATCH", "/admin/keys/key_missing", json={"name": "x"})
    resp = await gw.admin("GET", "/admin/audit")
    events = resp.json()["data"]
    got = [(e["action"], e["object"], e["before"], e["after"]) for e in events]
    assert got == r.expected
    assert [e["id"] for e in events] == list(range(1, len(r.expected) + 1))
    for e in events:
        assert (e["actor"], e["actor_role"], e["source"]) == (
            "bootstrap-admin",
            "admin",
            "127.0.0.1",
        )
    verify = (await gw.admin("GET", "/admin/audit/verify")).json()
    assert verify == {
        "intact": True,
        "events": len(events),
        "first_bad_event": None,
        "reason": None,
    }


async def test_no_secret_or_hash_of_one_ever_reaches_the_audit_log(gw: Gateway) -> None:
    r = await run_every_kind_of_change(gw)
    dump = "\n".join(str(row) for row in gw.rows("SELECT * FROM audit_events"))
    assert len(r.secrets) == 2
    for secret in r.secrets:
        assert secret not in dump
        assert hash_secret(secret) not in dump


async def test_audit_queries_filter_and_export_as_csv(gw: Gateway) -> None:
    r = await run_every_kind_of_change(gw)
    key_obj = r.expected[0][1]

    async def actions(**params: str) -> list[str]:
        resp = await gw.admin("GET", "/admin/audit", params=params)
        assert resp.status_code == 200, resp.text
        return [e["action"] for e in resp.json()["data"]]

    assert await actions(object=key_obj) == ["key.create", "key.update", "key.rotate", "key.revoke"]
    assert await actions(action="org_unit.*") == ["org_unit.create"] * 2 + [
        "org_unit.update",
        "org_unit.delete",
    ]
    assert await actions(actor="bootstrap-admin", action="agent.delete") == ["agent.delete"]
    assert await actions(actor="cli:*") == []
    assert await actions(since="2000-01-01T00:00:00Z", limit="2") == ["key.create", "key.update"]
    assert await actions(until="2000-01-01") == []
    assert await actions(after_id="15") == ["agent.update", "agent.delete"]
    resp = await gw.admin("GET", "/admin/audit", params={"format": "csv", "action": "key.*"})
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert [row["action"] for row in rows] == [
        "key.create",
        "key.update",
        "key.rotate",
        "key.revoke",
    ]
    assert rows[0]["hash"] and rows[1]["prev_hash"] == rows[0]["hash"]


@pytest.mark.parametrize(
    ("tamper", "first_bad"),
    [
        ('UPDATE audit_events SET "after" = \'{"name":"forged"}\' WHERE id = 3', 3),
        ("UPDATE audit_events SET actor = 'someone-else' WHERE id = 1", 1),
        ("DELETE FROM audit_events WHERE id = 5", 5),
        ("DELETE FROM audit_events WHERE id = (SELECT max(id) FROM audit_events)", 17),
        (
            "UPDATE audit_events SET id = -id WHERE id IN (2, 3);"
            "UPDATE audit_events SET id = 5 + id WHERE id IN (-2, -3)",
            2,
        ),  # swap 2 and 3
    ],
)
async def test_a_row_edited_in_the_database_is_named_by_verify(
    gw: Gateway, tamper: str, first_bad: int
) -> None:
    r = await run_every_kind_of_change(gw)
    assert len(r.expected) == 17
    with sqlite3.connect(gw.db) as raw:
        raw.executescript(tamper)
    raw.close()
    report = (await gw.admin("GET", "/admin/audit/verify")).json()
    assert report["intact"] is False
    assert report["first_bad_event"] == first_bad, report
    assert str(first_bad) in report["reason"]
