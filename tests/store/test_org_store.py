"""Every backend keeps the same contract for audited changes, the organization and agents."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from pathlib import Path

import pytest

from core.access import hash_secret
from core.audit import AuditDraft, AuditQuery, Delete, Insert, Setting, Update, verify_chain
from core.orgs import OrgUnit, Party
from core.state import AlreadyExists, KeyAlreadyExists, Stale
from store import MIGRATIONS, SQLiteStore
from store.sqlite_schema import statements
from tests.store.test_stores import ListableStore, backend, make_key, make_span

__all__ = ["backend"]  # the fixture, imported so pytest finds it here too


def draft(action: str = "x.change", obj: str = "x:1") -> AuditDraft:
    return AuditDraft(1_800_000_000.0, "key_admin", "admin", action, obj, None, {"a": 1}, "::1")


@pytest.mark.anyio
async def test_a_commit_applies_its_changes_and_appends_one_chained_event(
    backend: ListableStore,
) -> None:
    unit = OrgUnit("research", "Research", {"cc": "1"}, 1.0, 1.0)
    first = await backend.commit([Insert(unit)], draft("org_unit.create"))
    renamed = dataclasses.replace(unit, title="R&D", updated_at=2.0)
    second = await backend.commit([Update(unit, renamed)], draft("org_unit.update"))
    assert await backend.get_org_unit("research") == renamed
    assert (first.id, second.id) == (1, 2)
    assert second.prev_hash == first.hash
    assert await backend.audit_events(AuditQuery()) == [first, second]
    assert await backend.audit_head() == (2, second.hash)
    assert await verify_chain(backend) == (2, None)


@pytest.mark.anyio
async def test_a_refused_change_writes_neither_the_change_nor_its_event(
    backend: ListableStore,
) -> None:
    key = make_key(1)
    await backend.commit([Insert(key)], draft())
    clash = make_key(2, name=key.name)
    with pytest.raises(KeyAlreadyExists):
        await backend.commit([Insert(make_key(3)), Insert(clash)], draft())
    assert [k.id for k in await backend.list_keys()] == [key.id]
    assert len(await backend.audit_events(AuditQuery())) == 1


@pytest.mark.anyio
async def test_a_change_based_on_a_stale_read_is_refused(backend: ListableStore) -> None:
    key = make_key(1)
    await backend.commit([Insert(key)], draft())
    moved = dataclasses.replace(key, org_path="a/b/c", updated_at=5.0)
    await backend.commit([Update(key, moved)], draft())
    with pytest.raises(Stale):
        await backend.commit([Update(key, dataclasses.replace(key, name="late"))], draft())
    with pytest.raises(Stale):
        await backend.commit([Delete(key)], draft())
    assert await backend.get_key(key.id) == moved
    assert len(await backend.audit_events(AuditQuery())) == 2


@pytest.mark.anyio
async def test_an_org_unit_needs_its_parent_and_keeps_its_children(backend: ListableStore) -> None:
    with pytest.raises(Stale):
        await backend.commit([Insert(OrgUnit("research/agents"))], draft())
    parent, child = OrgUnit("research"), OrgUnit("research/agents")
    await backend.commit([Insert(parent), Insert(child)], draft())
    assert [u.path for u in await backend.list_org_units()] == ["research", "research/agents"]
    assert (child.level, child.parent) == ("team", "research")
    with pytest.raises(Stale):
        await backend.commit([Delete(parent)], draft())
    await backend.commit([Delete(child)], draft())
    await backend.commit([Delete(parent)], draft())
    assert await backend.list_org_units() == []


@pytest.mark.anyio
async def test_customers_apps_and_agents_are_kept_apart(backend: ListableStore) -> None:
    acme = Party("customer", "acme", "Acme", "sales", {"tier": "gold"}, 1.0, 1.0)
    helpdesk = Party("app", "acme", "Helpdesk", None, {}, 1.0, 1.0)
    await backend.commit([Insert(acme), Insert(helpdesk)], draft())
    assert await backend.get_party("customer", "acme") == acme
    assert await backend.get_party("app", "acme") == helpdesk
    assert await backend.get_party("agent", "acme") is None
    with pytest.raises(AlreadyExists):
        await backend.commit([Insert(dataclasses.replace(acme, name="Other"))], draft())
    assert await backend.list_parties("customer") == [acme]


@pytest.mark.anyio
async def test_agents_register_on_first_sight_with_the_span_batch(backend: ListableStore) -> None:
    await backend.record_spans(
        [
            make_span(1, agent_id="planner", org_path="r/a/d", started_at=10.0),
            make_span(2, agent_id="planner", org_path="x/y/z", started_at=30.0),
            make_span(3, agent_id="coder@v2/beta", started_at=20.0),
            make_span(4),
        ]
    )
    await backend.record_spans([make_span(5, agent_id="planner", started_at=50.0)])
    agents = {a.id: a for a in await backend.list_parties("agent")}
    assert set(agents) == {"planner", "coder@v2/beta"}
    planner = agents["planner"]
    assert (planner.org_path, planner.created_at, planner.last_seen) == ("r/a/d", 10.0, 50.0)
    assert await backend.audit_events(AuditQuery()) == []  # traffic is not an admin change
    # An admin rename goes through even though traffic moved last_seen since it was read.
    named = dataclasses.replace(planner, name="Planner", updated_at=60.0)
    await backend.record_spans([make_span(6, agent_id="planner", started_at=70.0)])
    await backend.commit([Update(planner, named)], draft())
    stored = await backend.get_party("agent", "planner")
    assert stored is not None
    assert (stored.name, stored.last_seen) == ("Planner", 70.0)


@pytest.mark.anyio
async def test_a_rotated_key_is_found_by_either_secret(backend: ListableStore) -> None:
    key = make_key(1, key_hash=hash_secret("old"))
    await backend.commit([Insert(key)], draft())
    rotated = dataclasses.replace(
        key, key_hash=hash_secret("new"), previous_hash=hash_secret("old"), retires_at=9.0
    )
    await backend.commit([Update(key, rotated)], draft())
    assert await backend.find_key(hash_secret("new")) == rotated
    assert await backend.find_key(hash_secret("old")) == rotated
    assert await backend.find_key(hash_secret("other")) is None


@pytest.mark.anyio
async def test_settings_are_written_once_and_read_back(backend: ListableStore) -> None:
    assert await backend.get_setting("bootstrap_admin_hash") is None
    await backend.commit([Insert(Setting("bootstrap_admin_hash", "ab" * 32, 1.0))], draft())
    assert await backend.get_setting("bootstrap_admin_hash") == "ab" * 32
    with pytest.raises(AlreadyExists):
        await backend.commit([Insert(Setting("bootstrap_admin_hash", "cd" * 32, 2.0))], draft())


# SQLite only: the chain across processes and reopenings, and the upgrade from version 1.


@pytest.mark.anyio
async def test_the_chain_continues_from_the_recorded_head_so_a_cut_tail_shows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "agentgw.db"
    db = SQLiteStore(str(path))
    await db.open()
    for i in range(3):
        await db.commit([], draft(obj=f"x:{i}"))
    await db.aclose()
    with sqlite3.connect(path) as raw:
        raw.execute("DELETE FROM audit_events WHERE id = 3")
    raw.close()
    db = SQLiteStore(str(path))
    await db.open()
    try:
        fourth = await db.commit([], draft())
        assert fourth.id == 4  # linked to the head, not to the row that happens to be last
        checked, brk = await verify_chain(db)
        assert (checked, brk is not None and brk.event_id) == (2, 3)
    finally:
        await db.aclose()


@pytest.mark.anyio
async def test_a_version_1_database_is_upgraded_with_its_keys_intact(tmp_path: Path) -> None:
    path = tmp_path / "agentgw.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)")
        for statement in statements(MIGRATIONS[0].sql):
            raw.execute(statement)
        raw.execute("INSERT INTO schema_migrations VALUES (1, 0)")
        # A row as version 1 wrote it: scopes in field order, no tags or lifecycle columns.
        raw.execute(
            "INSERT INTO keys VALUES (?, ?, ?, ?, ?, 'user', NULL, NULL, ?, 'active', ?, NULL)",
            (
                "key_old",
                "legacy",
                hash_secret("agw_legacy"),
                "agw_legacy",
                "r/a/d",
                '{"models":["sim"],"tools":[],"modalities":[],"egress":"private","ip_allowlist":[]}',
                123.0,
            ),
        )
    raw.close()
    db = SQLiteStore(str(path))
    await db.open()
    try:
        key = await db.find_key(hash_secret("agw_legacy"))
        assert key is not None
        assert (key.tags, key.updated_at, key.previous_hash) == ({}, 123.0, None)
        assert (key.scopes.models, key.scopes.egress) == (("sim",), "private")
        revoked = dataclasses.replace(key, status="revoked", updated_at=time.time())
        await db.commit([Update(key, revoked)], draft())  # not refused as stale
        assert await db.get_key("key_old") == revoked
    finally:
        await db.aclose()
