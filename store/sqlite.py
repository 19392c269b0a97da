"""`SQLiteStore`: the embedded default, one file on aiosqlite.

One connection in WAL mode (readers never wait for the writer; `synchronous=NORMAL` is safe under
WAL and spares an fsync per commit). The connection runs in autocommit mode and every write that
spans statements is an explicit `BEGIN IMMEDIATE … COMMIT`, so a transaction's bounds are exactly
what this file says. A lock serializes use of the connection: two coroutines interleaving on one
connection would otherwise share, and could roll back, each other's transaction.

aiosqlite drives its thread with asyncio futures, so this backend needs the asyncio event loop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import anyio

from core.access import KeyRecord
from core.alert_store import AlertQuery, AlertRecord, Delivery
from core.audit import AuditDraft, AuditEvent, AuditQuery, Change
from core.mcp import ToolCost, ToolPin
from core.media import VideoJob
from core.model_versions import ModelVersion
from core.ops.reconciliation import Reconciliation
from core.orgs import OrgUnit, Party, PartyKind
from core.redaction import RedactionEvent, RedactionQuery
from core.reports import UsageQuery, UsageRow
from core.state import AlreadyExists, KeyAlreadyExists
from core.tracing import Span
from store.alerts import (
    ACKNOWLEDGE_ALERT,
    CLAIM_ALERT,
    INSERT_ALERT,
    RECORD_DELIVERY,
    SELECT_DUE,
    alert_from,
    alert_row,
    delivery_params,
    select_alerts,
)
from store.media_jobs import INSERT_VIDEO_JOB, SELECT_VIDEO_JOB, video_job_from, video_job_row
from store.ops_store import OpsMethods, backfill_at_open
from store.reconciliations import (
    INSERT_RECONCILIATION,
    SELECT_RECONCILIATION,
    SELECT_RECONCILIATIONS,
    reconciliation_from,
    reconciliation_row,
)
from store.redactions import (
    INSERT_REDACTION,
    SELECT_REDACTIONS,
    redaction_from,
    redaction_rows,
    select_redactions,
)
from store.rows import (
    KEY_COLUMNS,
    MODEL_VERSION_COLUMNS,
    ORG_UNIT_COLUMNS,
    PARTY_COLUMNS,
    PARTY_TABLES,
    SPAN_COLUMNS,
    agent_sightings,
    audit_from,
    key_from,
    key_row,
    model_version_from,
    org_unit_from,
    party_from,
    row_of,
    span_from,
    span_row,
)
from store.sqlite_changes import append_event, apply_change, audit_select
from store.sqlite_schema import (
    changed,
    marks,
    migrate,
    run,
    run_many,
    transaction,
    write_batch,
)
from store.tool_pins import (
    UPSERT_PIN,
    pin_from,
    pin_row,
    select_pins,
    select_tool_costs,
    tool_cost_from,
)
from store.usage import SPAN_PAGE, UPSERT_DAILY, UPSERT_HOURLY, usage_report, usage_rows

SQLITE_URL_PREFIX = "sqlite:///"

_KEYS = ", ".join(KEY_COLUMNS)
_INSERT_SPAN = f"INSERT INTO spans ({SPAN_COLUMNS}) VALUES ({marks(len(SPAN_COLUMNS.split(',')))})"
# An agent is registered by its first span; later spans only move `last_seen` forward.
_SIGHT_AGENT = (
    "INSERT INTO agents (id, name, org_path, tags, created_at, updated_at, last_seen) "
    "VALUES (?, '', ?, '{}', ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET last_seen = max(coalesce(last_seen, 0), excluded.last_seen)"
)


class SQLiteStore(OpsMethods):
    """A `core.state.Store` in one SQLite file."""

    def __init__(self, path: str, *, busy_timeout_ms: int = 5000) -> None:
        self._path = path
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._db: aiosqlite.Connection | None = None
        self._lock = anyio.Lock()

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        """The store for `sqlite:///relative.db` or `sqlite:////absolute/path.db`.

        Raises:
            ValueError: the URL is not a `sqlite:///` URL with a path.
        """
        if not url.startswith(SQLITE_URL_PREFIX) or len(url) == len(SQLITE_URL_PREFIX):
            raise ValueError(f"expected sqlite:///path, got {url!r}")
        return cls(url[len(SQLITE_URL_PREFIX) :])

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    async def open(self) -> None:
        """Create the file (and its directory) if missing, connect, and migrate the schema.

        Raises:
            store.migrations.UnknownSchemaVersion: the file was written by a newer agentgw.
            sqlite3.Error: the file cannot be opened or is not a database.
        """
        async with self._lock:
            if self._db is None:
                self._db = await self._connect()
        await backfill_at_open(self)

    async def _connect(self) -> aiosqlite.Connection:
        Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(self._path, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            # busy_timeout first: switching to WAL itself needs the lock another process may hold.
            await run(db, f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            await run(db, "PRAGMA journal_mode = WAL")
            await run(db, "PRAGMA synchronous = NORMAL")
            await run(db, "PRAGMA foreign_keys = ON")
            await migrate(db)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await db.close()
            raise
        return db

    async def aclose(self) -> None:
        """Wait for the write in progress, then close; every committed write is on disk."""
        async with self._lock:
            db, self._db = self._db, None
            if db is None:
                return
            with anyio.CancelScope(shield=True):
                try:
                    await run(db, "PRAGMA optimize")
                finally:
                    await db.close()

    # -- keys ----------------------------------------------------------------------------

    async def find_key(self, key_hash: str) -> KeyRecord | None:
        """The key whose current or previous secret has this hash, whatever its status."""
        rows = await self._select(
            f"SELECT {_KEYS} FROM keys WHERE key_hash = ? "
            f"UNION ALL SELECT {_KEYS} FROM keys WHERE previous_hash = ? LIMIT 1",
            (key_hash, key_hash),
        )
        return key_from(rows[0]) if rows else None

    async def create_key(self, record: KeyRecord) -> None:
        """Store a new key, unaudited.

        Raises:
            KeyAlreadyExists: the id, the name or the hash is taken.
        """
        row = key_row(record)
        async with self._connection() as db:
            try:
                await run(db, f"INSERT INTO keys ({_KEYS}) VALUES ({marks(len(row))})", row)
            except sqlite3.IntegrityError as exc:
                # Every constraint on `keys` a well-typed record can break is a uniqueness one.
                raise KeyAlreadyExists(
                    f"a key with id {record.id!r} or name {record.name!r} exists"
                ) from exc

    async def get_key(self, key_id: str) -> KeyRecord | None:
        """The key with that id, or None."""
        rows = await self._select(f"SELECT {_KEYS} FROM keys WHERE id = ?", (key_id,))
        return key_from(rows[0]) if rows else None

    async def list_keys(self) -> list[KeyRecord]:
        """Every key, oldest first (by `created_at`, then by insertion)."""
        rows = await self._select(f"SELECT {_KEYS} FROM keys ORDER BY created_at, rowid")
        return [key_from(row) for row in rows]

    async def set_key_status(self, key_id: str, status: str) -> bool:
        """Change a key's status, unaudited; False when there is no such key."""
        async with self._connection() as db:
            sql = "UPDATE keys SET status = ? WHERE id = ?"
            return await changed(db, sql, (status, key_id)) > 0

    # -- organization ----------------------------------------------------------------------

    async def get_org_unit(self, path: str) -> OrgUnit | None:
        """The unit with that path, or None."""
        cols = ", ".join(ORG_UNIT_COLUMNS)
        rows = await self._select(f"SELECT {cols} FROM org_units WHERE path = ?", (path,))
        return org_unit_from(rows[0]) if rows else None

    async def list_org_units(self) -> list[OrgUnit]:
        """Every unit, by path (so a parent comes before its children)."""
        cols = ", ".join(ORG_UNIT_COLUMNS)
        rows = await self._select(f"SELECT {cols} FROM org_units ORDER BY path")
        return [org_unit_from(row) for row in rows]

    async def get_party(self, kind: PartyKind, party_id: str) -> Party | None:
        """The customer, app or agent with that id, or None."""
        sql = f"SELECT {', '.join(PARTY_COLUMNS)} FROM {PARTY_TABLES[kind]} WHERE id = ?"
        rows = await self._select(sql, (party_id,))
        return party_from(kind, rows[0]) if rows else None

    async def list_parties(self, kind: PartyKind) -> list[Party]:
        """Every customer, app or agent, by id."""
        sql = f"SELECT {', '.join(PARTY_COLUMNS)} FROM {PARTY_TABLES[kind]} ORDER BY id"
        return [party_from(kind, row) for row in await self._select(sql)]

    async def get_setting(self, name: str) -> str | None:
        """A stored setting, or None."""
        rows = await self._select("SELECT value FROM settings WHERE name = ?", (name,))
        return str(rows[0]["value"]) if rows else None

    async def model_versions(self, model: str) -> list[ModelVersion]:
        """Every version of `model`, oldest first."""
        cols = ", ".join(MODEL_VERSION_COLUMNS)
        sql = f"SELECT {cols} FROM model_versions WHERE model = ? ORDER BY version"
        return [model_version_from(row) for row in await self._select(sql, (model,))]

    async def add_model_version(self, version: ModelVersion) -> None:
        """Store a version unaudited (version 1, from the config file).

        Raises:
            AlreadyExists: that model has that version already.
        """
        row = row_of(version)
        columns = ", ".join(row.values)
        sql = f"INSERT INTO model_versions ({columns}) VALUES ({marks(len(row.values))})"
        async with self._connection() as db:
            try:
                await run(db, sql, tuple(row.values.values()))
            except sqlite3.IntegrityError as exc:
                raise AlreadyExists(f"model {version.model} has version {version.version}") from exc

    # -- audit -----------------------------------------------------------------------------

    async def commit(self, changes: Sequence[Change], draft: AuditDraft) -> AuditEvent:
        """Apply `changes` and append `draft` as the next event, in one transaction.

        Raises:
            core.state.AlreadyExists: an insert collides with a stored id or unique name.
            core.state.Stale: an update or delete found the record changed or gone.
        """
        async with self._transaction() as db:
            for change in changes:
                await apply_change(db, change)
            return await append_event(db, draft)

    async def audit_events(self, query: AuditQuery) -> list[AuditEvent]:
        """The events matching `query`, by id, at most `query.limit` of them."""
        sql, params = audit_select(query)
        return [audit_from(row) for row in await self._select(sql, params)]

    async def audit_head(self) -> tuple[int, str] | None:
        """The id and hash of the last event written, as recorded when it was written."""
        rows = await self._select("SELECT last_id, last_hash FROM audit_head WHERE id = 1")
        return (int(rows[0]["last_id"]), str(rows[0]["last_hash"])) if rows else None

    # -- spans -----------------------------------------------------------------------------

    async def record_spans(self, spans: Sequence[Span]) -> None:
        """Store a batch of spans in one transaction, registering agents seen for the first time.

        Raises:
            sqlite3.IntegrityError: a `request_id` is stored already or appears twice in the batch.
            TypeError: a span's `extra` is not JSON-serializable.
            sqlite3.Error: the database failed; nothing of the batch is stored.
        """
        if not spans:
            return
        # Serialize before the transaction starts, so a bad span never holds the write lock.
        rows = [span_row(span) for span in spans]
        agents = [(a, org, first, first, last) for a, org, first, last in agent_sightings(spans)]
        redactions = redaction_rows(spans)
        hourly, daily = usage_rows(spans)
        statements: list[tuple[str, Sequence[Sequence[object]]]] = [
            (_INSERT_SPAN, rows),
            (UPSERT_HOURLY, hourly),
            (UPSERT_DAILY, daily),
        ]
        if agents:
            statements.append((_SIGHT_AGENT, agents))
        if redactions:
            statements.append((INSERT_REDACTION, redactions))
        async with self._connection() as db:
            await write_batch(db, statements)

    # -- redaction log ---------------------------------------------------------------------

    async def redaction_events(self, query: RedactionQuery) -> list[RedactionEvent]:
        """Redaction events matching `query`, by id."""
        sql, params = select_redactions(query)
        return [redaction_from(row) for row in await self._select(sql, params)]

    async def delete_redactions_before(self, cutoff: float) -> int:
        """Delete redaction events older than `cutoff`; the number deleted."""
        async with self._transaction() as db:
            cursor = await db.execute("DELETE FROM redaction_events WHERE at < ?", (cutoff,))
            return int(cursor.rowcount)

    async def list_spans(self) -> list[Span]:
        """Every span, by `started_at`, then in the order they were recorded."""
        rows = await self._select(f"SELECT {SPAN_COLUMNS} FROM spans ORDER BY started_at, id")
        return [span_from(row) for row in rows]

    # -- media jobs ------------------------------------------------------------------------

    async def save_video_job(self, job: VideoJob) -> None:
        """Store a new video job.

        Raises:
            AlreadyExists: a job with that id is stored already.
        """
        async with self._connection() as db:
            try:
                await run(db, INSERT_VIDEO_JOB, video_job_row(job))
            except sqlite3.IntegrityError as exc:
                raise AlreadyExists(f"video job {job.id} exists") from exc

    async def video_job(self, job_id: str) -> VideoJob | None:
        """The video job with that id, or None."""
        rows = await self._select(SELECT_VIDEO_JOB, (job_id,))
        return video_job_from(rows[0]) if rows else None

    # -- reports ---------------------------------------------------------------------------

    async def usage(self, query: UsageQuery) -> list[UsageRow]:
        """A report's groups, read from the hourly aggregates (never from the spans)."""
        return await usage_report(query, self._select)

    async def session_spans(self, session: str) -> list[Span]:
        """Spans whose session id or trace id is `session`, by start time."""
        sql = (
            f"SELECT {SPAN_COLUMNS} FROM spans WHERE session_id = ? "
            f"UNION SELECT {SPAN_COLUMNS} FROM spans WHERE trace_id = ? ORDER BY started_at"
        )
        return [span_from(row) for row in await self._select(sql, (session, session))]

    async def span_findings(self, request_ids: Sequence[str]) -> list[RedactionEvent]:
        """Redaction-log events of these calls, by id."""
        if not request_ids:
            return []
        sql = f"{SELECT_REDACTIONS} WHERE request_id IN ({marks(len(request_ids))}) ORDER BY id"
        return [redaction_from(row) for row in await self._select(sql, list(request_ids))]

    async def add_reconciliation(self, record: Reconciliation) -> None:
        """Store a reconciliation import."""
        async with self._connection() as db:
            await run(db, INSERT_RECONCILIATION, reconciliation_row(record))

    async def list_reconciliations(self, limit: int) -> list[Reconciliation]:
        """The latest imports, newest first."""
        rows = await self._select(SELECT_RECONCILIATIONS, (limit,))
        return [reconciliation_from(row) for row in rows]

    async def get_reconciliation(self, reconciliation_id: str) -> Reconciliation | None:
        """One import, or None."""
        rows = await self._select(SELECT_RECONCILIATION, (reconciliation_id,))
        return reconciliation_from(rows[0]) if rows else None

    async def rebuild_usage(self, page: int = 5000) -> int:
        """Recompute the usage aggregates from the stored spans; the number of spans counted.

        The aggregates are emptied and the newest span id noted in one transaction; spans up to
        it are then counted a page per transaction, while spans written meanwhile count
        themselves, so the gateway can keep running (its reports are partial until done).
        """
        async with self._transaction() as db:
            await run(db, "DELETE FROM usage_hourly")
            await run(db, "DELETE FROM usage_daily")
            await run(db, "DELETE FROM usage_backfill")  # counted here, not by backfill_usage
            top = list(await db.execute_fetchall("SELECT max(id) AS top FROM spans"))
        last, end, counted = 0, int(top[0]["top"] or 0), 0
        while last < end:
            async with self._transaction() as db:
                rows = list(await db.execute_fetchall(SPAN_PAGE, (last, end, page)))
                if not rows:
                    break
                hourly, daily = usage_rows([span_from(row) for row in rows])
                await run_many(db, UPSERT_HOURLY, hourly)
                await run_many(db, UPSERT_DAILY, daily)
            last, counted = int(rows[-1]["id"]), counted + len(rows)
        return counted

    # -- alerts (core.alert_store.AlertStore) ----------------------------------------------

    async def add_alert(self, alert: AlertRecord) -> bool:
        """Store `alert`; False (nothing stored) when its `dedupe_key` is stored already."""
        row = alert_row(alert)
        async with self._connection() as db:
            return await changed(db, INSERT_ALERT, row) > 0

    async def list_alerts(self, query: AlertQuery) -> list[AlertRecord]:
        """Alerts matching `query`, newest first."""
        sql, params = select_alerts(query)
        return [alert_from(row) for row in await self._select(sql, params)]

    async def acknowledge_alert(self, alert_id: str, by: str, at: float) -> bool:
        """Acknowledge an unacknowledged alert; False when absent or acknowledged already."""
        async with self._connection() as db:
            return await changed(db, ACKNOWLEDGE_ALERT, (at, by, alert_id)) > 0

    async def due_alerts(self, now: float, limit: int) -> list[AlertRecord]:
        """Pending alerts whose next delivery attempt is due, earliest first."""
        return [alert_from(row) for row in await self._select(SELECT_DUE, (now, limit))]

    async def claim_alert(self, alert_id: str, attempts: int, lease_until: float) -> bool:
        """Take the next delivery attempt of a pending alert still at `attempts`."""
        async with self._connection() as db:
            return await changed(db, CLAIM_ALERT, (lease_until, alert_id, attempts)) > 0

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
        params = delivery_params(alert_id, delivery, delivered_to, next_attempt_at, last_error, at)
        async with self._connection() as db:
            await run(db, RECORD_DELIVERY, params)

    # -- MCP tool pins (core.mcp.ToolPinStore) ---------------------------------------------

    async def tool_pins(self, server: str | None = None) -> list[ToolPin]:
        """Every pin (of one upstream server), by server then tool."""
        sql, params = select_pins(server)
        return [pin_from(row) for row in await self._select(sql, params)]

    async def put_tool_pin(self, pin: ToolPin) -> None:
        """Insert or replace the pin of (`pin.server`, `pin.tool`)."""
        async with self._transaction() as db:
            await db.execute(UPSERT_PIN, pin_row(pin))

    async def commit_tool_pin(self, pin: ToolPin, draft: AuditDraft) -> AuditEvent:
        """Insert or replace `pin` and append `draft` as the next audit event, in one
        transaction."""
        async with self._transaction() as db:
            await db.execute(UPSERT_PIN, pin_row(pin))
            return await append_event(db, draft)

    async def tool_costs(self, session_id: str | None = None) -> list[ToolCost]:
        """Calls and cost per tool over the stored tool spans (of one session), by tool."""
        sql, params = select_tool_costs(session_id)
        return [tool_cost_from(row) for row in await self._select(sql, params)]

    async def _select(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        async with self._connection() as db:
            return list(await db.execute_fetchall(sql, params))

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            if self._db is None:
                raise RuntimeError("SQLiteStore is not open: await open() first")
            yield self._db

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._connection() as db, transaction(db):
            yield db
