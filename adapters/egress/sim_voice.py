"""The in-process sim's voice face (`type: sim` providers): the same realtime session, transcription
and speech as `agentgw sim` serves over the network, without a network.

A realtime "connection" is a `SimRealtimeSession` whose server events go into a memory stream the
gateway reads, so the default configuration (`agentgw serve` with no config) serves
`/v1/realtime` too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import anyio
import orjson
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from adapters.egress.sim_options import FaultInjector, SimOptions
from adapters.egress.sim_realtime import SimRealtimeSession
from adapters.wire.audio import AudioFormat, for_recognizer, read_wav, write_wav
from adapters.wire.speech import Recognizer, tone_speech
from core.envelope import Usage
from core.errors import UpstreamError, UpstreamRejected
from core.realtime import Speech, Transcription, UpstreamClosed

SPEECH_RATE = 24_000


class SimRealtimeConnection:
    """One in-process realtime session."""

    def __init__(self, model: str, recognizer: Recognizer, beta: bool) -> None:
        pair = anyio.create_memory_object_stream[str](math.inf)
        self._send: MemoryObjectSendStream[str] = pair[0]
        self._receive: MemoryObjectReceiveStream[str] = pair[1]
        self._session = SimRealtimeSession(model, self._emit, lambda _: None, recognizer, beta)
        self._closed = False

    async def _emit(self, event: dict[str, Any]) -> None:
        await self._send.send(orjson.dumps(event).decode())

    async def open(self) -> None:
        await self._session.open()

    async def send(self, frame: str) -> None:
        if self._closed:
            raise UpstreamClosed("The sim session is closed.")
        await self._session.receive(frame)

    async def receive(self) -> str:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError) as exc:
            raise UpstreamClosed("The sim session ended.") from exc

    async def aclose(self) -> None:
        self._closed = True
        await self._send.aclose()
        await self._receive.aclose()


class SimVoice:
    """`core.realtime.VoiceProvider` for the in-process sim."""

    def __init__(self, options: SimOptions) -> None:
        self._faults = FaultInjector(options)
        self._status = options.fail_status
        self._recognizer = Recognizer()

    def _fault(self) -> None:
        if self._faults.should_fail():
            raise UpstreamError(f"sim: injected failure ({self._status})")

    async def connect(self, model: str, headers: Mapping[str, str]) -> SimRealtimeConnection:
        self._fault()
        beta = headers.get("openai-beta", "").startswith("realtime")
        connection = SimRealtimeConnection(model, self._recognizer, beta)
        await connection.open()
        return connection

    async def transcribe(
        self, model: str, audio: bytes, filename: str, fields: Mapping[str, str]
    ) -> Transcription:
        self._fault()
        try:
            pcm, rate = read_wav(audio)
        except ValueError as exc:
            raise UpstreamRejected(f"sim: {exc}", upstream_status=400, param="file") from exc
        text = await self._recognizer.recognize(for_recognizer(pcm, AudioFormat("pcm16", rate)))
        duration = len(pcm) / (2 * rate)
        usage = {"type": "duration", "seconds": math.ceil(duration)}
        return Transcription(text, Usage(audio_seconds=duration), {"usage": usage})

    async def speech(self, model: str, body: Mapping[str, Any]) -> Speech:
        self._fault()
        text, fmt = body.get("input"), body.get("response_format") or "wav"
        if fmt not in ("wav", "pcm"):
            raise UpstreamRejected("sim: response_format must be wav or pcm.", upstream_status=400)
        pcm = tone_speech(str(text or ""), SPEECH_RATE)
        usage = Usage(audio_seconds=len(pcm) / (2 * SPEECH_RATE))
        if fmt == "pcm":
            return Speech(pcm, "audio/pcm", usage)
        return Speech(write_wav(pcm, SPEECH_RATE), "audio/wav", usage)
