"""The schema, as an ordered list of versioned migrations.

A backend records each applied version in `schema_migrations(version, applied_at)` and applies the
rest in order, each in its own transaction. Versions are never edited once released: a change is a
new migration. The SQL here is SQLite's; a PostgreSQL backend keeps the same versions with the same
meaning (its own types: DOUBLE PRECISION for REAL, IDENTITY for AUTOINCREMENT).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# `schema_migrations` exists before any migration runs, so it is not itself a migration.
SCHEMA_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_at REAL NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema: a version number and the statements that reach it."""

    version: int
    sql: str


class UnknownSchemaVersion(Exception):
    """The database carries a migration this build does not know (it was written by a newer one)."""


_KEYS_SPANS_AUDIT = """
CREATE TABLE keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    org_path TEXT NOT NULL,
    role TEXT NOT NULL,
    app TEXT,
    customer TEXT,
    scopes TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL
);

CREATE TABLE spans (
    id INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    span_id TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    parent_span_id TEXT,
    agent_id TEXT,
    session_id TEXT,
    key_id TEXT,
    org_path TEXT,
    app TEXT,
    customer TEXT,
    modality TEXT NOT NULL,
    route TEXT NOT NULL,
    model_requested TEXT,
    provider TEXT,
    upstream_model TEXT,
    stream INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    attempts_json TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cost_usd REAL,
    latency_ms REAL NOT NULL,
    ttft_ms REAL,
    status TEXT NOT NULL,
    http_status INTEGER NOT NULL,
    error_code TEXT,
    flags TEXT NOT NULL,
    redactions INTEGER NOT NULL,
    extra TEXT NOT NULL,
    started_at REAL NOT NULL
);
CREATE INDEX spans_started_at ON spans (started_at);
CREATE INDEX spans_key_id ON spans (key_id);
CREATE INDEX spans_trace_id ON spans (trace_id);
CREATE INDEX spans_org_path ON spans (org_path);
CREATE INDEX spans_session_id ON spans (session_id);

-- "before", "after" and "end" are SQL keywords: quoted so the names survive on PostgreSQL too.
CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    "before" TEXT,
    "after" TEXT,
    source TEXT NOT NULL,
    prev_hash TEXT,
    hash TEXT NOT NULL UNIQUE
);
CREATE INDEX audit_events_at ON audit_events (at);

CREATE TABLE redaction_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    span_id TEXT,
    key_id TEXT,
    org_path TEXT,
    scope TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    score REAL,
    action TEXT NOT NULL,
    "start" INTEGER,
    "end" INTEGER,
    value_hash TEXT,
    at REAL NOT NULL
);
CREATE INDEX redaction_events_at ON redaction_events (at);
CREATE INDEX redaction_events_request_id ON redaction_events (request_id);
"""

