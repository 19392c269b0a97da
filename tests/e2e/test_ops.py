"""Operations end to end: a mixed workload through the real gateway plus directly recorded spans;
reports (API, CSV, CLI) equal sums computed from the raw span rows; `/metrics` parses; the OTLP
export reaches a receiver with `gen_ai.*` attributes."""

from __future__ import annotations

import csv
import io
import json
import random
import sqlite3
import subprocess
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.reports import org_levels
from core.tracing import Span
from store import SQLiteStore
from tests.e2e.ops_support import OpsDeployment, ops_deployment
from tests.e2e.procs import agentgw

pytestmark = pytest.mark.e2e
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, well before the live traffic


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpsDeployment]:
    with ops_deployment(tmp_path_factory.mktemp("ops")) as deployment:
        live = workload(deployment)
        deployment.receiver.wait_for(live)
        anyio.run(record_directly, deployment.db)
        yield deployment


def workload(d: OpsDeployment) -> int:
    """Several keys, teams, models, agents and sessions; streams, PII and errors. Call count."""
    calls = 0
    plan = [("alpha", "chat", 3), ("alpha", "cheap", 2), ("beta", "chat", 2), ("gamma", "cheap", 4)]
    for name, model, times in plan:
        client = openai.OpenAI(
            base_url=d.gateway.url + "/v1",
            api_key=d.keys[name]["key"],
            default_headers={"x-agent-id": f"agent-{name}", "x-session-id": f"session-{name}"},
            max_retries=0,
        )
        for i in range(times):
            text = f"call {i}: write to jane.doe@example.com" if i == 0 else f"call {i}"
            messages: Any = [{"role": "user", "content": text}]
            if i == 1:
                stream = client.chat.completions.create(model=model, messages=messages, stream=True)
                for _ in stream:
                    pass
            else:
                client.chat.completions.create(model=model, messages=messages)
            calls += 1
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="no-such-model", messages=messages)
        calls += 1
    return calls


async def record_directly(db: Path) -> None:
    """Spans recorded straight into the store (as another replica or an import would)."""
    rng = random.Random(4)
    spans = [
        Span(
            request_id=f"req_direct_{i:04d}",
            span_id=f"{i:016x}",
            trace_id=f"{i:032x}",
            started_at=T0 + rng.uniform(0, 5 * 86400),
            key_id=rng.choice(("key_direct_1", "key_direct_2")),
            org_path=rng.choice(("research/nlp/chat", "finance/ledger/close", "sales/emea/deals")),
            customer=rng.choice(("acme", "globex")),
            model_requested="chat",
            provider="good",
            upstream_model=rng.choice(("sim-large", "sim-small")),
            input_tokens=rng.randint(1, 5000),
            output_tokens=rng.randint(1, 900),
            cost_usd=rng.uniform(0.0001, 0.05),
            status=rng.choice(("ok", "ok", "error")),
        )
        for i in range(80)
    ]
    # MCP tool calls and other modalities (no upstream model, a tool name, units).
    spans += [
        Span(
            request_id=f"req_direct_t{i:03d}",
            span_id=f"{1000 + i:016x}",
            trace_id=f"{1000 + i:032x}",
            started_at=T0 + rng.uniform(0, 5 * 86400),
            key_id="key_direct_1",
            org_path="research/nlp/chat",
            app=rng.choice(("copilot", "batch")),
            provider="mcp-files" if i % 2 else "good",
            modality="tool" if i % 2 else rng.choice(("embedding", "image")),
            tool=rng.choice(("search", "fetch")) if i % 2 else None,
            upstream_model=None if i % 2 else "sim-small",
            input_tokens=0 if i % 2 else rng.randint(1, 500),
            images=0 if i % 2 else 1,
            cost_usd=rng.uniform(0.0001, 0.01),
        )
        for i in range(20)
    ]
    store = SQLiteStore(str(db))
    await store.open()
    try:
        await store.record_spans(spans)
    finally:
        await store.aclose()


def raw_spans(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM spans")]


Sums = dict[tuple[Any, ...], tuple[int, int, int, float]]


def sums(rows: list[dict[str, Any]], key: Callable[[dict[str, Any]], tuple[Any, ...]]) -> Sums:
    out: dict[tuple[Any, ...], list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])
    for r in rows:
        acc = out[key(r)]
        acc[0] += 1
        acc[1] += r["input_tokens"]
        acc[2] += r["output_tokens"]
        acc[3] += r["cost_usd"] or 0.0
    return {k: (int(v[0]), int(v[1]), int(v[2]), v[3]) for k, v in out.items()}


