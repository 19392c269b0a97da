"""SQL of the MCP tool pins (migration 8) and the per-tool cost query, shared by SQL backends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from core.mcp import PinStatus, ToolCost, ToolPin

PIN_COLUMNS = "server, tool, digest, first_seen, status, pending_digest, changed_at, approved_at"
UPSERT_PIN = (
    f"INSERT INTO tool_pins ({PIN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (server, tool) DO UPDATE SET digest = excluded.digest, "
    "first_seen = excluded.first_seen, status = excluded.status, "
    "pending_digest = excluded.pending_digest, changed_at = excluded.changed_at, "
    "approved_at = excluded.approved_at"
)


def select_pins(server: str | None) -> tuple[str, tuple[Any, ...]]:
    if server is None:
        return f"SELECT {PIN_COLUMNS} FROM tool_pins ORDER BY server, tool", ()
    return f"SELECT {PIN_COLUMNS} FROM tool_pins WHERE server = ? ORDER BY tool", (server,)


def pin_row(pin: ToolPin) -> tuple[Any, ...]:
    return (
        pin.server,
        pin.tool,
        pin.digest,
        pin.first_seen,
        pin.status,
        pin.pending_digest,
        pin.changed_at,
        pin.approved_at,
    )


def pin_from(row: Sequence[Any]) -> ToolPin:
    return ToolPin(
        server=row[0],
        tool=row[1],
        digest=row[2],
        first_seen=float(row[3]),
        status=cast(PinStatus, row[4]),
        pending_digest=row[5],
        changed_at=None if row[6] is None else float(row[6]),
        approved_at=None if row[7] is None else float(row[7]),
    )


def select_tool_costs(session_id: str | None) -> tuple[str, tuple[Any, ...]]:
    sql = (
        "SELECT tool, COUNT(*), SUM(CASE WHEN status = 'ok' THEN 0 ELSE 1 END), "
        "COALESCE(SUM(cost_usd), 0) FROM spans WHERE tool IS NOT NULL"
    )
    params: tuple[Any, ...] = ()
    if session_id is not None:
        sql += " AND (session_id = ? OR trace_id = ?)"
        params = (session_id, session_id)
    return sql + " GROUP BY tool ORDER BY tool", params


def tool_cost_from(row: Sequence[Any]) -> ToolCost:
    return ToolCost(str(row[0]), int(row[1]), int(row[2] or 0), float(row[3] or 0.0))


def tool_costs_of(spans: Sequence[Mapping[str, Any]]) -> list[ToolCost]:
    """The cost query over spans held in memory (each as `tool`, `status`, `cost_usd`)."""
    by_tool: dict[str, list[float]] = {}
    for span in spans:
        totals = by_tool.setdefault(span["tool"], [0, 0, 0.0])
        totals[0] += 1
        totals[1] += span["status"] != "ok"
        totals[2] += span["cost_usd"] or 0.0
    return [
        ToolCost(tool, int(t[0]), int(t[1]), float(t[2])) for tool, t in sorted(by_tool.items())
    ]
