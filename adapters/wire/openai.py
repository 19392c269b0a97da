"""The OpenAI chat and embeddings wire, both ways: JSON ↔ Envelope.

Shared by the OpenAI ingress (clients speak it to us) and the OpenAI egress (we speak it to
OpenAI-compatible upstreams). Pydantic models validate what we read and keep everything else
(`extra="allow"`), so a field the gateway does not know survives the trip verbatim.
"""

from __future__ import annotations

import time
from typing import Any, Literal, assert_never

from pydantic import BaseModel, ConfigDict, Field

from core.envelope import (
    AudioPart,
    Envelope,
    ImagePart,
    Message,
    Modality,
    Part,
    StreamChunk,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
    Usage,
    VideoPart,
)
from core.errors import UnsupportedContent

# Request fields the gateway understands as generic parameters (translatable to other wires).
GENERIC_PARAMS = frozenset(
    {
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "n",
        "seed",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "user",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
        "top_logprobs",
        "metadata",
    }
)
_STRUCTURAL = frozenset({"model", "messages", "tools", "stream", "stream_options"})
WIRE = "openai"
TOOL_ERROR_MARK = "[tool error] "
"""Put before a tool result's content on this wire when the result is an error (Anthropic's
`is_error: true`), which the OpenAI wire has no field for (docs/anthropic-clients.md)."""
_THINKING = frozenset({"thinking", "redacted_thinking"})


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow")


class ImageURL(_Wire):
    url: str = Field(min_length=1)
    detail: str | None = None


class InputAudio(_Wire):
    data: str
    format: str


class VideoURL(_Wire):
    url: str = Field(min_length=1)


class ContentPart(_Wire):
    type: str
    text: str | None = None
    refusal: str | None = None
    image_url: ImageURL | None = None
    input_audio: InputAudio | None = None
    video_url: VideoURL | None = None


class FunctionCall(_Wire):
    name: str
    arguments: str


class ToolCall(_Wire):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Wire):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionDef(_Wire):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ToolDef(_Wire):
    type: Literal["function"]
    function: FunctionDef


class StreamOptions(_Wire):
    include_usage: bool = False


class ChatRequest(_Wire):
    """A chat completion request; fields not listed here pass through untouched."""

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[ToolDef] | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1, le=128)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    user: str | None = None


_CHAT_SCALARS = tuple(
    name for name in ChatRequest.model_fields if name not in ("messages", "tools", "stream_options")
)


class EmbeddingRequest(_Wire):
    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


class ModerationRequest(_Wire):
    model: str = Field(min_length=1)
    input: str | list[str] | list[ContentPart] = Field(min_length=1)


# -- requests: wire → Envelope -------------------------------------------------------------


def _client_extra(model: BaseModel) -> dict[str, Any]:
    """A client's fields the gateway does not read, to pass on. Keys starting with `_` are
    dropped: they would be taken for the gateway's own round-trip markers."""
    return {k: v for k, v in (model.model_extra or {}).items() if not k.startswith("_")}


def chat_request_to_envelope(req: ChatRequest, request_id: str) -> Envelope:
    """Decode a validated chat request.

    Raises:
        UnsupportedContent: a content part of a type the gateway cannot carry.
    """
    # What `req.model_dump(exclude_unset=True, exclude=...)` gives (declared fields the client
    # set, in declaration order, then its other fields as sent) without its general machinery:
    # the declared fields read here are all scalars.
    fields_set = req.model_fields_set
    raw = {k: getattr(req, k) for k in _CHAT_SCALARS if k in fields_set}
    if req.model_extra:
        raw.update(req.model_extra)
    params = {k: v for k, v in raw.items() if k in GENERIC_PARAMS}
    extra = {
        k: v
        for k, v in raw.items()
        if k not in GENERIC_PARAMS and k not in _STRUCTURAL and not k.startswith("_")
    }
    env = Envelope(
        id=request_id,
        modality=Modality.CHAT,
        model=req.model,
        messages=[_message_from_wire(i, m) for i, m in enumerate(req.messages)],
        tools=[_tool_from_wire(t) for t in req.tools or []],
        params=params,
        extra=extra,
        stream=req.stream,
        source=WIRE,
    )
    if req.stream_options is not None and req.stream_options.include_usage:
        env.params["include_usage"] = True
    return env