def report(d: OpsDeployment, **params: str) -> list[dict[str, Any]]:
    reply = httpx.get(
        d.gateway.url + "/admin/reports/spend",
        params=params,
        headers={"authorization": f"Bearer {d.keys['finance']['key']}"},
    )
    assert reply.status_code == 200, reply.text
    rows: list[dict[str, Any]] = reply.json()["data"]
    return rows


GROUPINGS: list[tuple[str, Callable[[dict[str, Any]], tuple[Any, ...]]]] = [
    ("key", lambda r: (r["key_id"],)),
    ("team,model", lambda r: (org_levels(r["org_path"])[1], r["model_requested"] or "")),
    ("provider,upstream_model", lambda r: (r["provider"] or "", r["upstream_model"] or "")),
    ("department,customer", lambda r: (org_levels(r["org_path"])[0], r["customer"] or "")),
    ("agent", lambda r: (r["agent_id"] or "",)),
    ("tool", lambda r: (r["tool"] or "",)),
    ("modality,provider", lambda r: (r["modality"] or "", r["provider"] or "")),
    ("project,app", lambda r: (org_levels(r["org_path"])[2], r["app"] or "")),
]


@pytest.mark.parametrize(("group_by", "key"), GROUPINGS, ids=[g for g, _ in GROUPINGS])
def test_report_equals_sums_over_the_raw_spans(
    ops: OpsDeployment, group_by: str, key: Callable[[dict[str, Any]], tuple[Any, ...]]
) -> None:
    want = sums(raw_spans(ops.db), key)
    dims = group_by.split(",")
    got = {
        tuple(r[d] for d in dims): (
            r["requests"],
            r["input_tokens"],
            r["output_tokens"],
            r["cost_usd"],
        )
        for r in report(ops, group_by=group_by)
    }
    assert got.keys() == want.keys()
    for k, (n, inp, out, cost) in want.items():
        assert got[k][:3] == (n, inp, out), k
        assert got[k][3] == pytest.approx(cost, abs=1e-8), k


@pytest.mark.parametrize("group_by", ["tool", "modality"])
def test_daily_buckets_by_tool_and_modality_equal_the_raw_spans(
    ops: OpsDeployment, group_by: str
) -> None:
    def day(at: float) -> str:
        return datetime.fromtimestamp(at - at % 86400, UTC).isoformat().replace("+00:00", "Z")

    want = sums(raw_spans(ops.db), lambda r: (day(r["started_at"]), r[group_by] or ""))
    got = {
        (r["bucket"], r[group_by]): (r["requests"], r["input_tokens"], r["output_tokens"])
        for r in report(ops, group_by=group_by, bucket="day")
    }
    assert got == {k: v[:3] for k, v in want.items()}
    assert any(k[1] == ("search" if group_by == "tool" else "tool") for k in got)


def test_workload_covers_live_and_direct_spans(ops: OpsDeployment) -> None:
    rows = raw_spans(ops.db)
    assert sum(1 for r in rows if r["request_id"].startswith("req_direct_")) == 100
    assert {r["tool"] for r in rows} >= {"search", "fetch"}
    live = [r for r in rows if not r["request_id"].startswith("req_direct_")]
    assert {r["status"] for r in live} == {"ok", "error"} and any(r["stream"] for r in live)
    assert sum(r["redactions"] for r in live) >= 4


def test_csv_export_and_cli_match_the_json_report(ops: OpsDeployment) -> None:
    params = {"group_by": "key,upstream_model", "bucket": "day"}
    rows = report(ops, **params)
    reply = httpx.get(
        ops.gateway.url + "/admin/reports/spend",
        params={**params, "format": "csv"},
        headers={"authorization": f"Bearer {ops.keys['finance']['key']}"},
    )
    parsed = list(csv.DictReader(io.StringIO(reply.text)))
    assert [(r["bucket"], r["key"], r["upstream_model"], int(r["requests"])) for r in parsed] == [
        (r["bucket"], r["key"], r["upstream_model"], r["requests"]) for r in rows
    ]
    out = subprocess.run(
        agentgw(
            "report",
            "spend",
            "--config",
            str(ops.config),
            "--group-by",
            "key,upstream_model",
            "--bucket",
            "day",
            "--json",
        ),
        capture_output=True,
        text=True,
        check=True,
        cwd=ops.config.parent,
    )
    assert json.loads(out.stdout) == rows


