"""`MemoryStore`: every table as a dict in this process, for unit tests and `memory://`.

It keeps the SQLite backend's semantics where a caller could tell the difference: a write is all or
nothing, duplicates are refused, a change based on a stale read is refused, an org unit needs its
parent, `extra` must be JSON, and what comes back is a copy, so a span mutated after it was
recorded does not change what is stored.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import assert_never

from core.access import KeyRecord
from core.alert_store import AlertQuery, AlertRecord, Delivery
from core.audit import (
    ZERO_HASH,
    AuditDraft,
    AuditedRecord,
    AuditEvent,
    AuditQuery,
    Change,
    Delete,
    Insert,
    Setting,
    Update,
    seal,
)
from core.mcp import ToolCost, ToolPin
from core.media import VideoJob
from core.model_versions import ModelVersion
from core.ops.reconciliation import Reconciliation
from core.orgs import PARTY_KINDS, OrgUnit, Party, PartyKind
from core.redaction import RedactionEvent, RedactionQuery
from core.reports import UsageQuery, UsageRow
from core.state import AlreadyExists, KeyAlreadyExists, Stale
from core.tracing import Span
from store.media_jobs import MemoryVideoJobs
from store.memory_alerts import MemoryAlerts
from store.memory_redactions import MemoryRedactions
from store.memory_usage import MemoryOps, MemoryReconciliations, MemoryUsage
from store.rows import agent_sightings
from store.tool_pins import tool_costs_of

MEMORY_URL = "memory://"


@dataclass(slots=True)
class _Tables:
    # Insertion order is creation order, which `list_keys` and `list_spans` rely on for ties.
    keys: dict[str, KeyRecord] = field(default_factory=dict)
    units: dict[str, OrgUnit] = field(default_factory=dict)
    parties: dict[PartyKind, dict[str, Party]] = field(
        default_factory=lambda: {kind: {} for kind in PARTY_KINDS}
    )
    settings: dict[str, Setting] = field(default_factory=dict)
    versions: dict[tuple[str, int], ModelVersion] = field(default_factory=dict)
    events: list[AuditEvent] = field(default_factory=list)
    head: tuple[int, str] | None = None

    def copy(self) -> _Tables:
        # Records are frozen, so copying the dicts is a full snapshot.
        return _Tables(
            dict(self.keys),
            dict(self.units),
            {kind: dict(rows) for kind, rows in self.parties.items()},
            dict(self.settings),
            dict(self.versions),
            list(self.events),
            self.head,
        )


class MemoryStore(MemoryOps):
    """A `core.state.Store` held in dicts; nothing survives the process."""

    def __init__(self) -> None:
        self._t = _Tables()
        self._spans: dict[str, Span] = {}
        self._redactions = MemoryRedactions()
        self._alerts = MemoryAlerts()
        self._pins: dict[tuple[str, str], ToolPin] = {}
        self._video_jobs = MemoryVideoJobs()
        self._usage = MemoryUsage()
        self._reconciliations = MemoryReconciliations()
        self._ops_tables()

    @classmethod
    def from_url(cls, url: str) -> MemoryStore:
        """The store for the `memory://` URL.

        Raises:
            ValueError: the URL is not `memory://`.
        """
        if url != MEMORY_URL:
            raise ValueError(f"expected {MEMORY_URL!r}, got {url!r}")
        return cls()

    async def open(self) -> None:
        """Nothing to connect to."""

    async def aclose(self) -> None:
        """Nothing to close; the data stays until the object is dropped."""

    async def find_key(self, key_hash: str) -> KeyRecord | None:
        """The key whose current or previous secret has this hash, whatever its status."""
        for record in self._t.keys.values():
            if key_hash in (record.key_hash, record.previous_hash):
                return record
        return None

    async def create_key(self, record: KeyRecord) -> None:
        """Store a new key, unaudited.

        Raises:
            KeyAlreadyExists: the id, the name or the hash is taken.
        """
        _insert(self._t, record)

    async def get_key(self, key_id: str) -> KeyRecord | None:
        """The key with that id, or None."""
        return self._t.keys.get(key_id)

    async def list_keys(self) -> list[KeyRecord]:
        """Every key, oldest first (by `created_at`, then by creation order)."""
        return sorted(self._t.keys.values(), key=lambda k: k.created_at)

    async def set_key_status(self, key_id: str, status: str) -> bool:
        """Change a key's status, unaudited; False when there is no such key."""
        record = self._t.keys.get(key_id)
        if record is None:
            return False
        self._t.keys[key_id] = replace(record, status=status)
        return True

    async def get_org_unit(self, path: str) -> OrgUnit | None:
        """The unit with that path, or None."""
        return self._t.units.get(path)

    async def list_org_units(self) -> list[OrgUnit]:
        """Every unit, by path (so a parent comes before its children)."""
        return [self._t.units[p] for p in sorted(self._t.units)]

    async def get_party(self, kind: PartyKind, party_id: str) -> Party | None:
        """The customer, app or agent with that id, or None."""
        return self._t.parties[kind].get(party_id)

    async def list_parties(self, kind: PartyKind) -> list[Party]:
        """Every customer, app or agent, by id."""
        rows = self._t.parties[kind]
        return [rows[i] for i in sorted(rows)]

    async def get_setting(self, name: str) -> str | None:
        """A stored setting, or None."""
        setting = self._t.settings.get(name)
        return None if setting is None else setting.value

    async def model_versions(self, model: str) -> list[ModelVersion]:
        """Every version of `model`, oldest first."""
        return sorted(
            (v for v in self._t.versions.values() if v.model == model), key=lambda v: v.version
        )

    async def add_model_version(self, version: ModelVersion) -> None:
        """Store a version unaudited (version 1, from the config file).

        Raises:
            AlreadyExists: that model has that version already.
        """
        _insert(self._t, version)

    async def commit(self, changes: Sequence[Change], draft: AuditDraft) -> AuditEvent:
        """Apply `changes` and append `draft` as the next event: all of it or, on error, none.

        Raises:
            AlreadyExists: an insert collides with a stored id or unique name.
            Stale: an update or delete found the record changed or gone.
        """
        staged = self._t.copy()
        for change in changes:
            _apply(staged, change)
        last_id, last_hash = staged.head or (0, ZERO_HASH)
        event = seal(draft, last_id + 1, last_hash)
        staged.events.append(event)
        staged.head = (event.id, event.hash)
        self._t = staged
        return event

    async def audit_events(self, query: AuditQuery) -> list[AuditEvent]:
        """The events matching `query`, by id, at most `query.limit` of them."""
        return [e for e in self._t.events if query.matches(e)][: query.limit]

    async def audit_head(self) -> tuple[int, str] | None:
        """The id and hash of the last event written."""
        return self._t.head

    async def record_spans(self, spans: Sequence[Span]) -> None:
        """Store a batch of spans, all of them or none, registering agents seen the first time.

        Raises:
            ValueError: a `request_id` is stored already or appears twice in the batch.
            TypeError: a span's `extra` is not JSON-serializable.
        """
        copies = [_copy(span) for span in spans]
        seen: set[str] = set()
        for span in copies:
            if span.request_id in self._spans or span.request_id in seen:
                raise ValueError(f"a span with request_id {span.request_id!r} is recorded already")
            seen.add(span.request_id)
        for span in copies:
            self._spans[span.request_id] = span
        self._redactions.add(copies)
        self._usage.add(copies)
        agents = self._t.parties["agent"]
        for agent_id, org_path, first, last in agent_sightings(copies):
            known = agents.get(agent_id)
            if known is None:
                agents[agent_id] = Party("agent", agent_id, "", org_path, {}, first, first, last)
            else:
                agents[agent_id] = replace(known, last_seen=max(known.last_seen or 0.0, last))

    async def list_spans(self) -> list[Span]:
        """Every span, by `started_at`, then in the order they were recorded."""
        return sorted((_copy(s) for s in self._spans.values()), key=lambda s: s.started_at)

    async def save_video_job(self, job: VideoJob) -> None:
        """Store a new video job.

        Raises:
            AlreadyExists: a job with that id is stored already.
        """
        self._video_jobs.save(job)

    async def video_job(self, job_id: str) -> VideoJob | None:
        """The video job with that id, or None."""
        return self._video_jobs.get(job_id)

    async def tool_pins(self, server: str | None = None) -> list[ToolPin]:
        """Every pin (of one upstream server), by server then tool."""
        return [p for k, p in sorted(self._pins.items()) if server in (None, p.server)]

    async def put_tool_pin(self, pin: ToolPin) -> None:
        """Insert or replace the pin of (`pin.server`, `pin.tool`)."""
        self._pins[(pin.server, pin.tool)] = pin

    async def commit_tool_pin(self, pin: ToolPin, draft: AuditDraft) -> AuditEvent:
        """Insert or replace `pin` and append `draft` as the next audit event: both or none."""
        event = await self.commit((), draft)  # never suspends: nothing can run in between
        self._pins[(pin.server, pin.tool)] = pin
        return event

    async def tool_costs(self, session_id: str | None = None) -> list[ToolCost]:
        """Calls and cost per tool over the stored tool spans (of one session), by tool."""
        return tool_costs_of(
            [
                {"tool": s.tool, "status": s.status, "cost_usd": s.cost_usd}
                for s in self._spans.values()
                if s.tool is not None and session_id in (None, s.session_id, s.trace_id)
            ]
        )

    async def redaction_events(self, query: RedactionQuery) -> list[RedactionEvent]:
        """Redaction events matching `query`, by id."""
        return self._redactions.query(query)

    async def delete_redactions_before(self, cutoff: float) -> int:
        """Delete redaction events older than `cutoff`; the number deleted."""
        return self._redactions.delete_before(cutoff)

    async def usage(self, query: UsageQuery) -> list[UsageRow]:
        """A report's groups, from the hourly aggregates."""
        return self._usage.query(query)

    async def session_spans(self, session: str) -> list[Span]:
        """Spans whose session id or trace id is `session`, by start time."""
        hits = (s for s in self._spans.values() if session in (s.session_id, s.trace_id))
        return sorted((_copy(s) for s in hits), key=lambda s: s.started_at)

    async def add_reconciliation(self, record: Reconciliation) -> None:
        """Store a reconciliation import."""
        self._reconciliations.add(record)

    async def list_reconciliations(self, limit: int) -> list[Reconciliation]:
        """The latest imports, newest first."""
        return self._reconciliations.latest(limit)

    async def get_reconciliation(self, reconciliation_id: str) -> Reconciliation | None:
        """One import, or None."""
        return self._reconciliations.get(reconciliation_id)

    async def rebuild_usage(self, page: int = 5000) -> int:
        """Recompute the usage aggregates from the stored spans; the number of spans counted."""
        self._usage = MemoryUsage()
        self._usage.add(list(self._spans.values()))
        return len(self._spans)

    async def span_findings(self, request_ids: Sequence[str]) -> list[RedactionEvent]:
        """Redaction-log events of these calls, by id."""
        wanted = set(request_ids)
        everything = RedactionQuery(limit=2**62)
        return [e for e in self._redactions.query(everything) if e.request_id in wanted]

    async def add_alert(self, alert: AlertRecord) -> bool:
        """Store `alert`; False (nothing stored) when its `dedupe_key` is stored already."""
        return await self._alerts.add_alert(alert)

    async def list_alerts(self, query: AlertQuery) -> list[AlertRecord]:
        """Alerts matching `query`, newest first."""
        return await self._alerts.list_alerts(query)

    async def acknowledge_alert(self, alert_id: str, by: str, at: float) -> bool:
        """Acknowledge an unacknowledged alert; False when absent or acknowledged already."""
        return await self._alerts.acknowledge_alert(alert_id, by, at)

    async def due_alerts(self, now: float, limit: int) -> list[AlertRecord]:
        """Pending alerts whose next delivery attempt is due, earliest first."""
        return await self._alerts.due_alerts(now, limit)

    async def claim_alert(self, alert_id: str, attempts: int, lease_until: float) -> bool:
        """Take the next delivery attempt of a pending alert still at `attempts`."""
        return await self._alerts.claim_alert(alert_id, attempts, lease_until)

    async def record_delivery(
        self,
        alert_id: str,
        delivery: Delivery,
        delivered_to: tuple[str, ...],
        next_attempt_at: float | None,
        last_error: str | None,
        at: float,
    ) -> None:
        """Store the outcome of a delivery attempt."""
        await self._alerts.record_delivery(
            alert_id, delivery, delivered_to, next_attempt_at, last_error, at
        )


