"""`/admin/mcp/*`: upstream MCP servers with their health, tool pins, approvals and tool costs."""

from __future__ import annotations

from typing import Any

from adapters.admin.http import AdminCall, Endpoint, Listing, Query, Reply
from core.mcp import McpControl, ToolPin
from core.roles import Permission, require
from core.timestamps import iso

SERVER_COLUMNS = ("name", "transport", "state", "tools", "error", "restarts")
PIN_COLUMNS = ("name", "server", "tool", "status", "hidden", "digest", "pending_digest",
               "first_seen", "changed_at", "approved_at")  # fmt: skip
COST_COLUMNS = ("tool", "calls", "errors", "cost_usd")
_READERS = "admin, security"
_WRITERS = "admin"


def mcp_endpoints(mcp: McpControl) -> list[Endpoint]:
    """Every MCP admin endpoint."""

    async def servers(call: AdminCall) -> Listing:
        require(call.actor, Permission.GOVERNANCE_READ)
        rows = [
            {
                "name": h.name,
                "transport": h.transport,
                "state": h.state,
                "tools": h.tools,
                "error": h.error,
                "restarts": h.restarts,
            }
            for h in mcp.health()
        ]
        return Listing(rows, SERVER_COLUMNS)

    async def tools(call: AdminCall) -> Listing:
        require(call.actor, Permission.GOVERNANCE_READ)
        return Listing([pin_view(p, hidden) for p, hidden in await mcp.tool_pins()], PIN_COLUMNS)

    async def approve(call: AdminCall) -> Reply:
        require(call.actor, Permission.GOVERNANCE_WRITE)
        pin = await mcp.approve(call.path["name"], call.actor)
        return Reply(pin_view(pin, False))

    async def costs(call: AdminCall) -> Listing:
        require(call.actor, Permission.SPEND_READ)
        rows = [
            {"tool": c.tool, "calls": c.calls, "errors": c.errors, "cost_usd": c.cost_usd}
            for c in await mcp.costs(call.query.get("session_id"))
        ]
        return Listing(rows, COST_COLUMNS)

    tags = ("mcp",)
    return [
        Endpoint("GET", "/admin/mcp/servers", servers, "Upstream MCP servers and their health.",
                 _READERS, exportable=True, tags=tags),
        Endpoint("GET", "/admin/mcp/tools", tools, "Every pinned upstream tool: its pin, whether "
                 "it changed since approval and whether it is hidden now.", _READERS,
                 exportable=True, tags=tags),
        Endpoint("POST", "/admin/mcp/tools/{name}/approve", approve, "Approve the current "
                 "definition of a changed tool (`<server>__<tool>`); a hidden tool is served "
                 "again at once.", _WRITERS, tags=tags),
        Endpoint("GET", "/admin/mcp/costs", costs, "Calls and cost per MCP tool, over all "
                 "sessions or one (`session_id`: an agent session id or trace id).",
                 "admin, finance, security",
                 query=(Query("session_id", "Only the tool calls of this session."),),
                 exportable=True, tags=tags),
    ]  # fmt: skip


def pin_view(pin: ToolPin, hidden: bool) -> dict[str, Any]:
    return {
        "name": pin.name,
        "server": pin.server,
        "tool": pin.tool,
        "status": pin.status,
        "hidden": hidden,
        "digest": pin.digest,
        "pending_digest": pin.pending_digest,
        "first_seen": iso(pin.first_seen),
        "changed_at": iso(pin.changed_at),
        "approved_at": iso(pin.approved_at),
    }
