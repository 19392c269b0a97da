"""Merged stream chunks, end to end: what a client rebuilds from a stream is the whole reply.

The gateway merges the chunks of the events one upstream read brought (`core.coalesce`); the
real SDKs must rebuild from its stream exactly the reply a plain call gets, and the stream must
never have more chunks than the upstream sent events. Both egresses are crossed (the sim's
OpenAI face and its Anthropic face), by both SDKs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import pytest
from openai import OpenAI

from tests.e2e.procs import Proc, create_key, start_gateway, start_sim

pytestmark = pytest.mark.e2e

CONFIG = """\
store: sqlite:///gw.db
providers:
  - {{name: oa, type: openai, base_url: "{sim}/v1"}}
  - {{name: an, type: anthropic, base_url: "{sim}"}}
models:
  - {{name: via-openai, targets: [{{provider: oa, model: sim-1}}]}}
  - {{name: via-anthropic, targets: [{{provider: an, model: sim-1}}]}}
"""
MODELS = ("via-openai", "via-anthropic")
TEXT: Any = [{"role": "user", "content": "one two three four five six seven eight nine ten"}]
TOOLS_ASKED: Any = [{"role": "user", "content": "Use get_weather and get_time for Oslo"}]
TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": name,
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    for name in ("get_weather", "get_time")
]


@dataclass
class Stack:
    gateway: Proc
    sim: Proc
    key: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    procs: list[Proc] = []
    try:
        sim = start_sim()
        procs.append(sim)
        config = tmp_path_factory.mktemp("coalescing") / "agentgw.yaml"
        config.write_text(CONFIG.format(sim=sim.url))
        key = create_key(config, "coalescing", "eng/stream/coalescing")["key"]
        gateway = start_gateway(config)
        procs.append(gateway)
        yield Stack(gateway, sim, key)
    finally:
        for proc in reversed(procs):
            proc.stop()


def upstream_events(stack: Stack, model: str, messages: Any, tools: Any = None) -> int:
    """How many events the upstream sends for this request: the most chunks a client may get."""
    body: dict[str, Any] = {"model": "sim-1", "messages": messages, "stream": True}
    if model == "via-openai":
        path = "/v1/chat/completions"
        body["stream_options"] = {"include_usage": True}
        if tools:
            body["tools"] = tools
    else:
        path = "/v1/messages"
        body["max_tokens"] = 256
        if tools:
            body["tools"] = [
                {"name": t["function"]["name"], "input_schema": t["function"]["parameters"]}
                for t in tools
            ]
    headers = {"anthropic-version": "2023-06-01"}
    with (
        httpx.Client(timeout=15, headers=headers) as client,
        client.stream("POST", stack.sim.url + path, json=body) as resp,
    ):
        resp.raise_for_status()
        return sum(1 for line in resp.iter_lines() if line.startswith("data:"))


def openai_client(stack: Stack) -> OpenAI:
    return OpenAI(base_url=stack.gateway.url + "/v1", api_key=stack.key, max_retries=0, timeout=15)


@pytest.mark.parametrize("model", MODELS)
def test_openai_stream_rebuilds_the_plain_reply_in_no_more_chunks_than_upstream_events(
    stack: Stack, model: str
) -> None:
    client = openai_client(stack)
    plain = client.chat.completions.create(model=model, messages=TEXT)
    with client.chat.completions.stream(
        model=model, messages=TEXT, stream_options={"include_usage": True}
    ) as stream:
        chunks = [event.chunk for event in stream if event.type == "chunk"]
        final = stream.get_final_completion()
    assert 1 <= len(chunks) <= upstream_events(stack, model, TEXT)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == final.choices[0].message.content == plain.choices[0].message.content
    assert text == "sim: " + TEXT[0]["content"]
    assert final.choices[0].finish_reason == plain.choices[0].finish_reason == "stop"
    assert final.usage is not None and plain.usage is not None
    assert final.usage.prompt_tokens == plain.usage.prompt_tokens
    assert final.usage.completion_tokens == plain.usage.completion_tokens


@pytest.mark.parametrize("model", MODELS)
def test_openai_tool_call_stream_rebuilds_the_plain_calls(stack: Stack, model: str) -> None:
    client = openai_client(stack)
    plain = client.chat.completions.create(model=model, messages=TOOLS_ASKED, tools=TOOLS)
    with client.chat.completions.stream(
        model=model, messages=TOOLS_ASKED, tools=TOOLS, stream_options={"include_usage": True}
    ) as stream:
        chunks = [event.chunk for event in stream if event.type == "chunk"]
        final = stream.get_final_completion()
    assert 1 <= len(chunks) <= upstream_events(stack, model, TOOLS_ASKED, TOOLS)
    # Each chunk carries at most one tool-call delta: a client reading `tool_calls[0]` misses none.
    assert all(len(c.choices[0].delta.tool_calls or []) <= 1 for c in chunks if c.choices)

    def calls(message: Any) -> list[tuple[str, str, str]]:
        return [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []]

    expected = calls(plain.choices[0].message)
    assert [name for _, name, _ in expected] == ["get_weather", "get_time"]
    assert calls(final.choices[0].message) == expected
    assert final.choices[0].finish_reason == plain.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None and plain.usage is not None
    assert final.usage.completion_tokens == plain.usage.completion_tokens


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_stream_rebuilds_the_plain_message(stack: Stack, model: str) -> None:
    client = anthropic.Anthropic(
        base_url=stack.gateway.url, api_key=stack.key, max_retries=0, timeout=15
    )
    tools: Any = [
        {"name": t["function"]["name"], "input_schema": t["function"]["parameters"]} for t in TOOLS
    ]
    for messages in (TEXT, TOOLS_ASKED):
        plain = client.messages.create(model=model, max_tokens=256, messages=messages, tools=tools)
        with client.messages.stream(
            model=model, max_tokens=256, messages=messages, tools=tools
        ) as stream:
            deltas = [e for e in stream if e.type == "content_block_delta"]
            final = stream.get_final_message()
        assert len(deltas) <= upstream_events(stack, model, messages, TOOLS)
        got = [b.model_dump(exclude={"citations"}) for b in final.content]
        assert got == [b.model_dump(exclude={"citations"}) for b in plain.content]
        assert final.stop_reason == plain.stop_reason
        assert final.usage.output_tokens == plain.usage.output_tokens