def _apply(t: _Tables, change: Change) -> None:
    match change:
        case Insert(record=record):
            _insert(t, record)
        case Update(before=before, after=after):
            if _identity(before) != _identity(after):
                raise ValueError("an update cannot change a record's table or primary key")
            _expect(t, before)
            stored = _stored(t, before)
            if isinstance(after, Party) and isinstance(stored, Party):
                after = replace(after, last_seen=stored.last_seen)  # traffic's, not the admin's
            _put(t, after, replacing=True)
        case Delete(record=record):
            _expect(t, record)
            if isinstance(record, OrgUnit) and any(
                u.parent == record.path for u in t.units.values()
            ):
                raise Stale(f"org unit {record.path} still has child units")
            _delete(t, record)
        case _:
            assert_never(change)


def _identity(record: AuditedRecord) -> tuple[str, str]:
    match record:
        case KeyRecord():
            return ("key", record.id)
        case OrgUnit():
            return ("org_unit", record.path)
        case Party():
            return (record.kind, record.id)
        case Setting():
            return ("setting", record.name)
        case ModelVersion():
            return ("model_version", f"{record.model}/{record.version}")
        case _:
            assert_never(record)


def _stored(t: _Tables, record: AuditedRecord) -> AuditedRecord | None:
    match record:
        case KeyRecord():
            return t.keys.get(record.id)
        case OrgUnit():
            return t.units.get(record.path)
        case Party():
            return t.parties[record.kind].get(record.id)
        case Setting():
            return t.settings.get(record.name)
        case ModelVersion():
            return t.versions.get((record.model, record.version))
        case _:
            assert_never(record)


