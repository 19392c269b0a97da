"""The Anthropic Messages wire, decoding: JSON → Envelope, for requests and replies.

`anthropic_encode` holds the way back (Envelope → JSON) and `anthropic_stream` the SSE events.

All three serve the Anthropic ingress (Claude Code and the `anthropic` SDK speak this wire to us)
and the Anthropic egress (we speak it to Anthropic upstreams). The Envelope's normal form follows
the OpenAI chat shape, so the two wires translate through it with no pairwise code:

- `system` (a string or text blocks) is a leading `system` message; on the way out every
  `system` / `developer` message is gathered into `system`, wherever it stood.
- Each `tool_result` block becomes a `tool` message holding one ToolResultPart; text and images
  after the results in the same user message become the next `user` message. On the way out, tool
  messages and the user message right after them are joined into one user message again
  (Anthropic joins consecutive user turns itself, so the meaning is the same).
- `thinking` / `redacted_thinking` blocks are TextParts marked `_type`, so filters see the
  thinking text; the signature and the redacted data ride in the part's extra.
- `max_tokens`, `temperature`, `top_p` keep their names; `stop_sequences` ↔ `stop`,
  `metadata.user_id` ↔ `user`, `tool_choice` ↔ OpenAI's shape, `disable_parallel_tool_use` ↔
  `parallel_tool_calls`. Every other field (`top_k`, `thinking`, beta fields …) is `extra`.
- Usage: Anthropic counts cached input apart from `input_tokens`; `Usage.input_tokens` includes
  it (as OpenAI's `prompt_tokens` does), `cache_read_input_tokens` is `cached_tokens`, and
  `cache_creation_input_tokens`, which `Usage` has no field for, rides in `extra["usage"]`.

A request decoded here has `Envelope.source = "anthropic"`, so the Anthropic encoder knows its
`extra` is Anthropic's own and can be forwarded verbatim, and the OpenAI encoder knows to forward
none of it. Keys starting with `_` in any `extra` are round-trip markers and never go on a wire.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from core.envelope import (
    Envelope,
    ImagePart,
    Message,
    Modality,
    Part,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
    Usage,
)
from core.errors import UnsupportedContent, UpstreamError, ValidationFailed

WIRE = "anthropic"
BETA_MARK = "_anthropic_beta"
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_T = TypeVar("_T")
_REPLY_KEYS = frozenset(
    {"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"}
)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow")


class Source(_Wire):
    type: str
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class ContentPart(_Wire):
    """One content block; which of the fields it needs depends on its `type`."""

    type: str
    text: str | None = None
    source: Source | None = None
    id: str | None = None
    name: str | None = None
    input: dict[str, Any] | None = None
    tool_use_id: str | None = None
    content: str | list[ContentPart] | None = None
    is_error: bool | None = None
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None


class WireMessage(_Wire):
    role: Literal["user", "assistant"]
    content: str | list[ContentPart]


class ToolDef(_Wire):
    name: str = Field(min_length=1)
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    type: str | None = None


class ToolChoice(_Wire):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class Metadata(_Wire):
    user_id: str | None = None


class CountTokensRequest(_Wire):
    """A `/v1/messages/count_tokens` body: a request without the sampling fields."""

    model: str = Field(min_length=1)
    messages: list[WireMessage] = Field(min_length=1)
    system: str | list[ContentPart] | None = None
    tools: list[ToolDef] | None = None
    tool_choice: ToolChoice | None = None


class MessagesRequest(CountTokensRequest):
    """A `/v1/messages` body; fields not listed here pass through untouched."""

    max_tokens: int = Field(ge=1)
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0)
    stop_sequences: list[str] | None = None
    metadata: Metadata | None = None


# -- requests: wire → Envelope -------------------------------------------------------------


def _client_extra(model: BaseModel) -> dict[str, Any]:
    """A client's fields the gateway does not read, to pass on. Keys starting with `_` are
    dropped: they would be taken for the gateway's own round-trip markers."""
    return {k: v for k, v in (model.model_extra or {}).items() if not k.startswith("_")}


