"""The OpenAI chat path end to end: the real `openai` SDK → `agentgw serve` → `agentgw sim`."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from tests.e2e.conftest import Deployment

MESSAGES: list[Any] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Tell me about gateways"},
]
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME: Any = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string"}},
            "required": ["zone"],
        },
    },
}


def gateway_client(d: Deployment, key: str | None = None) -> OpenAI:
    return OpenAI(base_url=d.base_url, api_key=key or d.key, max_retries=0)


def direct_client(d: Deployment) -> OpenAI:
    return OpenAI(base_url=d.good.url + "/v1", api_key="direct", max_retries=0)


def test_chat_completion_returns_the_upstream_answer_and_usage(deployment: Deployment) -> None:
    raw = gateway_client(deployment).chat.completions.with_raw_response.create(
        model="chat", messages=MESSAGES
    )
    reply = raw.parse()
    direct = direct_client(deployment).chat.completions.create(model="sim-large", messages=MESSAGES)
    assert reply.choices[0].message.content == direct.choices[0].message.content
    assert reply.choices[0].message.content
    assert reply.usage is not None and direct.usage is not None
    assert reply.usage.prompt_tokens == direct.usage.prompt_tokens
    assert reply.usage.completion_tokens == direct.usage.completion_tokens
    assert reply.usage.total_tokens == direct.usage.total_tokens
    assert reply.model == "chat"
    assert raw.headers["x-request-id"].startswith("req_")


def test_streamed_chat_relays_the_text_and_the_upstream_usage(deployment: Deployment) -> None:
    stream = gateway_client(deployment).chat.completions.create(
        model="chat", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    direct = direct_client(deployment).chat.completions.create(model="sim-large", messages=MESSAGES)
    assert text == direct.choices[0].message.content
    # The events of one upstream read leave as one chunk (`core.coalesce`), and the sim's whole
    # reply can come in one read: that the gateway relays before the upstream has finished is
    # checked with a held upstream (tests/e2e/test_streaming.py).
    assert chunks[-1].usage is not None and direct.usage is not None
    assert chunks[-1].usage.prompt_tokens == direct.usage.prompt_tokens
    assert chunks[-1].usage.completion_tokens == direct.usage.completion_tokens
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"


def test_stream_without_include_usage_sends_no_usage_chunk(deployment: Deployment) -> None:
    chunks = list(
        gateway_client(deployment).chat.completions.create(
            model="chat", messages=MESSAGES, stream=True
        )
    )
    assert chunks
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


def test_tool_call_round_trip_through_the_gateway(deployment: Deployment) -> None:
    client = gateway_client(deployment)
    first = client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": 'Use get_weather for "Paris" please'}],
        tools=[WEATHER],
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    second = client.chat.completions.create(
        model="chat",
        messages=[
            {"role": "user", "content": 'Use get_weather for "Paris" please'},
            choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "sunny and 21C"},
        ],
        tools=[WEATHER],
    )
    assert "sunny and 21C" in (second.choices[0].message.content or "")
    assert second.choices[0].finish_reason == "stop"


def test_parallel_tool_calls_stream_as_deltas(deployment: Deployment) -> None:
    stream = gateway_client(deployment).chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": 'get_weather for "Oslo" and get_time for "CET"'}],
        tools=[WEATHER, TIME],
        stream=True,
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or []:
                entry = calls.setdefault(tc.index, {"name": "", "arguments": ""})
                if tc.function and tc.function.name:
                    entry["name"] = tc.function.name
                if tc.function and tc.function.arguments:
                    entry["arguments"] += tc.function.arguments
    assert finish == "tool_calls"
    assert sorted(c["name"] for c in calls.values()) == ["get_time", "get_weather"]
    args = {c["name"]: json.loads(c["arguments"]) for c in calls.values()}
    # The sim fills each tool's first string argument from the first quoted text.
    assert args == {"get_weather": {"city": "Oslo"}, "get_time": {"zone": "Oslo"}}


def test_content_parts_with_an_image_reach_the_upstream(deployment: Deployment) -> None:
    pixel = (
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDw"
        "AEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )
    httpx.delete(deployment.good.url + "/_sim/requests")
    gateway_client(deployment).chat.completions.create(
        model="chat",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": pixel, "detail": "low"}},
                ],
            }
        ],
    )
    received = httpx.get(deployment.good.url + "/_sim/requests").json()
    parts = received[-1]["messages"][0]["content"]
    assert parts == [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": pixel, "detail": "low"}},
    ]
    assert received[-1]["model"] == "sim-large"


def test_unknown_request_fields_pass_through_to_the_upstream(deployment: Deployment) -> None:
    httpx.delete(deployment.good.url + "/_sim/requests")
    gateway_client(deployment).chat.completions.create(
        model="chat",
        messages=MESSAGES,
        temperature=0.2,
        extra_body={"top_k": 5, "chat_template_kwargs": {"enable_thinking": False}},
    )
    body = httpx.get(deployment.good.url + "/_sim/requests").json()[-1]
    assert body["top_k"] == 5
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert body["temperature"] == 0.2


def test_embeddings_match_the_upstream(deployment: Deployment) -> None:
    reply = gateway_client(deployment).embeddings.create(model="embed", input=["one", "two"])
    direct = direct_client(deployment).embeddings.create(model="sim-embed", input=["one", "two"])
    assert [d.embedding for d in reply.data] == [d.embedding for d in direct.data]
    assert reply.usage.prompt_tokens == direct.usage.prompt_tokens > 0


def test_models_list_shows_only_what_the_key_may_use(deployment: Deployment) -> None:
    everything = {m.id for m in gateway_client(deployment).models.list()}
    assert {"chat", "embed", "failover", "refused", "down"} <= everything
    narrow = {m.id for m in gateway_client(deployment, deployment.narrow_key).models.list()}
    assert narrow == {"chat"}


def test_failover_serves_from_the_second_target_when_the_first_fails(
    deployment: Deployment,
) -> None:
    for model in ("failover", "refused"):
        reply = gateway_client(deployment).chat.completions.create(model=model, messages=MESSAGES)
        assert reply.choices[0].message.content


def test_all_targets_down_is_an_openai_shaped_gateway_error(deployment: Deployment) -> None:
    with pytest.raises(openai.APIStatusError) as bad:
        gateway_client(deployment).chat.completions.create(model="down", messages=MESSAGES)
    assert bad.value.status_code == 502
    assert bad.value.code == "all_targets_failed"
    with pytest.raises(openai.APIStatusError) as refused:
        gateway_client(deployment).chat.completions.create(model="nowhere", messages=MESSAGES)
    assert refused.value.status_code == 503


def post(d: Deployment, body: bytes | str, key: str | None = "default") -> httpx.Response:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization"] = f"Bearer {d.key if key == 'default' else key}"
    return httpx.post(d.base_url + "/chat/completions", content=body, headers=headers)


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ("{not json", 400, "invalid_json", None),
        ("", 400, "invalid_json", None),
        ("[1, 2]", 400, "invalid_json", None),
        ('{"model": "chat"}', 422, "invalid_request", "messages"),
        ('{"model": "chat", "messages": "hi"}', 422, "invalid_request", "messages"),
        (
            '{"model": 7, "messages": [{"role": "user", "content": "x"}]}',
            422,
            "invalid_request",
            "model",
        ),
        (
            '{"model": "chat", "messages": [{"role": "wizard", "content": "x"}]}',
            422,
            "invalid_request",
            "messages[0].role",
        ),
        ('{"model": "chat", "messages": [], "stream": true}', 422, "invalid_request", "messages"),
        (
            '{"model": "chat", "max_tokens": -1, "messages": [{"role": "user", "content": "x"}]}',
            422,
            "invalid_request",
            "max_tokens",
        ),
        (
            '{"model": "chat", "messages": [{"role": "user", "content": [{"type": "file"}]}]}',
            400,
            "unsupported_content",
            "messages[0].content[0]",
        ),
        (
            '{"model": "no-such", "messages": [{"role": "user", "content": "x"}]}',
            404,
            "model_not_found",
            "model",
        ),
    ],
)
def test_bad_input_gets_a_clear_openai_error(
    deployment: Deployment, body: str, status: int, code: str, param: str | None
) -> None:
    resp = post(deployment, body)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == code
    assert error["param"] == param
    assert error["message"]
    assert resp.headers["x-request-id"].startswith("req_")


def test_body_over_the_configured_limit_is_413(deployment: Deployment) -> None:
    content = "x" * 70_000
    body = json.dumps({"model": "chat", "messages": [{"role": "user", "content": content}]})
    resp = post(deployment, body)
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize("key", [None, "agw_not-a-real-key", "revoked"])
def test_missing_unknown_or_revoked_key_is_401(deployment: Deployment, key: str | None) -> None:
    secret = deployment.revoked_key if key == "revoked" else key
    resp = post(deployment, json.dumps({"model": "chat", "messages": MESSAGES}), key=secret)
    if secret is None:
        resp = httpx.post(deployment.base_url + "/chat/completions", json={"model": "chat"})
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "authentication_error"
    if secret is not None:  # the SDK itself refuses to send without a key
        with pytest.raises(openai.AuthenticationError):
            gateway_client(deployment, secret).chat.completions.create(
                model="chat", messages=MESSAGES
            )


def test_key_limited_to_one_model_is_refused_another(deployment: Deployment) -> None:
    with pytest.raises(openai.PermissionDeniedError) as denied:
        gateway_client(deployment, deployment.narrow_key).chat.completions.create(
            model="failover", messages=MESSAGES
        )
    assert "models" in denied.value.message


def test_unknown_route_is_a_json_404(deployment: Deployment) -> None:
    resp = httpx.get(deployment.gateway.url + "/v1/nothing-here")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"


def test_metrics_count_calls_and_never_label_with_client_supplied_model_names(
    deployment: Deployment,
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    invented = "model-made-up-by-a-client-7f3a"
    assert post(deployment, json.dumps({"model": invented, "messages": MESSAGES})).status_code
    gateway_client(deployment).chat.completions.create(model="chat", messages=MESSAGES)
    text = httpx.get(deployment.gateway.url + "/metrics").text
    assert invented not in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = families["agentgw_requests"].samples
    ok_chat = [
        s for s in requests if s.labels.get("model") == "chat" and s.labels["status"] == "ok"
    ]
    assert ok_chat
    assert ok_chat[0].value >= 1
    assert any(s.labels.get("model") == "unknown" for s in requests)
    tokens = families["agentgw_tokens"].samples
    assert any(s.labels == {"kind": "input", "model": "chat"} and s.value > 0 for s in tokens)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_the_chat_route_answers_with_one_request_id_of_its_own(
    deployment: Deployment, stream: bool
) -> None:
    # The chat routes are served ahead of the middleware (core.app.GatewayApp): they must still
    # carry exactly one x-request-id, new per call, as every other route does.
    body = {"model": "chat", "messages": MESSAGES, "stream": stream}
    headers = {"authorization": f"Bearer {deployment.key}"}
    seen = []
    for _ in range(2):
        r = httpx.post(deployment.base_url + "/chat/completions", json=body, headers=headers)
        assert r.status_code == 200, r.text
        ids = r.headers.get_list("x-request-id")
        assert len(ids) == 1 and ids[0].startswith("req_"), ids
        seen.append(ids[0])
    assert seen[0] != seen[1]
    wrong = httpx.get(deployment.base_url + "/chat/completions", headers=headers)
    assert wrong.status_code == 405
    assert len(wrong.headers.get_list("x-request-id")) == 1
