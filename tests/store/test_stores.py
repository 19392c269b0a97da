"""Every store backend keeps the same contract: keys, spans, and (for SQLite) the file itself."""

from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import anyio
import pytest

import store
from core.access import KeyRecord, Scopes
from core.audit import AuditDraft, Insert
from core.envelope import Finding, Scope
from core.model_versions import ModelVersion
from core.state import AlreadyExists, KeyAlreadyExists, Store
from core.tracing import Attempt, Span
from store import MIGRATIONS, MemoryStore, SQLiteStore, UnknownSchemaVersion
from tests.store.postgres_schema import fresh_postgres

REPO_ROOT = Path(__file__).resolve().parents[2]

# A backend refuses a duplicate request_id with its own error; see the report on core.state.
DUPLICATE_SPAN_ERRORS = (ValueError, sqlite3.IntegrityError)


class ListableStore(Store, Protocol):
    """A whole backend plus the read helper tests and reports use."""

    async def list_spans(self) -> list[Span]: ...


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ListableStore]:
    """Each backend, opened; SQLite on a real file, PostgreSQL on a schema of its own."""
    if request.param == "postgres":
        async with fresh_postgres() as pg:
            yield pg
        return
    opened: ListableStore
    if request.param == "memory":
        opened = MemoryStore()
    else:
        opened = SQLiteStore(str(tmp_path / "agentgw.db"))
    await opened.open()
    try:
        yield opened
    finally:
        await opened.aclose()


def make_key(n: int = 1, **changes: Any) -> KeyRecord:
    record = KeyRecord(
        id=f"key_{n}",
        name=f"name-{n}",
        key_hash=f"{n:064x}",
        prefix=f"agw_{n:08d}",
        org_path="research/nlp/chatbot",
        created_at=1_700_000_000.0 + n,
    )
    return dataclasses.replace(record, **changes)


def make_span(n: int = 1, **changes: Any) -> Span:
    span = Span(
        request_id=f"req_{n:024x}",
        span_id=f"{n:016x}",
        trace_id=f"{n:032x}",
        started_at=1_700_000_000.0 + n,
    )
    return dataclasses.replace(span, **changes)


def full_span() -> Span:
    """A span with every field away from its default, so a dropped column shows."""
    return Span(
        request_id="req_0123456789abcdef01234567",
        span_id="a1b2c3d4e5f60718",
        trace_id="0af7651916cd43dd8448eb211c80319c",
        started_at=1_712_345_678.123456,
        parent_span_id="b7ad6b7169203331",
        agent_id="planner@v2",
        session_id="sess-42",
        key_id="key_1",
        org_path="research/nlp/chatbot",
        app="helpdesk",
        customer="acme",
        modality="voice",
        route="/v1/chat/completions",
        model_requested="smart",
        provider="vllm-a",
        upstream_model="qwen2.5-72b",
        stream=True,
        attempts=[
            Attempt("vllm-b", "qwen2.5-72b", "error", "upstream_timeout", 30_000.5),
            Attempt("vllm-a", "qwen2.5-72b", "ok", None, 812.25),
        ],
        input_tokens=1234,
        output_tokens=567,
        cached_tokens=89,
        reasoning_tokens=10,
        cost_usd=0.001234567,
        latency_ms=30_812.75,
        ttft_ms=95.5,
        status="error",
        http_status=502,
        error_code="all_targets_failed",
        flags=["usage_estimated", "pii_redacted"],
        redactions=3,
        extra={"tools": ["search"], "nested": {"n": 1, "ok": True, "none": None}, "ü": "ß"},
        tool="calc__add",
        cache_write_tokens=12,
        audio_seconds=1.5,
        images=2,
        video_seconds=4.0,
        upstream_ms=33.5,
        findings=[Finding("pii", "EMAIL_ADDRESS", Scope.MESSAGE, "redact", 0.9, 3, 20, "ab12")],
    )


@pytest.mark.anyio
async def test_created_key_is_found_by_hash_and_by_id(backend: ListableStore) -> None:
    key = make_key()
    await backend.create_key(key)
    assert await backend.find_key(key.key_hash) == key
    assert await backend.get_key(key.id) == key