def messages_request_to_envelope(req: CountTokensRequest, request_id: str) -> Envelope:
    """Decode a validated Messages (or count_tokens) request.

    Raises:
        UnsupportedContent: a block, image source or tool the gateway cannot carry, or
            `mcp_servers` (tool calls the gateway would not see).
        ValidationFailed: a block lacks the field its type needs.
    """
    structural = {"model", "messages", "system", "tools", "tool_choice", "stream"}
    structural |= {"metadata", "stop_sequences"}
    dumped = req.model_dump(exclude_unset=True, exclude=structural)
    extra = {k: v for k, v in dumped.items() if not k.startswith("_")}
    if "mcp_servers" in extra:
        # The MCP connector would have the upstream call tools the gateway never sees.
        raise UnsupportedContent(
            "mcp_servers is not supported: reach MCP servers through the gateway's /mcp.",
            param="mcp_servers",
        )
    sampling = ("max_tokens", "temperature", "top_p")
    params: dict[str, Any] = {k: extra.pop(k) for k in sampling if k in extra}
    if isinstance(req, MessagesRequest):
        if req.stop_sequences is not None:
            params["stop"] = list(req.stop_sequences)
        if req.metadata is not None:
            metadata = req.metadata.model_dump(exclude_unset=True)
            user = metadata.pop("user_id", None)
            if user is not None:
                params["user"] = user
            if metadata or user is None:
                extra["metadata"] = metadata
    if req.tool_choice is not None:
        params.update(_tool_choice_from_wire(req.tool_choice))
    messages = [] if req.system is None else [_system_from_wire(req.system)]
    for i, m in enumerate(req.messages):
        messages.extend(_messages_from_wire(i, m))
    return Envelope(
        id=request_id,
        modality=Modality.CHAT,
        model=req.model,
        messages=messages,
        tools=[_tool_from_wire(j, t) for j, t in enumerate(req.tools or [])],
        params=params,
        extra=extra,
        stream=isinstance(req, MessagesRequest) and req.stream,
        source=WIRE,
    )