def _message_from_wire(i: int, m: ChatMessage) -> Message:
    extra = _client_extra(m)
    if m.role == "tool":
        content = _content_parts(i, m.content)
        part = ToolResultPart(tool_call_id=m.tool_call_id or "", content=content)
        if not isinstance(m.content, list):
            extra["_content_str"] = True
        return Message(role="tool", parts=[part], name=m.name, extra=extra)
    parts = _content_parts(i, m.content)
    if m.content is None:
        extra["_content_null"] = True
    for tc in m.tool_calls or []:
        parts.append(
            ToolCallPart(
                id=tc.id,
                name=tc.function.name,
                arguments=tc.function.arguments,
                extra=_client_extra(tc),
            )
        )
    if isinstance(m.content, str):
        extra["_content_str"] = True
    return Message(role=m.role, parts=parts, name=m.name, extra=extra)


def _content_parts(i: int, content: str | list[ContentPart] | None) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)]
    parts: list[Part] = []
    for j, p in enumerate(content):
        extra = _client_extra(p)
        if p.type == "text" and p.text is not None:
            parts.append(TextPart(p.text, extra))
        elif p.type == "refusal" and p.refusal is not None:
            parts.append(TextPart(p.refusal, {**extra, "_type": "refusal"}))
        elif p.type == "image_url" and p.image_url is not None:
            parts.append(ImagePart(p.image_url.url, p.image_url.detail, extra))
        elif p.type == "input_audio" and p.input_audio is not None:
            parts.append(AudioPart(p.input_audio.data, p.input_audio.format, extra=extra))
        elif p.type == "video_url" and p.video_url is not None:
            parts.append(VideoPart(p.video_url.url, extra))
        else:
            raise UnsupportedContent(
                f"Content part of type '{p.type}' is not supported, or lacks its field.",
                param=f"messages[{i}].content[{j}]",
            )
    return parts


def _tool_from_wire(t: ToolDef) -> ToolSpec:
    extra = _client_extra(t.function)
    return ToolSpec(t.function.name, t.function.description, t.function.parameters, extra)


def embedding_request_to_envelope(req: EmbeddingRequest, request_id: str) -> Envelope:
    raw = req.model_dump(exclude_unset=True, exclude={"model", "input"})
    env = Envelope(
        id=request_id, modality=Modality.EMBEDDING, model=req.model, extra=raw, source=WIRE
    )
    inputs = req.input
    if isinstance(inputs, str):
        inputs = [inputs]
    if inputs and all(isinstance(x, str) for x in inputs):
        env.messages = [Message("user", [TextPart(str(x))]) for x in inputs]
    else:
        # Token arrays carry no text to filter; they travel as given.
        env.params["input_tokens"] = inputs
    return env


# -- requests: Envelope → wire -------------------------------------------------------------


def envelope_to_chat_request(env: Envelope) -> dict[str, Any]:
    """Encode a chat request for an OpenAI-compatible upstream.

    A request from an OpenAI client (or built in the gateway) keeps the fields the gateway does
    not know, at every level (pass-through); one from another wire (`env.source`) keeps none of
    its wire's own fields (`top_k`, `thinking`, `cache_control` …). Gateway markers (keys that
    start with `_`) and thinking blocks never go out. An error tool result (`is_error`) has
    `TOOL_ERROR_MARK` put before its content.
    """
    native = env.source in (WIRE, "")
    body: dict[str, Any] = {**_sendable(env.extra, native), "model": env.model}
    body.update({k: v for k, v in env.params.items() if k in GENERIC_PARAMS})
    body["messages"] = [_message_to_wire(m, native) for m in env.messages]
    if env.tools:
        body["tools"] = [_tool_to_wire(t, native) for t in env.tools]
    if env.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _sendable(extra: dict[str, Any], native: bool) -> dict[str, Any]:
    """The extra fields that may go on this wire: a native request's own, never a marker."""
    if not native or not extra:
        return {}
    return {k: v for k, v in extra.items() if not k.startswith("_")}