def test_cli_top_chargeback_session_and_rebuild_agree_with_the_api(ops: OpsDeployment) -> None:
    def cli(*args: str) -> str:
        out = subprocess.run(
            agentgw("report", *args, "--config", str(ops.config)),
            capture_output=True, text=True, check=True, cwd=ops.config.parent,
        )  # fmt: skip
        return out.stdout

    by_key = {r["key"]: r["cost_usd"] for r in report(ops, group_by="key")}
    top = json.loads(cli("top", "-n", "2", "--json"))
    assert [r["key"] for r in top] == sorted(by_key, key=lambda k: -by_key[k])[:2]
    bill = json.loads(cli("chargeback", "--month", "2026-01", "--json"))
    assert sum(r["requests"] for r in bill) == 100  # the directly recorded January spans
    chain = json.loads(cli("session", "session-alpha"))
    assert chain["totals"]["calls"] == 7 and chain["agents"][0]["agent_id"] == "agent-alpha"
    before = report(ops, group_by="team,upstream_model")
    assert "rebuilt from" in subprocess.run(
        agentgw("report", "rebuild", "--config", str(ops.config)),
        capture_output=True, text=True, check=True, cwd=ops.config.parent,
    ).stdout  # fmt: skip
    after = report(ops, group_by="team,upstream_model")
    assert [(r["team"], r["upstream_model"], r["requests"]) for r in after] == [
        (r["team"], r["upstream_model"], r["requests"]) for r in before
    ]


def test_reconciliation_cli_flags_only_the_planted_gap(ops: OpsDeployment) -> None:
    rows = [r for r in raw_spans(ops.db) if r["provider"] == "good"]
    daily = sums(
        rows,
        lambda r: (
            datetime.fromtimestamp(r["started_at"], UTC).date().isoformat(),
            r["upstream_model"],
        ),
    )
    planted = sorted(daily)[1]
    export = ops.config.parent / "invoice.csv"
    export.write_text(
        "date,model,cost\n"
        + "".join(
            f"{day},{model},{v[3] * (1.07 if (day, model) == planted else 1.0):.9f}\n"
            for (day, model), v in sorted(daily.items())
        )
    )
    out = subprocess.run(
        agentgw(
            "report",
            "reconcile",
            "--config",
            str(ops.config),
            "--provider",
            "good",
            str(export),
            "--json",
        ),
        capture_output=True,
        text=True,
        cwd=ops.config.parent,
    )
    assert out.returncode == 1, out.stderr  # differences found
    result = json.loads(out.stdout)
    flagged = [(r["date"], r["model"]) for r in result["rows"] if r["status"] != "match"]
    assert flagged == [planted]
    kept = httpx.get(
        ops.gateway.url + f"/admin/reconciliations/{result['id']}",
        headers={"authorization": f"Bearer {ops.keys['finance']['key']}"},
    ).json()
    assert kept["actor"].startswith("cli:") and kept["differences"] == 1
    assert [r["gap_pct"] for r in result["rows"] if r["status"] != "match"] == [
        pytest.approx(7.0, abs=0.01)
    ]


def test_metrics_parse_with_the_prometheus_parser(ops: OpsDeployment) -> None:
    text = httpx.get(ops.gateway.url + "/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "agentgw_requests",
        "agentgw_tokens",
        "agentgw_cost_usd",
        "agentgw_request_duration_seconds",
        "agentgw_ttft_seconds",
        "agentgw_errors",
        "agentgw_write_queue_depth",
    ):
        assert name in families, name
    cost = sum(s.value for s in families["agentgw_cost_usd"].samples if s.name.endswith("_total"))
    live = [r for r in raw_spans(ops.db) if not r["request_id"].startswith("req_direct_")]
    assert cost == pytest.approx(sum(r["cost_usd"] or 0 for r in live), rel=1e-6)
    circuits = {s.labels["target"]: s.value for s in families["agentgw_circuit_state"].samples}
    assert circuits == {"good/sim-large": 0.0, "good/sim-small": 0.0}
    errors = [s for s in families["agentgw_errors"].samples if s.name.endswith("_total")]
    assert any(s.labels.get("code") == "model_not_found" for s in errors), errors