def _tool_choice_from_wire(choice: ToolChoice) -> dict[str, Any]:
    out: dict[str, Any] = {}
    match choice.type:
        case "auto" | "none":
            out["tool_choice"] = choice.type
        case "any":
            out["tool_choice"] = "required"
        case "tool":
            if not choice.name:
                raise ValidationFailed(
                    "tool_choice of type 'tool' needs a name.", param="tool_choice"
                )
            out["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    if choice.disable_parallel_tool_use is not None:
        out["parallel_tool_calls"] = not choice.disable_parallel_tool_use
    return out


def _system_from_wire(system: str | list[ContentPart]) -> Message:
    if isinstance(system, str):
        return Message("system", [TextPart(system)], extra={"_content_str": True})
    parts: list[Part] = []
    for j, block in enumerate(system):
        if block.type != "text":
            raise UnsupportedContent(
                f"A system block of type '{block.type}' is not supported.", param=f"system[{j}]"
            )
        parts.append(part_from_wire(block, f"system[{j}]"))
    return Message("system", parts)


def _messages_from_wire(i: int, m: WireMessage) -> list[Message]:
    extra = _client_extra(m)
    if isinstance(m.content, str):
        return [Message(m.role, [TextPart(m.content)], extra={**extra, "_content_str": True})]
    out: list[Message] = []
    pending: list[Part] = []
    for j, block in enumerate(m.content):
        where = f"messages[{i}].content[{j}]"
        if block.type != "tool_result":
            pending.append(part_from_wire(block, where))
            continue
        if m.role != "user":
            raise UnsupportedContent("A tool_result block belongs in a user message.", param=where)
        if pending:
            out.append(Message("user", pending))
            pending = []
        out.append(_tool_result_from_wire(block, where))
    if pending or not out:
        out.append(Message(m.role, pending))
    out[0].extra.update(extra)
    return out


def part_from_wire(block: ContentPart, where: str) -> Part:
    """One content block (not a tool result) as a Part; `where` names it in errors.

    Raises:
        UnsupportedContent: a block type the gateway cannot carry.
        ValidationFailed: the block lacks the field its type needs.
    """
    extra = _client_extra(block)
    match block.type:
        case "text":
            return TextPart(_needs(block.text, where, "text"), extra)
        case "image":
            return ImagePart(_image_url(block.source, where), extra=extra)
        case "tool_use":
            name = _needs(block.name, where, "name")
            arguments = _json_text(_needs(block.input, where, "input"))
            return ToolCallPart(_needs(block.id, where, "id"), name, arguments, extra)
        case "thinking":
            if block.signature is not None:
                extra["signature"] = block.signature
            return TextPart(
                _needs(block.thinking, where, "thinking"), {**extra, "_type": "thinking"}
            )
        case "redacted_thinking":
            data = _needs(block.data, where, "data")
            return TextPart("", {**extra, "_type": "redacted_thinking", "data": data})
        case _:
            # Documents, search results and server-tool blocks hold text the filters cannot read
            # yet: refusing them is safer than forwarding unread content.
            raise UnsupportedContent(
                f"Content block of type '{block.type}' is not supported.", param=where
            )


def _json_text(value: Any) -> str:
    # Compact, as models write arguments on the OpenAI wire.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _needs(value: _T | None, where: str, field: str) -> _T:
    if value is None:
        where = f"{where}.{field}"
        raise ValidationFailed(f"Invalid request: {where}: Field required", param=where)
    return value


def _image_url(source: Source | None, where: str) -> str:
    source = _needs(source, where, "source")
    if source.type == "base64" and source.media_type and source.data:
        return f"data:{source.media_type};base64,{source.data}"
    if source.type == "url" and source.url:
        return source.url
    raise UnsupportedContent(
        f"Image source of type '{source.type}' is not supported.", param=f"{where}.source"
    )


def _tool_result_from_wire(block: ContentPart, where: str) -> Message:
    extra = _client_extra(block)
    content: list[Part] = []
    if block.content is None:
        extra["_no_content"] = True
    elif isinstance(block.content, str):
        content = [TextPart(block.content)]
    else:
        for k, inner in enumerate(block.content):
            if inner.type not in ("text", "image"):
                raise UnsupportedContent(
                    f"A tool result cannot hold a block of type '{inner.type}'.",
                    param=f"{where}.content[{k}]",
                )
            content.append(part_from_wire(inner, f"{where}.content[{k}]"))
    call_id = _needs(block.tool_use_id, where, "tool_use_id")
    part = ToolResultPart(call_id, content, is_error=bool(block.is_error), extra=extra)
    as_str = not isinstance(block.content, list)
    return Message("tool", [part], extra={"_content_str": True} if as_str else {})


def _tool_from_wire(j: int, t: ToolDef) -> ToolSpec:
    if t.type not in (None, "custom"):
        raise UnsupportedContent(
            f"Server tool '{t.type}' is not supported through the gateway.", param=f"tools[{j}]"
        )
    return ToolSpec(t.name, t.description, t.input_schema, _client_extra(t))


# -- replies: wire → Envelope -------------------------------------------------------------


def finish_reason(stop_reason: str | None) -> str | None:
    """Anthropic's `stop_reason` as a finish reason (unknown ones pass unchanged)."""
    return None if stop_reason is None else FINISH_REASONS.get(stop_reason, stop_reason)


def usage_from_wire(u: Any) -> tuple[Usage | None, dict[str, Any]]:
    """Anthropic usage as `Usage` (input including cache reads and writes) and what is left."""
    if not isinstance(u, Mapping):
        return None, {}
    read = int(u.get("cache_read_input_tokens") or 0)
    write = int(u.get("cache_creation_input_tokens") or 0)
    details = u.get("output_tokens_details")
    thinking = details.get("thinking_tokens") if isinstance(details, Mapping) else None
    usage = Usage(
        input_tokens=int(u.get("input_tokens") or 0) + read + write,
        output_tokens=int(u.get("output_tokens") or 0),
        cached_tokens=read,
        reasoning_tokens=int(thinking or 0),
    )
    rest = {k: v for k, v in u.items() if k not in ("input_tokens", "output_tokens")}
    rest.pop("cache_read_input_tokens", None)
    return usage, rest


def message_reply_from_wire(body: Mapping[str, Any], request: Envelope) -> Envelope:
    """Decode an upstream's Messages reply.

    Raises:
        UpstreamError: a content block the gateway cannot carry.
    """
    parts = [_reply_part(b) for b in body.get("content") or [] if isinstance(b, Mapping)]
    extra = {k: v for k, v in body.items() if k not in _REPLY_KEYS}
    if body.get("stop_sequence") is not None:
        extra["stop_sequence"] = body["stop_sequence"]
    usage, usage_rest = usage_from_wire(body.get("usage"))
    if usage_rest:
        extra["usage"] = usage_rest
    finish = finish_reason(body.get("stop_reason"))
    return Envelope(
        id=str(body.get("id", request.id)),
        modality=Modality.CHAT,
        model=str(body.get("model", request.model)),
        messages=[Message("assistant", parts, finish_reason=finish)],
        usage=usage,
        extra=extra,
    )


def _reply_part(block: Mapping[str, Any]) -> Part:
    try:
        return part_from_wire(ContentPart.model_validate(block), "content")
    except (UnsupportedContent, ValidationFailed, ValueError) as exc:
        raise UpstreamError(
            f"Upstream sent a content block the gateway cannot carry: {exc}"
        ) from exc
