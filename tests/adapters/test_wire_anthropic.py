"""Golden files: Anthropic wire → Envelope → Anthropic wire is lossless, and crosses to OpenAI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from adapters.ingress.http import parse_json_model
from adapters.wire.anthropic import (
    CountTokensRequest,
    MessagesRequest,
    message_reply_from_wire,
    messages_request_to_envelope,
)
from adapters.wire.anthropic_encode import envelope_to_messages_request, message_reply_to_wire
from adapters.wire.anthropic_stream import StreamDecoder, StreamEncoder
from adapters.wire.openai import (
    ChatRequest,
    chat_reply_from_wire,
    chat_request_to_envelope,
    chunk_from_wire,
    envelope_to_chat_request,
)
from core.envelope import (
    Envelope,
    ImagePart,
    Message,
    Modality,
    Scope,
    StreamChunk,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolResultPart,
    Usage,
)
from core.errors import UnsupportedContent, ValidationFailed

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def golden(name: str) -> Any:
    return json.loads((FIXTURES / "anthropic" / name).read_text())


def decode(wire: dict[str, Any]) -> Envelope:
    req = parse_json_model(MessagesRequest, json.dumps(wire).encode())
    return messages_request_to_envelope(req, "req_1")


def encode(env: Envelope) -> dict[str, Any]:
    return envelope_to_messages_request(env, default_max_tokens=4096)


def user(content: Any, **extra: Any) -> dict[str, Any]:
    return {
        "model": "m",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": content}],
    } | extra


def test_messages_request_round_trips_through_the_envelope() -> None:
    wire = golden("messages_request_full.json")
    assert encode(decode(wire)) == wire


def test_request_decodes_into_the_envelopes_normal_form() -> None:
    env = decode(golden("messages_request_full.json"))
    assert env.modality is Modality.CHAT
    roles = [m.role for m in env.messages]
    assert roles == ["system", "user", "assistant", "tool", "tool", "user", "assistant", "user"]
    assert env.source == "anthropic"
    assert env.params == {
        "max_tokens": 1024,
        "temperature": 1,
        "top_p": 0.9,
        "stop": ["\n\nHuman:"],
        "user": "user-42",
        "tool_choice": "auto",
        "parallel_tool_calls": True,
    }
    assert env.extra == {
        "top_k": 40,
        "thinking": {"type": "enabled", "budget_tokens": 512},
        "service_tier": "auto",
    }
    images = [p for p in env.messages[1].parts if isinstance(p, ImagePart)]
    assert images[0].url.startswith("data:image/png;base64,iVBOR")
    assert images[1].url == "https://example.com/cat.jpg"
    call = next(p for p in env.messages[2].parts if isinstance(p, ToolCallPart))
    assert json.loads(call.arguments) == {"city": "Paris", "unit": "celsius"}
    result = env.messages[4].parts[0]
    assert isinstance(result, ToolResultPart)
    assert result.is_error and result.tool_call_id == "toolu_01B7kq2n8x5s3rTmP4vW2yZc"
    assert [t.name for t in env.tools] == ["get_weather", "get_time"]
    assert env.tools[0].parameters is not None and env.tools[0].parameters["required"] == ["city"]


def test_thinking_and_tool_traffic_are_offered_to_filters_with_their_scopes() -> None:
    env = decode(golden("messages_request_full.json"))
    seen: list[tuple[Scope, str]] = []

    def look(scope: Scope, text: str) -> None:
        seen.append((scope, text))

    env.visit_text(look)
    assert (Scope.SYSTEM, "Answer briefly.") in seen
    assert (Scope.MESSAGE, "Two images, then two tools: weather and time.") in seen
    assert (Scope.TOOL_INPUT, "Paris") in seen
    assert (Scope.TOOL_OUTPUT, "sunny, 21C") in seen
    assert (Scope.TOOL_OUTPUT, "clock unavailable") in seen


def test_a_filter_rewrite_reaches_the_anthropic_wire() -> None:
    env = decode(golden("messages_request_full.json"))
    env.visit_text(lambda scope, text: text.replace("Paris", "[CITY]"))
    body = encode(env)
    assert body["messages"][1]["content"][2]["input"]["city"] == "[CITY]"
    assert body["messages"][2]["content"][0]["content"] == "sunny, 21C"
    assert "Paris" not in orjson.dumps(body["messages"]).decode()


def test_anthropic_request_reaches_an_openai_upstream_in_openai_shape() -> None:
    body = envelope_to_chat_request(decode(golden("messages_request_full.json")))
    assert body["model"] == "claude-sonnet-4-5"
    assert body["max_tokens"] == 1024
    assert body["stop"] == ["\n\nHuman:"]
    assert body["user"] == "user-42"
    assert body["tool_choice"] == "auto"
    # Anthropic-only fields and gateway markers stay behind: OpenAI servers refuse them.
    assert not {"top_k", "thinking", "service_tier", "_wire"} & body.keys()
    assert "cache_control" not in str(body) and "signature" not in str(body)
    messages = body["messages"]
    assert [m["role"] for m in messages] == [
        "system", "user", "assistant", "tool", "tool", "user", "assistant", "user",
    ]  # fmt: skip
    calls = messages[2]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[1]["function"]["arguments"]) == {"zone": "CET"}
    assert messages[3] == {
        "role": "tool",
        "tool_call_id": "toolu_01A09q90qw90lq917835lq9",
        "content": "sunny, 21C",
    }
    assert messages[5]["content"] == [{"type": "text", "text": "Also, keep it short."}]
    assert messages[7]["content"] == "Thanks! And tomorrow?"
    assert body["tools"][0]["function"]["parameters"]["required"] == ["city"]


OPENAI_REQUEST: Any = {
    "model": "chat",
    "messages": [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": 'Weather for "Oslo"?'},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
        {"role": "developer", "content": "Mention the source."},
        {"role": "user", "content": [{"type": "text", "text": "And now?"}]},
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "strict": True}}],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "parallel_tool_calls": False,
    "stop": "END",
    "user": "u-7",
    "seed": 3,
    "top_k": 5,
    "chat_template_kwargs": {"enable_thinking": False},
}


def test_openai_request_reaches_an_anthropic_upstream_in_anthropic_shape() -> None:
    req = parse_json_model(ChatRequest, json.dumps(OPENAI_REQUEST).encode())
    body = encode(chat_request_to_envelope(req, "req_2"))
    assert body == {
        "model": "chat",
        "max_tokens": 4096,
        "system": [
            {"type": "text", "text": "Be terse."},
            {"type": "text", "text": "Mention the source."},
        ],
        "messages": [
            {"role": "user", "content": 'Weather for "Oslo"?'},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "call_1",
                        "name": "get_weather",
                        "input": {"city": "Oslo"},
                    }
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "rain"},
                    {"type": "text", "text": "And now?"},
                ],
            },
        ],
        # OpenAI-only fields (seed, chat_template_kwargs, strict) would make Anthropic refuse.
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-7"},
        "top_k": 5,
    }


def test_openai_requests_anthropic_cannot_serve_are_refused() -> None:
    for extra in ({"n": 2}, {"response_format": {"type": "json_object"}}, {"logprobs": True}):
        wire = {"model": "m", "messages": [{"role": "user", "content": "x"}], **extra}
        env = chat_request_to_envelope(
            parse_json_model(ChatRequest, json.dumps(wire).encode()), "r"
        )
        with pytest.raises(UnsupportedContent):
            encode(env)


def test_messages_reply_round_trips_with_cache_usage() -> None:
    wire = golden("messages_reply_tool_use.json")
    env = message_reply_from_wire(wire, decode(user("x")))
    assert env.usage == Usage(input_tokens=5500, output_tokens=85, cached_tokens=4000)
    message = env.messages[0]
    assert message.finish_reason == "tool_calls"
    assert [type(p) for p in message.parts] == [TextPart, TextPart, ToolCallPart]
    assert message_reply_to_wire(env, env.id) == wire


def test_openai_upstream_reply_reaches_an_anthropic_client_in_anthropic_shape() -> None:
    wire = json.loads((FIXTURES / "openai" / "chat_reply_tool_calls.json").read_text())
    env = chat_reply_from_wire(wire, decode(user("x")))
    body = message_reply_to_wire(env, "msg_1")
    assert body["stop_reason"] == "tool_use"
    tool_uses = [b for b in body["content"] if b["type"] == "tool_use"]
    assert tool_uses and all(isinstance(b["input"], dict) for b in tool_uses)
    usage = wire["usage"]
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    assert body["usage"]["input_tokens"] == usage["prompt_tokens"] - cached
    assert body["usage"]["cache_read_input_tokens"] == cached
    assert body["usage"]["output_tokens"] == usage["completion_tokens"]


def sse(events: list[bytes]) -> list[dict[str, Any]]:
    out = []
    for raw in events:
        name, data = raw.decode().strip().split("\n")
        out.append({"event": name.removeprefix("event: "), "data": json.loads(data[6:])})
    return out


def decode_stream(transcript: list[dict[str, Any]]) -> list[StreamChunk]:
    decoder = StreamDecoder()
    chunks = [c for e in transcript for c in decoder.feed(e["data"])]
    assert decoder.done
    return chunks


def test_stream_transcript_round_trips_through_stream_chunks() -> None:
    transcript = golden("messages_stream.json")
    start = transcript[0]["data"]["message"]
    encoder = StreamEncoder(start["id"], start["model"], start["usage"]["input_tokens"])
    events = [e for c in decode_stream(transcript) for e in encoder.feed(c)] + encoder.finish()
    assert sse(events) == transcript


def test_stream_decodes_to_text_tool_call_deltas_and_usage() -> None:
    chunks = decode_stream(golden("messages_stream.json"))
    assert "".join(c.text or "" for c in chunks) == "Checking both."
    thinking = "".join(str(c.extra.get("thinking", "")) for c in chunks)
    assert thinking == "Weather and time, both in Paris."
    calls: dict[int, list[str]] = {}
    for c in chunks:
        for t in c.tool_calls:
            calls.setdefault(t.index, []).append(t.name or t.arguments)
    assert {i: [v[0], "".join(v[1:])] for i, v in calls.items()} == {
        0: ["get_weather", '{"city": "Paris"}'],
        1: ["get_time", '{"zone":"CET"}'],
    }
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["tool_calls"]
    assert chunks[-1].usage == Usage(input_tokens=472, output_tokens=89)


def test_classic_stream_usage_takes_input_from_message_start() -> None:
    decoder = StreamDecoder()
    start_usage = {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 30}
    decoder.feed({"type": "message_start", "message": {"usage": start_usage}})
    chunks = decoder.feed(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 7},
        }
    )
    assert chunks[-1].usage == Usage(input_tokens=40, output_tokens=7, cached_tokens=30)


def test_a_streamed_tool_call_without_input_still_gets_object_arguments() -> None:
    decoder = StreamDecoder()
    block = {"type": "tool_use", "id": "t1", "name": "now", "input": {}}
    decoder.feed({"type": "content_block_start", "index": 0, "content_block": block})
    chunks = decoder.feed({"type": "content_block_stop", "index": 0})
    assert chunks[0].tool_calls == [ToolCallDelta(0, arguments="{}")]


def test_openai_stream_chunks_become_anthropic_events() -> None:
    openai_events: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]},
        {"choices": [{"index": 0, "delta": {"content": "Hi"}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "call_a", "function": {"name": "f", "arguments": ""}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": '{"a":1}'}}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4,
                                  "prompt_tokens_details": {"cached_tokens": 2}}},
    ]  # fmt: skip
    encoder = StreamEncoder("msg_1", "chat", 5)
    events = [e for o in openai_events for c in chunk_from_wire(o) for e in encoder.feed(c)]
    out = sse(events + encoder.finish())
    assert [e["event"] for e in out] == [
        "message_start", "ping",
        "content_block_start", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop",
    ]  # fmt: skip
    blocks = [e["data"]["content_block"] for e in out if e["event"] == "content_block_start"]
    assert blocks == [
        {"type": "text", "text": ""},
        {"type": "tool_use", "id": "call_a", "name": "f", "input": {}},
    ]
    assert out[3]["data"]["delta"] == {"type": "text_delta", "text": "Hi"}
    assert out[6]["data"]["delta"] == {"type": "input_json_delta", "partial_json": '{"a":1}'}
    assert out[-2]["data"]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert out[-2]["data"]["usage"] == {
        "input_tokens": 7,
        "output_tokens": 4,
        "cache_read_input_tokens": 2,
        "cache_creation_input_tokens": 0,
    }


@pytest.mark.parametrize(
    ("content", "param"),
    [
        ([{"type": "document", "source": {"type": "text", "data": "x"}}], "messages[0].content[0]"),
        ([{"type": "search_result", "content": []}], "messages[0].content[0]"),
        (
            [{"type": "image", "source": {"type": "file", "file_id": "f1"}}],
            "messages[0].content[0].source",
        ),
    ],
)
def test_a_block_the_gateway_cannot_carry_is_refused_not_dropped(
    content: list[Any], param: str
) -> None:
    with pytest.raises(UnsupportedContent) as exc:
        decode(user(content))
    assert exc.value.param == param


def test_server_tools_and_mcp_servers_are_refused_not_forwarded_unread() -> None:
    with pytest.raises(UnsupportedContent) as exc:
        decode(user("x", tools=[{"type": "web_search_20250305", "name": "web_search"}]))
    assert exc.value.param == "tools[0]"
    mcp = [{"type": "url", "url": "https://mcp.example.com/sse", "name": "ex"}]
    with pytest.raises(UnsupportedContent) as exc:
        decode(user("x", mcp_servers=mcp))
    assert exc.value.param == "mcp_servers"


def test_a_block_without_its_field_is_a_validation_error_naming_it() -> None:
    with pytest.raises(ValidationFailed) as exc:
        decode(user([{"type": "tool_use", "id": "t", "name": "f"}]))
    assert exc.value.param == "messages[0].content[0].input"


def test_tool_result_without_content_round_trips() -> None:
    wire = user([{"type": "tool_result", "tool_use_id": "t1"}])
    env = decode(wire)
    assert env.messages[0].role == "tool"
    assert encode(env) == wire


def test_count_tokens_request_needs_no_max_tokens() -> None:
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hello there"}]}'
    env = messages_request_to_envelope(parse_json_model(CountTokensRequest, body), "r")
    assert env.text() == "hello there"
    assert "max_tokens" not in env.params


def test_unknown_stop_reasons_pass_through_both_ways() -> None:
    wire = golden("messages_reply_tool_use.json") | {"stop_reason": "pause_turn"}
    env = message_reply_from_wire(wire, decode(user("x")))
    assert env.messages[0].finish_reason == "pause_turn"
    assert message_reply_to_wire(env, env.id)["stop_reason"] == "pause_turn"


def test_reasoning_from_an_openai_server_is_not_sent_as_a_thinking_block_yet() -> None:
    # Clients send thinking blocks back next turn, which an OpenAI upstream cannot take.
    reply = Envelope(
        id="r",
        modality=Modality.CHAT,
        model="m",
        messages=[
            Message(
                "assistant",
                [TextPart("42")],
                finish_reason="stop",
                extra={"reasoning_content": "6 times 7"},
            )
        ],
    )
    content = message_reply_to_wire(reply, "msg_1")["content"]
    assert content == [{"type": "text", "text": "42"}]