def _thinking(p: Part) -> bool:
    return isinstance(p, TextPart) and p.extra.get("_type") in _THINKING


def _message_to_wire(m: Message, native: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = _sendable(m.extra, native)
    out["role"] = m.role
    if m.name is not None:
        out["name"] = m.name
    if m.role == "tool":
        result = next((p for p in m.parts if isinstance(p, ToolResultPart)), None)
        if result is not None:
            out["tool_call_id"] = result.tool_call_id
            as_str = bool(m.extra.get("_content_str"))
            content = _content_to_wire(result.content, as_str=as_str, native=native)
            out["content"] = _error_marked(content) if result.is_error else content
        return out
    content_parts: list[Part] = [
        p for p in m.parts if not isinstance(p, ToolCallPart) and not _thinking(p)
    ]
    calls = [p for p in m.parts if isinstance(p, ToolCallPart)]
    if content_parts:
        as_str = bool(m.extra.get("_content_str"))
        out["content"] = _content_to_wire(content_parts, as_str=as_str, native=native)
    elif m.extra.get("_content_null") or calls:
        out["content"] = None
    else:
        out["content"] = ""
    if calls:
        out["tool_calls"] = [
            {
                **_sendable(c.extra, native),
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            }
            for c in calls
        ]
    return out


def _content_to_wire(
    parts: list[Part], *, as_str: bool, native: bool = True
) -> str | list[dict[str, Any]]:
    if as_str and all(isinstance(p, TextPart) and not _sendable(p.extra, native) for p in parts):
        return "".join(p.text for p in parts if isinstance(p, TextPart))
    return [_part_to_wire(p, native) for p in parts]


def _error_marked(content: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return TOOL_ERROR_MARK + content if content else TOOL_ERROR_MARK.rstrip()
    if content and content[0].get("type") == "text":
        first = content[0]
        return [{**first, "text": TOOL_ERROR_MARK + str(first.get("text", ""))}, *content[1:]]
    return [{"type": "text", "text": TOOL_ERROR_MARK.rstrip()}, *content]


def _part_to_wire(p: Part, native: bool = True) -> dict[str, Any]:
    match p:
        case TextPart(text=text, extra=extra):
            kind = extra.get("_type", "text")
            return {**_sendable(extra, native), "type": kind, kind: text}
        case ImagePart(url=url, detail=detail, extra=extra):
            image: dict[str, Any] = {"url": url}
            if detail is not None:
                image["detail"] = detail
            return {**_sendable(extra, native), "type": "image_url", "image_url": image}
        case AudioPart(data=data, format=fmt, extra=extra):
            audio = {"data": data, "format": fmt}
            return {**_sendable(extra, native), "type": "input_audio", "input_audio": audio}
        case VideoPart(url=url, extra=extra):
            return {**_sendable(extra, native), "type": "video_url", "video_url": {"url": url}}
        case ToolCallPart() | ToolResultPart():
            raise UnsupportedContent("A tool part cannot stand inside message content.")
        case _:
            assert_never(p)


def _tool_to_wire(t: ToolSpec, native: bool = True) -> dict[str, Any]:
    fn: dict[str, Any] = {**_sendable(t.extra, native), "name": t.name}
    if t.description is not None:
        fn["description"] = t.description
    if t.parameters is not None:
        fn["parameters"] = t.parameters
    return {"type": "function", "function": fn}


def envelope_to_embedding_request(env: Envelope) -> dict[str, Any]:
    body: dict[str, Any] = {**env.extra, "model": env.model}
    if "input_tokens" in env.params:
        body["input"] = env.params["input_tokens"]
    else:
        body["input"] = [m.text() for m in env.messages]
    return body


# -- replies -------------------------------------------------------------------------------


def usage_from_wire(u: dict[str, Any] | None) -> Usage | None:
    if not isinstance(u, dict):
        return None
    prompt = u.get("prompt_tokens") or 0
    details = u.get("prompt_tokens_details") or {}
    completion_details = u.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=int(prompt),
        output_tokens=int(u.get("completion_tokens") or 0),
        cached_tokens=int(details.get("cached_tokens") or 0),
        reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
    )


def usage_to_wire(u: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def chat_reply_from_wire(body: dict[str, Any], request: Envelope) -> Envelope:
    """Decode an upstream's chat completion into a reply envelope."""
    messages: list[Message] = []
    for choice in body.get("choices") or []:
        msg = dict(choice.get("message") or {})
        parts: list[Part] = []
        content = msg.pop("content", None)
        if isinstance(content, str):
            parts.append(TextPart(content))
        for tc in msg.pop("tool_calls", None) or []:
            fn = tc.get("function") or {}
            parts.append(
                ToolCallPart(tc.get("id", ""), fn.get("name", ""), fn.get("arguments", ""))
            )
        role = msg.pop("role", "assistant")
        messages.append(
            Message(
                role,
                parts,
                finish_reason=choice.get("finish_reason"),
                index=int(choice.get("index", len(messages))),
                extra=msg,
            )
        )
    extra = {
        k: v for k, v in body.items() if k in ("system_fingerprint", "service_tier", "upstream_id")
    }
    return Envelope(
        id=str(body.get("id", request.id)),
        modality=Modality.CHAT,
        model=str(body.get("model", request.model)),
        messages=messages,
        usage=usage_from_wire(body.get("usage")),
        extra=extra,
    )


def chat_reply_to_wire(
    env: Envelope, completion_id: str, created: int | None = None
) -> dict[str, Any]:
    choices = []
    for m in env.messages:
        text = [p.text for p in m.parts if isinstance(p, TextPart)]
        calls = [p for p in m.parts if isinstance(p, ToolCallPart)]
        message: dict[str, Any] = {
            **m.extra,
            "role": m.role,
            "content": "".join(text) if text else None,
        }
        if calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in calls
            ]
        message.setdefault("refusal", None)
        choices.append(
            {
                "index": m.index,
                "message": message,
                "finish_reason": m.finish_reason,
                "logprobs": None,
            }
        )
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created or int(time.time()),
        "model": env.model,
        "choices": choices,
        **env.extra,
    }
    if env.usage is not None:
        body["usage"] = usage_to_wire(env.usage)
    return body


