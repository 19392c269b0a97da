"""The Anthropic path end to end, both ways across wires, with real processes and real SDKs.

- the `anthropic` SDK → `agentgw serve` → an OpenAI-wire upstream (`agentgw sim`);
- the `openai` SDK → `agentgw serve` → an Anthropic-wire upstream (the same sim's `/v1/messages`);
- the `anthropic` SDK → `agentgw serve` → the Anthropic-wire upstream.

Every answer is compared with what the sim answers when called directly, and `/_sim/requests`
shows what the upstream received.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import pytest
from anthropic import Anthropic
from openai import OpenAI

from tests.e2e.procs import Proc, create_key, start_gateway, start_sim

OPENAI_KEY = "sk-openai-upstream-secret"
ANTHROPIC_KEY = "sk-ant-upstream-secret"
CONFIG = """\
listen: {{host: 127.0.0.1, max_body_bytes: 65536}}
store: sqlite:///gw.db
providers:
  - {{name: oa, type: openai, base_url: "{sim}/v1", api_key: "{openai_key}"}}
  - {{name: an, type: anthropic, base_url: "{sim}", api_key: "{anthropic_key}"}}
  - {{name: dropping, type: openai, base_url: "{dropping}/v1"}}
models:
  - {{name: chat, targets: [{{provider: oa, model: sim-large}}]}}
  - {{name: claude, targets: [{{provider: an, model: sim-large}}]}}
  - {{name: dropping, targets: [{{provider: dropping, model: sim-large}}]}}
