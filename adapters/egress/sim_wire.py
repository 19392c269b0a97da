"""The OpenAI wire as the sim server speaks it: JSON dicts in, the sim's plain data out, and back.

The sim reads the wire itself rather than through the gateway's ingress adapter, so it stays an
independent witness of what an OpenAI-compatible upstream receives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from adapters.egress.sim_embeddings import (
    DEFAULT_DIMENSIONS,
    MAX_DIMENSIONS,
    EmbeddingInput,
    text_input,
    token_input,
)
from adapters.egress.sim_model import (
    SimChatReply,
    SimChatRequest,
    SimDelta,
    SimRequestError,
    SimTool,
    SimToolCall,
    SimToolResult,
    SimTurn,
    SimUsage,
    parse_max_tokens,
    parse_tool_choice,
)

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


@dataclass(frozen=True, slots=True)
class ChatCall:
    """A parsed `POST /v1/chat/completions` body."""

    model: str
    request: SimChatRequest
    stream: bool
    include_usage: bool


@dataclass(frozen=True, slots=True)
class EmbeddingCall:
    """A parsed `POST /v1/embeddings` body."""

    model: str
    inputs: tuple[EmbeddingInput, ...]
    dimensions: int
    base64: bool


def _model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise SimRequestError("you must provide a model parameter", param="model")
    return model


def _content(content: object, where: str) -> tuple[list[str], int, int, int]:
    """Texts and media counts of a message's `content` (a string, null or a list of parts)."""
    if content is None:
        return [], 0, 0, 0
    if isinstance(content, str):
        return [content], 0, 0, 0
    if not isinstance(content, list):
        raise SimRequestError("content must be a string or a list of parts", param=where)
    texts: list[str] = []
    images = audios = videos = 0
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else None
        match kind:
            case "text" | "refusal":
                text = part.get(kind)
                if not isinstance(text, str):
                    raise SimRequestError(f"a {kind} part needs a string", param=f"{where}[{j}]")
                texts.append(text)
            case "image_url":
                images += 1
            case "input_audio":
                audios += 1
            case "video_url":
                videos += 1
            case _:
                raise SimRequestError(
                    f"unsupported content part type: {kind!r}", param=f"{where}[{j}].type"
                )
    return texts, images, audios, videos


def _tool_calls(raw: object, where: str) -> tuple[SimToolCall, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SimRequestError("tool_calls must be a list", param=where)
    calls: list[SimToolCall] = []
    for j, call in enumerate(raw):
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(call, Mapping) or not isinstance(function, Mapping):
            raise SimRequestError("a tool call needs a function", param=f"{where}[{j}]")
        name, arguments = function.get("name"), function.get("arguments", "")
        if not isinstance(name, str):
            raise SimRequestError("a tool call needs a name", param=f"{where}[{j}].function.name")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments).decode()
        calls.append(SimToolCall(str(call.get("id", "")), name, arguments))
    return tuple(calls)


def _turn(message: object, i: int) -> SimTurn:
    where = f"messages[{i}]"
    if not isinstance(message, Mapping):
        raise SimRequestError("each message must be an object", param=where)
    role = message.get("role")
    if role not in ROLES or not isinstance(role, str):
        raise SimRequestError(f"invalid role: {role!r}", param=f"{where}.role")
    texts, images, audios, videos = _content(message.get("content"), f"{where}.content")
    name = message.get("name")
    if role in ("tool", "function"):
        call_id = message.get("tool_call_id", name if role == "function" else None)
        if not isinstance(call_id, str):
            raise SimRequestError(
                "a tool message needs tool_call_id", param=f"{where}.tool_call_id"
            )
        result = SimToolResult(call_id, tuple(texts), name if isinstance(name, str) else None)
        return SimTurn(role, images=images, audios=audios, videos=videos, tool_results=(result,))
    calls = _tool_calls(message.get("tool_calls"), f"{where}.tool_calls")
    return SimTurn(role, tuple(texts), images, audios, videos, tool_calls=calls)