def chunk_from_wire(body: dict[str, Any]) -> list[StreamChunk]:
    """Decode one upstream SSE chunk (it may carry several choices and usage at once)."""
    # Once per streamed event: the common delta (`content`, maybe `role`) takes no copies.
    out: list[StreamChunk] = []
    for choice in body.get("choices") or []:
        delta = choice.get("delta") or {}
        raw_calls = delta.get("tool_calls")
        calls = (
            [
                ToolCallDelta(
                    index=int(tc.get("index", 0)),
                    id=tc.get("id"),
                    name=(tc.get("function") or {}).get("name"),
                    arguments=(tc.get("function") or {}).get("arguments") or "",
                )
                for tc in raw_calls
            ]
            if raw_calls
            else []
        )
        extra = (
            {}
            if delta.keys() <= _DELTA_FIELDS
            else {k: v for k, v in delta.items() if k not in _DELTA_FIELDS and v is not None}
        )
        out.append(
            StreamChunk(
                index=int(choice.get("index", 0)),
                role=delta.get("role"),
                text=delta.get("content"),
                tool_calls=calls,
                finish_reason=choice.get("finish_reason"),
                extra=extra,
            )
        )
    raw_usage = body.get("usage")
    usage = usage_from_wire(raw_usage) if raw_usage is not None else None
    if usage is not None:
        out.append(StreamChunk(usage=usage))
    return out


