"""Records ⇄ table rows: the column lists and codecs a SQL backend shares.

A `Row` names a record's table, its primary key, the columns an admin change writes, and the
columns an update or delete compares against the record it was based on (optimistic concurrency:
a change based on a stale read touches nothing). Traffic bookkeeping (`last_seen`) is neither
written nor compared by admin changes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, assert_never

import orjson

from core.access import KeyRecord, Scopes
from core.audit import AuditedRecord, AuditEvent, Setting
from core.model_versions import ModelVersion
from core.orgs import OrgUnit, Party, PartyKind
from core.tracing import Attempt, Span

PARTY_TABLES: Mapping[PartyKind, str] = {"customer": "customers", "app": "apps", "agent": "agents"}

KEY_COLUMNS = (
    "id",
    "name",
    "key_hash",
    "prefix",
    "org_path",
    "role",
    "app",
    "customer",
    "scopes",
    "status",
    "created_at",
    "expires_at",
    "tags",
    "updated_at",
    "previous_hash",
    "previous_prefix",
    "retires_at",
    "rotated_at",
)
ORG_UNIT_COLUMNS = ("path", "parent", "level", "title", "tags", "created_at", "updated_at")
PARTY_COLUMNS = ("id", "name", "org_path", "tags", "created_at", "updated_at", "last_seen")
AUDIT_COLUMNS = (
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
SPAN_COLUMNS = (
    "request_id, span_id, trace_id, parent_span_id, agent_id, session_id, key_id, org_path, app, "
    "customer, modality, route, model_requested, provider, upstream_model, stream, attempts, "
    "attempts_json, input_tokens, output_tokens, cached_tokens, reasoning_tokens, cost_usd, "
    "latency_ms, ttft_ms, status, http_status, error_code, flags, redactions, extra, started_at, "
    "tool, cache_write_tokens, audio_seconds, images, video_seconds, upstream_ms"
)


class RowLike(Protocol):
    """A fetched row (`sqlite3.Row`, an asyncpg `Record`): values by column name."""

    def __getitem__(self, key: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class Row:
    """One record as a table row."""

    table: str
    key: tuple[str, ...]
    values: dict[str, object]
    compared: tuple[str, ...]

    @property
    def key_values(self) -> tuple[object, ...]:
        return tuple(self.values[c] for c in self.key)


def row_of(record: AuditedRecord) -> Row:
    """The row an admin change writes for `record`."""
    match record:
        case KeyRecord():
            values = dict(zip(KEY_COLUMNS, key_row(record), strict=True))
            return Row("keys", ("id",), values, _scalar(values))
        case OrgUnit():
            values = dict(zip(ORG_UNIT_COLUMNS, org_unit_row(record), strict=True))
            return Row("org_units", ("path",), values, _scalar(values))
        case Party():
            values = dict(zip(PARTY_COLUMNS, party_row(record), strict=True))
            del values["last_seen"]
            return Row(PARTY_TABLES[record.kind], ("id",), values, _scalar(values))
        case Setting():
            values = {"name": record.name, "value": record.value, "updated_at": record.updated_at}
            return Row("settings", ("name",), values, tuple(values))
        case ModelVersion():
            values = {
                "model": record.model,
                "version": record.version,
                "routing": record.routing_json,
                "at": record.at,
                "actor": record.actor,
            }
            return Row("model_versions", ("model", "version"), values, tuple(values))
        case _:
            assert_never(record)


MODEL_VERSION_COLUMNS = ("model", "version", "routing", "at", "actor")


def model_version_from(row: RowLike) -> ModelVersion:
    return ModelVersion(
        model=row["model"],
        version=row["version"],
        routing_json=row["routing"],
        at=row["at"],
        actor=row["actor"],
    )


def _scalar(values: Mapping[str, object]) -> tuple[str, ...]:
    # JSON columns are left out of the comparison: rows written before migration 2 hold their
    # JSON in another key order, and every admin change moves `updated_at` anyway.
    return tuple(c for c in values if c not in ("scopes", "tags"))


def key_row(record: KeyRecord) -> tuple[object, ...]:
    # Order matches KEY_COLUMNS.
    return (
        record.id,
        record.name,
        record.key_hash,
        record.prefix,
        record.org_path,
        record.role,
        record.app,
        record.customer,
        dump_json(dataclasses.asdict(record.scopes)),
        record.status,
        record.created_at,
        record.expires_at,
        dump_json(dict(record.tags)),
        record.updated_at,
        record.previous_hash,
        record.previous_prefix,
        record.retires_at,
        record.rotated_at,
    )


def key_from(row: RowLike) -> KeyRecord:
    return KeyRecord(
        id=row["id"],
        name=row["name"],
        key_hash=row["key_hash"],
        prefix=row["prefix"],
        org_path=row["org_path"],
        role=row["role"],
        app=row["app"],
        customer=row["customer"],
        scopes=scopes_from(row["scopes"]),
        status=row["status"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        tags=json.loads(row["tags"]),
        updated_at=row["updated_at"],
        previous_hash=row["previous_hash"],
        previous_prefix=row["previous_prefix"],
        retires_at=row["retires_at"],
        rotated_at=row["rotated_at"],
    )


def scopes_from(text: str) -> Scopes:
    data = json.loads(text)
    default = Scopes()
    # Fields missing from an older row take today's defaults.
    return Scopes(
        models=tuple(data.get("models", default.models)),
        tools=tuple(data.get("tools", default.tools)),
        modalities=tuple(data.get("modalities", default.modalities)),
        egress=str(data.get("egress", default.egress)),
        ip_allowlist=tuple(data.get("ip_allowlist", default.ip_allowlist)),
        privacy_mode=bool(data.get("privacy_mode", default.privacy_mode)),
    )


def org_unit_row(unit: OrgUnit) -> tuple[object, ...]:
    # Order matches ORG_UNIT_COLUMNS.
    return (
        unit.path,
        unit.parent,
        unit.level,
        unit.title,
        dump_json(dict(unit.tags)),
        unit.created_at,
        unit.updated_at,
    )


def org_unit_from(row: RowLike) -> OrgUnit:
    return OrgUnit(
        path=row["path"],
        title=row["title"],
        tags=json.loads(row["tags"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def party_row(party: Party) -> tuple[object, ...]:
    # Order matches PARTY_COLUMNS.
    return (
        party.id,
        party.name,
        party.org_path,
        dump_json(dict(party.tags)),
        party.created_at,
        party.updated_at,
        party.last_seen,
    )


def party_from(kind: PartyKind, row: RowLike) -> Party:
    return Party(
        kind=kind,
        id=row["id"],
        name=row["name"],
        org_path=row["org_path"],
        tags=json.loads(row["tags"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_seen=row["last_seen"],
    )


def audit_row(event: AuditEvent) -> tuple[object, ...]:
    # Order matches AUDIT_COLUMNS; before/after as canonical JSON, as they were hashed.
    return (
        event.id,
        event.at,
        event.actor,
        event.actor_role,
        event.action,
        event.object,
        None if event.before is None else dump_json(event.before),
        None if event.after is None else dump_json(event.after),
        event.source,
        event.prev_hash,
        event.hash,
    )


def audit_from(row: RowLike) -> AuditEvent:
    return AuditEvent(
        id=row["id"],
        at=row["at"],
        actor=row["actor"],
        actor_role=row["actor_role"],
        action=row["action"],
        object=row["object"],
        before=None if row["before"] is None else json.loads(row["before"]),
        after=None if row["after"] is None else json.loads(row["after"]),
        source=row["source"],
        prev_hash=row["prev_hash"] or "",
        hash=row["hash"],
    )


def agent_sightings(spans: Sequence[Span]) -> list[tuple[str, str | None, float, float]]:
    """Each agent id in a batch once: (id, org path of its first span, first seen, last seen)."""
    seen: dict[str, tuple[str, str | None, float, float]] = {}
    for span in spans:
        if not span.agent_id:
            continue
        at = span.started_at
        known = seen.get(span.agent_id)
        if known is None:
            seen[span.agent_id] = (span.agent_id, span.org_path, at, at)
        else:
            seen[span.agent_id] = (known[0], known[1], min(known[2], at), max(known[3], at))
    return list(seen.values())


def span_row(span: Span) -> tuple[object, ...]:
    # Order matches SPAN_COLUMNS.
    return (
        span.request_id,
        span.span_id,
        span.trace_id,
        span.parent_span_id,
        span.agent_id,
        span.session_id,
        span.key_id,
        span.org_path,
        span.app,
        span.customer,
        span.modality,
        span.route,
        span.model_requested,
        span.provider,
        span.upstream_model,
        int(span.stream),
        len(span.attempts),
        _span_json([_attempt_dict(a) for a in span.attempts]),
        span.input_tokens,
        span.output_tokens,
        span.cached_tokens,
        span.reasoning_tokens,
        span.cost_usd,
        span.latency_ms,
        span.ttft_ms,
        span.status,
        span.http_status,
        span.error_code,
        _span_json(span.flags) if span.flags else "[]",
        span.redactions,
        _span_json(span.extra) if span.extra else "{}",
        span.started_at,
        span.tool,
        span.cache_write_tokens,
        span.audio_seconds,
        span.images,
        span.video_seconds,
        span.upstream_ms,
    )


def span_from(row: RowLike) -> Span:
    return Span(
        request_id=row["request_id"],
        span_id=row["span_id"],
        trace_id=row["trace_id"],
        started_at=row["started_at"],
        parent_span_id=row["parent_span_id"],
        agent_id=row["agent_id"],
        session_id=row["session_id"],
        key_id=row["key_id"],
        org_path=row["org_path"],
        app=row["app"],
        customer=row["customer"],
        modality=row["modality"],
        route=row["route"],
        model_requested=row["model_requested"],
        provider=row["provider"],
        upstream_model=row["upstream_model"],
        stream=bool(row["stream"]),
        attempts=[_attempt(a) for a in json.loads(row["attempts_json"])],
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        cached_tokens=row["cached_tokens"],
        reasoning_tokens=row["reasoning_tokens"],
        cost_usd=row["cost_usd"],
        latency_ms=row["latency_ms"],
        ttft_ms=row["ttft_ms"],
        status=row["status"],
        http_status=row["http_status"],
        error_code=row["error_code"],
        flags=list(json.loads(row["flags"])),
        redactions=row["redactions"],
        extra=json.loads(row["extra"]),
        tool=row["tool"],
        cache_write_tokens=row["cache_write_tokens"],
        audio_seconds=row["audio_seconds"],
        images=row["images"],
        video_seconds=row["video_seconds"],
        upstream_ms=row["upstream_ms"],
    )


_ATTEMPT_FIELDS = tuple(f.name for f in dataclasses.fields(Attempt))
_PLAIN = frozenset({str, int, float, bool, type(None)})


def _attempt_dict(attempt: Attempt) -> dict[str, Any]:
    """`dataclasses.asdict(attempt)`, at a fraction of its cost (one per span on the loop)."""
    out = {name: getattr(attempt, name) for name in _ATTEMPT_FIELDS}
    for value in out.values():
        if type(value) not in _PLAIN:
            # Not exactly a scalar (a subclass, a container): asdict's deep copy, as before.
            return dataclasses.asdict(attempt)
    return out


def _attempt(data: dict[str, Any]) -> Attempt:
    return Attempt(
        provider=data["provider"],
        model=data["model"],
        status=data["status"],
        error_code=data.get("error_code"),
        latency_ms=data.get("latency_ms", 0.0),
    )


# What `json.dumps` builds on every call with these arguments, built once (the same text).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def _span_json(value: object) -> str:
    # A span's JSON columns are read back as JSON, never hashed as text: orjson's output (keys
    # in their order) is fine there, at a fraction of `dump_json`'s cost, once per span.
    return orjson.dumps(value).decode()


def dump_json(value: object) -> str:
    # Sorted keys: the same value is always the same text (audit snapshots are hashed as text).
    return _ENCODER.encode(value)
