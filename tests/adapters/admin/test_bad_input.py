"""Bad input to every admin endpoint: a 4xx with a clear message, and nothing changed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.adapters.admin.support import Gateway, running

pytestmark = pytest.mark.anyio

PAST = "2001-01-01T00:00:00Z"
FUTURE = "2999-01-01T00:00:00Z"
KEY = {"name": "new", "org_path": "research/agents/demo"}

# (method, path, body, status, words the message must hold). {E} is an active key's id, {R} a
# revoked one's; bytes bodies are sent raw.
CASES: list[tuple[str, str, Any, int, str]] = [
    # POST /admin/keys
    ("POST", "/admin/keys", {**KEY, "colour": "red"}, 422, "colour: unknown field"),
    ("POST", "/admin/keys", {"org_path": "a/b/c"}, 422, "name: required"),
    ("POST", "/admin/keys", {**KEY, "name": 123}, 422, "name"),
    ("POST", "/admin/keys", {**KEY, "name": "existing"}, 409, "exists already"),
    ("POST", "/admin/keys", {**KEY, "role": "superuser"}, 422, "role"),
    ("POST", "/admin/keys", {**KEY, "org_path": "a/b/c/d"}, 422, "deeper than"),
    ("POST", "/admin/keys", {**KEY, "org_path": "a b"}, 422, "org path segment"),
    ("POST", "/admin/keys", {**KEY, "scopes": {"egress": "internet"}}, 422, "scopes.egress"),
    ("POST", "/admin/keys", {**KEY, "scopes": {"models": "sim"}}, 422, "scopes.models"),
    ("POST", "/admin/keys", {**KEY, "scopes": {"modalities": ["smell"]}}, 422, "modalities"),
    ("POST", "/admin/keys", {**KEY, "scopes": {"ip_allowlist": ["300.1.1.1"]}}, 422, "CIDR"),
    ("POST", "/admin/keys", {**KEY, "scopes": {"budget": 5}}, 422, "scopes.budget: unknown"),
    ("POST", "/admin/keys", {**KEY, "expires_at": PAST}, 422, "expires_at: must be in the future"),
    ("POST", "/admin/keys", {**KEY, "expires_at": 4102444800}, 422, "expires_at"),
    ("POST", "/admin/keys", {**KEY, "tags": {"bad tag!": "v"}}, 422, "tag name"),
    ("POST", "/admin/keys", {**KEY, "tags": {"k": 1}}, 422, "tags.k"),
    ("POST", "/admin/keys", {**KEY, "app": "has space"}, 422, "app id"),
    ("POST", "/admin/keys", b"{not json", 400, "not valid JSON"),
    ("POST", "/admin/keys", b"[1, 2]", 400, "must be a JSON object"),
    ("POST", "/admin/keys", b"", 422, "name: required"),
    ("POST", "/admin/keys", b'{"name": "' + b"x" * 2_000_000 + b'"}', 413, "larger than"),
    # GET /admin/keys
    ("GET", "/admin/keys?colour=red", None, 422, "Unknown query parameter(s): colour"),
    ("GET", "/admin/keys?state=sleepy", None, 422, "state: expected one of"),
    ("GET", "/admin/keys?role=root", None, 422, "role: expected one of"),
    ("GET", "/admin/keys?org_path=a/b/c/d", None, 422, "org_path"),
    ("GET", "/admin/keys?format=xml", None, 422, "format"),
    # /admin/keys/{id}
    ("GET", "/admin/keys/key_missing", None, 404, "No key with id 'key_missing'"),
    ("PATCH", "/admin/keys/key_missing", {"name": "x"}, 404, "No key"),
    ("DELETE", "/admin/keys/key_missing", None, 404, "No key"),
    ("POST", "/admin/keys/key_missing/rotate", {"grace_seconds": 1}, 404, "No key"),
    ("PATCH", "/admin/keys/{E}", {"name": "other"}, 409, "exists already"),
    ("PATCH", "/admin/keys/{E}", {"colour": "red"}, 422, "colour: unknown field"),
    ("PATCH", "/admin/keys/{E}", {"name": None}, 422, "may not be null"),
    ("PATCH", "/admin/keys/{E}", {"scopes": {"models": [1]}}, 422, "scopes.models"),
    ("PATCH", "/admin/keys/{E}", {"expires_at": PAST}, 422, "must be in the future"),
    ("PATCH", "/admin/keys/{E}", {"org_path": ""}, 422, "needs department/team/project"),
    ("PATCH", "/admin/keys/{R}", {"name": "revived"}, 409, "revoked"),
    ("DELETE", "/admin/keys/{R}", None, 409, "revoked"),
    ("POST", "/admin/keys/{R}/rotate", {"grace_seconds": 1}, 409, "revoked"),
    ("POST", "/admin/keys/{E}/rotate", {"grace_seconds": "10"}, 422, "grace_seconds"),
    ("POST", "/admin/keys/{E}/rotate", {"grace_seconds": -1}, 422, "grace_seconds"),
    ("POST", "/admin/keys/{E}/rotate", {"grace_seconds": 1e9}, 422, "grace_seconds"),
    ("POST", "/admin/keys/{E}/rotate", {"grace": 1}, 422, "grace: unknown field"),
    # org units
    ("POST", "/admin/org-units", {"path": "research"}, 409, "exists already"),
    ("POST", "/admin/org-units", {"path": "sales/emea"}, 404, "Parent org unit 'sales'"),
    ("POST", "/admin/org-units", {"path": "a/b/c/d"}, 422, "deeper than"),
    ("POST", "/admin/org-units", {"path": "x", "owner": "y"}, 422, "owner: unknown field"),
    ("POST", "/admin/org-units", {"path": 5}, 422, "path"),
    ("GET", "/admin/org-units/nowhere", None, 404, "No org unit 'nowhere'"),
    ("PATCH", "/admin/org-units/nowhere", {"title": "x"}, 404, "No org unit"),
    ("PATCH", "/admin/org-units/research", {"title": 5}, 422, "title"),
    ("PATCH", "/admin/org-units/research", {"title": None}, 422, "may not be null"),
    ("DELETE", "/admin/org-units/research", None, 409, "still has child units"),
    ("DELETE", "/admin/org-units/nowhere", None, 404, "No org unit"),
    ("GET", "/admin/org-units?format=pdf", None, 422, "format"),
    # customers, apps, agents
    ("POST", "/admin/customers", {"id": "acme"}, 409, "exists already"),
    ("POST", "/admin/customers", {"id": "has space"}, 422, "customer id"),
    ("POST", "/admin/customers", {"id": "x", "size": 3}, 422, "size: unknown field"),
    ("POST", "/admin/apps", {"id": "helpdesk"}, 409, "exists already"),
    ("POST", "/admin/apps", {"id": ""}, 422, "id"),
    ("POST", "/admin/agents", {"id": "planner/v2"}, 409, "exists already"),
    ("POST", "/admin/agents", {"id": "a b"}, 422, "agent id"),
    ("GET", "/admin/customers/nobody", None, 404, "No customer with id 'nobody'"),
    ("PATCH", "/admin/apps/nothing", {"name": "x"}, 404, "No app"),
    ("PATCH", "/admin/agents/planner/v2", {"org_path": "a/b/c/d"}, 422, "org_path"),
    ("PATCH", "/admin/agents/planner/v2", {"tags": None}, 422, "may not be null"),
    ("DELETE", "/admin/agents/nobody/v9", None, 404, "No agent"),
    # audit
    ("GET", "/admin/audit?limit=0", None, 422, "limit"),
    ("GET", "/admin/audit?limit=ten", None, 422, "limit"),
    ("GET", "/admin/audit?since=yesterday", None, 422, "since"),
    ("GET", "/admin/audit?after_id=-1", None, 422, "after_id"),
    ("GET", "/admin/audit?who=me", None, 422, "Unknown query parameter(s): who"),
    ("GET", "/admin/audit/verify?deep=1", None, 422, "Unknown query parameter(s): deep"),
]


@pytest.fixture
async def seeded(tmp_path: Path) -> AsyncIterator[tuple[Gateway, dict[str, str]]]:
    async with running(tmp_path / "agentgw.db") as gw:
        existing = await gw.create_key(name="existing")
        await gw.create_key(name="other")
        gone = await gw.create_key(name="gone")
        await gw.admin("DELETE", f"/admin/keys/{gone['id']}")
        for body in ({"path": "research"}, {"path": "research/agents"}):
            assert (await gw.admin("POST", "/admin/org-units", json=body)).status_code == 201
        for path, ident in (("customers", "acme"), ("apps", "helpdesk"), ("agents", "planner/v2")):
            resp = await gw.admin("POST", f"/admin/{path}", json={"id": ident})
            assert resp.status_code == 201
        yield gw, {"E": existing["id"], "R": gone["id"]}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"),
    CASES,
    ids=[f"{c[0]} {c[1]} {c[3]} {c[4][:30]}" for c in CASES],
)
async def test_bad_input_is_refused_clearly_and_changes_nothing(
    seeded: tuple[Gateway, dict[str, str]],
    method: str,
    path: str,
    body: Any,
    status: int,
    words: str,
) -> None:
    gw, ids = seeded
    before = gw.state()
    path = path.replace("{E}", ids["E"]).replace("{R}", ids["R"])
    if isinstance(body, bytes):
        resp = await gw.admin(method, path, content=body)
    else:
        resp = await gw.admin(method, path, json=body)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert words in error["message"], error
    assert error["code"] and error["type"]
    assert gw.state() == before


def test_every_admin_endpoint_has_a_bad_input_case() -> None:
    covered = {(m, p.split("?")[0]) for m, p, *_ in CASES}
    templates = {
        ("GET", "/admin/keys"), ("POST", "/admin/keys"), ("GET", "/admin/keys/{id}"),
        ("PATCH", "/admin/keys/{id}"), ("DELETE", "/admin/keys/{id}"),
        ("POST", "/admin/keys/{id}/rotate"), ("GET", "/admin/org-units"),
        ("POST", "/admin/org-units"), ("GET", "/admin/org-units/{id}"),
        ("PATCH", "/admin/org-units/{id}"), ("DELETE", "/admin/org-units/{id}"),
        ("POST", "/admin/customers"), ("GET", "/admin/customers/{id}"),
        ("POST", "/admin/apps"), ("PATCH", "/admin/apps/{id}"), ("POST", "/admin/agents"),
        ("PATCH", "/admin/agents/{id}"), ("DELETE", "/admin/agents/{id}"),
        ("GET", "/admin/audit"), ("GET", "/admin/audit/verify"),
    }  # fmt: skip

    def template(path: str) -> str:
        parts = path.split("/")
        if len(parts) > 3 and parts[3] != "verify":
            tail = "/rotate" if parts[-1] == "rotate" else ""
            return "/".join(parts[:3]) + "/{id}" + tail
        return path

    assert templates <= {(m, template(p)) for m, p in covered}
