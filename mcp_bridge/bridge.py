"""`McpBridge`: the `/mcp` endpoint, the upstreams behind it, and their pins, as one object.

`core.app` builds it by registry string, mounts `routes()`, runs `serve` in the lifespan (which
waits for each upstream's first connection attempt, so a gateway that reports ready serves
every upstream that could start), and asks it for `health()` on `/readyz`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
from anyio.abc import TaskStatus
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Message, Receive, Scope, Send

from core.audit import Actor, AuditLog
from core.config import Config, ConfigError
from core.errors import GatewayError
from core.mcp import TOOL_SEPARATOR, ToolCost, ToolPin, ToolPinStore, UpstreamHealth
from core.pipeline import Pipeline
from mcp_bridge.pins import AlertSink, PinBook
from mcp_bridge.server import PRINCIPAL, BridgeServer
from mcp_bridge.upstream import Upstream

logger = logging.getLogger("agentgw.mcp")

# JSON-RPC 2.0 error codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
# How long the start waits for each upstream's first connection attempt.
STARTUP_WAIT_SECONDS = 20.0


class McpBridge:
    """The MCP bridge of one gateway (implements `core.mcp.McpControl`)."""

    def __init__(
        self,
        config: Config,
        pipeline: Pipeline,
        *,
        store: ToolPinStore,
        audit: AuditLog,
        alert: AlertSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Raises:
        ConfigError: two upstreams share a name, or a name contains the separator `__`.
        """
        names = [s.name for s in config.mcp_servers]
        for name in names:
            if TOOL_SEPARATOR in name or names.count(name) > 1:
                raise ConfigError(
                    f"mcp_servers.{name}: names must be unique and must not contain "
                    f"'{TOOL_SEPARATOR}'"
                )
        settings = config.mcp
        self._store = store
        # Pins write their audit events themselves, in the pin's transaction (`PinBook`).
        self.pins = PinBook(store, alert=alert, clock=clock)
        self.upstreams = [Upstream(s, settings, self._on_catalog) for s in config.mcp_servers]
        self.server = BridgeServer(
            pipeline,
            self.upstreams,
            withheld=lambda up, tool: self.pins.withheld(
                up.name, tool, up.cfg.on_tool_change == "hide"
            ),
            page_size=settings.page_size,
            search_threshold=settings.search_tools_threshold,
        )
        hosts = [*_LOOPBACK_HOSTS, *settings.allowed_hosts]
        origins = [f"{scheme}://{h}" for h in hosts for scheme in ("http", "https")]
        self.manager = StreamableHTTPSessionManager(
            self.server.server,
            security_settings=TransportSecuritySettings(
                enable_dns_rebinding_protection=True,
                allowed_hosts=[*hosts, *(f"{h}:*" for h in hosts)],
                allowed_origins=[
                    *origins,
                    *(f"{o}:*" for o in origins),
                    *settings.allowed_origins,
                ],
            ),
            max_request_body_size=config.listen.max_body_bytes,
        )
        self._endpoint = _Endpoint(self, pipeline, config.listen.max_body_bytes)

    def routes(self) -> list[BaseRoute]:
        return [Route("/mcp", self._endpoint, methods=["GET", "POST", "DELETE"])]

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the session manager and every upstream until cancelled."""
        await self.pins.load()
        async with self.manager.run(), anyio.create_task_group() as tg:
            for up in self.upstreams:
                tg.start_soon(up.supervise, tg)
            with anyio.move_on_after(STARTUP_WAIT_SECONDS):
                for up in self.upstreams:
                    await up.first_attempt.wait()
            task_status.started()

    async def _on_catalog(self, up: Upstream, tools: list[Any]) -> None:
        await self.pins.check(up.name, tools)

    # -- McpControl -------------------------------------------------------------------------

    def health(self) -> Sequence[UpstreamHealth]:
        return [u.health() for u in self.upstreams]

    async def tool_pins(self) -> list[tuple[ToolPin, bool]]:
        hidden = {
            f"{u.name}{TOOL_SEPARATOR}{t.name}"
            for u in self.upstreams
            for t in u.catalog.tools.values()
            if self.pins.withheld(u.name, t, u.cfg.on_tool_change == "hide")
        }
        return [(p, p.name in hidden) for p in self.pins.all()]

    async def approve(self, name: str, actor: Actor) -> ToolPin:
        return await self.pins.approve(name, actor)

    async def costs(self, session_id: str | None) -> list[ToolCost]:
        return await self._store.tool_costs(session_id)


class _Endpoint:
    """`/mcp`: authenticate (401 JSON before the MCP layer), then the session manager."""

    def __init__(self, bridge: McpBridge, pipeline: Pipeline, max_body_bytes: int) -> None:
        self._bridge, self._pipeline = bridge, pipeline
        self._max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        client = scope.get("client")
        try:
            principal = await self._pipeline.authenticate(headers, client[0] if client else None)
        except GatewayError as exc:
            body = {"error": {"message": exc.message, "type": exc.type, "code": exc.code}}
            extra = {"www-authenticate": "Bearer"} if exc.status == 401 else {}
            reply = JSONResponse(body, status_code=exc.status, headers={**exc.headers(), **extra})
            await reply(scope, receive, send)
            return
        if scope["method"] == "POST":
            refusal, receive = await _screen(scope, receive, self._max_body)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        scope[PRINCIPAL] = principal
        # Binds each MCP session to the key that opened it: another key's request for that
        # session id is answered as if the session did not exist.
        token = AccessToken(token="-", client_id=principal.key_id, scopes=[])
        scope["user"] = AuthenticatedUser(token)
        await self._bridge.manager.handle_request(scope, receive, send)


async def _screen(scope: Scope, receive: Receive, limit: int) -> tuple[Response | None, Receive]:
    """A POST's body, read within `limit` and checked before the MCP layer sees it.

    Returns a JSON-RPC error reply with its HTTP status (the SDK's own would be plain text or a
    pydantic message), or None and a `receive` that replays the body to the MCP layer.
    """
    content_type = ""
    for name, value in scope["headers"]:
        if name.lower() == b"content-type":
            content_type = value.decode("latin-1").split(";")[0].strip().lower()
    if content_type != "application/json":
        message = "Send each JSON-RPC message with Content-Type: application/json."
        return _rpc_error(415, INVALID_REQUEST, message), receive
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await receive()
        if event["type"] != "http.request":  # the client went away: let the MCP layer see it
            return None, _replay([event], receive)
        chunk = event.get("body", b"")
        size += len(chunk)
        if size > limit:
            message = f"Request body is larger than the limit of {limit} bytes."
            return _rpc_error(413, INVALID_REQUEST, message), receive
        chunks.append(chunk)
        if not event.get("more_body", False):
            break
    body = b"".join(chunks)
    try:
        parsed = json.loads(body)
    except ValueError:
        return _rpc_error(400, PARSE_ERROR, "Parse error: the body is not valid JSON."), receive
    if not isinstance(parsed, dict):
        message = "Invalid request: send one JSON-RPC message, a JSON object."
        return _rpc_error(400, INVALID_REQUEST, message), receive
    return None, _replay([{"type": "http.request", "body": body, "more_body": False}], receive)


def _replay(events: list[Message], then: Receive) -> Receive:
    """`events` first, then the connection's own (a disconnect while the reply streams)."""
    pending = list(events)

    async def receive() -> Message:
        return pending.pop(0) if pending else await then()

    return receive


def _rpc_error(status: int, code: int, message: str) -> Response:
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status)