@pytest.mark.anyio
async def test_unknown_key_is_none_and_cannot_change_status(backend: ListableStore) -> None:
    assert await backend.find_key("0" * 64) is None
    assert await backend.get_key("key_missing") is None
    assert await backend.set_key_status("key_missing", "revoked") is False
    assert await backend.list_keys() == []


@pytest.mark.anyio
async def test_revoked_key_is_still_found_with_its_status(backend: ListableStore) -> None:
    key = make_key()
    await backend.create_key(key)
    assert await backend.set_key_status(key.id, "revoked") is True
    found = await backend.find_key(key.key_hash)
    assert found == dataclasses.replace(key, status="revoked")
    assert await backend.get_key(key.id) == found


@pytest.mark.anyio
async def test_keys_are_listed_oldest_first(backend: ListableStore) -> None:
    newer = make_key(1, created_at=2_000.0)
    older = make_key(2, created_at=1_000.0)
    same_time_later = make_key(3, created_at=2_000.0)
    for key in (newer, older, same_time_later):
        await backend.create_key(key)
    assert await backend.list_keys() == [older, newer, same_time_later]


@pytest.mark.anyio
@pytest.mark.parametrize("field", ["id", "name", "key_hash"])
async def test_duplicate_key_raises_and_writes_nothing(backend: ListableStore, field: str) -> None:
    first = make_key(1)
    await backend.create_key(first)
    clash = dataclasses.replace(make_key(2), **{field: getattr(first, field)})
    with pytest.raises(KeyAlreadyExists):
        await backend.create_key(clash)
    assert await backend.list_keys() == [first]
    assert await backend.get_key(first.id) == first
    assert await backend.find_key(first.key_hash) == first
    if field != "key_hash":
        assert await backend.find_key(clash.key_hash) is None


@pytest.mark.anyio
async def test_scopes_and_optional_fields_round_trip_exactly(backend: ListableStore) -> None:
    scopes = Scopes(
        models=("gpt-*", "sim"),
        tools=("search", "fs.read"),
        modalities=("chat", "voice"),
        egress="private",
        ip_allowlist=("10.0.0.0/8", "::1"),
    )
    key = make_key(
        role="admin", app="helpdesk", customer="acme", scopes=scopes, expires_at=1_800_000_000.5
    )
    await backend.create_key(key)
    found = await backend.get_key(key.id)
    assert found == key
    assert found is not None
    assert isinstance(found.scopes.models, tuple)
    assert found.scopes.allows_model("gpt-4o")
    assert not found.scopes.allows_model("claude")


@pytest.mark.anyio
async def test_default_scopes_round_trip(backend: ListableStore) -> None:
    key = make_key()
    await backend.create_key(key)
    found = await backend.find_key(key.key_hash)
    assert found is not None
    assert found.scopes == Scopes()
    assert found.expires_at is None
    assert found.app is None


def test_the_sample_span_sets_every_field_away_from_its_default() -> None:
    span = full_span()
    for f in dataclasses.fields(Span):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            continue
        assert getattr(span, f.name) != default, f"full_span() leaves {f.name} at its default"


@pytest.mark.anyio
async def test_span_batch_round_trips_every_field(backend: ListableStore) -> None:
    full = full_span()
    plain = make_span(7, started_at=full.started_at + 1)
    await backend.record_spans([full, plain])
    stored = await backend.list_spans()
    assert stored == [full, plain]
    assert all(isinstance(a, Attempt) for a in stored[0].attempts)
    assert stored[0].stream is True
    assert stored[1].stream is False


@pytest.mark.anyio
async def test_spans_are_listed_by_start_then_by_recording(backend: ListableStore) -> None:
    late = make_span(1, started_at=300.0)
    early = make_span(2, started_at=100.0)
    tie_first = make_span(3, started_at=200.0)
    tie_second = make_span(4, started_at=200.0)
    await backend.record_spans([late, early])
    await backend.record_spans([tie_first, tie_second])
    ids = [s.request_id for s in await backend.list_spans()]
    assert ids == [s.request_id for s in (early, tie_first, tie_second, late)]


@pytest.mark.anyio
async def test_empty_batch_writes_nothing(backend: ListableStore) -> None:
    await backend.record_spans([])
    assert await backend.list_spans() == []


