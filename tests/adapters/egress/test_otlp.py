"""The OTLP exporter: GenAI attributes on every kind of call, and a collector that is down or
slow never holds the span writer (failed and dropped batches are counted)."""

from __future__ import annotations

import anyio
import pytest

from adapters.egress.otlp import OTLPExporter, attributes, export_request, traces_url
from core.tracing import Span
from tests.e2e.procs import free_port


def tool_span() -> Span:
    return Span(
        "req_1",
        "ab" * 8,
        "cd" * 16,
        1_767_225_600.5,
        parent_span_id="ef" * 8,
        session_id="s-1",
        agent_id="planner",
        tool="calc__add",
        modality="tool",
        status="error",
        error_code="tool_failed",
        latency_ms=12.5,
        cost_usd=0.001,
    )


def test_a_tool_call_is_an_execute_tool_span_with_its_parent_and_error() -> None:
    [resource] = export_request([tool_span()])["resourceSpans"]
    [span] = resource["scopeSpans"][0]["spans"]
    assert span["name"] == "execute_tool calc__add" and span["parentSpanId"] == "ef" * 8
    assert span["status"] == {"code": 2}
    assert int(span["endTimeUnixNano"]) - int(span["startTimeUnixNano"]) == 12_500_000
    attrs = attributes(tool_span())
    assert attrs["gen_ai.operation.name"] == "execute_tool"
    assert attrs["gen_ai.tool.name"] == "calc__add" and attrs["error.type"] == "tool_failed"
    assert attrs["gen_ai.conversation.id"] == "s-1" and attrs["gen_ai.agent.id"] == "planner"
    assert "gen_ai.request.model" not in attrs  # absent values are left out, never "None"


def test_the_traces_path_is_appended_once() -> None:
    assert traces_url("http://c:4318") == "http://c:4318/v1/traces"
    assert traces_url("http://c:4318/v1/traces/") == "http://c:4318/v1/traces"


@pytest.mark.anyio
async def test_a_collector_that_is_down_counts_failures_and_holds_nothing() -> None:
    exporter = OTLPExporter(f"http://127.0.0.1:{free_port()}", timeout_seconds=2)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            exporter.start(tg)
            await exporter.spans_written([tool_span()])
            await exporter.spans_written([tool_span(), tool_span()])
            await exporter.aclose()  # the task ends once the queue is drained
    assert (exporter.exported, exporter.failed, exporter.dropped) == (0, 3, 0)


@pytest.mark.anyio
async def test_a_full_queue_drops_and_counts_instead_of_waiting() -> None:
    exporter = OTLPExporter("http://127.0.0.1:9", queue_batches=1)  # never started
    with anyio.fail_after(1):
        await exporter.spans_written([tool_span()])
        await exporter.spans_written([tool_span(), tool_span()])
    assert exporter.dropped == 2
