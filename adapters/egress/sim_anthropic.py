"""The simulated model over the Anthropic Messages wire: `POST /v1/messages` of `agentgw sim`.

Like `sim_wire`, it reads the wire itself rather than through the gateway's adapters, so it stays
an independent witness of what an Anthropic upstream receives. A request is reduced to the same
`SimChatRequest` the OpenAI face builds for the same conversation (one `tool` turn per
`tool_result`, as the OpenAI wire has one tool message per result), so both faces give the same
text, tool calls and token counts. Usage is Anthropic's: `input_tokens` leaves out the prompt
tokens reported as `cache_read_input_tokens`.

Faults, latency and stream holds are the server's own, shared with the OpenAI face; a stream's
"chunks" here are its SSE events. Unlike the OpenAI face this one records the auth headers it
receives (`GET /_sim/anthropic/headers`), so tests can prove which key reached the upstream.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from adapters.egress.sim_model import (
    SimChatReply,
    SimChatRequest,
    SimRequestError,
    SimTool,
    SimToolCall,
    SimToolResult,
    SimTurn,
    SimUsage,
    chat_reply,
    parse_max_tokens,
    parse_tool_choice,
    stream_deltas,
)
from adapters.egress.sim_options import FaultInjector, SimOptions

RECORDED_HEADERS = ("x-api-key", "authorization", "anthropic-version", "anthropic-beta")
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


@dataclass(frozen=True, slots=True)
class MessagesCall:
    """A parsed `POST /v1/messages` body."""

    model: str
    request: SimChatRequest
    stream: bool


def _json(body: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def error_body(status: int, message: str) -> dict[str, Any]:
    """Anthropic's error object for a reply with HTTP `status`."""
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def _error(status: int, message: str) -> Response:
    headers = {"retry-after": "1"} if status == 429 else None
    return _json(error_body(status, message), status, headers)