"""
SYSTEM = "You are terse."
QUESTION = "Tell me about gateways"
TOOLS_PROMPT = 'get_weather for "Oslo" and get_time for "CET"'
WEATHER: Any = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
TIME: Any = {
    "name": "get_time",
    "input_schema": {
        "type": "object",
        "properties": {"zone": {"type": "string"}},
        "required": ["zone"],
    },
}


def as_openai_tool(tool: Any) -> Any:
    function = {"name": tool["name"], "parameters": tool["input_schema"]}
    if "description" in tool:
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


@dataclass
class Stack:
    gateway: Proc
    sim: Proc
    key: str
    narrow_key: str

    def anthropic(self, **kw: Any) -> Anthropic:
        kw.setdefault("api_key", self.key)
        return Anthropic(base_url=self.gateway.url, max_retries=0, timeout=15, **kw)

    def openai(self) -> OpenAI:
        return OpenAI(base_url=self.gateway.url + "/v1", api_key=self.key, max_retries=0)

    def direct_openai(self) -> OpenAI:
        return OpenAI(base_url=self.sim.url + "/v1", api_key="direct", max_retries=0)

    def direct_anthropic(self) -> Anthropic:
        return Anthropic(base_url=self.sim.url, api_key="direct", max_retries=0)

    def received(self) -> list[dict[str, Any]]:
        bodies: list[dict[str, Any]] = httpx.get(self.sim.url + "/_sim/requests").json()
        return bodies

    def received_headers(self) -> list[dict[str, str]]:
        headers: list[dict[str, str]] = httpx.get(self.sim.url + "/_sim/anthropic/headers").json()
        return headers


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("anthropic")
    procs: list[Proc] = []
    try:
        sim = start_sim()
        procs.append(sim)
        dropping = start_sim("--drop-after-chunks", "4")
        procs.append(dropping)
        config = workdir / "agentgw.yaml"
        config.write_text(
            CONFIG.format(
                sim=sim.url,
                dropping=dropping.url,
                openai_key=OPENAI_KEY,
                anthropic_key=ANTHROPIC_KEY,
            )
        )
        key = create_key(config, "claude-code", "eng/agents/coding")["key"]
        narrow = create_key(config, "narrow", "eng/agents/coding", "--models", "claude")["key"]
        gateway = start_gateway(config)
        procs.append(gateway)
        yield Stack(gateway, sim, key, narrow)
    finally:
        for proc in reversed(procs):
            proc.stop()


# -- the anthropic SDK to an OpenAI-wire upstream ------------------------------------------


def test_anthropic_message_to_an_openai_upstream_matches_the_upstream(stack: Stack) -> None:
    raw = stack.anthropic().messages.with_raw_response.create(
        model="chat",
        max_tokens=256,
        system=SYSTEM,
        messages=[{"role": "user", "content": QUESTION}],
    )
    reply = raw.parse()
    sent = stack.received()[-1]
    direct = stack.direct_openai().chat.completions.create(
        model="sim-large",
        max_tokens=256,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
    )
    assert [b.type for b in reply.content] == ["text"]
    assert reply.content[0].type == "text"
    assert reply.content[0].text == direct.choices[0].message.content == "sim: " + QUESTION
    assert direct.usage is not None
    assert reply.usage.input_tokens == direct.usage.prompt_tokens
    assert reply.usage.output_tokens == direct.usage.completion_tokens
    assert (reply.model, reply.stop_reason, reply.role) == ("chat", "end_turn", "assistant")
    assert reply.id.startswith("msg_")
    assert raw.headers["x-request-id"].startswith("req_")
    # What the upstream saw: the OpenAI wire, the upstream model, and never the virtual key.
    assert sent["model"] == "sim-large"
    assert sent["max_tokens"] == 256
    assert sent["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": QUESTION},
    ]
    assert stack.key not in json.dumps(sent)


def test_anthropic_stream_with_tools_to_an_openai_upstream(stack: Stack) -> None:
    client = stack.anthropic()
    question: Any = {"role": "user", "content": TOOLS_PROMPT}
    with client.messages.stream(
        model="chat", max_tokens=256, messages=[question], tools=[WEATHER, TIME]
    ) as stream:
        final = stream.get_final_message()
    direct = stack.direct_openai().chat.completions.create(
        model="sim-large",
        messages=[question],
        tools=[as_openai_tool(WEATHER), as_openai_tool(TIME)],
    )
    assert final.stop_reason == "tool_use"
    uses = [b for b in final.content if b.type == "tool_use"]
    direct_calls = direct.choices[0].message.tool_calls or []
    assert [(u.id, u.name, u.input) for u in uses] == [
        (c.id, c.function.name, json.loads(c.function.arguments))  # type: ignore[union-attr]
        for c in direct_calls
    ]
    assert [u.input for u in uses] == [{"city": "Oslo"}, {"zone": "Oslo"}]
    assert direct.usage is not None
    assert final.usage.input_tokens == direct.usage.prompt_tokens
    assert final.usage.output_tokens == direct.usage.completion_tokens
    assert stack.received()[-1]["tools"] == [as_openai_tool(WEATHER), as_openai_tool(TIME)]

    results: Any = [
        {"type": "tool_result", "tool_use_id": u.id, "content": f"{u.name} is fine"} for u in uses
    ]
    history: Any = [
        question,
        {"role": "assistant", "content": final.content},
        {"role": "user", "content": results},
    ]
    with client.messages.stream(
        model="chat",
        max_tokens=256,
        tools=[WEATHER, TIME],
        messages=history,
    ) as stream:
        pieces = list(stream.text_stream)
        answer = stream.get_final_message()
    sent = stack.received()[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool"]
    # Not "more than one piece": what one upstream read brought leaves merged (`core.coalesce`);
    # relaying before the upstream has finished is checked with a held upstream.
    assert pieces
    assert "".join(pieces) == (
        "sim: tool get_weather returned get_weather is fine; "
        "tool get_time returned get_time is fine"
    )
    assert answer.stop_reason == "end_turn"


def test_an_upstream_dropping_mid_stream_ends_in_an_error_event(stack: Stack) -> None:
    received: list[str] = []

    def consume() -> None:
        with stack.anthropic().messages.stream(
            model="dropping", max_tokens=64, messages=[{"role": "user", "content": "a b c d e f"}]
        ) as stream:
            received.extend(stream.text_stream)

    with pytest.raises(anthropic.APIStatusError) as exc:
        consume()
    assert received  # bytes had reached the client before the upstream went away
    body: Any = exc.value.body
    assert body["type"] == "error"
    assert body["error"]["type"] == "api_error"
    assert "ended the stream early" in body["error"]["message"]


# -- the openai SDK to an Anthropic-wire upstream ------------------------------------------


def test_openai_chat_to_an_anthropic_upstream_matches_the_upstream(stack: Stack) -> None:
    messages: Any = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
    reply = stack.openai().chat.completions.create(model="claude", messages=messages)
    sent, headers = stack.received()[-1], stack.received_headers()[-1]
    direct = stack.direct_openai().chat.completions.create(model="sim-large", messages=messages)
    assert reply.choices[0].message.content == direct.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and direct.usage is not None
    assert reply.usage.prompt_tokens == direct.usage.prompt_tokens
    assert reply.usage.completion_tokens == direct.usage.completion_tokens
    assert reply.model == "claude"
    # The upstream received the Anthropic wire with the provider's own key.
    assert sent == {
        "model": "sim-large",
        "max_tokens": 4096,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": QUESTION}],
    }
    assert headers["x-api-key"] == ANTHROPIC_KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert stack.key not in json.dumps(headers) + json.dumps(sent)


def test_openai_tools_and_stream_to_an_anthropic_upstream(stack: Stack) -> None:
    client, direct_client = stack.openai(), stack.direct_openai()
    question: Any = {"role": "user", "content": TOOLS_PROMPT}
    tools: Any = [as_openai_tool(WEATHER), as_openai_tool(TIME)]
    first = client.chat.completions.create(model="claude", messages=[question], tools=tools)
    direct = direct_client.chat.completions.create(
        model="sim-large", messages=[question], tools=tools
    )
    calls = first.choices[0].message.tool_calls or []
    direct_calls = direct.choices[0].message.tool_calls or []
    assert first.choices[0].finish_reason == "tool_calls"
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
        (c.id, c.function.name, json.loads(c.function.arguments))  # type: ignore[union-attr]
        for c in direct_calls
    ]
    assert first.usage is not None and direct.usage is not None
    assert first.usage.prompt_tokens == direct.usage.prompt_tokens

    history: Any = [
        question,
        first.choices[0].message.model_dump(exclude_none=True),
        *[{"role": "tool", "tool_call_id": c.id, "content": "fine"} for c in calls],
    ]
    stream = client.chat.completions.create(
        model="claude",
        messages=history,
        tools=tools,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    sent = stack.received()[-1]["messages"]
    expected = direct_client.chat.completions.create(
        model="sim-large", messages=history, tools=tools
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected.choices[0].message.content
    assert text == "sim: tool get_weather returned fine; tool get_time returned fine"
    assert chunks[-1].usage is not None and expected.usage is not None
    assert chunks[-1].usage.prompt_tokens == expected.usage.prompt_tokens
    assert chunks[-1].usage.completion_tokens == expected.usage.completion_tokens
    # The two tool messages became one user turn of tool_result blocks upstream.
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert [b["type"] for b in sent[2]["content"]] == ["tool_result", "tool_result"]


# -- the anthropic SDK to the Anthropic-wire upstream --------------------------------------


def test_anthropic_to_an_anthropic_upstream_matches_the_upstream(stack: Stack) -> None:
    question: Any = [{"role": "user", "content": TOOLS_PROMPT}]
    kwargs: Any = {"max_tokens": 128, "system": SYSTEM, "tools": [WEATHER], "messages": question}
    # A bearer token (Claude Code's ANTHROPIC_AUTH_TOKEN) works as well as x-api-key.
    client = stack.anthropic(api_key=None, auth_token=stack.key)
    reply = client.messages.create(model="claude", extra_body={"top_k": 5}, **kwargs)
    with client.messages.stream(model="claude", **kwargs) as stream:
        streamed = stream.get_final_message()
    direct = stack.direct_anthropic().messages.create(model="sim-large", **kwargs)
    for message in (reply, streamed):
        assert [b.model_dump() for b in message.content] == [b.model_dump() for b in direct.content]
        assert message.usage.input_tokens == direct.usage.input_tokens
        assert message.usage.output_tokens == direct.usage.output_tokens
        assert message.stop_reason == direct.stop_reason == "tool_use"
        assert message.model == "claude"
    assert stack.received()[-3]["top_k"] == 5  # Anthropic's own fields reach it untouched
    assert stack.key not in json.dumps(stack.received_headers()[-3:])


CLAUDE_CODE_BODY: Any = {
    "max_tokens": 32000,
    "stream": True,
    "system": [
        {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Be concise."},
    ],
    "messages": [
        {
            "role": "user",
            "content": [{"type": "text", "text": "hello", "cache_control": {"type": "ephemeral"}}],
        }
    ],
    "tools": [{**WEATHER, "cache_control": {"type": "ephemeral"}}],
    "metadata": {"user_id": "user_abc_account_def_session_123"},
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "temperature": 1,
}


@pytest.mark.parametrize("model", ["chat", "claude"])
def test_a_claude_code_shaped_request_is_served_by_either_upstream(
    stack: Stack, model: str
) -> None:
    headers = {
        "authorization": f"Bearer {stack.key}",
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
    }
    body = {**CLAUDE_CODE_BODY, "model": model}
    with httpx.stream(
        "POST", stack.gateway.url + "/v1/messages", json=body, headers=headers, timeout=15
    ) as resp:
        assert resp.status_code == 200, resp.read()
        events = [
            line.removeprefix("event: ") for line in resp.iter_lines() if line.startswith("event:")
        ]
    assert events[0] == "message_start" and events[-2:] == ["message_delta", "message_stop"]
    sent = stack.received()[-1]
    if model == "claude":  # the Anthropic upstream gets the request as Claude Code sent it
        assert sent == {**body, "model": "sim-large"}
        assert stack.received_headers()[-1]["anthropic-beta"] == headers["anthropic-beta"]
    else:  # the OpenAI upstream gets the OpenAI equivalent
        assert sent["user"] == "user_abc_account_def_session_123"
        assert [m["role"] for m in sent["messages"]] == ["system", "user"]
        assert sent["stream"] is True


# -- errors and count_tokens ---------------------------------------------------------------


def post(stack: Stack, path: str, body: str, key: str | None = None) -> httpx.Response:
    headers = {"content-type": "application/json", "x-api-key": key or stack.key}
    return httpx.post(stack.gateway.url + path, content=body, headers=headers)


@pytest.mark.parametrize(
    ("body", "status", "kind", "mentions"),
    [
        ("{not json", 400, "invalid_request_error", "JSON"),
        ('{"model": "chat", "messages": [{"role": "user", "content": "x"}]}', 422,
         "invalid_request_error", "max_tokens"),
        ('{"model": "chat", "max_tokens": 5, "messages": "hi"}', 422,
         "invalid_request_error", "messages"),
        ('{"model": "chat", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]}',
         422, "invalid_request_error", "messages[0].role"),
        ('{"model": "no-such", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}',
         404, "not_found_error", "no-such"),
        ('{"model": "chat", "max_tokens": 5, "messages": [{"role": "user", "content": '
         '[{"type": "document", "source": {"type": "text", "data": "x"}}]}]}',
         400, "invalid_request_error", "document"),
        (json.dumps({"model": "chat", "max_tokens": 5,
                     "messages": [{"role": "user", "content": "x" * 70_000}]}),
         413, "request_too_large", "limit"),
    ],
)  # fmt: skip
def test_bad_input_to_messages_gets_an_anthropic_error(
    stack: Stack, body: str, status: int, kind: str, mentions: str
) -> None:
    before = len(stack.received())
    resp = post(stack, "/v1/messages", body)
    assert resp.status_code == status, resp.text
    error = resp.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == kind
    assert mentions in error["error"]["message"]
    assert error["request_id"] == resp.headers["x-request-id"]
    assert len(stack.received()) == before  # nothing reached the upstream


def test_bad_or_narrow_keys_get_anthropic_errors_the_sdk_raises(stack: Stack) -> None:
    messages: Any = [{"role": "user", "content": "x"}]
    with pytest.raises(anthropic.AuthenticationError) as bad:
        stack.anthropic(api_key="agw_not-a-key").messages.create(
            model="chat", max_tokens=5, messages=messages
        )
    assert bad.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(anthropic.PermissionDeniedError):
        stack.anthropic(api_key=stack.narrow_key).messages.create(
            model="chat", max_tokens=5, messages=messages
        )
    with pytest.raises(anthropic.NotFoundError):
        stack.anthropic().messages.create(model="no-such", max_tokens=5, messages=messages)


def test_count_tokens_answers_an_estimate_without_calling_the_upstream(stack: Stack) -> None:
    before = len(stack.received())
    client = stack.anthropic()
    short = client.messages.count_tokens(
        model="claude", messages=[{"role": "user", "content": "hi"}]
    )
    long = client.messages.count_tokens(
        model="claude",
        system=SYSTEM,
        tools=[WEATHER],
        messages=[{"role": "user", "content": "a much longer question " * 20}],
    )
    assert 0 < short.input_tokens < long.input_tokens
    assert len(stack.received()) == before
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.PermissionDeniedError):
        stack.anthropic(api_key=stack.narrow_key).messages.count_tokens(
            model="chat", messages=[{"role": "user", "content": "x"}]
        )
    resp = post(stack, "/v1/messages/count_tokens", "{}", key="agw_wrong")
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "authentication_error"
