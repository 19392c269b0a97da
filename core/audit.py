"""The tamper-evident audit log: every change to governed state, hash-chained.

Each event stores `prev_hash` (the previous event's hash; 64 zeros for the first) and
`hash = sha256(prev_hash + canonical JSON of the event's fields)`, where the fields include the
event's id. Ids are consecutive from 1. `verify_chain` walks the events in id order and reports
the first one that was altered (its hash does not match its content), removed (an id is missing,
or the chain ends before the head the store recorded), or reordered (its `prev_hash` is not its
predecessor's hash).

A change and the event describing it are written in one transaction: `AuditLog.record` hands the
store the changes (`Insert`, `Update`, `Delete` of stored records) together with the event, so
neither exists without the other. Secrets and hashes never enter an event: `before` and `after`
are scrubbed of any field that could hold one.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.access import KeyRecord, Principal
from core.model_versions import ModelVersion
from core.orgs import OrgUnit, Party
from core.timestamps import iso

ZERO_HASH = "0" * 64
MAX_QUERY_LIMIT = 10_000
_BEFORE_ANY_ID = -(2**62)
# Field names that can carry a secret or a hash of one; dropped from before/after wherever they sit.
_SECRET_FIELDS = frozenset(
    {"key", "secret", "key_hash", "previous_hash", "api_key", "password", "token", "value_hash"}
)

Snapshot = Mapping[str, Any]
"""A JSON object: what an object looked like before or after a change."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change, and from where."""

    id: str
    role: str
    org_path: str = ""
    address: str = ""

    @classmethod
    def of(cls, principal: Principal, address: str | None) -> Actor:
        return cls(principal.key_id, principal.role, principal.org_path, address or "unknown")

    @classmethod
    def cli(cls, os_user: str, host: str = "local") -> Actor:
        """Whoever can run the CLI against the store file holds the whole store: an admin."""
        return cls(f"cli:{os_user}", "admin", "", f"cli@{host}")


@dataclass(frozen=True, slots=True)
class AuditDraft:
    """An event before the store numbers it and links it into the chain."""

    at: float
    actor: str
    actor_role: str
    action: str
    object: str
    before: Snapshot | None
    after: Snapshot | None
    source: str


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """A stored event."""

    id: int
    at: float
    actor: str
    actor_role: str
    action: str
    object: str
    before: Snapshot | None
    after: Snapshot | None
    source: str
    prev_hash: str
    hash: str

    def content(self) -> dict[str, Any]:
        """The hashed fields."""
        return _content(self.id, self)


def _content(event_id: int, e: AuditDraft | AuditEvent) -> dict[str, Any]:
    return {
        "id": event_id,
        "at": e.at,
        "actor": e.actor,
        "actor_role": e.actor_role,
        "action": e.action,
        "object": e.object,
        "before": e.before,
        "after": e.after,
        "source": e.source,
    }


