"""The Anthropic Messages wire, encoding: Envelope → JSON, for requests and replies.

How the Envelope maps onto the wire is described in `adapters.wire.anthropic`. Anthropic refuses
fields it does not know, so only a request that came in on this wire has its `extra` (and its
message, block and tool extras) forwarded verbatim; of another wire's fields only the portable
ones are kept (`PORTABLE_EXTRA`, `PORTABLE_BLOCK_EXTRA`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, assert_never

from adapters.wire.anthropic import WIRE
from core.envelope import (
    AudioPart,
    Envelope,
    ImagePart,
    Message,
    Part,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
    Usage,
    VideoPart,
)
from core.errors import UnsupportedContent, UpstreamError

PORTABLE_EXTRA = frozenset({"top_k", "thinking"})
PORTABLE_BLOCK_EXTRA = frozenset({"cache_control"})
_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


# -- requests: Envelope → wire -------------------------------------------------------------


def envelope_to_messages_request(env: Envelope, *, default_max_tokens: int) -> dict[str, Any]:
    """Encode a chat request for an Anthropic upstream.

    Raises:
        UnsupportedContent: something Anthropic cannot take (audio, video, `n` > 1, a JSON
            response format, tool arguments that are not a JSON object, an unknown role).
    """
    native = env.source == WIRE
    extra = _public(env.extra) if native else _kept(env.extra, PORTABLE_EXTRA)
    body: dict[str, Any] = {**extra, "model": env.model}
    body["max_tokens"] = _max_tokens(env.params, default_max_tokens)
    system = [m for m in env.messages if m.role in ("system", "developer")]
    if system:
        body["system"] = _system_to_wire(system, native)
    body["messages"] = _messages_to_wire(
        [m for m in env.messages if m.role not in ("system", "developer")], native
    )
    if env.tools:
        body["tools"] = [_tool_to_wire(t, native) for t in env.tools]
    body.update(_params_to_wire(env, body.pop("metadata", None)))
    if env.stream:
        body["stream"] = True
    return body


def _public(extra: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in extra.items() if not k.startswith("_")}


def _kept(extra: Mapping[str, Any], keep: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in extra.items() if k in keep}


def _block_extra(extra: Mapping[str, Any], native: bool) -> dict[str, Any]:
    return _public(extra) if native else _kept(extra, PORTABLE_BLOCK_EXTRA)


def _max_tokens(params: Mapping[str, Any], default: int) -> int:
    for name in ("max_tokens", "max_completion_tokens"):
        value = params.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return default


def _params_to_wire(env: Envelope, metadata: Any) -> dict[str, Any]:
    p = env.params
    n = p.get("n")
    if isinstance(n, int) and n > 1:
        raise UnsupportedContent("Anthropic upstreams return one choice: n must be 1.", param="n")
    fmt = p.get("response_format")
    if isinstance(fmt, Mapping) and fmt.get("type", "text") != "text":
        raise UnsupportedContent(
            "response_format is not supported by Anthropic upstreams.", param="response_format"
        )
    if p.get("logprobs"):
        raise UnsupportedContent("logprobs are not supported by Anthropic upstreams.")
    # seed, penalties and OpenAI's stored-completion metadata have no Anthropic equivalent;
    # they are hints, so they are left out rather than refused.
    out = {k: p[k] for k in ("temperature", "top_p") if p.get(k) is not None}
    stop = p.get("stop")
    if stop is not None:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if p.get("user") is not None:
        metadata = {**(metadata or {}), "user_id": p["user"]}
    if metadata is not None:
        out["metadata"] = metadata
    choice = _tool_choice_to_wire(p.get("tool_choice"), p.get("parallel_tool_calls"))
    if choice is not None and env.tools:
        out["tool_choice"] = choice
    return out


def _tool_choice_to_wire(choice: Any, parallel: Any) -> dict[str, Any] | None:
    match choice:
        case None:
            out: dict[str, Any] | None = None if parallel is None else {"type": "auto"}
        case "auto" | "none":
            out = {"type": choice}
        case "required":
            out = {"type": "any"}
        case {"type": "function", "function": {"name": str(name)}}:
            out = {"type": "tool", "name": name}
        case _:
            raise UnsupportedContent(f"Unsupported tool_choice: {choice!r}", param="tool_choice")
    if out is not None and isinstance(parallel, bool):
        out["disable_parallel_tool_use"] = not parallel
    return out


def _system_to_wire(messages: list[Message], native: bool) -> str | list[dict[str, Any]]:
    if len(messages) == 1 and (text := _plain_text(messages[0])) is not None:
        return text
    return [part_to_block(p, native) for m in messages for p in m.parts]


def _plain_text(m: Message) -> str | None:
    """The message as one string, when it came as one and nothing would be lost."""
    if not m.extra.get("_content_str"):
        return None
    if not all(isinstance(p, TextPart) and not p.extra for p in m.parts):
        return None
    return "".join(p.text for p in m.parts if isinstance(p, TextPart))


def _messages_to_wire(messages: list[Message], native: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    joinable = False  # the last wire message is a user turn built from tool results
    for m in messages:
        extra = _public(m.extra) if native else {}
        match m.role:
            case "tool":
                results = [
                    _tool_result_to_wire(p, bool(m.extra.get("_content_str")), native)
                    for p in m.parts
                    if isinstance(p, ToolResultPart)
                ]
                if joinable:
                    out[-1]["content"].extend(results)
                else:
                    out.append({**extra, "role": "user", "content": results})
                joinable = True
            case "user" | "assistant":
                content = _content_to_wire(m, native)
                if joinable and m.role == "user":
                    blocks = (
                        [{"type": "text", "text": content}] if isinstance(content, str) else content
                    )
                    out[-1]["content"].extend(blocks)
                else:
                    out.append({**extra, "role": m.role, "content": content})
                joinable = False
            case _:
                raise UnsupportedContent(
                    f"A message of role '{m.role}' cannot be sent to an Anthropic upstream."
                )
    return out


def _content_to_wire(m: Message, native: bool) -> str | list[dict[str, Any]]:
    text = _plain_text(m)
    if text is not None:
        return text
    # Anthropic refuses empty text blocks; OpenAI clients send `""` beside tool calls.
    return [
        part_to_block(p, native)
        for p in m.parts
        if not (isinstance(p, TextPart) and not p.text and "_type" not in p.extra)
    ]


def part_to_block(p: Part, native: bool) -> dict[str, Any]:
    """A Part as a content block; `native`: its extras came from this wire and go back verbatim.

    Raises:
        UnsupportedContent: audio, video, a tool result, or tool arguments that are not an object.
    """
    match p:
        case TextPart(text=text, extra=extra):
            rest = _block_extra(extra, native)
            kind = extra.get("_type", "text")
            if kind == "thinking":
                return {**rest, "type": "thinking", "thinking": text}
            if kind == "redacted_thinking":
                return {**rest, "type": "redacted_thinking"}
            return {**rest, "type": "text", "text": text}
        case ImagePart(url=url, extra=extra):
            return {**_block_extra(extra, native), "type": "image", "source": _image_source(url)}
        case ToolCallPart(id=call_id, name=name, arguments=arguments, extra=extra):
            tool_input = tool_input_object(arguments)
            if tool_input is None:
                raise UnsupportedContent(
                    f"Arguments of tool call '{call_id}' are not a JSON object."
                )
            rest = _block_extra(extra, native)
            return {**rest, "type": "tool_use", "id": call_id, "name": name, "input": tool_input}
        case AudioPart() | VideoPart():
            raise UnsupportedContent(f"Anthropic upstreams do not accept {type(p).__name__}s.")
        case ToolResultPart():
            raise UnsupportedContent("A tool result cannot stand inside message content.")
        case _:
            assert_never(p)


def _image_source(url: str) -> dict[str, Any]:
    if not url.startswith("data:"):
        return {"type": "url", "url": url}
    header, sep, data = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not sep or encoding != "base64":
        raise UnsupportedContent("Anthropic upstreams take images as base64 data: URLs or URLs.")
    return {"type": "base64", "media_type": media_type, "data": data}


def _tool_result_to_wire(p: ToolResultPart, as_str: bool, native: bool) -> dict[str, Any]:
    out: dict[str, Any] = {**_block_extra(p.extra, native), "type": "tool_result"}
    out["tool_use_id"] = p.tool_call_id
    if not p.extra.get("_no_content"):
        if as_str and all(isinstance(x, TextPart) and not x.extra for x in p.content):
            out["content"] = "".join(x.text for x in p.content if isinstance(x, TextPart))
        else:
            out["content"] = [part_to_block(x, native) for x in p.content]
    if p.is_error:
        out["is_error"] = True
    return out


def _tool_to_wire(t: ToolSpec, native: bool) -> dict[str, Any]:
    tool: dict[str, Any] = {**_block_extra(t.extra, native), "name": t.name}
    if t.description is not None:
        tool["description"] = t.description
    # Anthropic requires a schema; an OpenAI function may omit one when it takes no arguments.
    tool["input_schema"] = t.parameters if t.parameters is not None else {"type": "object"}
    return tool


def tool_input_object(arguments: str) -> dict[str, Any] | None:
    """Tool-call arguments as the JSON object Anthropic wants; None when they are not one."""
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# -- replies: Envelope → wire -------------------------------------------------------------


def stop_reason(finish: str | None, stop_sequence: str | None) -> str | None:
    """A finish reason as Anthropic's `stop_reason`."""
    if finish is None:
        return None
    if finish == "stop" and stop_sequence is not None:
        return "stop_sequence"
    return _STOP.get(finish, finish)


