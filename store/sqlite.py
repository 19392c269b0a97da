"""`SQLiteStore`: the embedded default, one file on aiosqlite.

One connection in WAL mode (readers never wait for the writer; `synchronous=NORMAL` is safe under
WAL and spares an fsync per commit). The connection runs in autocommit mode and every write that
spans statements is an explicit `BEGIN IMMEDIATE … COMMIT`, so a transaction's bounds are exactly
what this file says. A lock serializes use of the connection: two coroutines interleaving on one
connection would otherwise share, and could roll back, each other's transaction.

aiosqlite drives its thread with asyncio futures, so this backend needs the asyncio event loop.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import aiosqlite
import anyio

from core.access import KeyRecord, Scopes
from core.state import KeyAlreadyExists
from core.tracing import Attempt, Span
from store.migrations import SCHEMA_MIGRATIONS_TABLE, Migration, pending

SQLITE_URL_PREFIX = "sqlite:///"

_KEY_COLUMNS = (
    "id, name, key_hash, prefix, org_path, role, app, customer, scopes, status, created_at, "
    "expires_at"
)
_SPAN_COLUMNS = (
    "request_id, span_id, trace_id, parent_span_id, agent_id, session_id, key_id, org_path, app, "
    "customer, modality, route, model_requested, provider, upstream_model, stream, attempts, "
    "attempts_json, input_tokens, output_tokens, cached_tokens, reasoning_tokens, cost_usd, "
    "latency_ms, ttft_ms, status, http_status, error_code, flags, redactions, extra, started_at"
)
_INSERT_SPAN = (
    f"INSERT INTO spans ({_SPAN_COLUMNS}) "
    f"VALUES ({', '.join('?' for _ in _SPAN_COLUMNS.split(','))})"
)


class SQLiteStore:
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

    async def _connect(self) -> aiosqlite.Connection:
        Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(self._path, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            # busy_timeout first: switching to WAL itself needs the lock another process may hold.
            await _run(db, f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            await _run(db, "PRAGMA journal_mode = WAL")
            await _run(db, "PRAGMA synchronous = NORMAL")
            await _run(db, "PRAGMA foreign_keys = ON")
            await _migrate(db)
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
                    await _run(db, "PRAGMA optimize")
                finally:
                    await db.close()

    async def find_key(self, key_hash: str) -> KeyRecord | None:
        """The key with this secret hash, whatever its status; None if there is none."""
        return await self._one_key("key_hash", key_hash)

    async def create_key(self, record: KeyRecord) -> None:
        """Store a new key.

        Raises:
            KeyAlreadyExists: the id, the name or the hash is taken.
        """
        row = (
            record.id,
            record.name,
            record.key_hash,
            record.prefix,
            record.org_path,
            record.role,
            record.app,
            record.customer,
            _scopes_json(record.scopes),
            record.status,
            record.created_at,
            record.expires_at,
        )
        async with self._connection() as db:
            try:
                await _run(db, f"INSERT INTO keys ({_KEY_COLUMNS}) VALUES ({_marks(row)})", row)
            except sqlite3.IntegrityError as exc:
                # Every constraint on `keys` a well-typed record can break is a uniqueness one.
                raise KeyAlreadyExists(
                    f"a key with id {record.id!r} or name {record.name!r} exists"
                ) from exc

    async def get_key(self, key_id: str) -> KeyRecord | None:
        """The key with that id, or None."""
        return await self._one_key("id", key_id)

    async def list_keys(self) -> list[KeyRecord]:
        """Every key, oldest first (by `created_at`, then by insertion)."""
        async with self._connection() as db:
            rows = await db.execute_fetchall(
                f"SELECT {_KEY_COLUMNS} FROM keys ORDER BY created_at, rowid"
            )
        return [_key(row) for row in rows]

    async def set_key_status(self, key_id: str, status: str) -> bool:
        """Change a key's status; False when there is no such key."""
        async with (
            self._connection() as db,
            db.execute("UPDATE keys SET status = ? WHERE id = ?", (status, key_id)) as cursor,
        ):
            return cursor.rowcount > 0

    async def record_spans(self, spans: Sequence[Span]) -> None:
        """Store a batch of spans in one transaction: all of them or none.

        Raises:
            sqlite3.IntegrityError: a `request_id` is stored already or appears twice in the batch.
            TypeError: a span's `extra` is not JSON-serializable.
            sqlite3.Error: the database failed; nothing of the batch is stored.
        """
        if not spans:
            return
        # Serialize before the transaction starts, so a bad span never holds the write lock.
        rows = [_span_row(span) for span in spans]
        async with self._transaction() as db:
            await _run_many(db, _INSERT_SPAN, rows)

    async def list_spans(self) -> list[Span]:
        """Every span, by `started_at`, then in the order they were recorded."""
        async with self._connection() as db:
            rows = await db.execute_fetchall(
                f"SELECT {_SPAN_COLUMNS} FROM spans ORDER BY started_at, id"
            )
        return [_span(row) for row in rows]

    async def _one_key(self, column: Literal["id", "key_hash"], value: str) -> KeyRecord | None:
        async with self._connection() as db:
            rows = list(
                await db.execute_fetchall(
                    f"SELECT {_KEY_COLUMNS} FROM keys WHERE {column} = ?", (value,)
                )
            )
        return _key(rows[0]) if rows else None

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            if self._db is None:
                raise RuntimeError("SQLiteStore is not open: await open() first")
            yield self._db

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._connection() as db, _transaction(db):
            yield db


