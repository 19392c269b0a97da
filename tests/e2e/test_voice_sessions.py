"""Realtime sessions on the in-process sim provider: browser-style auth, beta events, and a
concurrent-session limit enforced at the handshake."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
import websockets
from openai import BadRequestError, OpenAI

from adapters.wire.audio import read_wav
from tests.e2e.procs import Proc, create_key, start_gateway, typed_turn

pytestmark = pytest.mark.e2e

CONFIG = """\
listen: {host: 127.0.0.1}
store: sqlite:///gw.db
providers: [{name: local, type: sim}]
models: [{name: sim, targets: [{provider: local, model: sim-1}]}]
"""
TURNS = 10  # responses while others knock: each one was a window the slot could be lost in
LIMIT = """\
limits: [{{level: key, target: "{key_id}", kind: concurrent, amount: 1}}]
"""


@dataclass
class Local:
    gateway: Proc
    key: str

    def url(self, model: str = "sim") -> str:
        return self.gateway.url.replace("http", "ws") + f"/v1/realtime?model={model}"


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    config = tmp_path_factory.mktemp("local") / "agentgw.yaml"
    config.write_text(CONFIG)
    key = create_key(config, "browser", "support/voice/web")
    config.write_text(CONFIG + LIMIT.format(key_id=key["id"]))
    gateway = start_gateway(config)
    try:
        yield Local(gateway, key["key"])
    finally:
        gateway.stop()


def _browser(local: Local, model: str = "sim") -> Any:
    protocols = ["realtime", f"openai-insecure-api-key.{local.key}", "openai-beta.realtime-v1"]
    return websockets.connect(local.url(model), subprotocols=protocols)  # type: ignore[arg-type]


async def _when_free(local: Local) -> Any:
    """A session on the key's one slot, once the slot is free. The gateway frees a session's
    slot as it tears the session down, which it does just after echoing the client's close: a
    client reconnecting at once may still meet its own last session. Retried at once (each try
    is a real handshake refused with 429), up to a deadline."""
    with anyio.fail_after(10):
        while True:
            try:
                return await _browser(local)
            except websockets.InvalidStatus as exc:
                if exc.response.status_code != 429:
                    raise


async def _refused(local: Local, model: str = "sim") -> tuple[int, dict[str, Any]]:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with _browser(local, model):
            pass
    response = refused.value.response
    return response.status_code, json.loads(response.body or b"{}")


def test_a_browser_session_with_its_key_in_the_subprotocol_holds_the_only_slot(
    local: Local,
) -> None:
    async def main() -> None:
        async with await _when_free(local) as ws:
            assert ws.subprotocol == "realtime"
            await ws.send(typed_turn("hi"))
            await ws.send(
                json.dumps({"type": "response.create", "response": {"modalities": ["text"]}})
            )
            kinds, text = [], ""
            with anyio.fail_after(10):
                while True:
                    event = json.loads(await ws.recv())
                    kinds.append(event["type"])
                    if event["type"] == "response.text.done":
                        text = event["text"]
                    if event["type"] == "response.done":
                        break
            assert "response.text.delta" in kinds  # the beta names a beta client asked for
            assert text == "sim: hi"
            status, body = await _refused(local)
            assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
        async with await _when_free(local) as again:  # the slot comes back as the session ends
            assert json.loads(await again.recv())["type"] == "session.created"

    anyio.run(main)


def test_a_running_session_keeps_its_slot_while_another_is_refused_at_the_limit(
    local: Local,
) -> None:
    """The slot is held for the whole session: responses renew only the budget part, so a
    second session knocking all the while is refused every time and never ends the first."""

    async def ask(ws: Any, text: str) -> str:
        await ws.send(typed_turn(text))
        await ws.send(json.dumps({"type": "response.create", "response": {"modalities": ["text"]}}))
        with anyio.fail_after(10):
            while True:
                event = json.loads(await ws.recv())
                assert event["type"] != "error", event
                if event["type"] == "response.text.done":
                    return str(event["text"])

    async def main() -> None:
        refusals: list[int] = []
        async with await _when_free(local) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
            answered = anyio.Event()

            async def knock() -> None:
                while not answered.is_set():
                    refusals.append((await _refused(local))[0])

            async with anyio.create_task_group() as tg:
                tg.start_soon(knock)
                tg.start_soon(knock)
                replies = [await ask(ws, f"turn {n}") for n in range(TURNS)]
                answered.set()
            assert replies == [f"sim: turn {n}" for n in range(TURNS)]
            assert await ask(ws, "still here") == "sim: still here"
        assert refusals and set(refusals) == {429}
        async with await _when_free(local) as again:  # freed as the first session ended
            assert json.loads(await again.recv())["type"] == "session.created"

    anyio.run(main)


def test_a_session_without_a_known_model_is_refused_at_the_handshake(local: Local) -> None:
    async def main() -> None:
        assert (await _refused(local, ""))[0] == 400
        status, body = await _refused(local, "no-such-model")
        assert status == 404 and body["error"]["code"] == "model_not_found"

    anyio.run(main)


def test_the_in_process_sim_speaks_and_transcribes(local: Local) -> None:
    client = OpenAI(base_url=local.gateway.url + "/v1", api_key=local.key)
    audio = client.audio.speech.create(
        model="sim", voice="alloy", input="two words", response_format="wav"
    )
    pcm, rate = read_wav(audio.content)
    assert rate == 24_000 and len(pcm) > 0
    heard = client.audio.transcriptions.create(
        model="sim", file=("tones.wav", audio.content, "audio/wav")
    )
    assert isinstance(heard.text, str)  # tones are not words: whatever was heard, as text
    with pytest.raises(BadRequestError):
        client.audio.speech.create(model="sim", voice="alloy", input="x", response_format="flac")