# Version 2: key lifecycle (tags, rotation grace, lineage), the organization model, settings, and
# the audit chain's role column and head record (the head is what reveals a deleted last event).
_ACCESS_AND_ORGANIZATION = """
ALTER TABLE keys ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';
ALTER TABLE keys ADD COLUMN updated_at REAL NOT NULL DEFAULT 0;
UPDATE keys SET updated_at = created_at;
ALTER TABLE keys ADD COLUMN previous_hash TEXT;
ALTER TABLE keys ADD COLUMN previous_prefix TEXT;
ALTER TABLE keys ADD COLUMN retires_at REAL;
ALTER TABLE keys ADD COLUMN rotated_at REAL;
CREATE UNIQUE INDEX keys_previous_hash ON keys (previous_hash);
CREATE INDEX keys_org_path ON keys (org_path);

ALTER TABLE audit_events ADD COLUMN actor_role TEXT NOT NULL DEFAULT '';
CREATE INDEX audit_events_actor ON audit_events (actor);
CREATE INDEX audit_events_object ON audit_events (object);
CREATE INDEX audit_events_action ON audit_events (action);

CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_id INTEGER NOT NULL,
    last_hash TEXT NOT NULL
);

CREATE TABLE org_units (
    path TEXT PRIMARY KEY,
    parent TEXT REFERENCES org_units (path),
    level TEXT NOT NULL,
    title TEXT NOT NULL,
    tags TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX org_units_parent ON org_units (parent);

CREATE TABLE customers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    org_path TEXT,
    tags TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_seen REAL
);

CREATE TABLE apps (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    org_path TEXT,
    tags TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_seen REAL
);

CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    org_path TEXT,
    tags TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_seen REAL
);

CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""

# Version 3: numbered routing versions of virtual models (canary changes and rollbacks).
_MODEL_VERSIONS = """
CREATE TABLE model_versions (
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    routing TEXT NOT NULL,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    UNIQUE (model, version)
);
"""

# Version 5 (PII and moderation): which filter made each redaction event, and the indexes the
# security team's queries (by key, by team) use.
_REDACTION_LOG = """
ALTER TABLE redaction_events ADD COLUMN filter TEXT NOT NULL DEFAULT 'pii';
CREATE INDEX redaction_events_key ON redaction_events (key_id, at);
CREATE INDEX redaction_events_org ON redaction_events (org_path, at);
"""

# Units beyond tokens, on every span: the tool an MCP call ran, media and audio units, prompt-cache
# writes, and the upstream's own time (GPU-time cost for self-hosted targets).
_SPAN_UNITS = """
ALTER TABLE spans ADD COLUMN tool TEXT;
ALTER TABLE spans ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE spans ADD COLUMN audio_seconds REAL NOT NULL DEFAULT 0;
ALTER TABLE spans ADD COLUMN images INTEGER NOT NULL DEFAULT 0;
ALTER TABLE spans ADD COLUMN video_seconds REAL NOT NULL DEFAULT 0;
ALTER TABLE spans ADD COLUMN upstream_ms REAL;
CREATE INDEX spans_tool ON spans (tool);
"""

# Version 10 (operations): hourly and daily usage aggregates, kept in the span batch's
# transaction, so a report reads these rows and never scans spans. '' stands for an absent
# dimension; `dims` is a digest of all the dimension values (a short unique key is much cheaper
# to maintain on every span batch than one over thirteen text columns).
_USAGE_AGGREGATES = """
CREATE TABLE usage_hourly (
    bucket INTEGER NOT NULL,
    dims TEXT NOT NULL,
    department TEXT NOT NULL,
    team TEXT NOT NULL,
    project TEXT NOT NULL,
    customer TEXT NOT NULL,
    app TEXT NOT NULL,
    agent TEXT NOT NULL,
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    provider TEXT NOT NULL,
    upstream_model TEXT NOT NULL,
    tool TEXT NOT NULL,
    modality TEXT NOT NULL,
    requests INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    unpriced INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    audio_seconds REAL NOT NULL,
    images INTEGER NOT NULL,
    video_seconds REAL NOT NULL,
    cost_usd REAL NOT NULL,
    latency_ms REAL NOT NULL,
    upstream_ms REAL NOT NULL,
    UNIQUE (bucket, dims)
);
CREATE INDEX usage_hourly_key ON usage_hourly (key_id, bucket);

-- The same rows per UTC day: reports over whole days read 24 times fewer rows.
CREATE TABLE usage_daily (
    bucket INTEGER NOT NULL,
    dims TEXT NOT NULL,
    department TEXT NOT NULL,
    team TEXT NOT NULL,
    project TEXT NOT NULL,
    customer TEXT NOT NULL,
    app TEXT NOT NULL,
    agent TEXT NOT NULL,
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    provider TEXT NOT NULL,
    upstream_model TEXT NOT NULL,
    tool TEXT NOT NULL,
    modality TEXT NOT NULL,
    requests INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    unpriced INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    audio_seconds REAL NOT NULL,
    images INTEGER NOT NULL,
    video_seconds REAL NOT NULL,
    cost_usd REAL NOT NULL,
    latency_ms REAL NOT NULL,
    upstream_ms REAL NOT NULL,
    UNIQUE (bucket, dims)
);
CREATE INDEX usage_daily_key ON usage_daily (key_id, bucket);
CREATE INDEX usage_daily_team ON usage_daily (team, bucket);

