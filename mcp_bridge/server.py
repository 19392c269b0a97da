"""The agent-facing MCP server: one federated catalog, every tool call through the pipeline.

Handlers read the caller's principal from the HTTP request (the endpoint authenticated it
before the MCP layer saw the request). `tools/list` shows only the tools the key's `tools`
scopes allow (and no changed tool withheld by its pin); `tools/call` enforces the same and runs
the call through `Pipeline.call_tool`. Every failure comes back as a tool result with
`isError: true` and a message of ours, never an exception's text.

Resource reads and prompt gets take the same governed path (`Pipeline.call_tool`: scopes,
limits, filters, one span): the span's `tool` is the federated name of the resource or prompt
(`<server>__<name>`) and its flags say which (`mcp:resource`, `mcp:prompt`); they have no price
(cost 0). Their failures are JSON-RPC errors with a message of ours (they have no `isError`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import mcp_types as types
from mcp import MCPError
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.requests import Request

from core.access import Principal
from core.envelope import Envelope, Message, Modality, TextPart, ToolResultPart
from core.errors import GatewayError, NotFound, PermissionDenied, UpstreamError
from core.mcp import TOOL_SEPARATOR, ToolOutput
from core.pipeline import Call, CallInfo, Pipeline
from core.tracing import new_request_id
from mcp_bridge.upstream import NO_ELICITATION, REFUSED_QUESTION, Upstream

logger = logging.getLogger("agentgw.mcp")

PRINCIPAL = "agentgw.principal"
SEARCH_TOOL = "search_tools"
_STRUCTURED = "structured"
_SEARCH_LIMIT = 20
RESOURCE_FLAG, PROMPT_FLAG = "mcp:resource", "mcp:prompt"
RESOURCE_NOT_FOUND = -32002  # the MCP specification's code for an unknown resource
# What MCP clients accept as a tool name; an upstream tool whose federated name is not one is
# left out rather than renamed (a rename would make pins and scopes ambiguous).
_TOOL_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
T = TypeVar("T")
L = TypeVar(
    "L", types.Resource, types.ResourceTemplate, types.Prompt
)  # what is listed under federated names


@dataclass(frozen=True, slots=True)
class Visible:
    """A federated tool as a caller sees it."""

    name: str
    upstream: Upstream
    tool: types.Tool


class BridgeServer:
    """The downstream MCP server over the upstreams."""

    def __init__(
        self,
        pipeline: Pipeline,
        upstreams: Sequence[Upstream],
        *,
        withheld: Callable[[Upstream, types.Tool], bool],
        page_size: int,
        search_threshold: int,
    ) -> None:
        self._pipeline = pipeline
        self._upstreams = {u.name: u for u in upstreams}
        self._withheld = withheld
        self._page = page_size
        self._threshold = search_threshold
        self.server: Server[Any] = Server(
            "agentgw",
            version="1",
            instructions=(
                "agentgw federates MCP servers: tools are named <server>__<tool>. "
                f"Use {SEARCH_TOOL} to find tools when the list is long."
            ),
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
            on_list_resources=self.list_resources,
            on_list_resource_templates=self.list_resource_templates,
            on_read_resource=self.read_resource,
            on_list_prompts=self.list_prompts,
            on_get_prompt=self.get_prompt,
        )

    # -- tools ------------------------------------------------------------------------------

    def visible(self, principal: Principal) -> list[Visible]:
        """The tools `principal` may see, in config order then upstream order."""
        out = []
        for up in self._upstreams.values():
            if up.state != "up":
                continue
            for tool in up.catalog.tools.values():
                name = f"{up.name}{TOOL_SEPARATOR}{tool.name}"
                if (
                    _TOOL_NAME.match(name)
                    and principal.scopes.allows_tool(name)
                    and not self._withheld(up, tool)
                ):
                    out.append(Visible(name, up, tool))
        return out

    async def list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        visible = self.visible(_principal(ctx))
        tools = [_renamed(v) for v in visible]
        if len(tools) > self._threshold:
            tools = [_search_tool(len(tools)), *tools[: self._threshold - 1]]
        page, cursor = _paginate(tools, params, self._page)
        # Filtered per caller: never a shared-cache hint.
        return types.ListToolsResult(
            tools=page, next_cursor=cursor, ttl_ms=0, cache_scope="private"
        )

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        principal = _principal(ctx)
        name, arguments = params.name, dict(params.arguments or {})
        try:
            if name == SEARCH_TOOL:
                return self._search(principal, arguments)
            if not principal.scopes.allows_tool(name):
                raise PermissionDenied(f"This key may not use tool '{name}' (scope 'tools').")
            up, tool = self._resolve(name)
            call = await self._pipeline.begin(_call_info(ctx))
            session = _session_key(ctx, principal)
            caller = _Caller(ctx, self._pipeline, call)
            result: list[types.CallToolResult] = []

            async def run(filtered: dict[str, Any]) -> ToolOutput:
                reply = await up.call_tool(session, tool, filtered, caller)
                result.append(reply)
                return _output(reply)

            output = await self._pipeline.call_tool(
                call, name, arguments, run, server=up.name, price_usd=self._price(up, tool)
            )
            return _rebuilt(result[0], output)
        except GatewayError as exc:
            return _tool_error(exc.message)
        except Exception:
            logger.exception("MCP tool call %s failed", name)
            return _tool_error("The gateway failed to run this tool.")

    def _resolve(self, name: str) -> tuple[Upstream, str]:
        server, sep, tool = name.partition(TOOL_SEPARATOR)
        up = self._upstreams.get(server)
        if not sep or up is None:
            raise NotFound(f"Unknown tool '{name}'.")
        if up.state != "up":
            raise UpstreamError(f"MCP server '{up.name}' is unavailable; try again later.")
        known = up.catalog.tools.get(tool)
        if known is None:
            raise NotFound(f"Unknown tool '{name}'.")
        if self._withheld(up, known):
            raise PermissionDenied(
                f"Tool '{name}' changed since it was approved and is withheld until an admin "
                "approves it."
            )
        return up, tool

    def _price(self, up: Upstream, tool: str) -> float | None:
        return up.cfg.tool_prices.get(tool, up.cfg.price_per_call)

    def _search(self, principal: Principal, arguments: dict[str, Any]) -> types.CallToolResult:
        query = str(arguments.get("query", "")).lower().split()
        limit = arguments.get("limit", _SEARCH_LIMIT)
        limit = limit if isinstance(limit, int) and 0 < limit <= 100 else _SEARCH_LIMIT
        hits = []
        for v in self.visible(principal):
            text = f"{v.name} {v.tool.description or ''}".lower()
            if all(word in text for word in query):
                hits.append(
                    {
                        "name": v.name,
                        "description": v.tool.description or "",
                        "input_schema": v.tool.input_schema,
                    }
                )
        body = json.dumps({"tools": hits[:limit], "total": len(hits)}, ensure_ascii=False)
        return types.CallToolResult(content=[types.TextContent(type="text", text=body)])

    # -- resources and prompts --------------------------------------------------------------

    def _readable(self, principal: Principal) -> list[Upstream]:
        return [u for u in self._upstreams.values() if u.state == "up"]

    async def list_resources(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        out = self._federated(_principal(ctx), lambda up: up.catalog.resources)
        page, cursor = _paginate(out, params, self._page)
        return types.ListResourcesResult(resources=page, next_cursor=cursor)

    async def list_resource_templates(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        out = self._federated(_principal(ctx), lambda up: up.catalog.templates)
        page, cursor = _paginate(out, params, self._page)
        return types.ListResourceTemplatesResult(resource_templates=page, next_cursor=cursor)

    def _federated(
        self, principal: Principal, listed: Callable[[Upstream], Iterable[L]]
    ) -> list[L]:
        """What `listed` gives of each readable upstream, renamed `<server>__<name>`, keeping
        only the names the key's scopes allow."""
        out = []
        for up in self._readable(principal):
            for item in listed(up):
                name = f"{up.name}{TOOL_SEPARATOR}{item.name}"
                if principal.scopes.allows_tool(name):
                    out.append(item.model_copy(update={"name": name}))
        return out

    async def read_resource(
        self, ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        """Read a federated resource through the pipeline (its contents filtered as tool output).

        Raises:
            MCPError: an unknown resource, or the read failed (a message of ours).
        """
        principal = _principal(ctx)
        uri = str(params.uri)
        found = self._find_resource(principal, uri)
        if found is None:
            raise MCPError(RESOURCE_NOT_FOUND, "Unknown resource.")
        up, name = found
        result: list[types.ReadResourceResult] = []
        caller = _Caller(ctx, self._pipeline)

        async def run(filtered: dict[str, Any]) -> ToolOutput:
            # The filters may have redacted the URI: what they left is what the upstream sees.
            target = str(filtered.get("uri", uri))
            reply = await up.read_resource(_session_key(ctx, principal), target, caller)
            result.append(reply)
            return _resource_output(reply)

        output = await self._governed(caller, name, {"uri": uri}, run, up, RESOURCE_FLAG)
        return _resource_rebuilt(result[0], output)

    def _find_resource(self, principal: Principal, uri: str) -> tuple[Upstream, str] | None:
        """The upstream serving `uri` and the federated name of its resource (or template),
        among those the key's scopes allow; listed resources first, then templates."""
        ups = self._readable(principal)
        candidates = [
            *((up, res.name) for up in ups for res in up.catalog.resources if str(res.uri) == uri),
            *(
                (up, tpl.name)
                for up in ups
                for tpl in up.catalog.templates
                if _template_matches(tpl.uri_template, uri)
            ),
        ]
        for up, name in candidates:
            federated = f"{up.name}{TOOL_SEPARATOR}{name}"
            if principal.scopes.allows_tool(federated):
                return up, federated
        return None

    async def _governed(
        self,
        caller: _Caller,
        name: str,
        arguments: dict[str, Any],
        run: Callable[[dict[str, Any]], Awaitable[ToolOutput]],
        up: Upstream,
        flag: str,
    ) -> ToolOutput:
        """Run a resource read or prompt get through the pipeline as a free call.

        Raises:
            MCPError: any stage refused or failed (a message of ours, never an exception's).
        """
        try:
            call = caller.call = await self._pipeline.begin(_call_info(caller.ctx))
            call.span.flags.append(flag)
            return await self._pipeline.call_tool(
                call, name, arguments, run, server=up.name, price_usd=0.0
            )
        except GatewayError as exc:
            raise MCPError(types.INTERNAL_ERROR, exc.message) from exc
        except Exception as exc:
            logger.exception("MCP %s %s failed", flag, name)
            raise MCPError(
                types.INTERNAL_ERROR, "The gateway failed to serve this request."
            ) from exc

    async def list_prompts(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        out = self._federated(_principal(ctx), lambda up: up.catalog.prompts.values())
        page, cursor = _paginate(out, params, self._page)
        return types.ListPromptsResult(prompts=page, next_cursor=cursor)

    async def get_prompt(
        self, ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        """Get a federated prompt through the pipeline (arguments filtered as tool input, the
        messages as tool output).

        Raises:
            MCPError: an unknown prompt, or the get failed (a message of ours).
        """
        principal = _principal(ctx)
        name = params.name
        server, _, prompt = name.partition(TOOL_SEPARATOR)
        up = self._upstreams.get(server)
        if (
            up is None
            or up.state != "up"
            or prompt not in up.catalog.prompts
            or not principal.scopes.allows_tool(name)
        ):
            raise MCPError(types.INVALID_PARAMS, f"Unknown prompt '{name}'.")
        result: list[types.GetPromptResult] = []
        arguments: dict[str, Any] = dict(params.arguments or {})
        caller = _Caller(ctx, self._pipeline)

        async def run(filtered: dict[str, Any]) -> ToolOutput:
            args = {k: str(v) for k, v in filtered.items()}
            reply = await up.get_prompt(_session_key(ctx, principal), prompt, args, caller)
            result.append(reply)
            return _prompt_output(reply)

        output = await self._governed(caller, name, arguments, run, up, PROMPT_FLAG)
        return _prompt_rebuilt(result[0], output)


class _Caller:
    """The downstream caller of one upstream call, for the questions the upstream asks it.

    Only a session-based (2025-11-25 era) caller that declared elicitation can be asked: the
    question rides the response stream of the caller's own request. A stateless 2026-07-28
    caller would have to retry its request with the answer, which cannot resume an upstream call
    in flight, so the upstream gets a clean error instead.
    """

    def __init__(
        self, ctx: ServerRequestContext[Any], pipeline: Pipeline, call: Call | None = None
    ) -> None:
        self.ctx, self._pipeline, self.call = ctx, pipeline, call

    async def elicit(
        self, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        ctx = self.ctx
        wanted = types.ClientCapabilities(elicitation=types.ElicitationCapability())
        if (
            ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
            or ctx.request_id is None
            or not ctx.session.check_client_capability(wanted)
        ):
            return types.ErrorData(code=types.INVALID_REQUEST, message=NO_ELICITATION)
        if self.call is not None:
            # The question reaches a person through the agent: filtered as the upstream's output.
            try:
                message = await self._filtered(self.call, params.message)
            except GatewayError as exc:
                return types.ErrorData(
                    code=types.INVALID_REQUEST,
                    message=f"{REFUSED_QUESTION}{exc.message}",
                )
            params = params.model_copy(update={"message": message})
        try:
            return await ctx.session.send_request(
                types.ElicitRequest(params=params),
                types.ElicitResult,
                metadata=ServerMessageMetadata(related_request_id=ctx.request_id),
            )
        except Exception:
            logger.info("the agent did not answer an elicitation request", exc_info=True)
            return types.ErrorData(
                code=types.INTERNAL_ERROR, message="The agent did not answer the question."
            )

    async def _filtered(self, call: Call, text: str) -> str:
        tool = call.span.tool or ""
        part = ToolResultPart(tool, [TextPart(text)])
        env = Envelope(call.request_id, Modality.TOOL, tool, messages=[Message("tool", [part])],
                       trace=call.trace, principal=call.principal)  # fmt: skip
        env = await self._pipeline.filter_response(call, env)
        result = env.messages[0].parts[0]
        assert isinstance(result, ToolResultPart)
        return "".join(p.text for p in result.content if isinstance(p, TextPart))


def _principal(ctx: ServerRequestContext[Any]) -> Principal:
    request = ctx.request
    principal = request.scope.get(PRINCIPAL) if isinstance(request, Request) else None
    if not isinstance(principal, Principal):
        # The endpoint authenticates every request before the MCP layer: a bug if not.
        raise RuntimeError("MCP request without an authenticated principal")
    return principal


def _call_info(ctx: ServerRequestContext[Any]) -> CallInfo:
    request = ctx.request
    assert isinstance(request, Request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    session = headers.get("mcp-session-id")
    if session and "x-session-id" not in headers and "traceparent" not in headers:
        # The MCP session is the agent session when the client names no other.
        headers["x-session-id"] = session
    state = request.scope.setdefault("state", {})
    # One HTTP request carries one JSON-RPC request: its request id is this call's, once.
    request_id = state.pop("request_id", None) or new_request_id()
    client = request.client.host if request.client else None
    return CallInfo(request_id=request_id, route="/mcp", headers=headers, client=client)


def _session_key(ctx: ServerRequestContext[Any], principal: Principal) -> str | None:
    """Which upstream session serves this caller: its MCP session, else its agent session, else
    (a stateless caller that names no session) None: an upstream session for this call only.

    Always qualified by the key, so two callers never share an upstream session.
    """
    request = ctx.request
    headers = request.headers if isinstance(request, Request) else {}
    session = headers.get("mcp-session-id") or headers.get("x-session-id")
    return f"{principal.key_id}/{session}" if session else None


def _template_matches(template: str, uri: str) -> bool:
    """Whether `uri` can be expanded from the URI template (RFC 6570: `{x}` is one path segment,
    `{+x}` / `{#x}` anything; other operators match any text after their literal prefix)."""
    pattern = ""
    for literal, expr in re.findall(r"([^{]*)(\{[^}]*\})?", template):
        pattern += re.escape(literal)
        if expr:
            pattern += "[^/?#]*" if expr[1:2].isalnum() or expr[1:2] == "_" else ".*"
    return re.fullmatch(pattern, uri) is not None


def _renamed(v: Visible) -> types.Tool:
    return v.tool.model_copy(update={"name": v.name})


def _search_tool(total: int) -> types.Tool:
    return types.Tool(
        name=SEARCH_TOOL,
        description=(
            f"Search the {total} tools available to you (only some are listed). Returns the "
            "matching tools' names, descriptions and input schemas; call them by name."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "Words the tool's name or "
                          "description must contain."},
                "limit": {"type": "integer", "minimum": 1, "maximum": 100},
            },
            "required": ["query"],
        },
    )  # fmt: skip


def _paginate(
    items: list[T], params: types.PaginatedRequestParams | None, size: int
) -> tuple[list[T], str | None]:
    cursor = params.cursor if params is not None else None
    start = int(cursor) if cursor and cursor.isdigit() else 0
    end = start + size
    return items[start:end], (str(end) if end < len(items) else None)


def _output(result: types.CallToolResult) -> ToolOutput:
    texts = [c.text for c in result.content if isinstance(c, types.TextContent)]
    extra: dict[str, Any] = {}
    if result.structured_content is not None:
        extra[_STRUCTURED] = len(texts)
        texts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return ToolOutput(texts, is_error=bool(result.is_error), extra=extra)


def _rebuilt(result: types.CallToolResult, output: ToolOutput) -> types.CallToolResult:
    """The upstream's result with its texts replaced by the filtered ones."""
    texts = iter(output.texts)
    content: list[types.ContentBlock] = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            content.append(block.model_copy(update={"text": next(texts, "")}))
        else:
            content.append(block)
    structured = None
    if _STRUCTURED in output.extra:
        try:
            structured = json.loads(output.texts[output.extra[_STRUCTURED]])
        except (ValueError, IndexError):
            structured = None  # a filter broke its JSON: the text blocks still carry it
    return types.CallToolResult(
        content=content,
        structured_content=structured if isinstance(structured, dict) else None,
        is_error=output.is_error,
    )


def _resource_output(result: types.ReadResourceResult) -> ToolOutput:
    # Text contents are filtered; binary (blob) contents pass as they are.
    texts = [c.text for c in result.contents if isinstance(c, types.TextResourceContents)]
    return ToolOutput(texts)


def _resource_rebuilt(
    result: types.ReadResourceResult, output: ToolOutput
) -> types.ReadResourceResult:
    texts = iter(output.texts)
    contents: list[types.TextResourceContents | types.BlobResourceContents] = [
        c.model_copy(update={"text": next(texts, "")})
        if isinstance(c, types.TextResourceContents)
        else c
        for c in result.contents
    ]
    return types.ReadResourceResult(contents=contents)


def _prompt_output(result: types.GetPromptResult) -> ToolOutput:
    texts = [result.description or ""]
    texts += [m.content.text for m in result.messages if isinstance(m.content, types.TextContent)]
    return ToolOutput(texts)


def _prompt_rebuilt(result: types.GetPromptResult, output: ToolOutput) -> types.GetPromptResult:
    texts = iter(output.texts)
    description = next(texts, "") or None
    messages = [
        m.model_copy(update={"content": m.content.model_copy(update={"text": next(texts, "")})})
        if isinstance(m.content, types.TextContent)
        else m
        for m in result.messages
    ]
    return types.GetPromptResult(description=description, messages=messages)


def _tool_error(message: str) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=message)], is_error=True
    )
