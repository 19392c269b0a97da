"""The federated catalog as each caller sees it: scopes, withheld tools, search and pages.

The handlers are driven directly with a request that carries an authenticated principal, as the
`/mcp` endpoint leaves it; the calls end-to-end are in `tests/e2e/test_mcp_bridge.py`.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, cast

import mcp_types as types
import pytest
from mcp import MCPError
from mcp.server.context import ServerRequestContext
from starlette.requests import Request

from core.access import KeyRecord, Principal, Scopes
from core.config import McpServer, McpSettings
from core.pipeline import Pipeline
from mcp_bridge.server import (
    PRINCIPAL,
    SEARCH_TOOL,
    BridgeServer,
    _Caller,
    _prompt_output,
    _prompt_rebuilt,
    _resource_output,
    _resource_rebuilt,
    _session_key,
    _template_matches,
)
from mcp_bridge.upstream import NO_ELICITATION, Upstream

pytestmark = pytest.mark.anyio


async def _no_catalog(up: Upstream, tools: list[types.Tool]) -> None:
    return None


def upstream(name: str, tools: list[str], *, state: str = "up") -> Upstream:
    cfg = McpServer(name=name, transport="http", url="http://127.0.0.1:9/mcp")
    up = Upstream(cfg, McpSettings(), _no_catalog)
    up.state = state  # type: ignore[assignment]
    for t in tools:
        up.catalog.tools[t] = types.Tool(
            name=t, description=f"{t} things", input_schema={"type": "object"}
        )
    return up


def ctx(*tools: str) -> ServerRequestContext[Any]:
    key = KeyRecord("key_1", "agent", "0" * 64, "agw_0000", "a/b/c", scopes=Scopes(tools=tools))
    scope = {"type": "http", "headers": [], PRINCIPAL: Principal.of(key)}
    return cast(ServerRequestContext[Any], SimpleNamespace(request=Request(scope)))


def bridge(*ups: Upstream, threshold: int = 128, page: int = 100) -> BridgeServer:
    return BridgeServer(
        cast(Pipeline, None),  # listing and refusals never reach the pipeline
        ups,
        withheld=lambda up, tool: tool.name == "poisoned",
        page_size=page,
        search_threshold=threshold,
    )


async def names(server: BridgeServer, c: ServerRequestContext[Any]) -> list[str]:
    out: list[str] = []
    params: types.PaginatedRequestParams | None = None
    while True:
        page = await server.list_tools(c, params)
        out += [t.name for t in page.tools]
        if not page.next_cursor:
            return out
        params = types.PaginatedRequestParams(cursor=page.next_cursor)


async def test_tools_are_namespaced_filtered_by_scope_and_withheld_and_down_servers_hidden() -> (
    None
):
    server = bridge(
        upstream("calc", ["add", "poisoned", "not a valid name", "x" * 130]),
        upstream("notes", ["add_note"]),
        upstream("dead", ["gone"], state="down"),
    )
    assert await names(server, ctx()) == ["calc__add", "notes__add_note"]
    assert await names(server, ctx("calc__*")) == ["calc__add"]
    assert await names(server, ctx("notes__add_note", "other__*")) == ["notes__add_note"]


async def test_a_call_outside_the_keys_scope_is_a_tool_error_not_an_exception() -> None:
    server = bridge(upstream("calc", ["add"]), upstream("notes", ["add_note"]))
    params = types.CallToolRequestParams(name="notes__add_note", arguments={"text": "x"})
    result = await server.call_tool(ctx("calc__*"), params)
    assert result.is_error
    assert result.content[0].text == "This key may not use tool 'notes__add_note' (scope 'tools')."  # type: ignore[union-attr]


async def test_pages_follow_cursors_without_loss_or_repeats() -> None:
    server = bridge(upstream("big", [f"t{n:02d}" for n in range(25)]), page=10)
    first = await server.list_tools(ctx(), None)
    assert len(first.tools) == 10
    assert first.next_cursor
    assert await names(server, ctx()) == [f"big__t{n:02d}" for n in range(25)]


async def test_a_catalog_over_the_threshold_offers_search_tools_which_respects_scopes() -> None:
    server = bridge(
        upstream("big", [f"t{n:02d}" for n in range(30)]),
        upstream("secret", ["t99"]),
        threshold=10,
    )
    listed = await names(server, ctx("big__*"))
    assert listed[0] == SEARCH_TOOL
    assert len(listed) == 10
    found = await server.call_tool(
        ctx("big__*"), types.CallToolRequestParams(name=SEARCH_TOOL, arguments={"query": "t2"})
    )
    body = json.loads(found.content[0].text)  # type: ignore[union-attr]
    assert [t["name"] for t in body["tools"]] == [f"big__t2{n}" for n in range(10)]
    every = await server.call_tool(
        ctx("big__*"), types.CallToolRequestParams(name=SEARCH_TOOL, arguments={"query": "t99"})
    )
    assert json.loads(every.content[0].text)["tools"] == []  # type: ignore[union-attr]
    # Below the threshold there is no meta-tool.
    assert SEARCH_TOOL not in await names(server, ctx("secret__*"))


def ctx_with(headers: dict[str, str], **fields: Any) -> ServerRequestContext[Any]:
    key = KeyRecord("key_1", "agent", "0" * 64, "agw_0000", "a/b/c")
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    scope = {"type": "http", "headers": raw, PRINCIPAL: Principal.of(key)}
    return cast(ServerRequestContext[Any], SimpleNamespace(request=Request(scope), **fields))


def test_a_stateless_caller_without_a_session_gets_no_shared_upstream_session() -> None:
    principal = Principal.of(KeyRecord("key_1", "agent", "0" * 64, "agw_0000", "a/b/c"))
    assert _session_key(ctx_with({}), principal) is None
    assert _session_key(ctx_with({"x-session-id": "run-1"}), principal) == "key_1/run-1"
    assert _session_key(ctx_with({"mcp-session-id": "m1", "x-session-id": "r"}), principal) == (
        "key_1/m1"
    )


async def test_unknown_or_out_of_scope_resources_and_prompts_are_json_rpc_errors() -> None:
    up = upstream("calc", ["add"])
    up.catalog.resources.append(types.Resource(uri="calc://c", name="constants"))
    up.catalog.prompts["explain"] = types.Prompt(name="explain")
    server = bridge(up)
    with pytest.raises(MCPError) as unknown:
        await server.read_resource(ctx(), types.ReadResourceRequestParams(uri="calc://other"))
    assert (unknown.value.error.code, unknown.value.error.message) == (-32002, "Unknown resource.")
    with pytest.raises(MCPError):  # outside the key's scopes: as if it did not exist
        await server.read_resource(ctx("notes__*"), types.ReadResourceRequestParams(uri="calc://c"))
    with pytest.raises(MCPError) as prompt:
        await server.get_prompt(ctx("notes__*"), types.GetPromptRequestParams(name="calc__explain"))
    assert prompt.value.error.message == "Unknown prompt 'calc__explain'."


async def test_a_stateless_caller_is_never_asked_a_question() -> None:
    stateless = ctx_with({}, protocol_version="2026-07-28", request_id=None)
    caller = _Caller(stateless, cast(Pipeline, None))  # refused before any filter runs
    params = types.ElicitRequestFormParams(
        message="Proceed?", requested_schema={"type": "object", "properties": {}}
    )
    answer = await caller.elicit(params)
    assert isinstance(answer, types.ErrorData)
    assert answer.message == NO_ELICITATION


def test_filtered_texts_go_back_in_place_and_binary_contents_pass_untouched() -> None:
    read = types.ReadResourceResult(
        contents=[
            types.TextResourceContents(uri="calc://a", text="mail a@example.org"),
            types.BlobResourceContents(uri="calc://b", blob="AAAA"),
            types.TextResourceContents(uri="calc://c", text="plain"),
        ]
    )
    output = _resource_output(read)
    assert output.texts == ["mail a@example.org", "plain"]
    output.texts = ["mail <EMAIL_ADDRESS>", "plain"]
    rebuilt = _resource_rebuilt(read, output)
    assert [getattr(c, "text", None) for c in rebuilt.contents] == [
        "mail <EMAIL_ADDRESS>",
        None,
        "plain",
    ]
    assert rebuilt.contents[1] == read.contents[1]
    prompt = types.GetPromptResult(
        description="Explain",
        messages=[
            types.PromptMessage(role="user", content=types.TextContent(type="text", text="x"))
        ],
    )
    output = _prompt_output(prompt)
    assert output.texts == ["Explain", "x"]
    output.texts = ["Explain", "y"]
    assert _prompt_rebuilt(prompt, output).messages[0].content == types.TextContent(
        type="text", text="y"
    )


@pytest.mark.parametrize(
    ("template", "uri", "matches"),
    [
        ("calc://square/{n}", "calc://square/7", True),
        ("calc://square/{n}", "calc://square/7/8", False),
        ("calc://square/{n}", "calc://cube/7", False),
        ("file:///{+path}", "file:///a/b.txt", True),
        ("db://{schema}/{table}", "db://main/users", True),
        ("a.b://{x}", "aXb://1", False),  # literal parts are literal, not patterns
    ],
)
def test_a_uri_matches_a_template_by_its_literal_parts_and_variables(
    template: str, uri: str, matches: bool
) -> None:
    assert _template_matches(template, uri) is matches
