"""`/admin/keys` in process: the lifecycle, rotation grace, revocation, scopes, exports."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from core.access import hash_secret
from tests.adapters.admin.support import Gateway

pytestmark = pytest.mark.anyio


async def test_a_created_key_shows_its_secret_once_and_stores_only_the_hash(gw: Gateway) -> None:
    created = await gw.create_key(name="alice", tags={"cost-center": "42"})
    secret = created["key"]
    assert secret.startswith("agw_") and created["prefix"] == secret[:12]
    assert (created["state"], created["role"], created["tags"]) == (
        "active",
        "user",
        {"cost-center": "42"},
    )
    shown = (await gw.admin("GET", f"/admin/keys/{created['id']}")).json()
    listed = (await gw.admin("GET", "/admin/keys")).json()["data"]
    assert "key" not in shown and all("key" not in k for k in listed)
    assert shown == {k: v for k, v in created.items() if k != "key"}
    dump = "\n".join(str(row) for row in gw.rows("SELECT * FROM keys"))
    assert secret not in dump and hash_secret(secret) in dump
    assert (await gw.chat(secret)).status_code == 200


async def test_during_the_grace_period_both_secrets_work_and_after_it_only_the_new_one(
    gw: Gateway,
) -> None:
    created = await gw.create_key(name="rotating")
    old = created["key"]
    assert (await gw.chat(old)).status_code == 200
    resp = await gw.admin(
        "POST", f"/admin/keys/{created['id']}/rotate", json={"grace_seconds": 600}
    )
    assert resp.status_code == 200, resp.text
    rotated = resp.json()
    new = rotated["key"]
    assert rotated["id"] == created["id"] and new != old
    assert (rotated["previous_prefix"], rotated["state"]) == (old[:12], "expiring")
    assert (await gw.chat(old)).status_code == 200
    assert (await gw.chat(new)).status_code == 200
    gw.clock.advance(600)
    refused = await gw.chat(old)
    assert refused.status_code == 401
    assert "grace period is over" in refused.json()["error"]["message"]
    assert (await gw.chat(new)).status_code == 200


async def test_a_rotation_without_grace_stops_the_old_secret_on_the_next_request(
    gw: Gateway,
) -> None:
    created = await gw.create_key(name="at-once")
    assert (await gw.chat(created["key"])).status_code == 200  # cached
    resp = await gw.admin("POST", f"/admin/keys/{created['id']}/rotate", json={"grace_seconds": 0})
    assert (await gw.chat(created["key"])).status_code == 401
    assert (await gw.chat(resp.json()["key"])).status_code == 200


async def test_revocation_takes_effect_on_the_very_next_request(gw: Gateway) -> None:
    created = await gw.create_key(name="doomed")
    assert (await gw.chat(created["key"])).status_code == 200  # the lookup is cached now
    revoked = await gw.admin("DELETE", f"/admin/keys/{created['id']}")
    assert revoked.status_code == 200
    assert (revoked.json()["status"], revoked.json()["state"]) == ("revoked", "revoked")
    resp = await gw.chat(created["key"])
    assert resp.status_code == 401
    assert "revoked" in resp.json()["error"]["message"]


async def test_a_key_limited_to_one_model_is_refused_another_and_lists_only_its_own(
    gw: Gateway,
) -> None:
    narrow = (await gw.create_key(name="narrow", scopes={"models": ["sim"]}))["key"]
    assert (await gw.chat(narrow, "sim")).status_code == 200
    refused = await gw.chat(narrow, "sim-b")
    assert refused.status_code == 403
    assert "scope 'models'" in refused.json()["error"]["message"]
    models = await gw.client().get("/v1/models", headers={"authorization": f"Bearer {narrow}"})
    assert [m["id"] for m in models.json()["data"]] == ["sim"]


async def test_an_address_outside_the_allowlist_is_refused(gw: Gateway) -> None:
    key = (await gw.create_key(name="office", scopes={"ip_allowlist": ["10.0.0.0/8"]}))["key"]
    assert (await gw.chat(key, address="10.20.30.40")).status_code == 200
    refused = await gw.chat(key, address="127.0.0.1")
    assert refused.status_code == 403
    assert "scope 'ip_allowlist'" in refused.json()["error"]["message"]


async def test_a_modality_scope_refuses_other_modalities(gw: Gateway) -> None:
    key = (await gw.create_key(name="chat-only", scopes={"modalities": ["chat"]}))["key"]
    resp = await gw.client().post(
        "/v1/embeddings",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "sim", "input": "hello"},
    )
    assert resp.status_code == 403
    assert "scope 'modalities'" in resp.json()["error"]["message"]


async def test_a_key_stops_at_its_expiry(gw: Gateway) -> None:
    expiry = datetime.fromtimestamp(gw.clock.now, UTC) + timedelta(hours=1)
    created = await gw.create_key(name="temp", expires_at=expiry.isoformat())
    assert created["expires_at"].startswith(expiry.strftime("%Y-%m-%dT%H:%M"))
    assert created["state"] == "expiring"  # within the warning window
    assert (await gw.chat(created["key"])).status_code == 200
    gw.clock.advance(3600.001)  # the expiry is kept to the microsecond
    assert (await gw.chat(created["key"])).status_code == 401
    shown = (await gw.admin("GET", f"/admin/keys/{created['id']}")).json()
    assert shown["state"] == "retired"


async def test_an_update_changes_only_what_it_names_and_applies_at_once(gw: Gateway) -> None:
    created = await gw.create_key(
        name="tuned", scopes={"models": ["sim"], "egress": "public", "tools": ["fs.*"]}
    )
    assert (await gw.chat(created["key"], "sim-b")).status_code == 403
    resp = await gw.admin(
        "PATCH",
        f"/admin/keys/{created['id']}",
        json={"scopes": {"models": ["sim*"]}, "tags": {"env": "prod"}},
    )
    assert resp.status_code == 200, resp.text
    updated = resp.json()
    assert updated["scopes"]["models"] == ["sim*"]
    assert updated["scopes"]["tools"] == ["fs.*"]
    assert (updated["tags"], updated["name"]) == ({"env": "prod"}, "tuned")
    assert (await gw.chat(created["key"], "sim-b")).status_code == 200


async def test_an_update_that_changes_nothing_records_nothing(gw: Gateway) -> None:
    created = await gw.create_key(name="same")
    before = gw.state()
    resp = await gw.admin("PATCH", f"/admin/keys/{created['id']}", json={"name": "same"})
    assert resp.status_code == 200
    assert gw.state() == before


async def test_listings_filter_and_export_as_csv(gw: Gateway) -> None:
    a = await gw.create_key(name="a", org_path="research/agents/demo")
    b = await gw.create_key(name="b", org_path="sales/emea")
    c = await gw.create_key(name="c", org_path="", role="finance")
    await gw.admin("DELETE", f"/admin/keys/{b['id']}")

    async def ids(**params: str) -> list[str]:
        resp = await gw.admin("GET", "/admin/keys", params=params)
        assert resp.status_code == 200, resp.text
        return [k["id"] for k in resp.json()["data"]]

    assert await ids() == [a["id"], b["id"], c["id"]]
    assert await ids(org_path="research") == [a["id"]]
    assert await ids(role="finance") == [c["id"]]
    assert await ids(state="revoked") == [b["id"]]
    resp = await gw.admin("GET", "/admin/keys", params={"format": "csv"})
    assert resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert [r["name"] for r in rows] == ["a", "b", "c"]
    assert rows[0]["scopes"].startswith("{")
    for created in (a, b, c):
        assert created["key"] not in resp.text


async def test_a_team_owner_key_needs_a_team(gw: Gateway) -> None:
    resp = await gw.admin(
        "POST", "/admin/keys", json={"name": "owner", "org_path": "", "role": "team-owner"}
    )
    assert resp.status_code == 422
    assert "org_path" in resp.json()["error"]["message"]
