"""The in-process sim provider: same answers as the HTTP face, faults as gateway errors."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import orjson
import pytest

from adapters.egress.sim import SimProvider, create_sim_provider
from adapters.egress.sim_options import SimOptions
from adapters.egress.sim_server import build_sim_app
from core.config import Provider as ProviderConfig
from core.envelope import (
    Envelope,
    ImagePart,
    Message,
    Modality,
    StreamChunk,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
    Usage,
)
from core.errors import (
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
}
PROMPT = 'Weather in "Oslo" for 4 days, please: get_weather'


def _envelope(*messages: Message, modality: Modality = Modality.CHAT, **kw: Any) -> Envelope:
    return Envelope(id="req-1", modality=modality, model="sim-1", messages=list(messages), **kw)


def _text(role: str, text: str) -> Message:
    return Message(role=role, parts=[TextPart(text)])


def _wire_body(env: Envelope) -> dict[str, Any]:
    """The OpenAI wire body equivalent to the test envelopes (text, images, tool traffic)."""
    messages: list[dict[str, Any]] = []
    for m in env.messages:
        content: list[dict[str, Any]] = []
        calls: list[dict[str, Any]] = []
        for part in m.parts:
            match part:
                case TextPart(text=text):
                    content.append({"type": "text", "text": text})
                case ImagePart(url=url):
                    content.append({"type": "image_url", "image_url": {"url": url}})
                case ToolCallPart(id=id_, name=name, arguments=arguments):
                    function = {"name": name, "arguments": arguments}
                    calls.append({"id": id_, "type": "function", "function": function})
                case ToolResultPart(tool_call_id=call_id, content=result):
                    text = "".join(p.text for p in result if isinstance(p, TextPart))
                    messages.append({"role": "tool", "tool_call_id": call_id, "content": text})
        if m.role != "tool":
            message: dict[str, Any] = {"role": m.role, "content": content or None}
            if calls:
                message["tool_calls"] = calls
            messages.append(message)
    body: dict[str, Any] = {"model": env.model, "messages": messages, **env.params}
    if env.tools:
        body["tools"] = [
            {"type": "function", "function": {"name": t.name, "parameters": t.parameters}}
            for t in env.tools
        ]
    return body


async def _over_http(body: dict[str, Any], options: SimOptions | None = None) -> dict[str, Any]:
    transport = httpx.ASGITransport(app=build_sim_app(options or SimOptions()))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
        response = await http.post("/v1/chat/completions", json=body)
    result: dict[str, Any] = response.json()
    return result


async def _collect(
    provider: SimProvider, env: Envelope, into: list[StreamChunk] | None = None
) -> list[StreamChunk]:
    """Every chunk of the stream; `into` keeps what arrived even when the stream raises."""
    chunks = [] if into is None else into
    async for chunk in provider.stream(env):
        chunks.append(chunk)
    return chunks


CASES = {
    "echo": _envelope(_text("system", "Be brief."), _text("user", "Hello there, sim")),
    "truncated": _envelope(_text("user", "one two three four five"), params={"max_tokens": 4}),
    "image": _envelope(
        Message(role="user", parts=[TextPart("What is it?"), ImagePart("data:image/png;base64,AA")])
    ),
    "tool call": _envelope(
        _text("user", PROMPT), tools=[ToolSpec("get_weather", parameters=SCHEMA)]
    ),
    "tool result": _envelope(
        _text("user", PROMPT),
        Message(role="assistant", parts=[ToolCallPart("call_9", "get_weather", '{"city":"Oslo"}')]),
        Message(role="tool", parts=[ToolResultPart("call_9", [TextPart("cold, -3 C")])]),
        tools=[ToolSpec("get_weather", parameters=SCHEMA)],
    ),
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", list(CASES))
async def test_send_answers_exactly_what_the_http_face_answers(case: str) -> None:
    env = CASES[case]
    wire = await _over_http(_wire_body(env))
    reply = await SimProvider("sim", SimOptions()).send(env)
    [message] = reply.messages
    choice = wire["choices"][0]
    assert (message.role, message.index) == ("assistant", 0)
    assert message.text() == (choice["message"]["content"] or "")
    assert message.finish_reason == choice["finish_reason"]
    calls = [p for p in message.parts if isinstance(p, ToolCallPart)]
    wire_calls = choice["message"].get("tool_calls", [])
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        (w["id"], w["function"]["name"], w["function"]["arguments"]) for w in wire_calls
    ]
    usage = wire["usage"]
    assert reply.usage == Usage(
        input_tokens=usage["prompt_tokens"],
        output_tokens=usage["completion_tokens"],
        cached_tokens=usage["prompt_tokens_details"]["cached_tokens"],
    )


@pytest.mark.anyio
@pytest.mark.parametrize("case", list(CASES))
async def test_stream_gives_the_same_text_tool_calls_and_usage_as_send(case: str) -> None:
    env = CASES[case]
    provider = SimProvider("sim", SimOptions(cached_fraction=0.5))
    sent = await provider.send(env)
    chunks = await _collect(provider, env)
    assert chunks[0].role == "assistant"
    assert chunks[-2].finish_reason == sent.messages[0].finish_reason
    assert chunks[-1].usage == sent.usage
    assert "".join(c.text or "" for c in chunks) == sent.messages[0].text()
    deltas = [d for c in chunks for d in c.tool_calls]
    calls = [p for p in sent.messages[0].parts if isinstance(p, ToolCallPart)]
    for index, call in enumerate(calls):
        mine = [d for d in deltas if d.index == index]
        assert (mine[0].id, mine[0].name) == (call.id, call.name)
        assert "".join(d.arguments for d in mine) == call.arguments


@pytest.mark.anyio
async def test_reply_keeps_the_request_id_trace_and_model() -> None:
    env = CASES["echo"]
    reply = await SimProvider("sim", SimOptions()).send(env)
    assert (reply.id, reply.model, reply.modality) == (env.id, env.model, Modality.CHAT)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "error", "reported"),
    [
        (500, UpstreamError, 502),
        (502, UpstreamError, 502),
        (503, UpstreamUnavailable, 503),
        (504, UpstreamTimeout, 504),
        (429, UpstreamRateLimited, 429),
        (404, UpstreamRejected, 404),
    ],
)
async def test_injected_faults_raise_the_matching_gateway_error(
    status: int, error: type[UpstreamError], reported: int
) -> None:
    provider = SimProvider("sim", SimOptions(fail_rate=1, fail_status=status))
    with pytest.raises(UpstreamError) as info:
        await provider.send(CASES["echo"])
    assert type(info.value) is error
    assert info.value.status == reported
    with pytest.raises(error):
        await _collect(provider, CASES["echo"])


@pytest.mark.anyio
async def test_rejected_fault_is_not_retryable_but_server_faults_are() -> None:
    rejected = SimProvider("sim", SimOptions(fail_rate=1, fail_status=400))
    with pytest.raises(UpstreamRejected) as info:
        await rejected.send(CASES["echo"])
    assert not info.value.retryable
    assert UpstreamUnavailable.retryable


@pytest.mark.anyio
async def test_dropped_stream_raises_after_the_chunks_it_sent() -> None:
    provider = SimProvider("sim", SimOptions(drop_after_chunks=3))
    received: list[StreamChunk] = []
    with pytest.raises(UpstreamError, match="dropped after 3"):
        await _collect(provider, CASES["echo"], into=received)
    assert len(received) == 3
    assert all(c.usage is None for c in received)


@pytest.mark.anyio
async def test_unknown_forced_tool_is_rejected_as_the_upstream_would() -> None:
    env = _envelope(
        _text("user", "hi"),
        tools=[ToolSpec("get_weather", parameters=SCHEMA)],
        params={"tool_choice": {"type": "function", "function": {"name": "nope"}}},
    )
    with pytest.raises(UpstreamRejected) as info:
        await SimProvider("sim", SimOptions()).send(env)
    assert info.value.status == 400


@pytest.mark.anyio
async def test_embedding_envelope_gets_the_vectors_the_http_face_gives() -> None:
    env = _envelope(
        _text("user", "hello world"),
        _text("user", "bye"),
        modality=Modality.EMBEDDING,
        params={"dimensions": 8},
    )
    reply = await SimProvider("sim", SimOptions()).send(env)
    body = {"model": "e", "input": ["hello world", "bye"], "dimensions": 8}
    transport = httpx.ASGITransport(app=build_sim_app(SimOptions()))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
        wire = (await http.post("/v1/embeddings", json=body)).json()
    assert reply.vectors == [d["embedding"] for d in wire["data"]]
    assert reply.usage == Usage(input_tokens=wire["usage"]["prompt_tokens"])


@pytest.mark.anyio
async def test_pre_tokenized_embedding_input_matches_the_http_face() -> None:
    env = _envelope(modality=Modality.EMBEDDING, params={"input_tokens": [[1, 2, 3], [4]]})
    reply = await SimProvider("sim", SimOptions()).send(env)
    body = {"model": "e", "input": [[1, 2, 3], [4]]}
    transport = httpx.ASGITransport(app=build_sim_app(SimOptions()))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
        wire = (await http.post("/v1/embeddings", json=body)).json()
    assert reply.vectors == [d["embedding"] for d in wire["data"]]
    assert (
        reply.usage == Usage(input_tokens=4) == Usage(input_tokens=wire["usage"]["prompt_tokens"])
    )


@pytest.mark.anyio
async def test_embedding_envelope_without_input_is_rejected() -> None:
    env = _envelope(modality=Modality.EMBEDDING)
    with pytest.raises(UpstreamRejected, match="input"):
        await SimProvider("sim", SimOptions()).send(env)


@pytest.mark.anyio
async def test_a_modality_the_sim_does_not_serve_is_rejected() -> None:
    env = _envelope(_text("user", "draw a cat"), modality=Modality.IMAGE)
    with pytest.raises(UpstreamRejected):
        await SimProvider("sim", SimOptions()).send(env)


@pytest.mark.anyio
async def test_provider_is_built_from_its_config_entry() -> None:
    config = ProviderConfig(name="fake", type="sim", sim={"reply_words": 5})
    provider = create_sim_provider(config)
    assert provider.name == "fake"
    reply = await provider.send(CASES["echo"])
    assert len(reply.messages[0].text().split()) == 5
    await provider.aclose()


def test_unknown_sim_options_in_config_fail_at_build_time() -> None:
    config = ProviderConfig(name="fake", type="sim", sim={"latency": 5})
    with pytest.raises(ValueError, match="latency"):
        create_sim_provider(config)


def test_wire_body_helper_matches_the_envelope_it_mirrors() -> None:
    body = _wire_body(CASES["tool result"])
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "tool"]
    assert orjson.loads(body["messages"][1]["tool_calls"][0]["function"]["arguments"]) == {
        "city": "Oslo"
    }


@pytest.mark.anyio
async def test_latency_ttft_and_chunk_delay_are_slept_where_the_options_say(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(anyio, "sleep", record)
    options = SimOptions(latency_ms=40, ttft_ms=20, chunk_delay_ms=5)
    provider = SimProvider("sim", options)
    chunks = await _collect(provider, CASES["echo"])
    assert slept == [0.04, 0.02] + [0.005] * (len(chunks) - 1)
    slept.clear()
    await provider.send(CASES["echo"])
    assert slept == [0.04, 0.02]
