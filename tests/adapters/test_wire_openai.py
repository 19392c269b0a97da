"""Golden files: OpenAI wire → Envelope → OpenAI wire is lossless."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapters.ingress.http import parse_json_model
from adapters.wire.openai import (
    ChatRequest,
    chat_reply_from_wire,
    chat_reply_to_wire,
    chat_request_to_envelope,
    chunk_from_wire,
    envelope_to_chat_request,
)
from core.envelope import AudioPart, ImagePart, Modality, TextPart, ToolCallPart, ToolResultPart
from core.errors import UnsupportedContent

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "openai"


def golden(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def test_chat_request_round_trips_through_the_envelope() -> None:
    wire = golden("chat_request_full.json")
    req = parse_json_model(ChatRequest, json.dumps(wire).encode())
    env = chat_request_to_envelope(req, "req_1")
    assert env.modality is Modality.CHAT
    assert env.params["max_tokens"] == 256
    assert env.extra["top_k"] == 40
    back = envelope_to_chat_request(env)
    assert back == wire


def test_chat_request_decodes_every_part_kind() -> None:
    wire = golden("chat_request_full.json")
    env = chat_request_to_envelope(parse_json_model(ChatRequest, json.dumps(wire).encode()), "r")
    kinds = [type(p) for m in env.messages for p in m.parts]
    for kind in (TextPart, ImagePart, AudioPart, ToolCallPart, ToolResultPart):
        assert kind in kinds
    assert [t.name for t in env.tools] == ["lookup", "clock"]


def test_streamed_request_always_asks_the_upstream_for_usage() -> None:
    wire = {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}
    env = chat_request_to_envelope(parse_json_model(ChatRequest, json.dumps(wire).encode()), "r")
    assert envelope_to_chat_request(env)["stream_options"] == {"include_usage": True}
    assert "include_usage" not in env.params


def test_chat_reply_round_trips_with_usage_details() -> None:
    wire = golden("chat_reply_tool_calls.json")
    env = chat_reply_from_wire(
        wire,
        chat_request_to_envelope(
            parse_json_model(
                ChatRequest, b'{"model":"chat","messages":[{"role":"user","content":"x"}]}'
            ),
            "r",
        ),
    )
    assert env.usage is not None
    assert (env.usage.input_tokens, env.usage.cached_tokens, env.usage.reasoning_tokens) == (
        120,
        64,
        5,
    )
    assert chat_reply_to_wire(env, "chatcmpl-abc", created=1700000000) == wire


def test_a_usage_chunk_that_also_carries_choices_is_split() -> None:
    chunk = {
        "choices": [{"index": 0, "delta": {"content": "end"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
    out = chunk_from_wire(chunk)
    assert [c.text for c in out] == ["end", None]
    assert out[1].usage is not None and out[1].usage.input_tokens == 3
    assert out[0].finish_reason == "stop"


def test_an_unknown_content_part_is_refused_not_dropped() -> None:
    body = b'{"model":"m","messages":[{"role":"user","content":[{"type":"file","file":{}}]}]}'
    with pytest.raises(UnsupportedContent) as exc:
        chat_request_to_envelope(parse_json_model(ChatRequest, body), "r")
    assert exc.value.param == "messages[0].content[0]"
