"""Realtime voice through a real `agentgw serve` to a real `agentgw sim`, with real clients.

Speech is made with Debian's flite at test time and recognized by pocketsphinx inside the sim (and
inside the gateway in privacy mode). The spans are read from the SQLite store once the gateway has
shut down (the last test), so every write-behind span is in.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pytest
import websockets
from openai import AsyncOpenAI, BadRequestError, OpenAI

from adapters.wire.audio import read_wav, resample
from tests.e2e.procs import Proc, create_key, free_port, start_gateway, start_sim, typed_turn

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("flite") is None, reason="needs Debian's flite"),
]

PHRASES = {
    "hello": "hello there how are you",
    "phone": "call me at two one two five five five one two three four",
    "email": "my email is john at example dot com",
    "threat": "i will kill you",
}
FRAME = 24_000 * 2 // 50  # 20 ms of 24 kHz 16-bit mono

CONFIG = """\
listen: {{host: 127.0.0.1}}
store: sqlite:///gw.db
voice: {{max_frame_bytes: 262144}}
providers:
  - {{name: sim, type: openai, base_url: "{sim}/v1", api_key: sk-upstream-secret}}
  - {{name: dead, type: openai, base_url: "http://127.0.0.1:{dead}/v1", connect_timeout_seconds: 2}}
models:
  - name: voice
    targets: [{{provider: dead, model: gpt-realtime}}, {{provider: sim, model: gpt-realtime}}]
  - {{name: private, privacy_mode: true, targets: [{{provider: sim, model: gpt-realtime}}]}}
  - {{name: metered, targets: [{{provider: sim, model: gpt-realtime}}]}}
prices:
  - provider: sim
    model: gpt-realtime
    input_per_1m: 4
    output_per_1m: 16
    per_audio_second: 0.0001
filters:
  pii: {{action: redact}}
  moderation: {{action: block}}
"""
LIMITS = """\
limits:
  - level: key
    target: "{key_id}"
    kind: audio_seconds
    amount: 1
    window: minute
    model: metered
  - {{level: key, target: "{speaker_id}", kind: audio_seconds, amount: 1, window: minute}}
"""


@dataclass
class Voice:
    gateway: Proc
    sim: Proc
    config: Path
    key: str
    private_key: str  # a key in privacy mode (`--privacy-mode`), whatever the model
    speaker_key: str  # a key allowed 1 s of audio a minute (both ways), on any model

    @property
    def ws(self) -> str:
        return self.gateway.url.replace("http", "ws") + "/v1/realtime"


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Each phrase spoken by flite, as 24 kHz 16-bit PCM (the Realtime default format)."""
    workdir = tmp_path_factory.mktemp("speech")
    clips = {}
    for name, text in PHRASES.items():
        wav = workdir / f"{name}.wav"
        subprocess.run(["flite", "-voice", "rms", "-t", text, "-o", str(wav)], check=True)
        pcm, rate = read_wav(wav.read_bytes())
        samples = resample(np.frombuffer(pcm, dtype="<i2").astype(np.int16), rate, 24_000)
        clips[name] = samples.astype("<i2").tobytes()
        clips[f"{name}.wav"] = wav.read_bytes()
    return clips


@pytest.fixture(scope="module")
def voice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Voice]:
    workdir = tmp_path_factory.mktemp("voice")
    procs: list[Proc] = []
    try:
        sim = start_sim()
        procs.append(sim)
        config = workdir / "agentgw.yaml"
        config.write_text(CONFIG.format(sim=sim.url, dead=free_port()))
        key = create_key(config, "caller", "support/voice/agents")
        private = create_key(config, "private", "support/voice/agents", "--privacy-mode")
        scopes: Any = private["scopes"]
        assert scopes["privacy_mode"] is True
        speaker = create_key(config, "speaker", "support/voice/agents")
        limits = LIMITS.format(key_id=key["id"], speaker_id=speaker["id"])
        config.write_text(config.read_text() + limits)
        gateway = start_gateway(config)
        procs.append(gateway)
        yield Voice(gateway, sim, config, key["key"], private["key"], speaker["key"])
    finally:
        for proc in reversed(procs):
            proc.stop()


