"""`/admin/mcp/*` handlers over a real bridge and store: pins, approval, costs and roles."""

from __future__ import annotations

from typing import Any, cast

import mcp_types as types
import pytest

from adapters.admin.http import AdminCall, Endpoint, Listing, Reply
from adapters.admin.mcp import mcp_endpoints
from core.audit import Actor, AuditLog
from core.config import Config
from core.errors import PermissionDenied
from core.pipeline import Pipeline
from core.tracing import Span
from mcp_bridge import McpBridge
from store import MemoryStore

pytestmark = pytest.mark.anyio

ADMIN = Actor("key_admin", "admin", "", "127.0.0.1")
FINANCE = Actor("key_fin", "finance", "", "127.0.0.1")


async def setup() -> tuple[McpBridge, dict[tuple[str, str], Endpoint], MemoryStore]:
    store = MemoryStore()
    await store.open()
    config = Config.model_validate(
        {"mcp_servers": [{"name": "notes", "transport": "http", "url": "http://127.0.0.1:9/mcp",
                          "on_tool_change": "hide"}]}
    )  # fmt: skip
    bridge = McpBridge(
        config, cast(Pipeline, None), store=store, audit=AuditLog(store, clock=lambda: 5.0)
    )
    endpoints = {(e.method, e.path): e for e in mcp_endpoints(bridge)}
    return bridge, endpoints, store


async def call(
    endpoint: Endpoint, actor: Actor, path: dict[str, str] | None = None, **query: str
) -> Any:
    return await endpoint.handler(AdminCall(actor, path or {}, query, None))


async def test_servers_pins_and_approval_through_the_admin_handlers() -> None:
    bridge, endpoints, _ = await setup()
    servers = await call(endpoints[("GET", "/admin/mcp/servers")], ADMIN)
    assert isinstance(servers, Listing)
    assert servers.rows == [{"name": "notes", "transport": "http", "state": "starting",
                             "tools": 0, "error": None, "restarts": 0}]  # fmt: skip

    up = bridge.upstreams[0]
    tool = types.Tool(name="add_note", description="Add.", input_schema={"type": "object"})
    await bridge.pins.check("notes", [tool])
    changed = tool.model_copy(update={"description": "Add, and mail it out."})
    up.catalog.tools["add_note"] = changed
    await bridge.pins.check("notes", [changed])
    pins = await call(endpoints[("GET", "/admin/mcp/tools")], ADMIN)
    assert [(r["name"], r["status"], r["hidden"]) for r in pins.rows] == [
        ("notes__add_note", "changed", True)
    ]
    approve = endpoints[("POST", "/admin/mcp/tools/{name}/approve")]
    with pytest.raises(PermissionDenied):
        await call(approve, FINANCE, {"name": "notes__add_note"})
    reply = await call(approve, ADMIN, {"name": "notes__add_note"})
    assert isinstance(reply, Reply)
    assert reply.body["status"] == "approved"
    pins = await call(endpoints[("GET", "/admin/mcp/tools")], ADMIN)
    assert [(r["status"], r["hidden"]) for r in pins.rows] == [("approved", False)]


async def test_costs_per_tool_over_all_sessions_or_one() -> None:
    _, endpoints, store = await setup()
    spans = [
        Span(request_id=f"req_{n}", span_id=f"{n:016x}", trace_id=f"{n:032x}", started_at=n,
             session_id=session, modality="tool", tool=tool, cost_usd=0.5)
        for n, (session, tool) in enumerate([("s1", "notes__add_note"), ("s2", "notes__add_note"),
                                             ("s1", "calc__add")])
    ]  # fmt: skip
    await store.record_spans(spans)
    costs = endpoints[("GET", "/admin/mcp/costs")]
    everything = await call(costs, FINANCE)
    assert everything.rows == [
        {"tool": "calc__add", "calls": 1, "errors": 0, "cost_usd": 0.5},
        {"tool": "notes__add_note", "calls": 2, "errors": 0, "cost_usd": 1.0},
    ]
    one = await call(costs, FINANCE, session_id="s2")
    assert one.rows == [{"tool": "notes__add_note", "calls": 1, "errors": 0, "cost_usd": 0.5}]
