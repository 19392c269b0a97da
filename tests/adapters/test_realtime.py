"""The realtime pieces in-process: audio formats, event sniffing, text slots, the sim's session."""

from __future__ import annotations

import base64
import json
from typing import Any

import anyio
import numpy as np
import pytest

from adapters.egress.sim_realtime import SimRealtimeSession
from adapters.ingress.realtime_session import frame_type
from adapters.ingress.realtime_text import slots_envelope, text_slots, write_back
from adapters.wire.audio import (
    PCM24K,
    AudioFormat,
    audio_format,
    b64_size,
    b64_size_at,
    from_pcm16,
    resample,
    seconds,
    to_pcm16,
)
from adapters.wire.speech import Recognizer, tone_speech, written_form
from core.envelope import AudioPart, ToolCallPart


@pytest.mark.parametrize(
    ("name", "per_second"),
    [
        ("pcm16", 48_000),
        ({"type": "audio/pcm", "rate": 24000}, 48_000),
        ("g711_ulaw", 8000),
        ({"type": "audio/pcma"}, 8000),
    ],
)
def test_audio_seconds_follow_from_bytes_by_format(name: object, per_second: int) -> None:
    fmt = audio_format(name)
    assert fmt is not None
    assert seconds(per_second * 3, fmt) == pytest.approx(3.0)


def test_base64_size_is_counted_without_decoding() -> None:
    for n in range(10):
        assert b64_size(base64.b64encode(bytes(n)).decode()) == n


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 960, 4801])
def test_base64_size_inside_a_frame_matches_the_decoded_size(size: int) -> None:
    audio = base64.b64encode(bytes(size))
    frame = '{"type":"response.output_audio.delta","delta":"' + audio.decode() + '","x":1}'
    start = frame.index('"delta":"') + 9
    assert b64_size_at(frame, start, frame.index('"', start)) == size


@pytest.mark.parametrize("encoding", ["ulaw", "alaw"])
def test_g711_round_trips_within_its_quantization(encoding: str) -> None:
    fmt = AudioFormat(encoding, 8000)
    samples = (np.sin(np.arange(800) / 10) * 12000).astype(np.int16)
    back = to_pcm16(from_pcm16(samples, fmt), fmt)
    assert np.max(np.abs(back.astype(int) - samples.astype(int))) < 600


def test_resampling_keeps_the_duration() -> None:
    samples = np.zeros(16_000, dtype=np.int16)
    assert resample(samples, 16_000, 24_000).size == 24_000


def test_recognized_digits_and_addresses_are_written_as_a_service_writes_them() -> None:
    assert written_form("call two one two five five five") == "call 212555"
    assert written_form("write to jo at example dot org") == "write to jo@example.org"
    assert written_form("one moment") == "one moment"


def test_audio_deltas_are_recognized_from_the_first_bytes() -> None:
    frame = b'{"type":"response.output_audio.delta","delta":"AAAA"}'
    assert frame_type(frame) == b"response.output_audio.delta"
    assert frame_type(b'{"delta":"' + b"A" * 200 + b'","type":"x"}') is None


def test_text_slots_reach_nested_texts_and_write_back() -> None:
    event: dict[str, Any] = {
        "type": "response.done",
        "response": {
            "output": [
                {"content": [{"type": "output_audio", "transcript": "call 2125551234"}]},
                {"type": "function_call", "arguments": '{"to": "x"}'},
            ]
        },
    }
    slots = text_slots(event)
    env = slots_envelope("req", "m", "assistant", slots)
    assert isinstance(env.messages[0].parts[0], AudioPart)
    assert isinstance(env.messages[1].parts[0], ToolCallPart)
    env.visit_text(lambda scope, text: text.replace("2125551234", "<PHONE>"))
    write_back(env, slots)
    assert event["response"]["output"][0]["content"][0]["transcript"] == "call <PHONE>"


def test_the_sim_session_answers_text_with_usage_and_refuses_unknown_events() -> None:
    events: list[dict[str, Any]] = []
    recorded: list[dict[str, Any]] = []

    async def emit(event: dict[str, Any]) -> None:
        events.append(event)

    async def main() -> None:
        session = SimRealtimeSession("m", emit, recorded.append, Recognizer(), beta=True)
        await session.open()
        item = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "hi"}],
        }
        await session.receive(json.dumps({"type": "conversation.item.create", "item": item}))
        await session.receive(json.dumps({"type": "response.create"}))
        await session.receive("{not json")
        await session.receive(json.dumps({"type": "bogus"}))

    anyio.run(main)
    kinds = [e["type"] for e in events]
    assert "response.audio_transcript.delta" in kinds  # beta names for a beta client
    done = next(e for e in events if e["type"] == "response.done")
    assert done["response"]["usage"]["output_token_details"]["audio_tokens"] > 0
    errors = [e["error"]["code"] for e in events if e["type"] == "error"]
    assert errors == ["invalid_json", "unknown_event"]
    assert recorded[0]["type"] == "conversation.item.create"


def test_generated_speech_lasts_a_moment_per_word() -> None:
    pcm = tone_speech("three short words", PCM24K.rate)
    assert 0.4 < seconds(len(pcm), PCM24K) < 0.7
