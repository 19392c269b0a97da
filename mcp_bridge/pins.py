"""Tool integrity: pin each upstream tool's definition when first seen, notice any change.

The pin is a hash of the tool's name, description and schemas (`core.mcp.tool_digest`). A tool
seen for the first time is pinned (and audited). A later change is an audit event and an alert;
with `on_tool_change: hide` the changed tool is withheld from every caller until an admin
approves it. A tool that changes back to its approved definition is visible again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

import mcp_types as types

from core.audit import Actor, AuditDraft, AuditEvent, AuditLog, AuditQuery, Change, Snapshot
from core.errors import Conflict, NotFound
from core.mcp import ToolPin, ToolPinStore, tool_digest

logger = logging.getLogger("agentgw.mcp")

SYSTEM_ACTOR = Actor("system:mcp-bridge", "system", "", "agentgw")
AlertSink = Callable[..., Awaitable[Any]]


def digest_of(tool: types.Tool) -> str:
    return tool_digest(tool.name, tool.description, tool.input_schema, tool.output_schema)


class PinBook:
    """The pins of every upstream tool, cached in memory and kept in the store."""

    def __init__(
        self,
        store: ToolPinStore,
        *,
        alert: AlertSink | None = None,
        clock: Callable[[], float],
    ) -> None:
        self._store, self._alert, self._clock = store, alert, clock
        self._pins: dict[tuple[str, str], ToolPin] = {}
        self._loaded = False

    async def load(self) -> None:
        self._pins = {(p.server, p.tool): p for p in await self._store.tool_pins()}
        self._loaded = True

    def all(self) -> list[ToolPin]:
        return [self._pins[k] for k in sorted(self._pins)]

    def withheld(self, server: str, tool: types.Tool, hide: bool) -> bool:
        """Whether `tool` must be hidden now: changed since its approval, under `hide`."""
        pin = self._pins.get((server, tool.name))
        return hide and pin is not None and pin.digest != digest_of(tool)

    async def check(self, server: str, tools: Sequence[types.Tool]) -> None:
        """Pin new tools; audit and alert on changed ones (each distinct change once)."""
        if not self._loaded:
            await self.load()
        for tool in tools:
            digest = digest_of(tool)
            pin = self._pins.get((server, tool.name))
            if pin is None:
                await self._first_seen(server, tool, digest)
            elif pin.digest == digest and pin.status == "changed":
                await self._reverted(pin)
            elif pin.digest != digest and pin.pending_digest != digest:
                await self._changed(pin, tool, digest)

    async def approve(self, name: str, actor: Actor) -> ToolPin:
        """Accept the pending definition of the changed tool `name` (`<server>__<tool>`).

        Raises:
            NotFound: no pinned tool has that name.
            Conflict: the tool has not changed since it was approved.
        """
        if not self._loaded:
            await self.load()
        pin = next((p for p in self._pins.values() if p.name == name), None)
        if pin is None:
            raise NotFound(f"No pinned MCP tool is named '{name}'.")
        if pin.status != "changed" or pin.pending_digest is None:
            raise Conflict(f"MCP tool '{name}' has not changed since it was approved.")
        new = replace(
            pin,
            digest=pin.pending_digest,
            status="approved",
            pending_digest=None,
            approved_at=round(self._clock(), 6),
        )
        await self._save(
            new,
            actor,
            "mcp.tool.approve",
            f"mcp_tool:{name}",
            before={"digest": pin.digest, "status": pin.status},
            after={"digest": new.digest, "status": new.status},
        )
        return new

    async def _first_seen(self, server: str, tool: types.Tool, digest: str) -> None:
        pin = ToolPin(server, tool.name, digest, first_seen=round(self._clock(), 6))
        await self._save(
            pin,
            SYSTEM_ACTOR,
            "mcp.tool.pin",
            f"mcp_tool:{pin.name}",
            before=None,
            after={"digest": digest, "description": tool.description or ""},
        )

    async def _reverted(self, pin: ToolPin) -> None:
        new = replace(pin, status="approved", pending_digest=None)
        await self._save(
            new,
            SYSTEM_ACTOR,
            "mcp.tool.revert",
            f"mcp_tool:{pin.name}",
            before={"digest": pin.pending_digest, "status": pin.status},
            after={"digest": pin.digest, "status": new.status},
        )

    async def _changed(self, pin: ToolPin, tool: types.Tool, digest: str) -> None:
        now = round(self._clock(), 6)
        new = replace(pin, status="changed", pending_digest=digest, changed_at=now)
        await self._save(
            new,
            SYSTEM_ACTOR,
            "mcp.tool.change",
            f"mcp_tool:{pin.name}",
            before={"digest": pin.digest},
            after={"digest": digest, "description": tool.description or ""},
        )
        message = f"MCP tool '{pin.name}' changed its definition since it was approved"
        if self._alert is not None:
            try:
                await self._alert(
                    "mcp_tool_changed",
                    message,
                    severity="critical",
                    level="mcp_tool",
                    target=pin.name,
                    details={"digest": pin.digest, "new_digest": digest},
                    dedupe_key=f"mcp_tool_changed:{pin.name}:{digest}",
                )
            except Exception:
                logger.exception("could not raise the alert for MCP tool %s", pin.name)
        logger.warning("%s", message)

    async def _save(
        self,
        pin: ToolPin,
        actor: Actor,
        action: str,
        obj: str,
        *,
        before: Snapshot | None,
        after: Snapshot | None,
    ) -> None:
        """Store `pin` and its audit event in one transaction (neither exists without the other);
        `AuditLog` builds the event exactly as it builds every other."""
        log = AuditLog(_WithPin(self._store, pin), clock=self._clock)
        await log.record(actor, action, obj, before=before, after=after)
        self._pins[(pin.server, pin.tool)] = pin


class _WithPin:
    """The store as an `AuditStore` whose next commit also writes `pin`."""

    def __init__(self, store: ToolPinStore, pin: ToolPin) -> None:
        self._store, self._pin = store, pin

    async def commit(self, changes: Sequence[Change], draft: AuditDraft) -> AuditEvent:
        if changes:
            raise ValueError("a pin is written alone with its event")
        return await self._store.commit_tool_pin(self._pin, draft)

    async def audit_events(self, query: AuditQuery) -> list[AuditEvent]:
        return await self._store.audit_events(query)

    async def audit_head(self) -> tuple[int, str] | None:
        return await self._store.audit_head()