@asynccontextmanager
async def _transaction(db: aiosqlite.Connection) -> AsyncIterator[None]:
    # IMMEDIATE takes the write lock at BEGIN, so a busy database fails (after busy_timeout)
    # before any work is done rather than at COMMIT.
    await _run(db, "BEGIN IMMEDIATE")
    try:
        yield
        await _run(db, "COMMIT")
    except BaseException:
        # Shielded: a cancelled caller must not leave the shared connection inside a transaction.
        with anyio.CancelScope(shield=True):
            if db.in_transaction:
                await _run(db, "ROLLBACK")
        raise


async def _migrate(db: aiosqlite.Connection) -> None:
    await _run(db, SCHEMA_MIGRATIONS_TABLE)
    rows = await db.execute_fetchall("SELECT version FROM schema_migrations")
    for migration in pending(int(row["version"]) for row in rows):
        async with _transaction(db):
            # Checked again under the write lock: another process may have applied it meanwhile.
            done = await db.execute_fetchall(
                "SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)
            )
            if not list(done):
                await _apply(db, migration)


async def _apply(db: aiosqlite.Connection, migration: Migration) -> None:
    for statement in _statements(migration.sql):
        await _run(db, statement)
    await _run(
        db,
        "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
        (migration.version, time.time()),
    )


def _statements(script: str) -> list[str]:
    """Split a script into statements, using SQLite's own parser to find where each ends.

    `executescript` would do it in one call, but it commits any open transaction first, which
    would break the one-transaction-per-migration rule.
    """
    statements: list[str] = []
    start = 0
    for end, char in enumerate(script):
        if char == ";" and sqlite3.complete_statement(script[start : end + 1]):
            statement = script[start : end + 1].strip()
            if _has_code(statement):
                statements.append(statement)
            start = end + 1
    if script[start:].strip():
        raise ValueError(f"migration ends with an unterminated statement: {script[start:]!r}")
    return statements


def _has_code(statement: str) -> bool:
    lines = (line.strip() for line in statement.splitlines())
    return any(line and not line.startswith("--") and line != ";" for line in lines)


async def _run(db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> None:
    async with db.execute(sql, params):
        pass


async def _run_many(db: aiosqlite.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    async with db.executemany(sql, rows):
        pass


def _marks(row: Sequence[object]) -> str:
    return ", ".join("?" for _ in row)


def _scopes_json(scopes: Scopes) -> str:
    return json.dumps(dataclasses.asdict(scopes), separators=(",", ":"))


def _scopes(text: str) -> Scopes:
    data = json.loads(text)
    default = Scopes()
    # Fields missing from an older row take today's defaults.
    return Scopes(
        models=tuple(data.get("models", default.models)),
        tools=tuple(data.get("tools", default.tools)),
        modalities=tuple(data.get("modalities", default.modalities)),
        egress=str(data.get("egress", default.egress)),
        ip_allowlist=tuple(data.get("ip_allowlist", default.ip_allowlist)),
    )


def _key(row: sqlite3.Row) -> KeyRecord:
    return KeyRecord(
        id=row["id"],
        name=row["name"],
        key_hash=row["key_hash"],
        prefix=row["prefix"],
        org_path=row["org_path"],
        role=row["role"],
        app=row["app"],
        customer=row["customer"],
        scopes=_scopes(row["scopes"]),
        status=row["status"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
    )


def _span_row(span: Span) -> tuple[object, ...]:
    # Order matches _SPAN_COLUMNS.
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
        _json([dataclasses.asdict(a) for a in span.attempts]),
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
        _json(span.flags),
        span.redactions,
        _json(span.extra),
        span.started_at,
    )


def _span(row: sqlite3.Row) -> Span:
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
    )


def _attempt(data: dict[str, Any]) -> Attempt:
    return Attempt(
        provider=data["provider"],
        model=data["model"],
        status=data["status"],
        error_code=data.get("error_code"),
        latency_ms=data.get("latency_ms", 0.0),
    )


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