def _expect(t: _Tables, record: AuditedRecord) -> None:
    stored = _stored(t, record)
    if isinstance(stored, Party) and isinstance(record, Party):
        # Traffic moves `last_seen` behind the admin's back; it is not part of the record's state.
        stored = replace(stored, last_seen=record.last_seen)
    if stored != record:
        raise Stale(
            f"{_identity(record)[0]} {_identity(record)[1]} is gone or was changed meanwhile"
        )


def _insert(t: _Tables, record: AuditedRecord) -> None:
    if _stored(t, record) is not None:
        raise _taken(record)
    _put(t, record, replacing=False)


def _put(t: _Tables, record: AuditedRecord, *, replacing: bool) -> None:
    match record:
        case KeyRecord():
            hashes = {record.key_hash, record.previous_hash} - {None}
            for other in t.keys.values():
                if replacing and other.id == record.id:
                    continue
                if other.name == record.name or hashes & {other.key_hash, other.previous_hash}:
                    raise _taken(record)
            t.keys[record.id] = record
        case OrgUnit():
            if record.parent is not None and record.parent not in t.units:
                raise Stale(f"org unit {record.path}: its parent {record.parent} is gone")
            t.units[record.path] = record
        case Party():
            t.parties[record.kind][record.id] = record
        case Setting():
            t.settings[record.name] = record
        case ModelVersion():
            t.versions[(record.model, record.version)] = record
        case _:
            assert_never(record)


def _delete(t: _Tables, record: AuditedRecord) -> None:
    match record:
        case KeyRecord():
            del t.keys[record.id]
        case OrgUnit():
            del t.units[record.path]
        case Party():
            del t.parties[record.kind][record.id]
        case Setting():
            del t.settings[record.name]
        case ModelVersion():
            del t.versions[(record.model, record.version)]
        case _:
            assert_never(record)


def _taken(record: AuditedRecord) -> AlreadyExists:
    kind, ident = _identity(record)
    if isinstance(record, KeyRecord):
        return KeyAlreadyExists(f"a key with id {record.id!r} or name {record.name!r} exists")
    return AlreadyExists(f"{kind} {ident}: the id or a unique name is taken")


def _copy(span: Span) -> Span:
    # `extra` goes through JSON as it does in SQLite, so a value only memory could hold fails here.
    return replace(
        span,
        attempts=[dataclasses.replace(a) for a in span.attempts],
        flags=list(span.flags),
        extra=json.loads(json.dumps(span.extra)),
    )
