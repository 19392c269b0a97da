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

MIGRATIONS: tuple[Migration, ...] = (Migration(1, _KEYS_SPANS_AUDIT),)
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
