"""The sim over the OpenAI wire, driven in process through httpx's ASGI transport."""

from __future__ import annotations

import base64
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import orjson
import pytest

from adapters.egress.sim_options import SimOptions
from adapters.egress.sim_server import build_sim_app

CHAT = "/v1/chat/completions"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def _chat(text: object = "Hello there, sim", **kw: Any) -> dict[str, Any]:
    return {
        "model": "sim-1",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": text},
        ],
        **kw,
    }


def _events(body: str) -> list[str]:
    """The `data:` payloads of an SSE body, in order."""
    return [e.removeprefix("data: ") for e in body.split("\n\n") if e.startswith("data: ")]


@asynccontextmanager
async def _sim(**options: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_sim_app(SimOptions.from_mapping(options)))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
        yield http


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with _sim() as http:
        yield http


@pytest.mark.anyio
async def test_chat_completion_echoes_the_prompt_with_exact_usage(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(CHAT, json=_chat())
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "sim-1"
    choice = body["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": "sim: Hello there, sim",
        "refusal": None,
    }
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    # "Be brief." 3 + "Hello there, sim" 4, plus 3 per message; reply: sim : Hello there , sim.
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (
        13,
        6,
        19,
    )
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0


@pytest.mark.anyio
async def test_stream_with_include_usage_ends_with_the_same_usage_as_non_stream(
    client: httpx.AsyncClient,
) -> None:
    plain = (await client.post(CHAT, json=_chat())).json()
    response = await client.post(
        CHAT, json=_chat(stream=True, stream_options={"include_usage": True})
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _events(response.text)
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == plain["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == plain["usage"]
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.anyio
async def test_stream_without_include_usage_sends_no_usage_chunk(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(CHAT, json=_chat(stream=True))
    chunks = [orjson.loads(e) for e in _events(response.text)[:-1]]
    assert all(c["choices"] and "usage" not in c for c in chunks)


@pytest.mark.anyio
async def test_mentioned_tool_is_called_over_the_wire(client: httpx.AsyncClient) -> None:
    body = _chat('weather in "Rome"? use get_weather', tools=[WEATHER_TOOL])
    choice = (await client.post(CHAT, json=body)).json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Rome"}'}


@pytest.mark.anyio
async def test_tool_result_message_is_answered_with_the_tool_output(
    client: httpx.AsyncClient,
) -> None:
    body = _chat("use get_weather", tools=[WEATHER_TOOL])
    call = (await client.post(CHAT, json=body)).json()["choices"][0]["message"]["tool_calls"][0]
    body["messages"] += [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 24 C"},
    ]
    message = (await client.post(CHAT, json=body)).json()["choices"][0]["message"]
    assert message["content"] == "sim: tool get_weather returned sunny, 24 C"


@pytest.mark.anyio
async def test_image_parts_are_accepted_and_noted(client: httpx.AsyncClient) -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    body = (await client.post(CHAT, json=_chat(content))).json()
    assert body["choices"][0]["message"]["content"] == "sim: What is this? [1 image]"
    assert body["usage"]["prompt_tokens"] == (3 + 3) + (4 + 85 + 3)


@pytest.mark.anyio
async def test_injected_failure_answers_with_the_status_in_openai_shape() -> None:
    async with _sim(fail_rate=1, fail_status=503) as client:
        response = await client.post(CHAT, json=_chat())
        assert response.status_code == 503
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "server_error"


@pytest.mark.anyio
async def test_injected_rate_limit_asks_the_client_to_retry_later() -> None:
    async with _sim(fail_rate=1, fail_status=429) as client:
        response = await client.post(CHAT, json=_chat(stream=True))
        assert response.status_code == 429
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"]["type"] == "rate_limit_error"


@pytest.mark.anyio
async def test_dropped_stream_ends_without_done_or_usage() -> None:
    async with _sim(drop_after_chunks=2) as client:
        response = await client.post(
            CHAT, json=_chat(stream=True, stream_options={"include_usage": True})
        )
        events = _events(response.text)
        assert len(events) == 2
        assert "[DONE]" not in events
        assert all(orjson.loads(e)["usage"] is None for e in events)


@pytest.mark.anyio
async def test_request_log_records_bodies_received_and_clears(client: httpx.AsyncClient) -> None:
    first, second = _chat("one"), _chat("two", stream=True)
    await client.post(CHAT, json=first, headers={"Authorization": "Bearer sk-secret"})
    await client.post(CHAT, json=second)
    recorded = (await client.get("/_sim/requests")).json()
    assert recorded == [first, second]
    assert "sk-secret" not in orjson.dumps(recorded).decode()
    assert (await client.delete("/_sim/requests")).status_code == 204
    assert (await client.get("/_sim/requests")).json() == []


@pytest.mark.anyio
async def test_request_log_lives_on_the_app_not_in_the_module() -> None:
    one, two = build_sim_app(SimOptions()), build_sim_app(SimOptions())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=one), base_url="http://a") as a:
        await a.post(CHAT, json=_chat())
    assert len(one.state.sim_requests) == 1
    assert len(two.state.sim_requests) == 0


@pytest.mark.anyio
async def test_malformed_json_is_a_400_in_openai_shape(client: httpx.AsyncClient) -> None:
    response = await client.post(CHAT, content=b'{"model": ', headers={"content-type": "json"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.anyio
async def test_missing_messages_is_a_400_naming_the_parameter(client: httpx.AsyncClient) -> None:
    response = await client.post(CHAT, json={"model": "sim-1"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages"


@pytest.mark.anyio
async def test_unknown_content_part_is_a_400_naming_where_it_is(client: httpx.AsyncClient) -> None:
    body = _chat([{"type": "hologram"}])
    response = await client.post(CHAT, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages[1].content[0].type"


@pytest.mark.anyio
async def test_embeddings_come_as_floats_or_base64_of_the_same_vector(
    client: httpx.AsyncClient,
) -> None:
    request = {"model": "sim-embedding-1", "input": ["hello world", "bye"], "dimensions": 8}
    floats = (await client.post("/v1/embeddings", json=request)).json()
    assert floats["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert [d["index"] for d in floats["data"]] == [0, 1]
    vector = floats["data"][0]["embedding"]
    assert len(vector) == 8
    encoded = (
        await client.post("/v1/embeddings", json={**request, "encoding_format": "base64"})
    ).json()
    decoded = struct.unpack("<8f", base64.b64decode(encoded["data"][0]["embedding"]))
    assert decoded == pytest.approx(vector, abs=1e-6)


@pytest.mark.anyio
async def test_models_and_health_answer(client: httpx.AsyncClient) -> None:
    models = (await client.get("/v1/models")).json()
    assert "sim-1" in [m["id"] for m in models["data"]]
    assert (await client.get("/healthz")).json() == {"status": "ok"}


@pytest.mark.anyio
async def test_stream_sleeps_latency_then_ttft_then_the_chunk_delay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(anyio, "sleep", record)
    async with _sim(latency_ms=40, ttft_ms=20, chunk_delay_ms=5) as client:
        response = await client.post(CHAT, json=_chat(stream=True))
    chunks = len(_events(response.text)) - 1
    assert slept == [0.04, 0.02] + [0.005] * (chunks - 1)
