"""What the core knows of the MCP bridge: tool pins, tool outputs, and the bridge's control seam.

The bridge itself lives in `mcp_bridge` (wired by `core.app` by registry string). Core code and
adapters talk to it only through the protocols here: the admin API lists upstreams and pins and
approves changed tools through `McpControl`; stores keep pins through `ToolPinStore`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from core.audit import Actor, AuditDraft, AuditEvent, AuditStore

PinStatus = Literal["approved", "changed"]
TOOL_SEPARATOR = "__"


def tool_digest(
    name: str,
    description: str | None,
    input_schema: Mapping[str, Any] | None,
    output_schema: Mapping[str, Any] | None,
) -> str:
    """The pin of one upstream tool: sha256 over its name, description and schemas."""
    content = {
        "name": name,
        "description": description or "",
        "input_schema": input_schema or {},
        "output_schema": output_schema or {},
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ToolPin:
    """The approved hash of one upstream tool and, once it changed, the hash it changed to."""

    server: str
    tool: str
    digest: str
    first_seen: float
    status: PinStatus = "approved"
    pending_digest: str | None = None
    changed_at: float | None = None
    approved_at: float | None = None

    @property
    def name(self) -> str:
        """The federated name agents see (`<server>__<tool>`)."""
        return f"{self.server}{TOOL_SEPARATOR}{self.tool}"


@dataclass(frozen=True, slots=True)
class ToolCost:
    """Calls and cost of one tool (within one session, when asked per session)."""

    tool: str
    calls: int
    errors: int
    cost_usd: float


class ToolPinStore(AuditStore, Protocol):
    """Where tool pins live (with the audit log they are written with). Implemented by every
    store backend."""

    async def tool_pins(self, server: str | None = None) -> list[ToolPin]:
        """Every pin (of one upstream server), by server then tool."""
        ...

    async def put_tool_pin(self, pin: ToolPin) -> None:
        """Insert or replace the pin of (`pin.server`, `pin.tool`)."""
        ...

    async def commit_tool_pin(self, pin: ToolPin, draft: AuditDraft) -> AuditEvent:
        """Insert or replace `pin` and append `draft` as the next audit event, in one
        transaction: a pin never exists without the event that describes it."""
        ...

    async def tool_costs(self, session_id: str | None = None) -> list[ToolCost]:
        """Calls and cost per tool over the stored tool spans (of one session), by tool."""
        ...


@dataclass(slots=True)
class ToolOutput:
    """A tool's result as the pipeline filters it: its texts, in order, and whether it failed.

    `texts` are the text blocks of the result (structured content travels as one JSON text);
    the bridge maps the filtered texts back onto the MCP result.
    """

    texts: list[str]
    is_error: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UpstreamHealth:
    """One upstream server as `/readyz` and the admin API show it."""

    name: str
    transport: str
    state: Literal["starting", "up", "down"]
    tools: int
    error: str | None = None
    restarts: int = 0


class McpControl(Protocol):
    """The bridge as the admin API and `/readyz` see it."""

    def health(self) -> Sequence[UpstreamHealth]:
        """Every configured upstream, in config order."""
        ...

    async def tool_pins(self) -> list[tuple[ToolPin, bool]]:
        """Every pin, with whether its tool is hidden now (changed and not approved)."""
        ...

    async def approve(self, name: str, actor: Actor) -> ToolPin:
        """Accept the current definition of the changed tool `name` (`<server>__<tool>`).

        Raises:
            NotFound: no pinned tool has that name.
            Conflict: the tool has not changed since it was approved.
        """
        ...

    async def costs(self, session_id: str | None) -> list[ToolCost]:
        """Calls and cost per tool (in one session)."""
        ...