@pytest.mark.anyio
async def test_a_span_changed_after_recording_stays_as_recorded(backend: ListableStore) -> None:
    span = full_span()
    await backend.record_spans([span])
    span.flags.append("later")
    span.attempts[0].status = "changed"
    span.extra["nested"]["n"] = 2
    (stored,) = await backend.list_spans()
    assert stored == full_span()


@pytest.mark.anyio
async def test_batch_repeating_a_stored_request_id_writes_none_of_it(
    backend: ListableStore,
) -> None:
    await backend.record_spans([make_span(1)])
    with pytest.raises(DUPLICATE_SPAN_ERRORS):
        await backend.record_spans([make_span(2), make_span(1), make_span(3)])
    assert [s.request_id for s in await backend.list_spans()] == [make_span(1).request_id]
    # The failed transaction is fully closed: the next batch goes through.
    await backend.record_spans([make_span(2), make_span(3)])
    assert len(await backend.list_spans()) == 3


@pytest.mark.anyio
async def test_batch_with_a_request_id_twice_writes_none_of_it(backend: ListableStore) -> None:
    with pytest.raises(DUPLICATE_SPAN_ERRORS):
        await backend.record_spans([make_span(1), make_span(2), make_span(1)])
    assert await backend.list_spans() == []


@pytest.mark.anyio
async def test_batch_with_extra_that_is_not_json_writes_none_of_it(
    backend: ListableStore,
) -> None:
    with pytest.raises(TypeError):
        await backend.record_spans([make_span(1), make_span(2, extra={"bad": object()})])
    assert await backend.list_spans() == []


@pytest.mark.anyio
async def test_a_thousand_spans_are_recorded_in_one_call(backend: ListableStore) -> None:
    spans = [make_span(i, input_tokens=i, flags=[f"f{i}"]) for i in range(1000)]
    await backend.record_spans(spans)
    stored = await backend.list_spans()
    assert stored == spans


@pytest.mark.anyio
async def test_concurrent_writers_do_not_disturb_each_other(backend: ListableStore) -> None:
    # Each batch is its own transaction on a shared connection; interleaving them must not
    # nest, merge or roll back another's work.
    async with anyio.create_task_group() as tg:
        for b in range(20):
            tg.start_soon(backend.record_spans, [make_span(b * 10 + i) for i in range(10)])
            tg.start_soon(backend.create_key, make_key(b))
    assert len(await backend.list_spans()) == 200
    assert len(await backend.list_keys()) == 20


# SQLite only: the file, its settings and its migrations.