def test_otlp_export_carries_gen_ai_attributes(ops: OpsDeployment) -> None:
    exported = {s["spanId"]: s for s in ops.receiver.spans}
    assert ops.receiver.paths and set(ops.receiver.paths) == {"/v1/traces"}
    live = [r for r in raw_spans(ops.db) if not r["request_id"].startswith("req_direct_")]
    assert len(exported) == len(live)
    for row in live:
        span = exported[row["span_id"]]
        assert span["traceId"] == row["trace_id"]
        attrs = {a["key"]: next(iter(a["value"].values())) for a in span["attributes"]}
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.request.model"] == row["model_requested"]
        assert int(attrs["gen_ai.usage.input_tokens"]) == row["input_tokens"]
        assert attrs["gen_ai.conversation.id"] == row["session_id"]
        if row["status"] == "ok":
            assert attrs["gen_ai.response.model"] == row["upstream_model"]
        else:
            assert span["status"]["code"] == 2 and attrs["error.type"] == row["error_code"]


def test_reconciliation_through_the_admin_api_with_a_raw_csv_body(ops: OpsDeployment) -> None:
    rows = [r for r in raw_spans(ops.db) if r["provider"] == "good" and r["upstream_model"]]
    daily = sums(
        rows,
        lambda r: (
            datetime.fromtimestamp(r["started_at"], UTC).date().isoformat(),
            r["upstream_model"],
        ),
    )
    planted = sorted(daily)[-2]
    export = "date,model,input_tokens\n" + "".join(
        f"{d},{m},{round(v[1] * (1.07 if (d, m) == planted else 1.0))}\n"
        for (d, m), v in sorted(daily.items())
    )
    finance = {"authorization": f"Bearer {ops.keys['finance']['key']}"}
    reply = httpx.post(
        ops.gateway.url + "/admin/reconciliations",
        params={"provider": "good", "tolerance_pct": "1"},
        content=export.encode(),
        headers={**finance, "content-type": "text/csv"},
    )
    assert reply.status_code == 201, reply.text
    result = reply.json()
    flagged = [(r["date"], r["model"]) for r in result["rows"] if r["status"] != "match"]
    assert flagged == [planted] and result["measure"] == "input_tokens"
    bad = httpx.post(
        ops.gateway.url + "/admin/reconciliations?provider=good",
        content=b"date,model,cost\n2026-01-01,sim-large,1\n2026-01-02,sim-large,x\n",
        headers={**finance, "content-type": "text/csv"},
    )
    assert bad.status_code == 422 and "line 3" in bad.json()["error"]["message"]
    listed = httpx.get(ops.gateway.url + "/admin/reconciliations", headers=finance).json()
    assert result["id"] in [r["id"] for r in listed["data"]]


def test_prices_through_the_cli_reach_the_running_gateway(ops: OpsDeployment) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            agentgw("report", "prices", *args, "--config", str(ops.config)),
            capture_output=True, text=True, cwd=ops.config.parent,
        )  # fmt: skip

    later = datetime.now(UTC).timestamp() + 86400
    added = cli("add", "--provider", "good", "--model", "sim-small", "--input-per-1m", "0.75",
                "--effective-from", str(later))  # fmt: skip
    assert added.returncode == 0, added.stderr
    version = json.loads(added.stdout)
    assert version["input_per_1m"] == 0.75 and version["added_by"].startswith("cli:")
    refused = cli("add", "--provider", "good", "--model", "sim-small", "--effective-from",
                  "2020-01-01")  # fmt: skip
    assert refused.returncode != 0 and "in the past" in refused.stderr
    listing = httpx.get(
        ops.gateway.url + "/admin/prices",
        headers={"authorization": f"Bearer {ops.keys['finance']['key']}"},
    ).json()["data"]
    small = [(p["input_per_1m"], p["current"]) for p in listing if p["model"] == "sim-small"]
    assert small == [(0.5, True), (0.75, False)]
    shown = json.loads(cli("list", "--json").stdout)
    assert [p["input_per_1m"] for p in shown if p["model"] == "sim-small"] == [0.5, 0.75]
