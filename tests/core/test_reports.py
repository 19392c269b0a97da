"""Reports from the hourly aggregates equal sums over the raw spans, on every store backend;
reconciliation finds exactly the planted gap; the call chain is a tree with totals."""

from __future__ import annotations

import dataclasses
import random
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.envelope import Finding, Scope
from core.ops.attribution import chargeback, parse_query, spend_report, top_consumers
from core.ops.callchain import load_call_chain
from core.ops.reconciliation import parse_export, reconcile
from core.reports import HOUR, UsageQuery, org_levels
from core.tracing import Span
from store import SQLiteStore
from tests.store.test_stores import backend

__all__ = ["backend"]  # the fixture, imported so pytest finds it here too

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
KEYS = ("key_a", "key_b", "key_c", "key_d")
ORGS = ("research/nlp/chat", "research/vision/ocr", "finance/ledger/close", "finance/ledger/audit")
MODELS = (("sim", "sim-large"), ("sim", "sim-small"), ("vllm", "qwen"))


def workload(n: int = 600, seed: int = 7) -> list[Span]:
    rng = random.Random(seed)
    spans = []
    for i in range(n):
        provider, model = rng.choice(MODELS)
        spans.append(
            Span(
                request_id=f"req_{i:06d}",
                span_id=f"{i:016x}",
                trace_id=f"{i % 9:032x}",
                started_at=T0 + rng.uniform(0, 3 * 86400),
                key_id=rng.choice(KEYS),
                org_path=rng.choice(ORGS),
                customer=rng.choice(("acme", "globex", None)),
                agent_id=rng.choice(("planner", "coder", None)),
                model_requested=model.split("-")[0],
                provider=provider,
                upstream_model=model,
                modality=rng.choice(("chat", "chat", "embedding")),
                tool=rng.choice((None, None, "calc__add")),
                input_tokens=rng.randint(1, 2000),
                output_tokens=rng.randint(0, 800),
                cached_tokens=rng.randint(0, 10),
                cost_usd=None if rng.random() < 0.05 else rng.uniform(0, 0.02),
                latency_ms=rng.uniform(1, 500),
                status="ok" if rng.random() < 0.9 else "error",
            )
        )
    return spans


def independent(
    spans: list[Span], key: Callable[[Span], tuple[Any, ...]]
) -> dict[tuple[Any, ...], tuple[int, int, int, float, int]]:
    sums: dict[tuple[Any, ...], list[float]] = defaultdict(lambda: [0, 0, 0, 0.0, 0])
    for s in spans:
        row = sums[key(s)]
        row[0] += 1
        row[1] += s.input_tokens
        row[2] += s.output_tokens
        row[3] += s.cost_usd or 0.0
        row[4] += s.status != "ok"
    return {k: (int(v[0]), int(v[1]), int(v[2]), v[3], int(v[4])) for k, v in sums.items()}


def reported(rows: list[dict[str, Any]], dims: tuple[str, ...]) -> dict[tuple[Any, ...], Any]:
    return {
        tuple(r[d] for d in dims): (
            r["requests"],
            r["input_tokens"],
            r["output_tokens"],
            r["cost_usd"],
            r["errors"],
        )
        for r in rows
    }


def assert_same(got: dict[Any, Any], want: dict[Any, Any]) -> None:
    assert got.keys() == want.keys()
    for k, (req, inp, out, cost, err) in want.items():
        assert got[k][:3] == (req, inp, out) and got[k][4] == err, k
        assert got[k][3] == pytest.approx(cost, abs=1e-8), k


GROUPINGS: list[tuple[str, Callable[[Span], tuple[Any, ...]]]] = [
    ("key", lambda s: (s.key_id,)),
    ("team,upstream_model", lambda s: (org_levels(s.org_path)[1], s.upstream_model)),
    ("department,customer", lambda s: (org_levels(s.org_path)[0], s.customer or "")),
    ("agent,tool,modality", lambda s: (s.agent_id or "", s.tool or "", s.modality)),
    ("provider", lambda s: (s.provider,)),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("group_by", "key"), GROUPINGS, ids=[g for g, _ in GROUPINGS])
async def test_report_equals_sums_over_raw_spans(
    backend: Any, group_by: str, key: Callable[[Span], tuple[Any, ...]]
) -> None:
    spans = workload()
    for start in range(0, len(spans), 50):
        await backend.record_spans(spans[start : start + 50])
    query = parse_query({"group_by": group_by})
    report = await spend_report(backend, query)
    assert_same(reported(report.rows, query.group_by), independent(spans, key))