_DELTA_FIELDS = frozenset({"role", "content", "tool_calls"})


def chunk_to_wire(c: StreamChunk, completion_id: str, model: str, created: int) -> dict[str, Any]:
    delta: dict[str, Any] = dict(c.extra)
    if c.role is not None:
        delta["role"] = c.role
    if c.text is not None:
        delta["content"] = c.text
    if c.tool_calls:
        calls = []
        for t in c.tool_calls:
            call: dict[str, Any] = {"index": t.index}
            fn: dict[str, Any] = {"arguments": t.arguments}
            if t.id is not None:
                call["id"] = t.id
                call["type"] = "function"
            if t.name is not None:
                fn["name"] = t.name
            call["function"] = fn
            calls.append(call)
        delta["tool_calls"] = calls
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [
            {"index": c.index, "delta": delta, "finish_reason": c.finish_reason, "logprobs": None}
        ],
    }


def usage_chunk_to_wire(u: Usage, completion_id: str, model: str, created: int) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage_to_wire(u),
    }


def embedding_reply_from_wire(body: dict[str, Any], request: Envelope) -> Envelope:
    data = sorted(body.get("data") or [], key=lambda d: int(d.get("index", 0)))
    usage = usage_from_wire(body.get("usage")) or Usage()
    return Envelope(
        id=request.id,
        modality=Modality.EMBEDDING,
        model=str(body.get("model", request.model)),
        vectors=[d.get("embedding") for d in data],
        usage=usage,
    )


def embedding_reply_to_wire(env: Envelope) -> dict[str, Any]:
    usage = env.usage or Usage()
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(env.vectors)
        ],
        "model": env.model,
        "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens},
    }


# -- moderations ---------------------------------------------------------------------------
# A moderation envelope carries one message per input (a list of parts is one input); the reply
# keeps the wire's `results` verbatim in `extra["results"]`, one per input.


def moderation_request_to_envelope(req: ModerationRequest, request_id: str) -> Envelope:
    """Decode a validated `/v1/moderations` request.

    Raises:
        UnsupportedContent: a content part other than text or an image URL.
    """
    raw = req.model_dump(exclude_unset=True, exclude={"model", "input"})
    env = Envelope(
        id=request_id, modality=Modality.MODERATION, model=req.model, extra=raw, source=WIRE
    )
    inputs = req.input
    if isinstance(inputs, str):
        env.messages = [Message("user", [TextPart(inputs)])]
    elif all(isinstance(x, str) for x in inputs):
        env.messages = [Message("user", [TextPart(str(x))]) for x in inputs]
    else:
        parts = [p for p in inputs if isinstance(p, ContentPart)]
        if any(p.type not in ("text", "image_url") for p in parts):
            raise UnsupportedContent(
                "Moderation input parts must be text or image_url.", param="input"
            )
        env.messages = [Message("user", _content_parts(0, parts))]
    return env


def envelope_to_moderation_request(env: Envelope) -> dict[str, Any]:
    body: dict[str, Any] = {**env.extra, "model": env.model}
    if all(len(m.parts) == 1 and isinstance(m.parts[0], TextPart) for m in env.messages):
        body["input"] = [m.text() for m in env.messages]
    else:
        body["input"] = [_part_to_wire(p) for m in env.messages for p in m.parts]
    return body


def moderation_reply_from_wire(body: dict[str, Any], request: Envelope) -> Envelope:
    results = body.get("results")
    return Envelope(
        id=request.id,
        modality=Modality.MODERATION,
        model=str(body.get("model", request.model)),
        extra={"results": results if isinstance(results, list) else []},
        usage=usage_from_wire(body.get("usage")) or Usage(),
    )


def moderation_reply_to_wire(env: Envelope, moderation_id: str) -> dict[str, Any]:
    return {"id": moderation_id, "model": env.model, "results": env.extra.get("results", [])}