def read_file(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return list(db.execute(sql).fetchall())


@pytest.mark.anyio
async def test_open_creates_missing_directories_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "agentgw.db"
    db = SQLiteStore(str(path))
    await db.open()
    await db.aclose()
    assert path.is_file()
    assert read_file(path, "PRAGMA journal_mode") == [("wal",)]


@pytest.mark.anyio
async def test_spans_table_has_the_contract_columns(tmp_path: Path) -> None:
    path = tmp_path / "agentgw.db"
    db = SQLiteStore(str(path))
    await db.open()
    await db.aclose()
    columns = {str(row[1]): str(row[2]) for row in read_file(path, "PRAGMA table_info(spans)")}
    for name in ("request_id", "span_id", "parent_span_id", "trace_id", "agent_id"):
        assert columns[name] == "TEXT"
    for name in ("session_id", "key_id", "org_path", "status"):
        assert columns[name] == "TEXT"
    for name in ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens", "attempts"):
        assert columns[name] == "INTEGER"
    assert columns["cost_usd"] == "REAL"
    tables = {str(row[0]) for row in read_file(path, "SELECT name FROM sqlite_master")}
    assert {"keys", "spans", "audit_events", "redaction_events", "schema_migrations"} <= tables


@pytest.mark.anyio
async def test_spans_are_stored_as_plain_columns(tmp_path: Path) -> None:
    path = tmp_path / "agentgw.db"
    db = SQLiteStore(str(path))
    await db.open()
    await db.record_spans([full_span()])
    await db.aclose()
    rows = read_file(
        path, "SELECT request_id, attempts, input_tokens, cost_usd, stream, flags FROM spans"
    )
    assert rows == [
        (
            "req_0123456789abcdef01234567",
            2,
            1234,
            0.001234567,
            1,
            '["usage_estimated","pii_redacted"]',
        )
    ]


@pytest.mark.anyio
async def test_migrations_are_applied_once_however_often_the_file_is_opened(
    tmp_path: Path,
) -> None:
    path = tmp_path / "agentgw.db"
    for _ in range(2):
        db = SQLiteStore(str(path))
        await db.open()
        await db.aclose()
    both = [SQLiteStore(str(path)), SQLiteStore(str(path))]
    for db in both:
        await db.open()
    for db in both:
        await db.aclose()
    versions = read_file(path, "SELECT version FROM schema_migrations ORDER BY version")
    assert versions == [(m.version,) for m in MIGRATIONS]


def test_migration_versions_increase_from_one() -> None:
    # Strictly increasing from 1; a gap is allowed while a parallel branch's number is reserved.
    versions = [m.version for m in MIGRATIONS]
    assert versions[0] == 1
    assert versions == sorted(set(versions))


@pytest.mark.anyio
async def test_a_file_from_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "agentgw.db"
    db = SQLiteStore(str(path))
    await db.open()
    await db.aclose()
    with sqlite3.connect(path) as raw:
        raw.execute("INSERT INTO schema_migrations VALUES (?, 0)", (MIGRATIONS[-1].version + 1,))
    raw.close()
    with pytest.raises(UnknownSchemaVersion):
        await SQLiteStore(str(path)).open()


@pytest.mark.anyio
async def test_reopening_the_file_keeps_keys_and_spans(tmp_path: Path) -> None:
    path = str(tmp_path / "agentgw.db")
    key = make_key(scopes=Scopes(models=("sim",)))
    first = SQLiteStore(path)
    await first.open()
    await first.create_key(key)
    await first.set_key_status(key.id, "revoked")
    await first.record_spans([full_span()])
    await first.aclose()

    second = SQLiteStore(path)
    await second.open()
    try:
        assert await second.list_keys() == [dataclasses.replace(key, status="revoked")]
        assert await second.list_spans() == [full_span()]
    finally:
        await second.aclose()


@pytest.mark.anyio
async def test_using_a_closed_store_is_an_error(tmp_path: Path) -> None:
    db = SQLiteStore(str(tmp_path / "agentgw.db"))
    with pytest.raises(RuntimeError, match="not open"):
        await db.find_key("0" * 64)
    await db.open()
    await db.aclose()
    await db.aclose()
    with pytest.raises(RuntimeError, match="not open"):
        await db.record_spans([make_span()])


def test_store_urls_name_their_files() -> None:
    assert SQLiteStore.from_url("sqlite:///agentgw.db").path == "agentgw.db"
    assert SQLiteStore.from_url("sqlite:////var/lib/agentgw.db").path == "/var/lib/agentgw.db"
    assert isinstance(MemoryStore.from_url("memory://"), MemoryStore)
    for bad in ("sqlite:///", "sqlite://agentgw.db", "postgresql://h/db"):
        with pytest.raises(ValueError, match="expected"):
            SQLiteStore.from_url(bad)
    with pytest.raises(ValueError, match="expected"):
        MemoryStore.from_url("memory")


def test_public_surface_is_importable() -> None:
    for name in store.__all__:
        assert getattr(store, name) is not None


def test_importing_the_package_leaves_aiosqlite_unloaded() -> None:
    code = "import sys, store; assert 'aiosqlite' not in sys.modules, 'aiosqlite was imported'"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.anyio
async def test_model_versions_round_trip_in_order_and_a_taken_number_is_refused(
    backend: ListableStore,
) -> None:
    draft = AuditDraft(1.0, "admin", "admin", "model.update", "model:chat", None, None, "test")
    v1 = ModelVersion("chat", 1, '{"name":"chat"}', 1.0, "config")
    v2 = ModelVersion("chat", 2, '{"name":"chat","retries":1}', 2.0, "key_1")
    await backend.add_model_version(v1)
    await backend.commit([Insert(v2)], draft)
    await backend.add_model_version(ModelVersion("other", 1, "{}", 3.0, "config"))
    assert await backend.model_versions("chat") == [v1, v2]
    with pytest.raises(AlreadyExists):
        await backend.commit([Insert(dataclasses.replace(v2, actor="key_2"))], draft)
    with pytest.raises(AlreadyExists):
        await backend.add_model_version(v1)
    assert await backend.model_versions("chat") == [v1, v2]
