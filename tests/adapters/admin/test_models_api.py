"""`/admin/models/{name}`: routing versions, canary changes and rollback, audited."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.admin.schemas import ModelVersionList, ModelVersionOut
from core.routing import Router
from tests.adapters.admin.support import Gateway, running

pytestmark = pytest.mark.anyio

WEIGHTED = {
    "strategy": "weighted",
    "targets": [
        {"provider": "sim", "model": "sim-1", "weight": 90},
        {"provider": "sim", "model": "sim-9", "weight": 10},
    ],
}


def router(gw: Gateway) -> Router:
    routed: Router = gw.app.state.gateway.pipeline.router
    return routed


def served(gw: Gateway, name: str = "sim") -> list[tuple[str, float]]:
    return [(t.model, t.weight) for t in router(gw).route(name).targets]


async def put(gw: Gateway, body: dict[str, Any], name: str = "sim", **kw: Any) -> Any:
    return await gw.admin("PUT", f"/admin/models/{name}", json=body, **kw)


async def test_a_model_starts_at_version_one_with_the_config_files_routing(gw: Gateway) -> None:
    resp = await gw.admin("GET", "/admin/models/sim")
    assert resp.status_code == 200
    shown = ModelVersionOut.model_validate(resp.json())
    assert (shown.name, shown.version, shown.actor) == ("sim", 1, "config")
    assert shown.routing["strategy"] == "priority"
    assert [(t["model"], t["weight"]) for t in shown.routing["targets"]] == [("sim-1", 1.0)]


async def test_a_put_becomes_the_next_version_and_routes_at_once(gw: Gateway) -> None:
    resp = await put(gw, WEIGHTED)
    assert resp.status_code == 200, resp.text
    assert resp.json()["version"] == 2
    assert served(gw) == [("sim-1", 90.0), ("sim-9", 10.0)]
    assert router(gw).route("sim").strategy == "weighted"
    shown = (await gw.admin("GET", "/admin/models/sim")).json()
    assert shown["version"] == 2
    assert shown["routing"]["targets"][1]["model"] == "sim-9"


async def test_rollback_makes_an_old_routing_current_as_a_new_version(gw: Gateway) -> None:
    await put(gw, WEIGHTED)
    resp = await gw.admin("POST", "/admin/models/sim/rollback", json={"version": 1})
    assert resp.status_code == 200, resp.text
    assert resp.json()["version"] == 3
    assert served(gw) == [("sim-1", 1.0)]
    listing = await gw.admin("GET", "/admin/models/sim/versions")
    versions = ModelVersionList.model_validate(listing.json()).data
    assert [v.version for v in versions] == [1, 2, 3]
    assert versions[2].routing == versions[0].routing
    assert versions[1].actor == versions[2].actor != "config"


async def test_both_changes_are_audited_with_their_before_and_after(gw: Gateway) -> None:
    await put(gw, WEIGHTED)
    await gw.admin("POST", "/admin/models/sim/rollback", json={"version": 1})
    events = (await gw.admin("GET", "/admin/audit", params={"object": "model:sim"})).json()["data"]
    assert [e["action"] for e in events] == ["model.update", "model.rollback"]
    update, rollback = events
    assert update["before"]["version"] == 1 and update["after"]["version"] == 2
    assert update["before"]["strategy"] == "priority"
    assert update["after"]["strategy"] == "weighted"
    assert rollback["before"] == update["after"] | {"version": 2}
    assert rollback["after"]["targets"] == update["before"]["targets"]


@pytest.mark.parametrize(
    ("name", "body", "status", "message"),
    [
        ("sim", {**WEIGHTED, "targets": [{"provider": "ghost", "model": "x"}]}, 422, "ghost"),
        ("sim", {**WEIGHTED, "name": "sim-b"}, 422, "path names 'sim'"),
        ("sim", {**WEIGHTED, "fallbacks": ["nope"]}, 422, "nope"),
        ("sim", {**WEIGHTED, "colour": "red"}, 422, "colour"),
        ("sim", {"strategy": "weighted", "targets": []}, 422, "targets"),
        ("missing", WEIGHTED, 404, "missing"),
    ],
)
async def test_a_bad_change_is_refused_and_changes_nothing(
    gw: Gateway, name: str, body: dict[str, Any], status: int, message: str
) -> None:
    before = gw.state(), gw.rows("SELECT * FROM model_versions")
    resp = await put(gw, body, name=name)
    assert resp.status_code == status, resp.text
    assert message in resp.json()["error"]["message"]
    assert (gw.state(), gw.rows("SELECT * FROM model_versions")) == before
    assert served(gw) == [("sim-1", 1.0)]


async def test_a_rollback_to_a_version_that_does_not_exist_is_a_404(gw: Gateway) -> None:
    resp = await gw.admin("POST", "/admin/models/sim/rollback", json={"version": 7})
    assert resp.status_code == 404


@pytest.mark.parametrize("role", ["security", "finance"])
async def test_security_and_finance_read_routing_but_may_not_change_it(
    gw: Gateway, role: str
) -> None:
    secret = (await gw.create_key(name=role, org_path="", role=role))["key"]
    assert (await gw.admin("GET", "/admin/models/sim", key=secret)).status_code == 200
    assert (await gw.admin("GET", "/admin/models/sim/versions", key=secret)).status_code == 200
    assert (await put(gw, WEIGHTED, key=secret)).status_code == 403
    rollback = await gw.admin("POST", "/admin/models/sim/rollback", json={"version": 1}, key=secret)
    assert rollback.status_code == 403
    assert served(gw) == [("sim-1", 1.0)]


async def test_a_team_owner_may_not_read_model_routing(gw: Gateway) -> None:
    owner = await gw.create_key(name="owner", org_path="research/agents", role="team-owner")
    assert (await gw.admin("GET", "/admin/models/sim", key=owner["key"])).status_code == 403


async def test_after_a_restart_the_stored_change_wins_over_the_unchanged_file(
    tmp_path: Path,
) -> None:
    db = tmp_path / "agentgw.db"
    async with running(db) as gw:
        await put(gw, WEIGHTED)
    async with running(db) as gw:
        assert served(gw) == [("sim-1", 90.0), ("sim-9", 10.0)]
        assert (await gw.admin("GET", "/admin/models/sim")).json()["version"] == 2


async def test_after_a_restart_an_edited_file_wins_as_the_next_version(tmp_path: Path) -> None:
    db = tmp_path / "agentgw.db"
    async with running(db) as gw:
        await put(gw, WEIGHTED)
    edited = [
        {"name": "sim", "targets": [{"provider": "sim", "model": "sim-3"}]},
        {"name": "sim-b", "targets": [{"provider": "sim", "model": "sim-2"}]},
    ]
    async with running(db, models=edited) as gw:
        assert served(gw) == [("sim-3", 1.0)]
        shown = (await gw.admin("GET", "/admin/models/sim")).json()
        assert (shown["version"], shown["actor"]) == (3, "config")
        assert served(gw, "sim-b") == [("sim-2", 1.0)]
