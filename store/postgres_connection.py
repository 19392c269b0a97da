"""PostgreSQL connections that speak the aiosqlite calls the shared store code makes.

`PgConnection` offers `execute`, `executemany`, `execute_fetchall`, cursors with `rowcount` /
`lastrowid` / `fetchone` / `fetchall`, and `in_transaction` on an asyncpg connection. Each
statement is translated once (`store.postgres_sql`) and prepared once per connection; its
parameters are coerced to the types PostgreSQL inferred for them (SQLite stored anything), and
PostgreSQL's constraint violations are raised as `sqlite3.IntegrityError` subclasses, the error
the shared code catches (translated here, at one place). `PgPool` hands connections out one task
at a time.
"""

from __future__ import annotations

import re
import sqlite3
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import asyncpg

from store.postgres_sql import BEGIN, translate

# Advisory lock key (any fixed 64-bit number) every write transaction takes after BEGIN.
WRITE_LOCK = 0x6167_7700_0002
_STATEMENT_CACHE = 256
_ROWS = re.compile(r"^\s*(SELECT|WITH|VALUES|SHOW|TABLE)\b", re.IGNORECASE)
_INSERT = re.compile(r"^\s*INSERT\b", re.IGNORECASE)
_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)
_UNPREPARED = re.compile(
    r"^\s*(CREATE|ALTER|DROP|BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|SET|LOCK|TRUNCATE)\b",
    re.IGNORECASE,
)
_PRAGMA = re.compile(r"^\s*PRAGMA\b", re.IGNORECASE)
_STATUS_COUNT = re.compile(r"(\d+)\s*$")


class IntegrityError(sqlite3.IntegrityError):
    """A PostgreSQL constraint violation, in the class the shared SQL code catches.

    The message starts as SQLite's does (`UNIQUE constraint failed`, `FOREIGN KEY constraint
    failed`, …), which is what that code reads to tell them apart; `__cause__` is asyncpg's.
    """


class OperationalError(sqlite3.OperationalError):
    """PostgreSQL could not run a statement (other than a constraint violation)."""


class ConnectionLost(OperationalError):
    """The connection died under the statement (server restart, terminated backend): the
    statement may be retried on another connection if it is safe to run twice."""


_VIOLATIONS: tuple[tuple[type[BaseException], str], ...] = (
    (asyncpg.ForeignKeyViolationError, "FOREIGN KEY constraint failed"),
    (asyncpg.UniqueViolationError, "UNIQUE constraint failed"),
    (asyncpg.NotNullViolationError, "NOT NULL constraint failed"),
    (asyncpg.CheckViolationError, "CHECK constraint failed"),
)


def _sqlite_error(exc: asyncpg.PostgresError) -> sqlite3.Error:
    for kind, prefix in _VIOLATIONS:
        if isinstance(exc, kind):
            return IntegrityError(f"{prefix}: {exc}")
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return IntegrityError(f"constraint failed: {exc}")
    return OperationalError(str(exc))


# -- parameters: PostgreSQL types each one; SQLite stored whatever it was given -------------------


