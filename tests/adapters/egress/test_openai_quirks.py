"""Provider quirks: the OpenAI egress renames the token limit, drops refused fields, adds headers.

Checked against what the sim's HTTP app actually received (`/_sim/requests`, `/_sim/headers`),
and on the span: each dropped field is a `dropped:<name>` flag.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from adapters.egress.http import SharedHTTP
from adapters.egress.openai import OpenAIProvider
from adapters.egress.sim_options import SimOptions
from adapters.egress.sim_server import build_sim_app
from core.config import Provider as ProviderConfig
from core.envelope import Envelope, Message, Modality, TextPart
from tests.adapters.admin.support import running

pytestmark = pytest.mark.anyio

QUIRKS = {
    "max_tokens_param": "max_completion_tokens",
    "drop_params": ["temperature", "logit_bias"],
}


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    # A socket bound before the thread starts: the kernel queues connections until uvicorn
    # accepts them, so no readiness wait is needed.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(
        uvicorn.Config(build_sim_app(SimOptions()), log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
async def provider(sim_url: str) -> AsyncIterator[OpenAIProvider]:
    async with httpx.AsyncClient() as client:
        (await client.delete(sim_url + "/_sim/requests")).raise_for_status()
    http = SharedHTTP()
    await http.open()
    config = ProviderConfig.model_validate(
        {
            "name": "quirky",
            "type": "openai",
            "base_url": sim_url + "/v1",
            "headers": {"x-tenant": "blue"},
            "quirks": QUIRKS,
        }
    )
    try:
        yield OpenAIProvider(config, http)
    finally:
        await http.aclose()


def request(stream: bool = False) -> Envelope:
    return Envelope(
        id="req_quirks",
        modality=Modality.CHAT,
        model="sim-large",
        messages=[Message("user", [TextPart("hello")])],
        params={"max_tokens": 50, "temperature": 0.2, "top_p": 0.9},
        extra={"logit_bias": {"42": 1}},
        stream=stream,
    )


async def received(sim_url: str) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    async with httpx.AsyncClient(base_url=sim_url) as client:
        bodies = (await client.get("/_sim/requests")).json()
        headers = (await client.get("/_sim/headers")).json()
    return bodies, headers


async def test_a_reply_request_carries_the_renamed_limit_and_none_of_the_dropped_fields(
    provider: OpenAIProvider, sim_url: str
) -> None:
    await provider.send(request())
    bodies, headers = await received(sim_url)
    (body,) = bodies
    assert body["max_completion_tokens"] == 50
    assert "max_tokens" not in body
    assert "temperature" not in body and "logit_bias" not in body
    assert body["top_p"] == 0.9
    assert headers[0]["x-tenant"] == "blue"


async def test_a_stream_request_gets_the_same_quirks(
    provider: OpenAIProvider, sim_url: str
) -> None:
    chunks = [chunk async for chunk in provider.stream(request(stream=True))]
    assert chunks
    (body,) = (await received(sim_url))[0]
    assert body["stream"] is True
    assert (body["max_completion_tokens"], "max_tokens" in body) == (50, False)
    assert "temperature" not in body


async def test_each_dropped_field_the_client_sent_is_flagged_on_the_span(tmp_path: Path) -> None:
    db = tmp_path / "agentgw.db"
    providers = [{"name": "sim", "type": "sim", "quirks": QUIRKS}]
    async with running(db, providers=providers) as gw:
        secret = (await gw.create_key(name="app"))["key"]
        resp = await gw.client().post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {secret}"},
            json={
                "model": "sim",
                "messages": [{"role": "user", "content": "hi"}],
                "temperature": 0.5,
                "top_p": 0.5,
            },
        )
        assert resp.status_code == 200, resp.text
    (flags,) = gw.rows("SELECT flags FROM spans")
    dropped = [f for f in json.loads(flags[0]) if f.startswith("dropped:")]
    assert dropped == ["dropped:temperature"]
