"""What each wire forwards upstream: only what the target wire knows, never a gateway marker.

- OpenAI client → OpenAI upstream: fields the gateway does not know pass through at every level
  (body, message, part, tool call, tool), except keys that start with `_` (gateway markers).
- Anthropic client → OpenAI upstream: none of Anthropic's own fields (`top_k`, `thinking`,
  `cache_control`, signatures, thinking blocks); an error tool result keeps its error as
  `TOOL_ERROR_MARK` before its content (golden file).
- Anthropic client → Anthropic upstream: exact, `is_error` included.
- Where a request came from is `Envelope.source`, set by the decoder, not a field a client can
  send.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from adapters.ingress.http import parse_json_model
from adapters.wire.anthropic import MessagesRequest, messages_request_to_envelope
from adapters.wire.anthropic_encode import envelope_to_messages_request
from adapters.wire.openai import (
    TOOL_ERROR_MARK,
    ChatRequest,
    chat_request_to_envelope,
    envelope_to_chat_request,
)
from core.envelope import Envelope, Message, Modality, TextPart, ToolResultPart

FIXTURES = Path(__file__).parents[2] / "fixtures"


def golden(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def from_anthropic(wire: dict[str, Any]) -> Envelope:
    req = parse_json_model(MessagesRequest, json.dumps(wire).encode())
    return messages_request_to_envelope(req, "req_a")


def from_openai(wire: dict[str, Any]) -> Envelope:
    return chat_request_to_envelope(parse_json_model(ChatRequest, json.dumps(wire).encode()), "r")


def keys_everywhere(value: Any) -> set[str]:
    """Every key at any depth of a JSON value."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys_everywhere(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys_everywhere(v)}
    return set()


def test_each_decoder_marks_its_source_wire() -> None:
    anthropic = from_anthropic(golden("anthropic/messages_request_full.json"))
    openai = from_openai(golden("openai/chat_request_full.json"))
    assert (anthropic.source, openai.source) == ("anthropic", "openai")
    assert not any(k.startswith("_") for k in anthropic.params)  # no marker in the params


def test_an_anthropic_request_reaches_an_openai_upstream_as_the_golden_file() -> None:
    body = envelope_to_chat_request(from_anthropic(golden("anthropic/messages_request_full.json")))
    assert body == golden("anthropic/messages_request_full.as_openai.json")
    keys = keys_everywhere(body)
    assert not {"top_k", "thinking", "service_tier", "cache_control", "signature", "data"} & keys
    assert not any(k.startswith("_") for k in keys)
    assert not any(
        part.get("type") in ("thinking", "redacted_thinking")
        for m in body["messages"]
        if isinstance(m.get("content"), list)
        for part in m["content"]
    )


def test_an_error_tool_result_keeps_its_error_on_the_openai_wire() -> None:
    wire = golden("anthropic/messages_request_full.json")
    body = envelope_to_chat_request(from_anthropic(wire))
    errored = [m for m in body["messages"] if m["role"] == "tool"][1]
    assert errored["content"][0] == {"type": "text", "text": TOOL_ERROR_MARK + "clock unavailable"}
    # A plain-string error result, and one with no content at all.
    for content, expected in (("disk full", TOOL_ERROR_MARK + "disk full"), (None, "[tool error]")):
        result: dict[str, Any] = {"type": "tool_result", "tool_use_id": "t1", "is_error": True}
        if content is not None:
            result["content"] = content
        turn = [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "df",
                                               "input": {}}]},
            {"role": "user", "content": [result]},
        ]  # fmt: skip
        sent = envelope_to_chat_request(
            from_anthropic({"model": "m", "max_tokens": 8, "messages": turn})
        )
        assert sent["messages"][2] == {"role": "tool", "tool_call_id": "t1", "content": expected}


def test_a_successful_tool_result_is_not_marked() -> None:
    env = Envelope(
        id="r",
        modality=Modality.CHAT,
        model="m",
        messages=[Message("tool", [ToolResultPart("c1", [TextPart("ok")])])],
        source="anthropic",
    )
    assert envelope_to_chat_request(env)["messages"][0]["content"] == [
        {"type": "text", "text": "ok"}
    ]


def test_anthropic_to_anthropic_stays_exact_with_is_error() -> None:
    wire = golden("anthropic/messages_request_full.json")
    body = envelope_to_messages_request(from_anthropic(copy.deepcopy(wire)), default_max_tokens=1)
    assert body == wire
    errored = body["messages"][2]["content"][1]
    assert errored["is_error"] is True and errored["content"][0]["text"] == "clock unavailable"


def test_an_openai_client_s_unknown_fields_pass_through_but_markers_do_not() -> None:
    wire: dict[str, Any] = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi", "vendor_hint": 1, "_type": "refusal"}],
                "vendor_note": "kept",
                "_content_str": True,
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "f", "arguments": "{}"},
                        "vendor_call": 2,
                    }
                ],
            },
        ],
        "tools": [{"type": "function", "function": {"name": "f", "strict": True, "_x": 1}}],
        "top_k": 40,
        "chat_template_kwargs": {"enable_thinking": False},
        "_wire": "anthropic",
        "_anthropic_beta": "context-1m-2025-08-07",
    }
    env = from_openai(wire)
    body = envelope_to_chat_request(env)
    assert body["top_k"] == 40 and body["chat_template_kwargs"] == {"enable_thinking": False}
    assert body["messages"][0]["vendor_note"] == "kept"
    assert body["messages"][0]["content"] == [{"type": "text", "text": "hi", "vendor_hint": 1}]
    assert body["messages"][1]["tool_calls"][0]["vendor_call"] == 2
    assert body["tools"][0]["function"] == {"name": "f", "strict": True}
    assert not any(k.startswith("_") for k in keys_everywhere(body))
    # A client cannot pass itself off as another wire: the Anthropic encoder keeps only the
    # portable fields of an OpenAI request, whatever `_wire` the body claims.
    anthropic = envelope_to_messages_request(env, default_max_tokens=16)
    assert "chat_template_kwargs" not in anthropic and "_wire" not in anthropic
    assert "anthropic-beta" not in str(anthropic) and "_anthropic_beta" not in anthropic


def test_the_openai_golden_request_still_round_trips_exactly() -> None:
    wire = golden("openai/chat_request_full.json")
    assert envelope_to_chat_request(from_openai(wire)) == wire
