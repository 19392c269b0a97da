"""The redaction log in every backend: written with its span, queried, pruned by age."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from core.envelope import Finding, Scope
from core.redaction import RedactionQuery, RedactionStore
from core.tracing import Span
from store import MemoryStore, SQLiteStore
from tests.store.postgres_schema import fresh_postgres

pytestmark = pytest.mark.anyio


class Backend(RedactionStore):
    async def record_spans(self, spans: list[Span]) -> None: ...


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "postgres":
        async with fresh_postgres() as pg:
            yield cast(Backend, pg)
        return
    store = MemoryStore() if request.param == "memory" else SQLiteStore(str(tmp_path / "r.db"))
    await store.open()
    try:
        yield cast(Backend, store)
    finally:
        await store.aclose()


def _span(request_id: str, at: float, org: str, key: str, *findings: Finding) -> Span:
    return Span(
        request_id=request_id,
        span_id="s" + request_id,
        trace_id="t",
        started_at=at,
        key_id=key,
        org_path=org,
        findings=list(findings),
    )


EMAIL = Finding("pii", "EMAIL_ADDRESS", Scope.MESSAGE, "redact", 0.9, 4, 24, "h1")
CARD = Finding("pii", "CREDIT_CARD", Scope.TOOL_INPUT, "block", 1.0, 0, 19, "h2")
VIOLENCE = Finding("moderation", "violence", Scope.MESSAGE, "flag", None)


async def test_events_are_written_with_their_span_and_filtered_by_every_field(
    backend: Backend,
) -> None:
    await backend.record_spans(
        [
            _span("r1", 100.0, "research/agents/demo", "k1", EMAIL, CARD),
            _span("r2", 200.0, "sales/team/x", "k2", VIOLENCE),
            _span("r3", 300.0, "research/agentsplus", "k1", EMAIL),
        ]
    )
    every = await backend.redaction_events(RedactionQuery())
    assert [(e.request_id, e.entity_type) for e in every] == [
        ("r1", "EMAIL_ADDRESS"),
        ("r1", "CREDIT_CARD"),
        ("r2", "violence"),
        ("r3", "EMAIL_ADDRESS"),
    ]
    assert every[1].scope == "tool_input" and every[1].start == 0 and every[1].end == 19
    assert every[2].filter == "moderation" and every[0].value_hash == "h1"
    team = await backend.redaction_events(RedactionQuery(org_path="research/agents"))
    assert {e.request_id for e in team} == {"r1"}
    assert len(await backend.redaction_events(RedactionQuery(key_id="k1"))) == 3
    assert len(await backend.redaction_events(RedactionQuery(entity_type="EMAIL_ADDRESS"))) == 2
    assert len(await backend.redaction_events(RedactionQuery(action="block"))) == 1
    window = await backend.redaction_events(RedactionQuery(since=150.0, until=300.0))
    assert [e.request_id for e in window] == ["r2"]


async def test_pruning_deletes_only_events_older_than_the_cutoff(backend: Backend) -> None:
    await backend.record_spans(
        [_span("old", 10.0, "a", "k", EMAIL), _span("new", 50.0, "a", "k", CARD)]
    )
    assert await backend.delete_redactions_before(20.0) == 1
    left = await backend.redaction_events(RedactionQuery())
    assert [e.request_id for e in left] == ["new"]