def usage_to_wire(u: Usage, rest: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`Usage` as Anthropic's usage object; `rest` holds fields `Usage` has no place for."""
    out: dict[str, Any] = dict(rest or {})
    write = int(out.get("cache_creation_input_tokens") or 0)
    out["input_tokens"] = max(0, u.input_tokens - u.cached_tokens - write)
    out["output_tokens"] = u.output_tokens
    out["cache_read_input_tokens"] = u.cached_tokens
    out.setdefault("cache_creation_input_tokens", 0)
    if u.reasoning_tokens and "output_tokens_details" not in out:
        out["output_tokens_details"] = {"thinking_tokens": u.reasoning_tokens}
    return out


def message_reply_to_wire(env: Envelope, message_id: str) -> dict[str, Any]:
    """Encode a reply envelope as a Messages reply (its first choice).

    Raises:
        UpstreamError: the reply holds tool arguments that are not a JSON object, or media.
    """
    message = env.messages[0] if env.messages else Message("assistant", [])
    extra = dict(env.extra)
    usage_rest = extra.pop("usage", None)
    if not isinstance(usage_rest, dict):
        usage_rest = None
    stop_sequence = extra.pop("stop_sequence", None)
    # An OpenAI server's `reasoning_content` (in `message.extra`) is not made a thinking block:
    # clients send thinking back, and the OpenAI wire cannot carry it upstream yet.
    try:
        content = [part_to_block(p, True) for p in message.parts]
    except UnsupportedContent as exc:
        raise UpstreamError(
            f"Upstream reply cannot be expressed in Anthropic's shape: {exc}"
        ) from exc
    if len(content) > 1:
        content = [b for b in content if b != {"type": "text", "text": ""}]
    return {
        **extra,
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": env.model,
        "content": content,
        "stop_reason": stop_reason(message.finish_reason, stop_sequence),
        "stop_sequence": stop_sequence,
        "usage": usage_to_wire(env.usage or Usage(), usage_rest),
    }