@pytest.mark.anyio
async def test_day_buckets_and_time_window_match_raw_spans(backend: Any) -> None:
    spans = workload()
    await backend.record_spans(spans)
    since, until = T0 + 6 * HOUR, T0 + 2 * 86400
    query = parse_query(
        {"group_by": "key", "bucket": "day", "since": str(since), "until": str(until)}
    )
    report = await spend_report(backend, query)
    inside = [s for s in spans if since <= s.started_at < until]
    want = independent(inside, lambda s: (int(s.started_at // 86400) * 86400, s.key_id))
    got = {
        (int(_epoch(r["bucket"])), r["key"]): (
            r["requests"],
            r["input_tokens"],
            r["output_tokens"],
            r["cost_usd"],
            r["errors"],
        )
        for r in report.rows
    }
    assert_same(got, want)
    month = await spend_report(backend, parse_query({"bucket": "month"}))
    assert len(month.rows) == 1 and month.rows[0]["requests"] == len(spans)


def _epoch(text: str) -> float:
    from core.timestamps import parse_instant

    return parse_instant(text)


@pytest.mark.anyio
async def test_top_n_and_chargeback_agree_with_the_raw_spans(backend: Any) -> None:
    spans = workload()
    await backend.record_spans(spans)
    top = await top_consumers(backend, parse_query({"group_by": "key"}), 2)
    costs = independent(spans, lambda s: (s.key_id,))
    best = sorted(costs, key=lambda k: -costs[k][3])[:2]
    assert [(r["key"],) for r in top.rows] == best
    bill = await chargeback(backend, "2026-01", T0)
    want = independent(spans, lambda s: (org_levels(s.org_path)[0], org_levels(s.org_path)[2]))
    assert_same(reported(bill.rows, ("department", "project")), want)
    assert await chargeback(backend, "2026-02", T0) == dataclasses.replace(bill, rows=[])


def test_bad_report_queries_are_refused_with_the_parameter_named() -> None:
    from core.errors import ValidationFailed

    for bad, param in (
        ({"group_by": "colour"}, "group_by"),
        ({"bucket": "week"}, "bucket"),
        ({"since": "yesterday"}, "since"),
        ({"group_by": "key,key"}, "group_by"),
        ({"since": "2026-01-02", "until": "2026-01-01"}, "until"),
    ):
        with pytest.raises(ValidationFailed) as caught:
            parse_query(bad)
        assert caught.value.param == param


@pytest.mark.anyio
async def test_reconciliation_finds_the_planted_gap_and_nothing_else(backend: Any) -> None:
    spans = workload()
    await backend.record_spans(spans)
    metered = independent(
        [s for s in spans if s.provider == "sim"],
        lambda s: (_day(s.started_at), s.upstream_model),
    )
    lines = ["date,model,cost"]
    for (day, model), (_, _, _, cost, _) in sorted(metered.items()):
        planted = (day, model) == ("2026-01-02", "sim-small")
        lines.append(f"{day},{model},{cost * 1.07 if planted else cost:.9f}")
    result = await reconcile(backend, "sim", "\n".join(lines) + "\n")
    gaps = [r for r in result["rows"] if r["status"] != "match"]
    assert [(g["date"], g["model"]) for g in gaps] == [("2026-01-02", "sim-small")]
    assert gaps[0]["gap_pct"] == pytest.approx(7.0, abs=0.01)
    assert len(result["rows"]) == len(metered)


def _day(at: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(at, UTC).date().isoformat()


def test_a_malformed_export_is_refused_with_its_line() -> None:
    from core.errors import ValidationFailed

    for text, words in (
        ("model,cost\nx,1\n", "date"),
        ("date,model\n2026-01-01,x\n", "measure"),
        ("date,model,cost\n2026-13-01,x,1\n", "line 2"),
        ("date,model,cost\n2026-01-01,x,lots\n", "line 2"),
        ("date,model,cost\n", "no rows"),
    ):
        with pytest.raises(ValidationFailed, match=words):
            parse_export(text)
    assert parse_export("Date,Model,Input_Tokens\n2026-01-01,x,5\n").measure == "input_tokens"


@pytest.mark.anyio
async def test_call_chain_is_a_tree_with_findings_and_totals(backend: Any) -> None:
    root = Span(
        "req_root",
        "a" * 16,
        "f" * 32,
        T0,
        session_id="s-1",
        agent_id="planner",
        model_requested="sim",
        input_tokens=10,
        output_tokens=5,
        cost_usd=0.5,
        findings=[Finding("pii", "EMAIL_ADDRESS", Scope.MESSAGE, "redact", 0.9, 3, 9)],
    )
    tool = Span(
        "req_tool",
        "b" * 16,
        "f" * 32,
        T0 + 1,
        parent_span_id="a" * 16,
        session_id="s-1",
        agent_id="coder",
        tool="calc__add",
        cost_usd=None,
    )
    child = Span(
        "req_child",
        "c" * 16,
        "f" * 32,
        T0 + 2,
        parent_span_id="b" * 16,
        session_id="s-1",
        agent_id="coder",
        model_requested="sim",
        input_tokens=3,
        cost_usd=0.25,
        status="error",
    )
    other = Span("req_other", "d" * 16, "e" * 32, T0, session_id="s-2")
    await backend.record_spans([child, other, tool, root])
    chain = await load_call_chain(backend, "s-1")
    [top] = chain["tree"]
    assert top["request_id"] == "req_root" and top["findings"][0]["entity_type"] == "EMAIL_ADDRESS"
    assert "value" not in str(top["findings"])
    [mid] = top["children"]
    assert mid["kind"] == "tool" and mid["children"][0]["request_id"] == "req_child"
    assert chain["totals"]["calls"] == 3 and chain["totals"]["cost_usd"] == 0.75
    assert chain["totals"]["tool_calls"] == 1 and chain["totals"]["errors"] == 1
    agents = {a["agent_id"]: a for a in chain["agents"]}
    assert agents["coder"]["calls"] == 2 and agents["planner"]["input_tokens"] == 10
    assert (await load_call_chain(backend, "f" * 32))["totals"]["calls"] == 3
    from core.errors import NotFound

    with pytest.raises(NotFound):
        await load_call_chain(backend, "nope")


@pytest.mark.anyio
async def test_a_failed_batch_leaves_no_aggregate_behind(backend: Any) -> None:
    good = workload(3)
    await backend.record_spans(good)
    dup = [dataclasses.replace(good[0], cost_usd=100.0)]
    with pytest.raises((ValueError, sqlite3.IntegrityError)):
        await backend.record_spans(dup)
    report = await spend_report(backend, UsageQuery())
    assert report.rows[0]["requests"] == 3
    assert report.rows[0]["cost_usd"] == pytest.approx(sum(s.cost_usd or 0 for s in good))


@pytest.mark.anyio
async def test_rebuilding_the_aggregates_counts_every_span_once(backend: Any) -> None:
    spans = workload()
    await backend.record_spans(spans[:300])
    assert await backend.rebuild_usage(page=70) == 300
    await backend.record_spans(spans[300:])  # written after the rebuild: counted by themselves
    query = parse_query({"group_by": "key,upstream_model"})
    got = reported((await spend_report(backend, query)).rows, query.group_by)
    assert_same(got, independent(spans, lambda s: (s.key_id, s.upstream_model)))


@pytest.mark.anyio
async def test_spans_stored_before_the_aggregates_are_counted_after_a_rebuild(
    tmp_path: Path,
) -> None:
    db = tmp_path / "old.db"
    store = SQLiteStore(str(db))
    await store.open()
    try:
        spans = workload(200)
        await store.record_spans(spans)
        with sqlite3.connect(db) as raw:  # as a database from before migration 10 looks
            raw.execute("DELETE FROM usage_hourly")
            raw.execute("DELETE FROM usage_daily")
        assert (await spend_report(store, UsageQuery())).rows == []
        assert await store.rebuild_usage() == 200
        report = await spend_report(store, parse_query({"group_by": "team", "bucket": "month"}))
        want = independent(spans, lambda s: ("2026-01-01T00:00:00Z", org_levels(s.org_path)[1]))
        assert_same(reported(report.rows, ("bucket", "team")), want)
    finally:
        await store.aclose()


@pytest.mark.anyio
async def test_reconciliation_imports_are_kept_newest_first(backend: Any) -> None:
    from core.ops.reconciliation import import_export

    await backend.record_spans(workload(50))
    export = "date,model,cost\n2026-01-01,sim-large,1.5\n"
    first = await import_export(backend, backend, "key_fin", "sim", export, 1.0, T0 + 10)
    second = await import_export(backend, backend, "key_fin", "vllm", export, 1.0, T0 + 20)
    assert [r.id for r in await backend.list_reconciliations(10)] == [second.id, first.id]
    assert await backend.list_reconciliations(1) == [second]
    assert await backend.get_reconciliation(first.id) == first
    assert await backend.get_reconciliation("rec_missing") is None