def _frames(pcm: bytes, size: int = FRAME * 5) -> Iterator[str]:
    for start in range(0, len(pcm), size):
        event = {
            "type": "input_audio_buffer.append",
            "audio": base64.b64encode(pcm[start : start + size]).decode(),
        }
        yield json.dumps(event)


async def _until(ws: Any, kind: str, seen: list[dict[str, Any]]) -> dict[str, Any]:
    with anyio.fail_after(30):
        while True:
            event = json.loads(await ws.recv())
            seen.append(event)
            if event["type"] == kind:
                return dict(event)


async def _say(ws: Any, pcm: bytes) -> None:
    for frame in _frames(pcm):
        await ws.send(frame)
    await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
    await ws.send(json.dumps({"type": "response.create"}))


def _connect(voice: Voice, model: str, key: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {key or voice.key}", "x-session-id": f"call-{model}"}
    return websockets.connect(
        f"{voice.ws}?model={model}", additional_headers=headers, max_size=None
    )


def _sim_events(voice: Voice) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = httpx.get(voice.sim.url + "/_sim/requests").json()
    return [e for e in events if isinstance(e, dict) and "type" in e]


async def _spoken_turn(
    ws: Any, pcm: bytes, seen: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Say `pcm` and wait for the reply: the transcription event and the `response.done`."""
    await _say(ws, pcm)
    heard = await _until(ws, "conversation.item.input_audio_transcription.completed", seen)
    return heard, await _until(ws, "response.done", seen)


async def _threat_then_good_morning(
    voice: Voice, model: str, threat: bytes, seen: list[dict[str, Any]]
) -> dict[str, Any]:
    """Speak `threat`, then type "good morning" and wait for its reply; the threat's error."""
    async with _connect(voice, model) as ws:
        await _say(ws, threat)
        error = await _until(ws, "error", seen)
        await ws.send(typed_turn("good morning"))
        await ws.send(json.dumps({"type": "response.create"}))
        await _until(ws, "response.done", seen)
    return error


def test_a_bad_key_is_refused_at_the_handshake(voice: Voice) -> None:
    async def main() -> None:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with _connect(voice, "voice", key="agw_not-a-key"):
                pass
        assert refused.value.response.status_code == 401
        assert b"invalid_api_key" in refused.value.response.body
        assert refused.value.response.headers["x-request-id"].startswith("req_")

    anyio.run(main)


def test_a_raw_websocket_client_holds_a_spoken_session(
    voice: Voice, speech: dict[str, bytes]
) -> None:
    async def main() -> None:
        seen: list[dict[str, Any]] = []
        async with _connect(voice, "voice") as ws:
            assert ws.response.headers["x-request-id"].startswith("req_")
            await _until(ws, "session.created", seen)
            heard, done = await _spoken_turn(ws, speech["hello"], seen)
        assert "hello" in heard["transcript"]
        replies = [
            e["transcript"] for e in seen if e["type"] == "response.output_audio_transcript.done"
        ]
        assert replies and replies[0].startswith("sim: hello")
        assert any(e["type"] == "response.output_audio.delta" for e in seen)
        assert done["response"]["usage"]["input_token_details"]["audio_tokens"] > 0

    anyio.run(main)


def test_the_openai_sdk_realtime_client_holds_a_session(
    voice: Voice, speech: dict[str, bytes]
) -> None:
    async def main() -> None:
        client = AsyncOpenAI(base_url=voice.gateway.url + "/v1", api_key=voice.key)
        kinds: list[str] = []
        transcript = ""
        async with client.realtime.connect(model="voice") as conn:
            for start in range(0, len(speech["hello"]), FRAME * 5):
                chunk = speech["hello"][start : start + FRAME * 5]
                await conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
            await conn.input_audio_buffer.commit()
            await conn.response.create()
            with anyio.fail_after(30):
                async for event in conn:
                    kinds.append(event.type)
                    if event.type == "response.output_audio_transcript.done":
                        transcript = event.transcript
                    if event.type == "response.done":
                        break
        assert "conversation.item.input_audio_transcription.completed" in kinds
        assert transcript.startswith("sim: hello")

    anyio.run(main)


def test_a_turn_the_upstream_detects_is_answered_only_after_its_check(
    voice: Voice, speech: dict[str, bytes]
) -> None:
    httpx.delete(voice.sim.url + "/_sim/requests")

    async def main() -> None:
        seen: list[dict[str, Any]] = []
        async with _connect(voice, "voice") as ws:
            # No commit, no response.create: the upstream's voice detection ends the turn.
            for frame in _frames(speech["hello"] + bytes(FRAME * 40)):
                await ws.send(frame)
            heard = await _until(ws, "conversation.item.input_audio_transcription.completed", seen)
            await _until(ws, "response.done", seen)
        assert "hello" in heard["transcript"]
        kinds = [e["type"] for e in seen]
        assert kinds.index("input_audio_buffer.speech_stopped") < kinds.index("response.created")

    anyio.run(main)
    upstream = _sim_events(voice)
    update = next(e for e in upstream if e["type"] == "session.update")
    detection = update["session"]["audio"]["input"]["turn_detection"]
    assert detection["create_response"] is False  # the upstream would not answer on its own
    assert [e["type"] for e in upstream].count("response.create") == 1  # the gateway asked


def test_a_spoken_phone_number_is_redacted_for_the_client(
    voice: Voice, speech: dict[str, bytes]
) -> None:
    async def main() -> None:
        seen: list[dict[str, Any]] = []
        async with _connect(voice, "voice") as ws:
            heard, _ = await _spoken_turn(ws, speech["phone"], seen)
        everything = json.dumps(seen)
        assert "2125551234" not in everything
        assert heard["transcript"].startswith("call me at")
        assert "PHONE_NUMBER" in heard["transcript"]
        deltas = "".join(
            e["delta"] for e in seen if e["type"] == "response.output_audio_transcript.delta"
        )
        assert deltas.startswith("sim: call me at") and "PHONE_NUMBER" in deltas
        # The upstream heard the audio (only privacy mode prevents that) and echoed the number.
        assert any(e["type"] == "input_audio_buffer.append" for e in _sim_events(voice))

    anyio.run(main)


def test_function_call_arguments_are_redacted_as_they_stream(
    voice: Voice, speech: dict[str, bytes]
) -> None:
    tool = {"type": "function", "name": "call", "parameters": {"type": "object"}}
    update = {"type": "session.update", "session": {"type": "realtime", "tools": [tool]}}

    async def main() -> None:
        seen: list[dict[str, Any]] = []
        async with _connect(voice, "voice") as ws:
            await ws.send(json.dumps(update))
            await _say(ws, speech["phone"])
            done = await _until(ws, "response.done", seen)
        pieces = "".join(
            e["delta"] for e in seen if e["type"] == "response.function_call_arguments.delta"
        )
        final = next(e for e in seen if e["type"] == "response.function_call_arguments.done")
        assert "PHONE_NUMBER" in pieces and "PHONE_NUMBER" in final["arguments"]
        assert json.loads(final["arguments"])["text"].startswith("call me at")
        assert "PHONE_NUMBER" in done["response"]["output"][0]["arguments"]
        assert "2125551234" not in json.dumps(seen)

    anyio.run(main)


def test_privacy_mode_sends_the_upstream_only_filtered_text(
    voice: Voice, speech: dict[str, bytes]
) -> None:
    httpx.delete(voice.sim.url + "/_sim/requests")

    async def main() -> None:
        seen: list[dict[str, Any]] = []
        async with _connect(voice, "private") as ws:
            await _until(ws, "session.created", seen)
            heard, _ = await _spoken_turn(ws, speech["email"], seen)
        assert (
            heard["transcript"].startswith("my email is") and "EMAIL_ADDRESS" in heard["transcript"]
        )
        assert "john@example.com" not in json.dumps(seen)

    anyio.run(main)
    upstream = _sim_events(voice)
    assert {e["type"] for e in upstream} >= {"conversation.item.create", "response.create"}
    assert not [e for e in upstream if e["type"].startswith("input_audio_buffer")]
    assert "john" not in json.dumps(upstream)
    texts = [
        c["text"]
        for e in upstream
        if e["type"] == "conversation.item.create"
        for c in e["item"]["content"]
    ]
    assert texts and "EMAIL_ADDRESS" in texts[0]


def test_a_key_in_privacy_mode_keeps_audio_from_the_upstream_on_any_model(
    voice: Voice, speech: dict[str, bytes]
) -> None:
    httpx.delete(voice.sim.url + "/_sim/requests")

    async def main() -> None:
        seen: list[dict[str, Any]] = []
        async with _connect(voice, "voice", key=voice.private_key) as ws:  # not a private model
            heard, _ = await _spoken_turn(ws, speech["email"], seen)
        assert "EMAIL_ADDRESS" in heard["transcript"]

    anyio.run(main)
    upstream = _sim_events(voice)
    assert "conversation.item.create" in [e["type"] for e in upstream]
    assert not [e for e in upstream if e["type"].startswith("input_audio_buffer")]
    assert "john" not in json.dumps(upstream)


def test_the_client_sees_only_the_replies_to_its_own_session_updates(voice: Voice) -> None:
    """The gateway sends its own setup `session.update` (the moderation gate); the upstream's
    reply to it is not relayed."""
    update = {"type": "session.update", "session": {"type": "realtime", "instructions": "brief"}}

    async def main() -> None:
        seen: list[dict[str, Any]] = []
        async with _connect(voice, "voice") as ws:
            await _until(ws, "session.created", seen)
            await ws.send(json.dumps(update))
            updated = await _until(ws, "session.updated", seen)
            await ws.send(typed_turn("hi"))
            await ws.send(json.dumps({"type": "response.create"}))
            await _until(ws, "response.done", seen)
        assert updated["session"]["instructions"] == "brief"
        assert [e["type"] for e in seen].count("session.updated") == 1

    anyio.run(main)


def test_a_spoken_threat_is_refused_and_never_answered(
    voice: Voice, speech: dict[str, bytes]
) -> None:
    httpx.delete(voice.sim.url + "/_sim/requests")

    async def main() -> None:
        seen: list[dict[str, Any]] = []
        error = await _threat_then_good_morning(voice, "voice", speech["threat"], seen)
        assert error["error"]["code"] == "content_blocked"
        replies = [
            e["transcript"] for e in seen if e["type"] == "response.output_audio_transcript.done"
        ]
        assert replies == ["sim: good morning"]
        assert "kill" not in json.dumps([e for e in seen if e["type"] != "error"])

    anyio.run(main)
    upstream = [e["type"] for e in _sim_events(voice)]
    # The held response.create of the refused turn never went up; the turn was deleted.
    assert upstream.count("response.create") == 1
    assert "conversation.item.delete" in upstream


def test_privacy_mode_refuses_a_spoken_threat_before_the_upstream_sees_it(
    voice: Voice, speech: dict[str, bytes]
) -> None:
    httpx.delete(voice.sim.url + "/_sim/requests")

    async def main() -> None:
        error = await _threat_then_good_morning(voice, "private", speech["threat"], [])
        assert error["error"]["code"] == "content_blocked"

    anyio.run(main)
    upstream = _sim_events(voice)
    assert "kill" not in json.dumps(upstream)
    # One item and one response: the response.create said right after the threat was dropped.
    assert [e["type"] for e in upstream].count("conversation.item.create") == 1
    assert [e["type"] for e in upstream].count("response.create") == 1


def test_bad_frames_get_error_events_and_the_session_goes_on(voice: Voice) -> None:
    async def main() -> None:
        seen: list[dict[str, Any]] = []
        async with _connect(voice, "voice") as ws:
            await _until(ws, "session.created", seen)
            await ws.send("this is not json")
            assert (await _until(ws, "error", seen))["error"]["code"] == "invalid_json"
            await ws.send(json.dumps({"type": "no.such.event"}))
            assert (await _until(ws, "error", seen))["error"]["code"] == "unknown_event"
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": "A" * 300_000}))
            assert (await _until(ws, "error", seen))["error"]["code"] == "payload_too_large"
            await ws.send(b"\x00\x01")
            assert (await _until(ws, "error", seen))["error"]["type"] == "invalid_request_error"
            await ws.send(typed_turn("i will kill you"))
            assert (await _until(ws, "error", seen))["error"]["code"] == "content_blocked"
            await ws.send(typed_turn("good morning"))
            await ws.send(
                json.dumps({"type": "response.create", "response": {"output_modalities": ["text"]}})
            )
            await _until(ws, "response.done", seen)
        texts = [e["text"] for e in seen if e["type"] == "response.output_text.done"]
        assert texts == ["sim: good morning"]
        assert "kill" not in json.dumps(_sim_events(voice))

    anyio.run(main)


def test_audio_streamed_past_its_limit_ends_the_session_without_any_response(
    voice: Voice,
) -> None:
    """The limit is 1 s of audio a minute on `metered`: audio is reserved ahead as it streams,
    so a caller who never asks for a response is stopped there, and no more audio goes up."""
    httpx.delete(voice.sim.url + "/_sim/requests")

    async def main() -> None:
        seen: list[dict[str, Any]] = []
        async with _connect(voice, "metered") as ws:
            await _until(ws, "session.created", seen)
            with contextlib.suppress(websockets.ConnectionClosed):  # closed mid-stream
                for frame in _frames(bytes(FRAME * 150)):  # 3 s of silence, in 100 ms appends
                    await ws.send(frame)
            await _until(ws, "error", seen)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        errors = [e for e in seen if e["type"] == "error"]
        assert [e["error"]["code"] for e in errors] == ["rate_limit_exceeded"]
        assert not [e for e in seen if e["type"].startswith("response.")]
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008

    anyio.run(main)
    upstream = _sim_events(voice)
    appended = [e["audio_bytes"] for e in upstream if e["type"] == "input_audio_buffer.append"]
    relayed = sum(appended) / (24_000 * 2)
    # Nothing past the limit went up. (Frames the limit allowed but still queued for the upstream
    # when the session closed may be dropped with it, so there is no lower bound.)
    assert relayed <= 1.0


def test_the_model_speaking_past_the_audio_limit_is_cut_off(voice: Voice) -> None:
    """Output audio counts on `audio_seconds` limits too: the reply (a tone a word, about 2 s)
    stops at the key's 1 s, with an error event and 1008."""
    words = "one two three four five six seven eight nine ten"

    async def main() -> None:
        seen: list[dict[str, Any]] = []
        async with _connect(voice, "metered", key=voice.speaker_key) as ws:
            await ws.send(typed_turn(words))
            await ws.send(json.dumps({"type": "response.create"}))
            error = await _until(ws, "error", seen)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        assert error["error"]["code"] == "rate_limit_exceeded"
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        audio = [e["delta"] for e in seen if e["type"] == "response.output_audio.delta"]
        played = sum(len(base64.b64decode(a)) for a in audio) / (24_000 * 2)
        assert audio and played <= 1.0  # relayed up to the limit, nothing past it
        assert "response.done" not in [e["type"] for e in seen]

    anyio.run(main)


def test_an_upstream_drop_gets_an_error_event_and_a_close_code(voice: Voice) -> None:
    async def main() -> None:
        seen: list[dict[str, Any]] = []
        async with _connect(voice, "voice") as ws:
            await _until(ws, "session.created", seen)
            async with httpx.AsyncClient() as http:
                await http.post(voice.sim.url + "/_sim/realtime/drop")
            error = await _until(ws, "error", seen)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        assert error["error"]["code"] == "upstream_closed"
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011

    anyio.run(main)


def test_a_transcription_comes_back_redacted(voice: Voice, speech: dict[str, bytes]) -> None:
    client = OpenAI(base_url=voice.gateway.url + "/v1", api_key=voice.key)
    result = client.audio.transcriptions.create(
        model="voice", file=("phone.wav", speech["phone.wav"], "audio/wav")
    )
    assert result.text.startswith("call me at") and "PHONE_NUMBER" in result.text
    with pytest.raises(BadRequestError) as refused:
        client.audio.transcriptions.create(model="voice", file=("x.wav", b"not audio", "audio/wav"))
    assert refused.value.status_code == 400


def test_speech_is_generated_from_filtered_text(voice: Voice) -> None:
    client = OpenAI(base_url=voice.gateway.url + "/v1", api_key=voice.key)
    audio = client.audio.speech.create(
        model="voice", voice="alloy", input="call me at 2125551234", response_format="wav"
    )
    pcm, rate = read_wav(audio.content)
    assert rate == 24_000 and len(pcm) > rate  # over half a second of audio
    sent = [e for e in httpx.get(voice.sim.url + "/_sim/requests").json() if "input" in e]
    assert sent and "2125551234" not in sent[-1]["input"] and "PHONE_NUMBER" in sent[-1]["input"]
    with pytest.raises(BadRequestError) as refused:
        client.audio.speech.create(model="voice", voice="alloy", input="i will kill you")
    assert refused.value.code == "content_blocked"


def test_sessions_and_responses_are_spans_in_one_call_chain(voice: Voice) -> None:
    """Runs last: stops the gateway so every span is written, then reads the store."""
    voice.gateway.stop()
    db = sqlite3.connect(voice.config.parent / "gw.db")
    db.row_factory = sqlite3.Row
    rows = db.execute("SELECT * FROM spans WHERE modality = 'voice' ORDER BY started_at").fetchall()
    sessions = [r for r in rows if r["route"] == "/v1/realtime"]
    responses = [r for r in rows if r["route"] == "/v1/realtime#response"]
    assert len(sessions) >= 7 and len(responses) >= 5
    audio = [r for r in rows if r["route"].startswith("/v1/audio/")]
    assert len(audio) >= 2 and all(r["audio_seconds"] > 0 for r in audio if r["status"] == "ok")
    by_span = {r["span_id"]: r for r in sessions}
    for response in responses:
        parent = by_span[response["parent_span_id"]]
        assert response["trace_id"] == parent["trace_id"]
        assert response["request_id"].startswith(parent["request_id"] + ".r")
        if response["status"] != "ok":
            continue  # cut off before its response.done: no usage
        assert response["input_tokens"] > 0 and response["output_tokens"] > 0
        assert json.loads(response["extra"])["output_audio_tokens"] >= 0
    cut = [r for r in responses if r["error_code"] == "rate_limit_exceeded"]
    assert len(cut) == 1 and 0 < json.loads(cut[0]["extra"])["output_audio_seconds"] <= 1.0
    spoken = [r for r in responses if r["audio_seconds"] > 1.0]
    assert spoken and all(r["cost_usd"] and r["cost_usd"] > 0 for r in spoken)
    # (privacy mode meters the caller's audio too, but its upstream heard none)
    assert any(json.loads(r["extra"])["input_audio_tokens"] > 0 for r in spoken)
    # Output audio is counted from the audio deltas, beside the input, on the response's span.
    both = [(r, json.loads(r["extra"])) for r in spoken if "output_audio_seconds" in r["extra"]]
    assert both and all(x["output_audio_seconds"] > 0 for _, x in both)
    for row, extra in both:
        total = extra["input_audio_seconds"] + extra["output_audio_seconds"]
        assert abs(row["audio_seconds"] - total) < 0.01
    failover = [json.loads(r["attempts_json"]) for r in sessions if r["status"] == "ok"]
    assert any([a["status"] for a in attempts] == ["error", "ok"] for attempts in failover)
    dropped = [r for r in sessions if r["error_code"] == "upstream_closed"]
    assert len(dropped) == 1 and dropped[0]["latency_ms"] > 0
    over = [r for r in sessions if r["error_code"] == "rate_limit_exceeded"]
    assert len(over) == 2  # streamed past the limit, and spoken past it
    redactions = db.execute("SELECT * FROM redaction_events").fetchall()
    assert {r["entity_type"] for r in redactions} >= {"PHONE_NUMBER", "EMAIL_ADDRESS"}
    assert "2125551234" not in json.dumps([dict(r) for r in redactions])
    # Findings in streamed voice transcripts and function-call arguments keep their scope.
    realtime = {r["request_id"] for r in sessions + responses}
    streamed = {
        r["scope"]
        for r in redactions
        if r["entity_type"] == "PHONE_NUMBER" and r["request_id"] in realtime
    }
    assert streamed == {"transcript", "tool_input"}  # never "message"