def _event(name: str, data: Mapping[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


# -- the wire, read ------------------------------------------------------------------------


def _texts_and_images(content: object, where: str) -> tuple[tuple[str, ...], int]:
    if content is None:
        return (), 0
    if isinstance(content, str):
        return (content,), 0
    if not isinstance(content, list):
        raise SimRequestError(f"{where}: must be a string or a list of blocks", param=where)
    texts: list[str] = []
    images = 0
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "image":
            images += 1
        else:
            raise SimRequestError(f"{where}.{j}: unsupported block {kind!r}", param=f"{where}.{j}")
    return tuple(texts), images


def _user_turns(content: list[Any], where: str) -> list[SimTurn]:
    turns: list[SimTurn] = []
    pending: list[Any] = []
    for j, block in enumerate(content):
        if not (isinstance(block, Mapping) and block.get("type") == "tool_result"):
            pending.append(block)
            continue
        if pending:
            turns.append(SimTurn("user", *_texts_and_images(pending, where)))
            pending = []
        call_id = block.get("tool_use_id")
        if not isinstance(call_id, str):
            raise SimRequestError(f"{where}.{j}.tool_use_id: Field required", param=where)
        texts, images = _texts_and_images(block.get("content"), f"{where}.{j}.content")
        result = SimToolResult(call_id, texts)
        turns.append(SimTurn("tool", images=images, tool_results=(result,)))
    if pending or not turns:
        turns.append(SimTurn("user", *_texts_and_images(pending, where)))
    return turns


def _assistant_turn(content: list[Any], where: str) -> SimTurn:
    texts: list[str] = []
    calls: list[SimToolCall] = []
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use" and isinstance(block.get("input"), Mapping):
            arguments = orjson.dumps(block["input"]).decode()
            calls.append(SimToolCall(str(block.get("id", "")), str(block.get("name")), arguments))
        elif kind not in ("thinking", "redacted_thinking"):  # the sim does not reread thoughts
            raise SimRequestError(f"{where}.{j}: unsupported block {kind!r}", param=f"{where}.{j}")
    return SimTurn("assistant", tuple(texts), tool_calls=tuple(calls))


def _turns(message: object, i: int) -> list[SimTurn]:
    where = f"messages.{i}"
    if not isinstance(message, Mapping) or message.get("role") not in ("user", "assistant"):
        raise SimRequestError(f"{where}.role: must be 'user' or 'assistant'", param=where)
    content = message.get("content")
    if isinstance(content, str):
        return [SimTurn(str(message["role"]), (content,))]
    if not isinstance(content, list):
        raise SimRequestError(f"{where}.content: Field required", param=f"{where}.content")
    if message["role"] == "user":
        return _user_turns(content, f"{where}.content")
    return [_assistant_turn(content, f"{where}.content")]


def _tools(raw: object) -> tuple[SimTool, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SimRequestError("tools: must be a list", param="tools")
    tools: list[SimTool] = []
    for j, tool in enumerate(raw):
        if not isinstance(tool, Mapping) or not isinstance(tool.get("name"), str):
            raise SimRequestError(f"tools.{j}.name: Field required", param=f"tools.{j}")
        description, schema = tool.get("description"), tool.get("input_schema")
        tools.append(
            SimTool(
                tool["name"],
                description if isinstance(description, str) else None,
                schema if isinstance(schema, Mapping) else None,
            )
        )
    return tuple(tools)


def parse_messages(body: Mapping[str, Any]) -> MessagesCall:
    """Read a Messages body as Anthropic would.

    Raises:
        SimRequestError: a missing or malformed field (`max_tokens` is required).
    """
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise SimRequestError("model: Field required", param="model")
    if "max_tokens" not in body:
        raise SimRequestError("max_tokens: Field required", param="max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise SimRequestError("messages: Field required", param="messages")
    system = body.get("system")
    turns = [] if system is None else [SimTurn("system", _texts_and_images(system, "system")[0])]
    for i, message in enumerate(messages):
        turns.extend(_turns(message, i))
    request = SimChatRequest(
        turns=tuple(turns),
        tools=_tools(body.get("tools")),
        max_tokens=parse_max_tokens({"max_tokens": body["max_tokens"]}),
        tool_choice=parse_tool_choice(body.get("tool_choice")),
    )
    return MessagesCall(model, request, body.get("stream") is True)


# -- the wire, written ---------------------------------------------------------------------


def _usage(usage: SimUsage) -> dict[str, int]:
    return {
        "input_tokens": usage.prompt_tokens - usage.cached_tokens,
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached_tokens,
    }


def _tool_use(call: SimToolCall) -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": call.id,
        "name": call.name,
        "input": orjson.loads(call.arguments),
    }


def message_body(reply: SimChatReply, model: str, message_id: str) -> dict[str, Any]:
    """A non-streamed Messages reply."""
    content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
    content.extend(_tool_use(c) for c in reply.tool_calls)
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _STOP_REASONS.get(reply.finish_reason, reply.finish_reason),
        "stop_sequence": None,
        "usage": _usage(reply.usage),
    }


def stream_events(reply: SimChatReply, model: str, message_id: str) -> list[bytes]:
    """The reply as Anthropic streams it: usage on input at the start, on output at the end."""
    start = {**message_body(reply, model, message_id), "content": [], "stop_reason": None}
    start["usage"] = {**_usage(reply.usage), "output_tokens": 1}
    events = [_event("message_start", {"type": "message_start", "message": start})]
    events.append(_event("ping", {"type": "ping"}))
    index, kind = -1, ""

    def block(name: str, **data: Any) -> bytes:
        return _event(name, {"type": name, "index": index, **data})

    for delta in stream_deltas(reply):
        opening = (delta.text is not None and kind != "text") or (
            delta.tool_call is not None and delta.tool_call.id is not None
        )
        if (opening or delta.finish_reason is not None) and kind:
            events.append(block("content_block_stop"))
            kind = ""
        if opening:
            index += 1
            if delta.tool_call is not None:
                kind = "tool_use"
                call = {"type": "tool_use", "id": delta.tool_call.id, "name": delta.tool_call.name}
                events.append(block("content_block_start", content_block={**call, "input": {}}))
            else:
                kind = "text"
                events.append(
                    block("content_block_start", content_block={"type": "text", "text": ""})
                )
        if delta.text is not None:
            events.append(
                block("content_block_delta", delta={"type": "text_delta", "text": delta.text})
            )
        if delta.tool_call is not None and delta.tool_call.arguments:
            json_delta = {"type": "input_json_delta", "partial_json": delta.tool_call.arguments}
            events.append(block("content_block_delta", delta=json_delta))
    stop = _STOP_REASONS.get(reply.finish_reason, reply.finish_reason)
    end = {"stop_reason": stop, "stop_sequence": None}
    usage = {"output_tokens": reply.usage.completion_tokens}
    events.append(_event("message_delta", {"type": "message_delta", "delta": end, "usage": usage}))
    events.append(_event("message_stop", {"type": "message_stop"}))
    return events


class SimAnthropicFace:
    """The Anthropic routes of one sim server, sharing its options, fault RNG, request log and
    release event with the OpenAI face."""

    def __init__(
        self,
        options: SimOptions,
        faults: FaultInjector,
        requests: deque[Any],
        released: Callable[[], anyio.Event],
    ) -> None:
        self._options = options
        self._faults = faults
        self._requests = requests
        self._released = released
        self._headers: deque[dict[str, str]] = deque(maxlen=requests.maxlen)

    async def messages(self, request: Request) -> Response:
        self._headers.append(
            {h: request.headers[h] for h in RECORDED_HEADERS if h in request.headers}
        )
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _error(400, "There was an error parsing the body of your request.")
        self._requests.append(body)
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object.")
        if "anthropic-version" not in request.headers:
            return _error(400, "anthropic-version: header is required")
        try:
            call = parse_messages(body)
            reply = chat_reply(call.request, self._options)
        except SimRequestError as exc:
            return _error(400, exc.message)
        if self._options.latency_ms:
            await anyio.sleep(self._options.latency_ms / 1000)
        if self._faults.should_fail():
            status = self._options.fail_status
            return _error(status, f"sim: injected failure ({status})")
        message_id = f"msg_{uuid.uuid4().hex}"
        if call.stream:
            events = stream_events(reply, call.model, message_id)
            return StreamingResponse(
                self._stream(events),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache"},
            )
        if self._options.ttft_ms:
            await anyio.sleep(self._options.ttft_ms / 1000)
        return _json(message_body(reply, call.model, message_id))

    async def _stream(self, events: list[bytes]) -> AsyncIterator[bytes]:
        drop_after = self._options.drop_after_chunks
        for n, event in enumerate(events):
            if drop_after is not None and n >= drop_after:
                return  # The upstream went away mid-stream: no message_stop.
            if n == self._options.hold_after_chunks:
                await self._released().wait()
            delay = self._options.ttft_ms if n == 0 else self._options.chunk_delay_ms
            if delay:
                await anyio.sleep(delay / 1000)
            yield event

    async def recorded_headers(self, request: Request) -> Response:
        """The auth and version headers of each Messages request received, newest last."""
        return _json(list(self._headers))
