"""The audit log: hash chain, verification of every kind of tampering, scrubbing, queries."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from core.audit import (
    ZERO_HASH,
    Actor,
    AuditDraft,
    AuditEvent,
    AuditLog,
    AuditQuery,
    Change,
    Insert,
    Setting,
    canonical_json,
    scrub,
    seal,
    verify_chain,
)
from core.state import AlreadyExists
from store import MemoryStore

ADMIN = Actor("key_admin", "admin", "", "10.0.0.1")


class ListAudit:
    """An AuditStore over a plain list, so a test can tamper with it freely."""

    def __init__(self, events: list[AuditEvent], head: tuple[int, str] | None) -> None:
        self.events = events
        self.head = head

    async def commit(self, changes: Sequence[Change], draft: AuditDraft) -> AuditEvent:
        raise NotImplementedError

    async def audit_events(self, query: AuditQuery) -> list[AuditEvent]:
        return sorted((e for e in self.events if query.matches(e)), key=lambda e: e.id)[
            : query.limit
        ]

    async def audit_head(self) -> tuple[int, str] | None:
        return self.head


def chain(n: int) -> list[AuditEvent]:
    events: list[AuditEvent] = []
    prev = ZERO_HASH
    for i in range(1, n + 1):
        draft = AuditDraft(
            at=1_800_000_000.0 + i,
            actor="key_admin",
            actor_role="admin",
            action="key.update",
            object=f"key:key_{i}",
            before={"name": f"old-{i}", "scopes": {"models": ["a"]}},
            after={"name": f"new-{i}", "scopes": {"models": ["a", "b"]}},
            source="10.0.0.1",
        )
        events.append(seal(draft, i, prev))
        prev = events[-1].hash
    return events


def intact(n: int = 6) -> ListAudit:
    events = chain(n)
    return ListAudit(events, (events[-1].id, events[-1].hash))


def test_the_first_event_links_to_zeros_and_each_hash_covers_prev_hash_and_content() -> None:
    events = chain(2)
    assert events[0].prev_hash == "0" * 64
    assert events[1].prev_hash == events[0].hash
    content = canonical_json(events[1].content())
    expected = hashlib.sha256((events[0].hash + content).encode()).hexdigest()
    assert events[1].hash == expected
    assert json.loads(content)["id"] == 2


@pytest.mark.anyio
async def test_an_intact_chain_verifies() -> None:
    assert await verify_chain(intact()) == (6, None)
    assert await verify_chain(ListAudit([], None)) == (0, None)


@pytest.mark.anyio
async def test_verification_pages_through_long_chains() -> None:
    assert await verify_chain(intact(25), page=4) == (25, None)


def altered(log: ListAudit) -> None:
    log.events[2] = dataclasses.replace(log.events[2], after={"name": "forged"})


def altered_and_rehashed(log: ListAudit) -> None:
    forged = seal(
        AuditDraft(**{**_draft_fields(log.events[2]), "actor": "someone-else"}),
        3,
        log.events[2].prev_hash,
    )
    log.events[2] = forged


def deleted_middle(log: ListAudit) -> None:
    del log.events[2]


def deleted_first(log: ListAudit) -> None:
    del log.events[0]


def deleted_last(log: ListAudit) -> None:
    del log.events[-1]


def swapped(log: ListAudit) -> None:
    a, b = log.events[2], log.events[3]
    log.events[2] = dataclasses.replace(b, id=3)
    log.events[3] = dataclasses.replace(a, id=4)


def appended_by_hand(log: ListAudit) -> None:
    last = log.events[-1]
    log.events.append(seal(AuditDraft(**_draft_fields(last)), last.id + 1, last.hash))


def smuggled_below_one(log: ListAudit) -> None:
    log.events.insert(0, dataclasses.replace(log.events[0], id=0))


def _draft_fields(e: AuditEvent) -> dict[str, Any]:
    return {f.name: getattr(e, f.name) for f in dataclasses.fields(AuditDraft)}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("tamper", "first_bad", "words"),
    [
        (altered, 3, "altered"),
        (altered_and_rehashed, 4, "does not follow event 3"),
        (deleted_middle, 3, "missing"),
        (deleted_first, 1, "missing"),
        (deleted_last, 6, "missing"),
        (swapped, 3, "does not follow"),
        (appended_by_hand, 7, "not written by agentgw"),
        (smuggled_below_one, 0, "out of sequence"),
    ],
)
async def test_verification_names_the_first_event_altered_deleted_or_reordered(
    tamper: Callable[[ListAudit], None], first_bad: int, words: str
) -> None:
    log = intact()
    tamper(log)
    checked, brk = await verify_chain(log)
    assert brk is not None
    assert brk.event_id == first_bad
    assert words in brk.reason
    assert str(first_bad) in brk.reason
    assert checked == max(0, first_bad - 1)


@pytest.mark.anyio
async def test_a_missing_chain_head_is_reported() -> None:
    log = intact()
    log.head = None
    _, brk = await verify_chain(log)
    assert brk is not None and "head" in brk.reason


def test_secrets_and_hashes_never_enter_a_snapshot() -> None:
    snapshot = {
        "id": "key_1",
        "key": "agw_secret",
        "key_hash": "ab" * 32,
        "nested": {"previous_hash": "cd" * 32, "api_key": "sk-x", "kept": 1},
        "list": [{"secret": "s", "name": "n"}],
    }
    assert scrub(snapshot) == {"id": "key_1", "nested": {"kept": 1}, "list": [{"name": "n"}]}
    assert scrub(None) is None


@pytest.mark.anyio
async def test_record_writes_the_change_and_its_event_together_or_neither() -> None:
    store = MemoryStore()
    log = AuditLog(store, clock=lambda: 1_800_000_000.123456789)
    setting = Setting("s", "v", 1.0)
    event = await log.record(
        ADMIN, "setting.create", "setting:s", before=None, after={"name": "s", "key": "x"},
        changes=[Insert(setting)],
    )  # fmt: skip
    assert (event.id, event.actor, event.actor_role, event.source) == (
        1,
        "key_admin",
        "admin",
        "10.0.0.1",
    )
    assert event.after == {"name": "s"}
    assert event.at == 1_800_000_000.123457
    with pytest.raises(AlreadyExists):
        await log.record(ADMIN, "setting.create", "setting:s", before=None, after={},
                         changes=[Insert(setting)])  # fmt: skip
    assert [e.id for e in await log.events(AuditQuery())] == [1]
    assert await log.verify() == (1, None)


@pytest.mark.anyio
async def test_queries_filter_by_actor_object_action_prefix_and_time() -> None:
    store = MemoryStore()
    times = iter([100.0, 200.0, 300.0, 400.0])
    log = AuditLog(store, clock=lambda: next(times))
    cli = Actor("cli:alice", "admin", "", "cli@host")
    await log.record(ADMIN, "key.create", "key:k1", before=None, after={"n": 1})
    await log.record(cli, "key.revoke", "key:k1", before={"n": 1}, after={"n": 2})
    await log.record(ADMIN, "org_unit.create", "org_unit:r", before=None, after={"p": "r"})
    await log.record(cli, "key.create", "key:k2", before=None, after={"n": 3})

    async def ids(**query: object) -> list[int]:
        return [e.id for e in await log.events(AuditQuery(**query))]  # type: ignore[arg-type]

    assert await ids(actor="cli:alice") == [2, 4]
    assert await ids(actor="cli:*") == [2, 4]
    assert await ids(object="key:k1") == [1, 2]
    assert await ids(object="key:*") == [1, 2, 4]
    assert await ids(action="key.create") == [1, 4]
    assert await ids(since=200.0, until=400.0) == [2, 3]
    assert await ids(after_id=2, limit=1) == [3]