def _tools(raw: object) -> tuple[SimTool, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SimRequestError("tools must be a list", param="tools")
    tools: list[SimTool] = []
    for j, tool in enumerate(raw):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(name, str) or not name:
            raise SimRequestError("a tool needs function.name", param=f"tools[{j}].function")
        description, parameters = function.get("description"), function.get("parameters")
        tools.append(
            SimTool(
                name,
                description if isinstance(description, str) else None,
                parameters if isinstance(parameters, Mapping) else None,
            )
        )
    return tuple(tools)


def parse_chat(body: Mapping[str, Any]) -> ChatCall:
    """Read a chat completions body.

    Raises:
        SimRequestError: a missing or malformed field, named in `param`.
    """
    model = _model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise SimRequestError("messages is required and must be a non-empty list", param="messages")
    request = SimChatRequest(
        turns=tuple(_turn(m, i) for i, m in enumerate(messages)),
        tools=_tools(body.get("tools")),
        max_tokens=parse_max_tokens(body),
        tool_choice=parse_tool_choice(body.get("tool_choice")),
    )
    options = body.get("stream_options")
    include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
    return ChatCall(model, request, body.get("stream") is True, include_usage)


def _embedding_input(value: object) -> EmbeddingInput:
    if isinstance(value, str):
        return text_input(value)
    if isinstance(value, list) and value and all(type(v) is int for v in value):
        return token_input(value)
    raise SimRequestError("input must be a string or an array of tokens", param="input")


def parse_embeddings(body: Mapping[str, Any]) -> EmbeddingCall:
    """Read an embeddings body.

    Raises:
        SimRequestError: a missing or malformed field, named in `param`.
    """
    model = _model(body)
    raw = body.get("input")
    if isinstance(raw, str) or (isinstance(raw, list) and raw and type(raw[0]) is int):
        items: list[object] = [raw]
    elif isinstance(raw, list) and raw:
        items = list(raw)
    else:
        raise SimRequestError("input is required and must not be empty", param="input")
    dimensions = body.get("dimensions", DEFAULT_DIMENSIONS)
    if type(dimensions) is not int or not 1 <= dimensions <= MAX_DIMENSIONS:
        raise SimRequestError(f"dimensions must be 1..{MAX_DIMENSIONS}", param="dimensions")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise SimRequestError("encoding_format must be float or base64", param="encoding_format")
    inputs = tuple(_embedding_input(v) for v in items)
    return EmbeddingCall(model, inputs, dimensions, encoding == "base64")


def usage_body(usage: SimUsage) -> dict[str, Any]:
    """OpenAI's chat `usage` object."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def _tool_call_body(index: int, call: SimToolCall) -> dict[str, Any]:
    return {
        "index": index,
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def completion_body(reply: SimChatReply, model: str, reply_id: str, created: int) -> dict[str, Any]:
    """A non-streamed chat completion."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [_tool_call_body(i, c) for i, c in enumerate(reply.tool_calls)]
    return {
        "id": reply_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": "sim",
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}
        ],
        "usage": usage_body(reply.usage),
    }


def _delta_body(delta: SimDelta) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if delta.role is not None:
        body["role"] = delta.role
        body["content"] = ""
    if delta.text is not None:
        body["content"] = delta.text
    if delta.tool_call is not None:
        piece = delta.tool_call
        call: dict[str, Any] = {"index": piece.index}
        if piece.id is not None:
            call["id"] = piece.id
            call["type"] = "function"
        function: dict[str, Any] = {"arguments": piece.arguments}
        if piece.name is not None:
            function["name"] = piece.name
        call["function"] = function
        body["tool_calls"] = [call]
    return body


def chunk_body(
    delta: SimDelta, model: str, reply_id: str, created: int, *, include_usage: bool
) -> dict[str, Any]:
    """One `chat.completion.chunk` carrying `delta`."""
    body: dict[str, Any] = {
        "id": reply_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "sim",
        "choices": [
            {
                "index": 0,
                "delta": _delta_body(delta),
                "logprobs": None,
                "finish_reason": delta.finish_reason,
            }
        ],
    }
    if include_usage:
        body["usage"] = None  # OpenAI sends an explicit null on every chunk but the last.
    return body


def usage_chunk_body(usage: SimUsage, model: str, reply_id: str, created: int) -> dict[str, Any]:
    """The last chunk when `stream_options.include_usage` is set: no choices, only usage."""
    return {
        "id": reply_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "sim",
        "choices": [],
        "usage": usage_body(usage),
    }


def _error_kind(status: int) -> tuple[str, str]:
    match status:
        case 401:
            return "authentication_error", "invalid_api_key"
        case 403:
            return "permission_error", "permission_denied"
        case 404:
            return "invalid_request_error", "not_found"
        case 429:
            return "rate_limit_error", "rate_limit_exceeded"
        case _ if status >= 500:
            return "server_error", "server_error"
        case _:
            return "invalid_request_error", "invalid_request"


def error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error object for a reply with HTTP `status`."""
    kind, code = _error_kind(status)
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