def canonical_json(value: object) -> str:
    """One byte-exact JSON text per value: sorted keys, no spaces, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def chain_hash(prev_hash: str, content: Mapping[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical_json(content)).encode()).hexdigest()


def seal(draft: AuditDraft, event_id: int, prev_hash: str) -> AuditEvent:
    """The stored form of `draft` as event `event_id` following an event with `prev_hash`."""
    digest = chain_hash(prev_hash, _content(event_id, draft))
    return AuditEvent(
        event_id,
        draft.at,
        draft.actor,
        draft.actor_role,
        draft.action,
        draft.object,
        draft.before,
        draft.after,
        draft.source,
        prev_hash,
        digest,
    )


@dataclass(frozen=True, slots=True)
class Setting:
    """A named value of runtime state (such as the generated bootstrap admin key's hash)."""

    name: str
    value: str
    updated_at: float = 0.0


AuditedRecord = KeyRecord | OrgUnit | Party | Setting | ModelVersion


@dataclass(frozen=True, slots=True)
class Insert:
    """Store a new record; refused if its id or a unique name is taken."""

    record: AuditedRecord


@dataclass(frozen=True, slots=True)
class Update:
    """Replace `before` with `after`; refused if the stored record is no longer `before`."""

    before: AuditedRecord
    after: AuditedRecord


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove `record`; refused if the stored record is no longer `record`."""

    record: AuditedRecord


Change = Insert | Update | Delete


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """A filter over events. A trailing `*` on actor, object or action matches a prefix."""

    actor: str | None = None
    object: str | None = None
    action: str | None = None
    since: float | None = None
    until: float | None = None
    after_id: int = 0
    limit: int = 1000

    def matches(self, event: AuditEvent) -> bool:
        return (
            event.id > self.after_id
            and _like(self.actor, event.actor)
            and _like(self.object, event.object)
            and _like(self.action, event.action)
            and (self.since is None or event.at >= self.since)
            and (self.until is None or event.at < self.until)
        )


def _like(pattern: str | None, value: str) -> bool:
    if pattern is None:
        return True
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


class AuditStore(Protocol):
    """Where events live; implemented by every store backend."""

    async def commit(self, changes: Sequence[Change], draft: AuditDraft) -> AuditEvent:
        """Apply `changes` and append `draft` as the next event, in one transaction.

        Raises:
            core.state.AlreadyExists: an insert collides with a stored id or unique name.
            core.state.Stale: an update or delete found the record changed or gone.
        """
        ...

    async def audit_events(self, query: AuditQuery) -> list[AuditEvent]:
        """The events matching `query`, by id, at most `query.limit` of them."""
        ...

    async def audit_head(self) -> tuple[int, str] | None:
        """The id and hash of the last event written, as recorded when it was written."""
        ...


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first event that was altered, removed or reordered, and how that shows."""

    event_id: int
    reason: str


async def verify_chain(store: AuditStore, *, page: int = 1000) -> tuple[int, ChainBreak | None]:
    """Walk every event in id order; the number of events checked and the first break, if any."""
    prev_hash, expected, checked = ZERO_HASH, 1, 0
    after = _BEFORE_ANY_ID  # so a row smuggled in below id 1 is seen too
    while True:
        events = await store.audit_events(AuditQuery(after_id=after, limit=page))
        for event in events:
            brk = _check(event, expected, prev_hash)
            if brk is not None:
                return checked, brk
            prev_hash, expected, checked = event.hash, expected + 1, checked + 1
            after = event.id
        if len(events) < page:
            break
    brk = _check_head(await store.audit_head(), expected - 1, prev_hash)
    return (checked, None) if brk is None else (min(checked, brk.event_id - 1), brk)


def _check(event: AuditEvent, expected: int, prev_hash: str) -> ChainBreak | None:
    if event.id < expected:
        return ChainBreak(event.id, f"event {event.id} is out of sequence (not written by agentgw)")
    if event.id > expected:
        return ChainBreak(
            expected,
            f"event {expected} is missing (deleted): event {event.id} follows event {expected - 1}",
        )
    if event.prev_hash != prev_hash:
        return ChainBreak(
            event.id,
            f"event {event.id} does not follow event {event.id - 1}: its prev_hash differs "
            "from that event's hash (altered, deleted or reordered)",
        )
    if chain_hash(event.prev_hash, event.content()) != event.hash:
        return ChainBreak(
            event.id, f"event {event.id} was altered: its content does not match its hash"
        )
    return None


def _check_head(head: tuple[int, str] | None, last_id: int, last_hash: str) -> ChainBreak | None:
    if head is None:
        if last_id == 0:
            return None
        return ChainBreak(last_id, "the chain head record is missing (the log was tampered with)")
    head_id, head_hash = head
    if head_id > last_id:
        return ChainBreak(
            last_id + 1,
            f"event {last_id + 1} is missing (deleted): the chain ends at event "
            f"{last_id} but event {head_id} was written",
        )
    if head_id < last_id:
        return ChainBreak(head_id + 1, f"event {head_id + 1} was not written by agentgw")
    if head_hash != last_hash:
        return ChainBreak(last_id, f"event {last_id} was altered: it differs from the chain head")
    return None


def scrub(snapshot: Snapshot | None) -> dict[str, Any] | None:
    """`snapshot` without any field that could hold a secret or a hash, at any depth."""
    if snapshot is None:
        return None
    return {k: _scrub_value(v) for k, v in snapshot.items() if k not in _SECRET_FIELDS}


def _scrub_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return scrub(value)
    if isinstance(value, list | tuple):
        return [_scrub_value(v) for v in value]
    return value


class AuditLog:
    """Records changes with their audit event; the one entry point every admin surface uses."""

    def __init__(self, store: AuditStore, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def record(
        self,
        actor: Actor,
        action: str,
        obj: str,
        *,
        before: Snapshot | None,
        after: Snapshot | None,
        changes: Sequence[Change] = (),
    ) -> AuditEvent:
        """Apply `changes` and append the event that describes them, in one transaction.

        Raises:
            core.state.AlreadyExists: an insert collides with a stored id or unique name.
            core.state.Stale: an update or delete found the record changed or gone.
        """
        draft = AuditDraft(
            at=round(self._clock(), 6),
            actor=actor.id,
            actor_role=actor.role,
            action=action,
            object=obj,
            before=_plain(scrub(before)),
            after=_plain(scrub(after)),
            source=actor.address,
        )
        return await self._store.commit(changes, draft)

    async def events(self, query: AuditQuery) -> list[AuditEvent]:
        """The events matching `query`, by id."""
        return await self._store.audit_events(query)

    async def verify(self) -> tuple[int, ChainBreak | None]:
        """The number of intact events and the first break, if any."""
        return await verify_chain(self._store)


def _plain(snapshot: dict[str, Any] | None) -> dict[str, Any] | None:
    # Through JSON once, so what is hashed now is exactly what is read back from the store later
    # (tuples become lists, and a value JSON cannot hold fails here rather than at verify time).
    return None if snapshot is None else dict(json.loads(canonical_json(snapshot)))


EVENT_COLUMNS = (
    "id",
    "at",
    "actor",
    "actor_role",
    "action",
    "object",
    "before",
    "after",
    "source",
    "prev_hash",
    "hash",
)


def event_view(event: AuditEvent) -> dict[str, Any]:
    """An event as the admin surfaces show it (the time in ISO 8601)."""
    return {
        "id": event.id,
        "at": iso(event.at),
        "actor": event.actor,
        "actor_role": event.actor_role,
        "action": event.action,
        "object": event.object,
        "before": event.before,
        "after": event.after,
        "source": event.source,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }
