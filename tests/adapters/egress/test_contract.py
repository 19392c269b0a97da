"""One contract over every egress adapter: the same cases, the same answers, the same errors.

The adapters are the OpenAI egress and the Anthropic egress, each talking to the sim's HTTP app
(its two faces) on a real port, and the in-process sim provider. The in-process sim is also the
reference: for the same envelope every adapter must give its text, tool calls and usage exactly.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest
import uvicorn

from adapters.egress.anthropic import AnthropicProvider
from adapters.egress.http import SharedHTTP
from adapters.egress.openai import OpenAIProvider
from adapters.egress.sim import SimProvider
from adapters.egress.sim_options import SimOptions
from adapters.egress.sim_server import build_sim_app
from adapters.wire.anthropic import BETA_MARK
from core.config import ConfigError
from core.config import Provider as ProviderConfig
from core.envelope import (
    Envelope,
    Message,
    Modality,
    StreamChunk,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
)
from core.errors import UnsupportedContent, UpstreamError, UpstreamRejected, UpstreamUnavailable
from core.provider import Provider

pytestmark = pytest.mark.anyio

ADAPTERS = ("openai", "anthropic", "sim")
UPSTREAM_KEY = "sk-upstream-contract-key"
WEATHER = ToolSpec(
    "get_weather",
    "Current weather",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
Connect = Callable[..., Provider]


class SimServers:
    """Sim HTTP apps served by uvicorn in background threads, one per set of options.

    Each listens on a socket bound before its thread starts, so a client can connect at once:
    the kernel queues the connection until uvicorn accepts it (no readiness polling).
    """

    def __init__(self) -> None:
        self._urls: dict[tuple[tuple[str, Any], ...], str] = {}
        self._running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def url(self, **options: Any) -> str:
        key = tuple(sorted(options.items()))
        if key not in self._urls:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            app = build_sim_app(SimOptions.from_mapping(options))
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
            thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
            thread.start()
            self._running.append((server, thread))
            self._urls[key] = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self._urls[key]

    def close(self) -> None:
        for server, thread in self._running:
            server.should_exit = True
            thread.join(10)


def refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(scope="module")
def sims() -> Iterator[SimServers]:
    servers = SimServers()
    yield servers
    servers.close()


@pytest.fixture(params=ADAPTERS)
async def connect(request: pytest.FixtureRequest, sims: SimServers) -> AsyncIterator[Connect]:
    """`connect(**sim_options)` → the adapter under test, wired to a sim with those options."""
    kind: str = request.param
    http = SharedHTTP()
    await http.open()

    def make(*, url: str | None = None, **options: Any) -> Provider:
        if kind == "sim":
            if url is not None:
                pytest.skip("the in-process sim has no connection to refuse")
            return SimProvider("sim", SimOptions.from_mapping(options))
        root = url or sims.url(**options)
        if kind == "openai":
            config = ProviderConfig(
                name="up", type="openai", base_url=root + "/v1", api_key=UPSTREAM_KEY
            )
            return OpenAIProvider(config, http)
        config = ProviderConfig(name="up", type="anthropic", base_url=root, api_key=UPSTREAM_KEY)
        return AnthropicProvider(config, http)

    yield make
    await http.aclose()


def envelope(*messages: Message, tools: list[ToolSpec] | None = None) -> Envelope:
    return Envelope(
        id="req_contract",
        modality=Modality.CHAT,
        model="sim-1",
        messages=[Message("system", [TextPart("Be brief.")]), *messages],
        tools=tools or [],
    )


def say(text: str) -> Message:
    return Message("user", [TextPart(text)])


async def collect(
    provider: Provider, env: Envelope, into: list[StreamChunk] | None = None
) -> list[StreamChunk]:
    """Every chunk of the stream; `into` keeps what arrived even when the stream raises."""
    chunks = [] if into is None else into
    async for chunk in provider.stream(dataclasses.replace(env, stream=True)):
        chunks.append(chunk)
    return chunks


def both_ways(provider: Provider, env: Envelope) -> list[Callable[[], Awaitable[object]]]:
    """Sending and streaming, each to be awaited under its own `pytest.raises`."""
    return [lambda: provider.send(env), lambda: collect(provider, env)]


async def reference(env: Envelope) -> Envelope:
    return await SimProvider("reference", SimOptions()).send(env)


async def test_text_reply_matches_the_reference_with_usage(connect: Connect) -> None:
    env = envelope(say("Tell me about gateways"))
    reply = await connect().send(env)
    expected = await reference(env)
    assert reply.messages[0].text() == expected.messages[0].text() == "sim: Tell me about gateways"
    assert reply.messages[0].finish_reason == "stop"
    assert reply.usage == expected.usage
    assert reply.usage is not None and reply.usage.input_tokens > 0 < reply.usage.output_tokens


async def test_cached_prompt_tokens_are_reported_as_the_reference_reports_them(
    connect: Connect,
) -> None:
    env = envelope(say("Tell me about gateways and caches"))
    provider = connect(cached_fraction=0.5)
    reply, chunks = await provider.send(env), await collect(provider, env)
    expected = await SimProvider("reference", SimOptions(cached_fraction=0.5)).send(env)
    assert expected.usage is not None and expected.usage.cached_tokens > 0
    assert reply.usage == expected.usage
    assert chunks[-1].usage == expected.usage


async def test_stream_text_equals_the_sent_text_and_ends_with_usage(connect: Connect) -> None:
    env = envelope(say("one two three four five"))
    provider = connect()
    chunks = await collect(provider, env)
    sent = await provider.send(env)
    assert "".join(c.text or "" for c in chunks) == sent.messages[0].text()
    # Not "more than one text chunk": the HTTP egresses merge what one socket read brought
    # (`core.coalesce`), and a fast upstream's whole reply can come in one read. That chunks are
    # relayed before the upstream has finished is what the held-stream tests check.
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["stop"]
    usages = [c.usage for c in chunks if c.usage is not None]
    assert usages == [sent.usage]


async def test_tool_call_carries_name_and_arguments(connect: Connect) -> None:
    env = envelope(say('Use get_weather for "Oslo"'), tools=[WEATHER])
    reply = await connect().send(env)
    [call] = [p for p in reply.messages[0].parts if isinstance(p, ToolCallPart)]
    [expected] = [
        p for p in (await reference(env)).messages[0].parts if isinstance(p, ToolCallPart)
    ]
    assert (call.id, call.name) == (expected.id, "get_weather")
    assert call.arguments.replace(" ", "") == '{"city":"Oslo"}'
    assert reply.messages[0].finish_reason == "tool_calls"


async def test_streamed_tool_call_assembles_to_the_same_call(connect: Connect) -> None:
    env = envelope(say('Use get_weather for "Oslo"'), tools=[WEATHER])
    chunks = await collect(connect(), env)
    deltas = [t for c in chunks for t in c.tool_calls]
    assert {t.index for t in deltas} == {0}
    assert [t.name for t in deltas if t.name] == ["get_weather"]
    assert "".join(t.arguments for t in deltas).replace(" ", "") == '{"city":"Oslo"}'


async def test_tool_result_turn_is_answered_from_the_result(connect: Connect) -> None:
    call = ToolCallPart("call_1", "get_weather", '{"city":"Oslo"}')
    env = envelope(
        say('Use get_weather for "Oslo"'),
        Message("assistant", [call]),
        Message("tool", [ToolResultPart("call_1", [TextPart("rain, 4C")])]),
        tools=[WEATHER],
    )
    reply = await connect().send(env)
    expected = await reference(env)
    assert reply.messages[0].text() == "sim: tool get_weather returned rain, 4C"
    assert reply.usage == expected.usage


async def test_upstream_500_is_a_retryable_upstream_error(connect: Connect) -> None:
    provider = connect(fail_rate=1, fail_status=500)
    env = envelope(say("hi"))
    for attempt in both_ways(provider, env):
        with pytest.raises(UpstreamError) as exc:
            await attempt()
        assert exc.value.retryable
        assert not isinstance(exc.value, UpstreamRejected)


async def test_upstream_400_is_rejected_and_not_retryable(connect: Connect) -> None:
    provider = connect(fail_rate=1, fail_status=400)
    env = envelope(say("hi"))
    for attempt in both_ways(provider, env):
        with pytest.raises(UpstreamRejected) as exc:
            await attempt()
        assert not exc.value.retryable
        assert exc.value.status == 400


async def test_connection_refused_is_upstream_unavailable(connect: Connect) -> None:
    provider = connect(url=refused_url())
    env = envelope(say("hi"))
    for attempt in both_ways(provider, env):
        with pytest.raises(UpstreamUnavailable) as exc:
            await attempt()
        assert exc.value.retryable


async def test_a_stream_cut_midway_raises_after_what_arrived(connect: Connect) -> None:
    provider = connect(drop_after_chunks=4)
    arrived: list[StreamChunk] = []
    with pytest.raises(UpstreamError):
        await collect(provider, envelope(say("one two three four five six")), arrived)
    assert arrived
    assert all(c.usage is None for c in arrived)


# -- what only the Anthropic egress does ----------------------------------------------------


def anthropic(url: str, http: SharedHTTP) -> AnthropicProvider:
    config = ProviderConfig(name="an", type="anthropic", base_url=url, api_key=UPSTREAM_KEY)
    return AnthropicProvider(config, http)


async def test_anthropic_overloaded_529_is_upstream_unavailable(sims: SimServers) -> None:
    http = SharedHTTP()
    await http.open()
    try:
        with pytest.raises(UpstreamUnavailable):
            await anthropic(sims.url(fail_rate=1, fail_status=529), http).send(envelope(say("x")))
    finally:
        await http.aclose()


async def test_anthropic_face_holds_a_stream_until_released(sims: SimServers) -> None:
    url = sims.url(hold_after_chunks=3)
    http = SharedHTTP()
    await http.open()
    try:
        env = envelope(say("one two three"))
        stream = anthropic(url, http).stream(env)
        with anyio.fail_after(5):
            first = await anext(stream)  # message_start, before the hold
            async with httpx.AsyncClient(base_url=url) as client:
                (await client.post("/_sim/release")).raise_for_status()
            rest = [chunk async for chunk in stream]
    finally:
        await http.aclose()
    assert first.role == "assistant"
    # What came before the hold may have been read, and merged, together with message_start.
    assert "".join(c.text or "" for c in [first, *rest]) == "sim: one two three"


async def test_anthropic_egress_sends_its_key_version_and_a_default_max_tokens(
    sims: SimServers,
) -> None:
    url = sims.url()
    http = SharedHTTP()
    await http.open()
    try:
        env = envelope(say("hi"))
        env.params["_anthropic_beta"] = "context-1m-2025-08-07"
        await anthropic(url, http).send(env)
    finally:
        await http.aclose()
    async with httpx.AsyncClient(base_url=url) as client:
        headers = (await client.get("/_sim/anthropic/headers")).json()[-1]
        body = (await client.get("/_sim/requests")).json()[-1]
    assert headers == {
        "x-api-key": UPSTREAM_KEY,
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "context-1m-2025-08-07",
    }
    assert body["max_tokens"] == 4096
    assert body["system"] == [{"type": "text", "text": "Be brief."}]
    assert "_anthropic_beta" not in str(body)


# -- moderation: the `/v1/moderations` wire ---------------------------------------------------
# OpenAI's wire and the sim serve it; Anthropic has no moderation endpoint, so its egress refuses
# the envelope with UnsupportedContent before anything is sent.


def moderation(*texts: str) -> Envelope:
    return Envelope(
        id="req_contract",
        modality=Modality.MODERATION,
        model="sim-moderation-1",
        messages=[Message("user", [TextPart(t)]) for t in texts],
    )


async def test_moderation_results_match_the_reference(connect: Connect) -> None:
    env = moderation("They are vermin, all of them.", "[sim-score:violence=0.42] hello")
    provider = connect()
    if isinstance(provider, AnthropicProvider):
        with pytest.raises(UnsupportedContent):
            await provider.send(env)
        return
    reply = await provider.send(env)
    expected = await reference(env)
    assert reply.modality is Modality.MODERATION
    assert reply.extra["results"] == expected.extra["results"]
    hateful, marked = reply.extra["results"]
    assert hateful["flagged"] and hateful["category_scores"]["hate"] > 0.9
    assert marked["category_scores"]["violence"] == 0.42 and not marked["categories"]["hate"]


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [(500, UpstreamError, True), (400, UpstreamRejected, False)],
    ids=["500", "400"],
)
async def test_moderation_upstream_errors_map_as_for_chat(
    connect: Connect, status: int, error: type[UpstreamError], retryable: bool
) -> None:
    provider = connect(fail_rate=1, fail_status=status)
    if isinstance(provider, AnthropicProvider):
        pytest.skip("the Anthropic egress sends no moderation request (see above)")
    with pytest.raises(error) as exc:
        await provider.send(moderation("hello"))
    assert exc.value.retryable is retryable


async def test_moderation_connection_refused_is_upstream_unavailable(connect: Connect) -> None:
    provider = connect(url=refused_url())
    if isinstance(provider, AnthropicProvider):
        pytest.skip("the Anthropic egress sends no moderation request (see above)")
    with pytest.raises(UpstreamUnavailable):
        await provider.send(moderation("hello"))


@pytest.mark.parametrize("make", [OpenAIProvider, AnthropicProvider])
@pytest.mark.parametrize(
    ("base_url", "headers"),
    [
        ("ftp://user:hunter2@upstream", {}),
        ("http://user:hunter2@upstream/v 1", {}),
        ("http://upstream", {"x-team": "a\r\nx-injected: 1"}),
    ],
)
def test_a_provider_the_upstream_client_cannot_address_is_a_config_error(
    make: Callable[[ProviderConfig, SharedHTTP], Provider],
    base_url: str,
    headers: dict[str, str],
) -> None:
    kind = "openai" if make is OpenAIProvider else "anthropic"
    config = ProviderConfig(name="up", type=kind, base_url=base_url, headers=headers)
    with pytest.raises(ConfigError, match=r"providers\.up: ") as caught:
        make(config, SharedHTTP())
    assert "hunter2" not in str(caught.value)  # a base URL's credentials are never quoted


async def test_an_anthropic_beta_with_a_line_break_is_refused_not_sent() -> None:
    http = SharedHTTP()
    await http.open()
    try:
        provider = anthropic("http://127.0.0.1:9", http)
        env = envelope(say("hi"))
        env.params[BETA_MARK] = "context-1m\r\nx-injected: 1"
        with pytest.raises(UnsupportedContent, match="line break"):
            await provider.send(env)
    finally:
        await http.aclose()
