"""Roles on the admin API, and the wall between admin-API keys and the data plane."""

from __future__ import annotations

import pytest

from tests.adapters.admin.support import ROOT, Gateway

pytestmark = pytest.mark.anyio


async def role_key(gw: Gateway, role: str, org_path: str = "") -> str:
    created = await gw.create_key(name=f"{role}-{org_path or 'all'}", role=role, org_path=org_path)
    secret: str = created["key"]
    return secret


async def test_a_finance_key_cannot_create_keys_but_reads_the_organization(gw: Gateway) -> None:
    finance = await role_key(gw, "finance")
    before = gw.state()
    resp = await gw.admin(
        "POST", "/admin/keys", key=finance, json={"name": "x", "org_path": "a/b/c"}
    )
    assert resp.status_code == 403
    assert "Role 'finance' may not" in resp.json()["error"]["message"]
    assert gw.state() == before
    assert (await gw.admin("GET", "/admin/keys", key=finance)).status_code == 403
    assert (await gw.admin("GET", "/admin/audit", key=finance)).status_code == 403
    assert (await gw.admin("GET", "/admin/org-units", key=finance)).status_code == 200
    assert (await gw.admin("GET", "/admin/customers", key=finance)).status_code == 200


async def test_a_security_key_reads_keys_and_audit_but_changes_nothing(gw: Gateway) -> None:
    security = await role_key(gw, "security")
    assert (await gw.admin("GET", "/admin/audit", key=security)).status_code == 200
    assert (await gw.admin("GET", "/admin/audit/verify", key=security)).status_code == 200
    assert (await gw.admin("GET", "/admin/keys", key=security)).status_code == 200
    before = gw.state()
    for method, path, body in (
        ("POST", "/admin/keys", {"name": "x", "org_path": "a/b/c"}),
        ("POST", "/admin/org-units", {"path": "research"}),
        ("POST", "/admin/customers", {"id": "acme"}),
    ):
        resp = await gw.admin(method, path, key=security, json=body)
        assert resp.status_code == 403, (path, resp.text)
    assert gw.state() == before


async def test_a_team_owner_manages_its_own_teams_keys_only(gw: Gateway) -> None:
    owner = await role_key(gw, "team-owner", "research/agents")
    mine = await gw.admin(
        "POST", "/admin/keys", key=owner, json={"name": "mine", "org_path": "research/agents/demo"}
    )
    assert mine.status_code == 201, mine.text
    theirs = await gw.create_key(name="theirs", org_path="research/agentsX/demo")
    admin_in_team = await gw.create_key(name="boss", org_path="research/agents", role="admin")
    before = gw.state()
    for key in (theirs, admin_in_team):
        one = f"/admin/keys/{key['id']}"
        for method, path, body in (
            ("GET", one, None),
            ("PATCH", one, {"name": "hijacked"}),
            ("DELETE", one, None),
            ("POST", one + "/rotate", {"grace_seconds": 0}),
        ):
            resp = await gw.admin(method, path, key=owner, json=body)
            assert resp.status_code == 403, (method, path, resp.text)
    for body in (
        {"name": "outside", "org_path": "sales/emea"},
        {"name": "sneaky-admin", "org_path": "research/agents/demo", "role": "admin"},
    ):
        assert (await gw.admin("POST", "/admin/keys", key=owner, json=body)).status_code == 403
    move = await gw.admin(
        "PATCH", f"/admin/keys/{mine.json()['id']}", key=owner, json={"org_path": "sales"}
    )
    assert move.status_code == 403
    assert gw.state() == before
    listed = (await gw.admin("GET", "/admin/keys", key=owner)).json()["data"]
    assert [k["name"] for k in listed] == ["mine"]
    rotate = await gw.admin(
        "POST", f"/admin/keys/{mine.json()['id']}/rotate", key=owner, json={"grace_seconds": 0}
    )
    assert rotate.status_code == 200


async def test_the_admin_key_cannot_call_models(gw: Gateway) -> None:
    for secret in (ROOT, await role_key(gw, "admin")):
        resp = await gw.chat(secret)
        assert resp.status_code == 403
        error = resp.json()["error"]
        assert error["code"] == "permission_denied"
        assert "cannot call models" in error["message"]
        models = await gw.client().get("/v1/models", headers={"authorization": f"Bearer {secret}"})
        assert models.status_code == 403


@pytest.mark.parametrize("role", ["security", "finance", "team-owner"])
async def test_no_admin_api_role_can_call_models(gw: Gateway, role: str) -> None:
    secret = await role_key(gw, role, "research/agents" if role == "team-owner" else "")
    assert (await gw.chat(secret)).status_code == 403


async def test_a_data_plane_key_cannot_use_the_admin_api(gw: Gateway) -> None:
    user = (await gw.create_key(name="app"))["key"]
    resp = await gw.admin("GET", "/admin/keys", key=user)
    assert resp.status_code == 403
    assert "data-plane key" in resp.json()["error"]["message"]
    assert (await gw.admin("GET", "/admin/whoami", key=user)).status_code == 403


async def test_a_created_admin_key_acts_under_its_own_id(gw: Gateway) -> None:
    admin = await gw.create_key(name="ops", role="admin", org_path="")
    me = (await gw.admin("GET", "/admin/whoami", key=admin["key"])).json()
    assert (me["key_id"], me["role"]) == (admin["id"], "admin")
    created = await gw.create_key(key=admin["key"], name="by-ops")
    events = await gw.admin("GET", "/admin/audit", params={"object": f"key:{created['id']}"})
    (event,) = events.json()["data"]
    assert (event["actor"], event["actor_role"], event["source"]) == (
        admin["id"],
        "admin",
        "127.0.0.1",
    )


async def test_missing_or_wrong_keys_are_401_on_the_admin_api(gw: Gateway) -> None:
    assert (await gw.client().get("/admin/keys")).status_code == 401
    assert (await gw.admin("GET", "/admin/keys", key="agw_wrong")).status_code == 401
