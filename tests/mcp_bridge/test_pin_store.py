"""Tool pins and per-tool costs keep one contract on every store backend."""

from __future__ import annotations

import dataclasses
from typing import Protocol

import pytest

from core.audit import AuditDraft, AuditQuery, verify_chain
from core.mcp import ToolCost, ToolPin, ToolPinStore
from core.state import Store
from core.tracing import Span
from tests.store.test_stores import backend

__all__ = ["backend"]  # the fixture, imported so pytest finds it here too

pytestmark = pytest.mark.anyio


class PinBackend(Store, ToolPinStore, Protocol):
    pass


async def test_a_pin_is_stored_replaced_and_listed_by_server_then_tool(
    backend: PinBackend,
) -> None:
    assert await backend.tool_pins() == []
    first = ToolPin("notes", "add_note", "a" * 64, first_seen=100.5)
    await backend.put_tool_pin(first)
    await backend.put_tool_pin(ToolPin("calc", "add", "b" * 64, first_seen=101.0))
    await backend.put_tool_pin(ToolPin("calc", "mul", "c" * 64, first_seen=102.0))
    changed = dataclasses.replace(
        first, status="changed", pending_digest="d" * 64, changed_at=200.25
    )
    await backend.put_tool_pin(changed)

    pins = await backend.tool_pins()
    assert [(p.server, p.tool) for p in pins] == [
        ("calc", "add"),
        ("calc", "mul"),
        ("notes", "add_note"),
    ]
    assert pins[2] == changed
    assert pins[2].name == "notes__add_note"
    assert [p.tool for p in await backend.tool_pins("calc")] == ["add", "mul"]
    assert await backend.tool_pins("nothing") == []


async def test_a_pin_and_its_audit_event_are_written_together_or_not_at_all(
    backend: PinBackend,
) -> None:
    pin = ToolPin("notes", "add_note", "a" * 64, first_seen=100.5)
    draft = AuditDraft(
        100.5, "system", "system", "mcp.tool.pin", "mcp_tool:notes__add_note", None, None, "gw"
    )
    event = await backend.commit_tool_pin(pin, draft)
    assert await backend.tool_pins() == [pin]
    assert [e.id for e in await backend.audit_events(AuditQuery())] == [event.id]

    # An event that cannot be stored (its snapshot is not JSON) takes its pin down with it.
    changed = dataclasses.replace(pin, status="changed", pending_digest="b" * 64)
    broken = dataclasses.replace(draft, action="mcp.tool.change", after={"x": object()})
    with pytest.raises((TypeError, ValueError)):
        await backend.commit_tool_pin(changed, broken)
    assert await backend.tool_pins() == [pin]
    assert len(await backend.audit_events(AuditQuery())) == 1
    assert (await verify_chain(backend))[1] is None


def _span(n: int, tool: str | None, session: str | None, cost: float | None, status: str) -> Span:
    return Span(
        request_id=f"req_{n:024x}",
        span_id=f"{n:016x}",
        trace_id=f"{n:032x}",
        started_at=1_700_000_000.0 + n,
        session_id=session,
        modality="tool" if tool else "chat",
        tool=tool,
        cost_usd=cost,
        status=status,
    )


async def test_tool_costs_sum_calls_errors_and_cost_per_tool_and_per_session(
    backend: PinBackend,
) -> None:
    await backend.record_spans(
        [
            _span(1, "calc__add", "s1", 0.25, "ok"),
            _span(2, "calc__add", "s1", 0.25, "ok"),
            _span(3, "calc__add", "s2", None, "error"),
            _span(4, "notes__add_note", "s1", 0.5, "ok"),
            _span(5, None, "s1", 3.0, "ok"),  # a model call: not a tool
        ]
    )
    assert await backend.tool_costs() == [
        ToolCost("calc__add", 3, 1, pytest.approx(0.5)),  # type: ignore[arg-type]
        ToolCost("notes__add_note", 1, 0, pytest.approx(0.5)),  # type: ignore[arg-type]
    ]
    assert await backend.tool_costs("s1") == [
        ToolCost("calc__add", 2, 0, pytest.approx(0.5)),  # type: ignore[arg-type]
        ToolCost("notes__add_note", 1, 0, pytest.approx(0.5)),  # type: ignore[arg-type]
    ]
    assert await backend.tool_costs("s2") == [ToolCost("calc__add", 1, 1, 0.0)]
    assert await backend.tool_costs("nobody") == []