-- Each imported provider export and what its comparison found (the table as JSON).
CREATE TABLE reconciliations (
    id TEXT PRIMARY KEY,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    provider TEXT NOT NULL,
    measure TEXT NOT NULL,
    first_day TEXT NOT NULL,
    last_day TEXT NOT NULL,
    differences INTEGER NOT NULL,
    result TEXT NOT NULL
);
CREATE INDEX reconciliations_at ON reconciliations (at);
"""

# Version 7 (governance): alerts, kept for the admin API, with their webhook outbox on the same
# row (delivery state, attempts, next attempt) so a restart resumes pending deliveries.
_ALERTS = """
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    level TEXT NOT NULL,
    target TEXT NOT NULL,
    severity TEXT NOT NULL,
    message TEXT NOT NULL,
    details TEXT NOT NULL,
    dedupe_key TEXT UNIQUE,
    delivery TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at REAL,
    delivered_to TEXT NOT NULL,
    delivered_at REAL,
    last_error TEXT,
    acknowledged_at REAL,
    acknowledged_by TEXT
);
CREATE INDEX alerts_at ON alerts (at);
CREATE INDEX alerts_outbox ON alerts (delivery, next_attempt_at);
CREATE INDEX alerts_kind ON alerts (kind, at);
"""

# Version 8 (MCP bridge): the pinned hash of each upstream MCP tool, and the hash it changed to.
_TOOL_PINS = """
CREATE TABLE tool_pins (
    server TEXT NOT NULL,
    tool TEXT NOT NULL,
    digest TEXT NOT NULL,
    first_seen REAL NOT NULL,
    status TEXT NOT NULL,
    pending_digest TEXT,
    changed_at REAL,
    approved_at REAL,
    PRIMARY KEY (server, tool)
);
"""

# Version 9 (media): video jobs, agentgw's id mapped to the upstream's and owned by one key.
_VIDEO_JOBS = """
CREATE TABLE video_jobs (
    id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    provider TEXT NOT NULL,
    upstream_model TEXT NOT NULL,
    upstream_id TEXT NOT NULL,
    seconds REAL NOT NULL,
    size TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX video_jobs_key ON video_jobs (key_id, created_at);
"""

# Version 12 (operations): price versions added through the admin API, console sign-in sessions
# (hashed tokens), and the one-time fill of the usage aggregates from spans recorded before
# version 10 (a marker row, present only when there are spans and no aggregates yet).
_PRICES_SESSIONS_BACKFILL = """
CREATE TABLE price_versions (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    effective_from REAL NOT NULL,
    price TEXT NOT NULL,
    added_at REAL NOT NULL,
    added_by TEXT NOT NULL,
    UNIQUE (provider, model, effective_from)
);
CREATE TABLE console_sessions (
    token_hash TEXT PRIMARY KEY,
    actor TEXT NOT NULL,
    created REAL NOT NULL,
    last_used REAL NOT NULL
);
CREATE INDEX console_sessions_created ON console_sessions (created);
CREATE TABLE usage_backfill (
    name TEXT PRIMARY KEY,
    next_id INTEGER NOT NULL,
    end_id INTEGER NOT NULL
);
INSERT INTO usage_backfill (name, next_id, end_id)
SELECT 'spans', 0, id FROM spans
WHERE id = (SELECT MAX(id) FROM spans) AND NOT EXISTS (SELECT 1 FROM usage_hourly);
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, _KEYS_SPANS_AUDIT),
    Migration(2, _ACCESS_AND_ORGANIZATION),
    Migration(3, _MODEL_VERSIONS),
    Migration(5, _REDACTION_LOG),
    Migration(6, _SPAN_UNITS),
    Migration(7, _ALERTS),
    Migration(8, _TOOL_PINS),
    Migration(9, _VIDEO_JOBS),
    Migration(10, _USAGE_AGGREGATES),
    Migration(12, _PRICES_SESSIONS_BACKFILL),
)
"""Every migration, oldest first; the last one's version is the schema this build writes."""


def pending(applied: Iterable[int]) -> list[Migration]:
    """The migrations still to apply, in order, given the versions a database records.

    Raises:
        UnknownSchemaVersion: the database records a version this build does not have.
    """
    done = set(applied)
    unknown = sorted(done - {m.version for m in MIGRATIONS})
    if unknown:
        raise UnknownSchemaVersion(
            f"the database has schema version(s) {unknown} but this agentgw knows only up to "
            f"{MIGRATIONS[-1].version}: upgrade agentgw or use another database file"
        )
    return [m for m in MIGRATIONS if m.version not in done]