def _to_int(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value


def _to_float(value: Any) -> Any:
    if isinstance(value, bool | int):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _to_text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def _to_bool(value: Any) -> Any:
    return bool(value) if isinstance(value, int | float) else value


def _to_bytes(value: Any) -> Any:
    return value.encode() if isinstance(value, str) else value


_COERCE: dict[str, Callable[[Any], Any]] = {
    "int2": _to_int,
    "int4": _to_int,
    "int8": _to_int,
    "float4": _to_float,
    "float8": _to_float,
    "text": _to_text,
    "varchar": _to_text,
    "bpchar": _to_text,
    "name": _to_text,
    "bool": _to_bool,
    "bytea": _to_bytes,
}


def _decode_numeric(text: str) -> int | float:
    # SQLite's SUM of integers is an integer; PostgreSQL's is NUMERIC. Give back what SQLite does.
    return int(text) if text.lstrip("-").isdigit() else float(text)


class _Statement:
    """A prepared statement and the coercion of each of its parameters."""

    def __init__(self, prepared: Any) -> None:
        self.prepared = prepared
        self.coerce = tuple(_COERCE.get(t.name) for t in prepared.get_parameters())

    def args(self, params: Sequence[Any]) -> list[Any]:
        if len(params) != len(self.coerce):
            raise sqlite3.ProgrammingError(
                f"the statement takes {len(self.coerce)} parameters, {len(params)} given"
            )
        return [v if c is None else c(v) for c, v in zip(self.coerce, params, strict=True)]


class PgCursor:
    """What aiosqlite's cursor offers the shared code, over rows already fetched."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self._next = 0
        self.rowcount = rowcount
        self.arraysize = 1

    @property
    def lastrowid(self) -> int | None:
        """The `id` (or `rowid`) of the last row an INSERT wrote, when the statement returned it.

        PostgreSQL reports no row id by itself: a statement that needs it says `RETURNING id`
        (SQLite takes that too). Not added to every INSERT: a `RETURNING *` plan breaks when
        another replica adds a column during a rolling upgrade.
        """
        if not self._rows:
            return None
        last = self._rows[-1]
        keys = set(last.keys())
        for name in ("id", "rowid"):
            if name in keys and isinstance(last[name], int):
                return int(last[name])
        return None

    async def fetchone(self) -> Any | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = self.arraysize if size is None else size
        batch = self._rows[self._next : self._next + count]
        self._next += len(batch)
        return batch

    async def fetchall(self) -> list[Any]:
        rest = self._rows[self._next :]
        self._next = len(self._rows)
        return rest

    async def close(self) -> None:
        self._rows = []

    def __aiter__(self) -> PgCursor:
        return self

    async def __anext__(self) -> Any:
        row = await self.fetchone()
        if row is None:
            raise StopAsyncIteration
        return row

    async def __aenter__(self) -> PgCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _Pending:
    """`db.execute(…)` in aiosqlite is both awaitable and an async context manager; so is this."""

    def __init__(self, run: Callable[[], Any]) -> None:
        self._run = run
        self._cursor: PgCursor | None = None

    def __await__(self) -> Generator[Any, None, PgCursor]:
        return self._run().__await__()  # type: ignore[no-any-return]

    async def __aenter__(self) -> PgCursor:
        self._cursor = await self._run()
        return self._cursor

    async def __aexit__(self, *exc: object) -> None:
        if self._cursor is not None:
            await self._cursor.close()


class PgConnection:
    """One asyncpg connection speaking the aiosqlite calls the shared SQL code makes."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self._statements: OrderedDict[str, _Statement] = OrderedDict()

    @property
    def in_transaction(self) -> bool:
        return bool(self.raw.is_in_transaction())

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Pending:
        return _Pending(lambda: self._execute(sql, params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> _Pending:
        return _Pending(lambda: self._executemany(sql, rows))

    async def execute_fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        cursor = await self._execute(sql, params)
        return await cursor.fetchall()

    async def commit(self) -> None:
        if self.in_transaction:
            await self._execute("COMMIT")

    async def rollback(self) -> None:
        if self.in_transaction:
            await self._execute("ROLLBACK")

    async def _execute(self, sql: str, params: Sequence[Any] = ()) -> PgCursor:
        if _PRAGMA.match(sql):
            return PgCursor([], -1)  # SQLite's knobs; PostgreSQL has its own settings
        text = translate(sql)
        try:
            if text == BEGIN:
                await self.raw.execute("BEGIN")
                # SQLite's BEGIN IMMEDIATE takes the database's one write lock; so does this.
                await self.raw.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")
                return PgCursor([], -1)
            if _UNPREPARED.match(text) and not params:
                status = await self.raw.execute(text)
                return PgCursor([], _count(status))
            statement = await self._prepare(text)
            rows = await statement.prepared.fetch(*statement.args(params))
            if _ROWS.match(text):
                return PgCursor(list(rows), -1)
            if _RETURNING.search(text):
                return PgCursor(list(rows), len(rows))
            return PgCursor([], _count(statement.prepared.get_statusmsg()))
        except Exception as exc:
            raise self._translated(exc) from exc

    async def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> PgCursor:
        text = translate(sql)
        batch = list(rows)
        if not batch:
            return PgCursor([], 0)
        try:
            statement = await self._prepare(text)
            await statement.prepared.executemany([statement.args(r) for r in batch])
        except Exception as exc:
            raise self._translated(exc) from exc
        return PgCursor([], len(batch) if _INSERT.match(text) else -1)

    def _translated(self, exc: Exception) -> Exception:
        """The error the shared code expects for `exc`, which a statement raised."""
        if self.raw.is_closed():
            return ConnectionLost(f"connection lost: {exc!r}")
        if isinstance(exc, asyncpg.PostgresError):
            return _sqlite_error(exc)
        return exc

    async def _prepare(self, text: str) -> _Statement:
        statement = self._statements.get(text)
        if statement is not None:
            self._statements.move_to_end(text)
            return statement
        # A failed PREPARE inside a transaction would abort it: try it under a savepoint.
        guarded = self.in_transaction
        if guarded:
            await self.raw.execute("SAVEPOINT agentgw_prepare")
        try:
            statement = _Statement(await self.raw.prepare(text))
        except BaseException:
            if guarded:
                with anyio.CancelScope(shield=True):
                    await self.raw.execute("ROLLBACK TO SAVEPOINT agentgw_prepare")
            raise
        if guarded:
            await self.raw.execute("RELEASE SAVEPOINT agentgw_prepare")
        self._statements[text] = statement
        if len(self._statements) > _STATEMENT_CACHE:
            self._statements.popitem(last=False)
        return statement


def _count(status: str | None) -> int:
    match = _STATUS_COUNT.search(status or "")
    return int(match.group(1)) if match else -1


class PgPool:
    """A fixed number of connections, handed out one task at a time, reopened when broken."""

    def __init__(self, dsn: str, size: int, server_settings: dict[str, str]) -> None:
        self._dsn = dsn
        self._settings = server_settings
        self._idle: list[PgConnection] = []
        self._open = 0
        self._size = size
        self._free = anyio.Semaphore(size)
        self._closed = False

    async def connect(self) -> PgConnection:
        raw = await asyncpg.connect(self._dsn, server_settings=self._settings)
        try:
            await raw.set_type_codec(
                "numeric", encoder=str, decoder=_decode_numeric, schema="pg_catalog"
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await raw.close()
            raise
        return PgConnection(raw)

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[PgConnection]:
        if self._closed:
            raise RuntimeError("PostgresStore is not open: await open() first")
        async with self._free:
            conn = self._idle.pop() if self._idle else None
            if conn is None or conn.raw.is_closed():
                conn = await self.connect()
            reusable = False
            try:
                yield conn
                reusable = True
            except Exception:
                reusable = True  # a statement failed; the connection itself is fine
                raise
            finally:
                # A cancelled statement may leave the connection mid-protocol: never reuse it.
                with anyio.CancelScope(shield=True):
                    reusable = reusable and await _reset(conn)
                if reusable and not self._closed:
                    self._idle.append(conn)
                else:
                    conn.raw.terminate()

    async def aclose(self) -> None:
        """Wait until every connection is back, then close them all."""
        for _ in range(self._size):
            await self._free.acquire()
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await close_quietly(conn)
        for _ in range(self._size):
            self._free.release()


async def _reset(conn: PgConnection) -> bool:
    """Whether `conn` can serve the next task (an open transaction left behind is rolled back)."""
    if conn.raw.is_closed():
        return False
    if not conn.in_transaction:
        return True
    try:
        await conn.raw.execute("ROLLBACK")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    return True


async def close_quietly(conn: PgConnection) -> None:
    with anyio.CancelScope(shield=True):
        try:
            await conn.raw.close(timeout=5)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            conn.raw.terminate()
