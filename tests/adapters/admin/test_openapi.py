"""`/admin/openapi.json` documents every endpoint, and the replies match their schemas."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.admin import AdminAPI
from adapters.admin.schemas import (
    AuditList,
    ChainReport,
    ErrorOut,
    KeyList,
    KeyOut,
    KeyWithSecret,
    OrgUnitOut,
    PartyList,
    WhoAmI,
)
from tests.adapters.admin.support import Gateway

pytestmark = pytest.mark.anyio

CONTRACT_PATHS = {
    ("post", "/admin/keys"),
    ("get", "/admin/keys"),
    ("get", "/admin/keys/{key_id}"),
    ("patch", "/admin/keys/{key_id}"),
    ("delete", "/admin/keys/{key_id}"),
    ("post", "/admin/keys/{key_id}/rotate"),
    ("get", "/admin/org-units"),
    ("post", "/admin/org-units"),
    ("get", "/admin/audit"),
    ("get", "/admin/redactions"),
    ("get", "/admin/models/{name}"),
    ("put", "/admin/models/{name}"),
    ("get", "/admin/models/{name}/versions"),
    ("post", "/admin/models/{name}/rollback"),
}


async def document(gw: Gateway) -> dict[str, Any]:
    resp = await gw.client().get("/admin/openapi.json")  # no key needed to read the schema
    assert resp.status_code == 200
    doc: dict[str, Any] = resp.json()
    return doc


async def test_the_document_lists_every_served_endpoint(gw: Gateway) -> None:
    doc = await document(gw)
    assert doc["openapi"].startswith("3.1")
    operations = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert operations >= CONTRACT_PATHS
    access = gw.app.state.gateway.access
    governor = gw.app.state.gateway.governor
    api = AdminAPI(
        keyring=access.keyring,
        directory=access.directory,
        audit=access.audit,
        authenticator=access.authenticator,
        models=gw.app.state.gateway.models,
        rules=governor.rules,
        alerts=governor.alerts,
        redactions=gw.app.state.gateway.store,
        usage=gw.app.state.gateway.store,
        price_book=gw.app.state.gateway.ops.prices,
    )
    served = {
        (e.method.lower(), e.path.replace("{path:path}", "{path}").replace("{id:path}", "{id}"))
        for e in api.endpoints
    }
    assert served == operations


async def test_every_reference_in_the_document_resolves(gw: Gateway) -> None:
    doc = await document(gw)
    schemas = doc["components"]["schemas"]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref is not None:
                assert ref.startswith("#/components/schemas/")
                assert ref.rsplit("/", 1)[1] in schemas, ref
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    create = doc["paths"]["/admin/keys"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/KeyCreate"
    }
    assert schemas["KeyCreate"]["additionalProperties"] is False
    assert "text/csv" in doc["paths"]["/admin/audit"]["get"]["responses"]["200"]["content"]


async def test_replies_match_the_documented_shapes(gw: Gateway) -> None:
    created = await gw.create_key(name="doc", expires_at="2999-01-01T00:00:00Z")
    KeyWithSecret.model_validate(created)
    KeyOut.model_validate((await gw.admin("GET", f"/admin/keys/{created['id']}")).json())
    KeyList.model_validate((await gw.admin("GET", "/admin/keys")).json())
    rotated = await gw.admin("POST", f"/admin/keys/{created['id']}/rotate", json={})
    KeyWithSecret.model_validate(rotated.json())
    unit = await gw.admin("POST", "/admin/org-units", json={"path": "research"})
    OrgUnitOut.model_validate(unit.json())
    await gw.admin("POST", "/admin/apps", json={"id": "helpdesk"})
    PartyList.model_validate((await gw.admin("GET", "/admin/apps")).json())
    AuditList.model_validate((await gw.admin("GET", "/admin/audit")).json())
    ChainReport.model_validate((await gw.admin("GET", "/admin/audit/verify")).json())
    WhoAmI.model_validate((await gw.admin("GET", "/admin/whoami")).json())
    ErrorOut.model_validate((await gw.admin("GET", "/admin/keys/nope")).json())
