"""The sim's Realtime face: a session over WebSocket that hears with pocketsphinx and answers.

Audio appended to the input buffer is recognized for real when it is committed; the reply is
`"sim: "` + what the caller said (or typed), streamed as transcript or text deltas, with generated
audio (a tone per word) as the audio deltas, and `response.done` carries usage split into text and
audio tokens as the real API reports it (input audio: 10 tokens a second, output audio: 20).

With `turn_detection: {type: server_vad}` the sim ends a turn after a silence (energy detection),
commits it, and answers unless `create_response` is false. GA event names by default; a client
that sends `OpenAI-Beta: realtime=v1` gets the beta names.
Every client event is recorded for tests, with audio replaced by its size.
"""

from __future__ import annotations

import base64
import binascii
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import orjson

from adapters.wire.audio import (
    PCM24K,
    audio_format,
    b64encode,
    for_recognizer,
    seconds,
    to_pcm16,
)
from adapters.wire.speech import Recognizer, tone_speech

VAD_RMS = 300.0  # 16-bit sample RMS above which a chunk counts as speech
Emit = Callable[[dict[str, Any]], Awaitable[None]]
Record = Callable[[dict[str, Any]], None]

_BETA_NAMES = {
    "conversation.item.added": "conversation.item.created",
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
}
_GA_ONLY = frozenset({"conversation.item.done"})


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4)) if text else 0


class SimRealtimeSession:
    """One realtime session's state and behaviour, independent of the transport."""

    def __init__(
        self, model: str, emit: Emit, record: Record, recognizer: Recognizer, beta: bool
    ) -> None:
        self._emit_raw = emit
        self._record = record
        self._recognizer = recognizer
        self._beta = beta
        self.session: dict[str, Any] = {
            "type": "realtime",
            "object": "realtime.session",
            "id": _id("sess"),
            "model": model,
            "output_modalities": ["audio"],
            "instructions": "",
            "tools": [],
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "transcription": None,
                    "turn_detection": None,
                },
                "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy"},
            },
        }
        self._buffer = bytearray()
        self._speaking = False
        self._quiet = 0.0
        self._last_user_text = ""
        self._last_item: str | None = None
        self._input_audio_seconds = 0.0
        self._input_text_tokens = 0

    async def _emit(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if self._beta:
            if kind in _GA_ONLY:
                return
            event["type"] = _BETA_NAMES.get(kind, kind)
        event.setdefault("event_id", _id("event"))
        await self._emit_raw(event)

    async def _error(self, message: str, code: str, event_id: str | None = None) -> None:
        error = {"type": "invalid_request_error", "code": code, "message": message}
        await self._emit({"type": "error", "error": {**error, "param": None, "event_id": event_id}})

    async def open(self) -> None:
        await self._emit({"type": "session.created", "session": self.session})

    async def receive(self, frame: str | bytes) -> None:
        """Act on one client frame."""
        try:
            event = orjson.loads(frame)
        except orjson.JSONDecodeError:
            await self._error("The frame is not valid JSON.", "invalid_json")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            await self._error("An event is a JSON object with a type.", "invalid_event")
            return
        await self._handle(event)

    async def _handle(self, event: dict[str, Any]) -> None:
        kind, event_id = event["type"], event.get("event_id")
        audio = event.get("audio")
        if kind == "input_audio_buffer.append" and isinstance(audio, str):
            self._record({"type": kind, "audio_bytes": len(audio) * 3 // 4})
        else:
            self._record(event)
        match kind:
            case "session.update":
                await self._update(event)
            case "input_audio_buffer.append":
                await self._append(event)
            case "input_audio_buffer.clear":
                self._buffer.clear()
                await self._emit({"type": "input_audio_buffer.cleared"})
            case "input_audio_buffer.commit":
                await self._commit(event_id)
            case "conversation.item.create":
                await self._create_item(event)
            case "conversation.item.delete":
                await self._emit(
                    {"type": "conversation.item.deleted", "item_id": event.get("item_id")}
                )
            case "response.create":
                await self._respond(event)
            case "response.cancel":
                pass  # replies are produced whole; nothing is left to cancel
            case _:
                await self._error(f"Unknown event type '{kind}'.", "unknown_event", event_id)

    async def _update(self, event: dict[str, Any]) -> None:
        session = event.get("session")
        if not isinstance(session, dict):
            await self._error("session.update needs a session object.", "invalid_event")
            return
        for key, value in session.items():
            if key == "audio" and isinstance(value, dict):
                for side in ("input", "output"):
                    if isinstance(value.get(side), dict):
                        self.session["audio"][side].update(value[side])
            elif key == "input_audio_format":
                self.session["audio"]["input"]["format"] = value
            elif key == "modalities":
                self.session["output_modalities"] = value
            else:
                self.session[key] = value
        await self._emit({"type": "session.updated", "session": self.session})

    def _input_format(self) -> Any:
        return audio_format(self.session["audio"]["input"]["format"]) or PCM24K

    async def _append(self, event: dict[str, Any]) -> None:
        try:
            chunk = base64.b64decode(event.get("audio") or "", validate=True)
        except (binascii.Error, ValueError, TypeError):
            await self._error("audio is not valid base64.", "invalid_audio", event.get("event_id"))
            return
        self._buffer += chunk
        detection = self.session["audio"]["input"].get("turn_detection")
        if isinstance(detection, dict) and detection.get("type") == "server_vad":
            await self._detect(chunk, detection)

    async def _detect(self, chunk: bytes, detection: dict[str, Any]) -> None:
        """Energy voice detection: a turn ends after `silence_duration_ms` of quiet."""
        fmt = self._input_format()
        samples = to_pcm16(chunk, fmt).astype(np.float64)
        loud = samples.size > 0 and float(np.sqrt(np.mean(samples**2))) > VAD_RMS
        if loud:
            if not self._speaking:
                await self._emit({"type": "input_audio_buffer.speech_started"})
            self._speaking, self._quiet = True, 0.0
            return
        if not self._speaking:
            return
        self._quiet += seconds(len(chunk), fmt)
        if self._quiet * 1000 < float(detection.get("silence_duration_ms") or 500):
            return
        self._speaking, self._quiet = False, 0.0
        await self._emit({"type": "input_audio_buffer.speech_stopped"})
        await self._commit(None)
        if detection.get("create_response", True):
            await self._respond({})

    async def _commit(self, event_id: object) -> None:
        if not self._buffer:
            await self._error("The input audio buffer is empty.", "input_audio_buffer_commit_empty")
            return
        fmt = self._input_format()
        raw, self._buffer = bytes(self._buffer), bytearray()
        self._input_audio_seconds += seconds(len(raw), fmt)
        item_id = _id("item")
        previous, self._last_item = self._last_item, item_id
        await self._emit(
            {
                "type": "input_audio_buffer.committed",
                "previous_item_id": previous,
                "item_id": item_id,
            }
        )
        item: dict[str, Any] = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        await self._emit(
            {"type": "conversation.item.added", "previous_item_id": previous, "item": item}
        )
        transcript = await self._recognizer.recognize(for_recognizer(raw, fmt))
        self._last_user_text = transcript
        where = {"item_id": item_id, "content_index": 0}
        if transcript:
            await self._emit(
                {
                    "type": "conversation.item.input_audio_transcription.delta",
                    **where,
                    "delta": transcript,
                }
            )
        await self._emit(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                **where,
                "transcript": transcript,
            }
        )
        item["content"][0]["transcript"] = transcript
        await self._emit({"type": "conversation.item.done", "item": item})

    async def _create_item(self, event: dict[str, Any]) -> None:
        item = event.get("item")
        if not isinstance(item, dict):
            await self._error("conversation.item.create needs an item.", "invalid_event")
            return
        texts = [
            str(c.get("text", ""))
            for c in item.get("content") or []
            if isinstance(c, dict) and c.get("type") in ("input_text", "text")
        ]
        if item.get("role") == "user" and texts:
            self._last_user_text = " ".join(texts)
            self._input_text_tokens += _tokens(self._last_user_text)
        item = {**item, "id": item.get("id") or _id("item"), "status": "completed"}
        previous, self._last_item = self._last_item, item["id"]
        await self._emit(
            {"type": "conversation.item.added", "previous_item_id": previous, "item": item}
        )
        await self._emit({"type": "conversation.item.done", "item": item})

    async def _respond(self, event: dict[str, Any]) -> None:
        options = event.get("response") if isinstance(event.get("response"), dict) else {}
        assert isinstance(options, dict)
        modalities = options.get("output_modalities") or options.get("modalities")
        audio = "audio" in (modalities or self.session.get("output_modalities") or ["audio"])
        text = f"sim: {self._last_user_text}".strip()
        response_id, item_id = _id("resp"), _id("item")
        response: dict[str, Any] = {
            "id": response_id,
            "object": "realtime.response",
            "status": "in_progress",
            "output": [],
            "usage": None,
        }
        await self._emit({"type": "response.created", "response": dict(response)})
        tool = self._tool_called()
        if tool is not None:
            await self._call_tool(tool, response, item_id)
            return
        item: dict[str, Any] = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        at = {"response_id": response_id, "item_id": item_id, "output_index": 0}
        await self._emit({"type": "response.output_item.added", **at, "item": dict(item)})
        await self._emit({"type": "conversation.item.added", "item": dict(item)})
        part = {"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""}
        where = {**at, "content_index": 0}
        await self._emit({"type": "response.content_part.added", **where, "part": part})
        out_seconds = await self._stream_reply(text, audio, where)
        if audio:
            await self._emit({"type": "response.output_audio.done", **where})
            await self._emit(
                {"type": "response.output_audio_transcript.done", **where, "transcript": text}
            )
            part = {"type": "audio", "transcript": text}
            content = {"type": "output_audio", "transcript": text}
        else:
            await self._emit({"type": "response.output_text.done", **where, "text": text})
            part = {"type": "text", "text": text}
            content = {"type": "output_text", "text": text}
        await self._emit({"type": "response.content_part.done", **where, "part": part})
        item = {**item, "status": "completed", "content": [content]}
        await self._emit({"type": "response.output_item.done", **at, "item": item})
        await self._emit({"type": "conversation.item.done", "item": item})
        response.update(status="completed", output=[item], usage=self._usage(text, out_seconds))
        await self._emit({"type": "response.done", "response": response})

    def _tool_called(self) -> str | None:
        """The first function tool whose name the caller said (the sim's way to use tools)."""
        words = self._last_user_text.lower().split()
        for tool in self.session.get("tools") or []:
            name = tool.get("name") if isinstance(tool, dict) else None
            if isinstance(name, str) and name.lower() in words:
                return name
        return None

    async def _call_tool(self, name: str, response: dict[str, Any], item_id: str) -> None:
        arguments = orjson.dumps({"text": self._last_user_text}).decode()
        call_id = _id("call")
        item: dict[str, Any] = {
            "id": item_id,
            "object": "realtime.item",
            "type": "function_call",
            "status": "in_progress",
            "call_id": call_id,
            "name": name,
            "arguments": "",
        }
        at = {"response_id": response["id"], "item_id": item_id, "output_index": 0}
        await self._emit({"type": "response.output_item.added", **at, "item": dict(item)})
        for start in range(0, len(arguments), 8):
            piece = arguments[start : start + 8]
            await self._emit(
                {
                    "type": "response.function_call_arguments.delta",
                    **at,
                    "call_id": call_id,
                    "delta": piece,
                }
            )
        done = {"type": "response.function_call_arguments.done", **at, "call_id": call_id}
        await self._emit({**done, "arguments": arguments})
        item.update(status="completed", arguments=arguments)
        await self._emit({"type": "response.output_item.done", **at, "item": item})
        response.update(status="completed", output=[item], usage=self._usage(arguments, 0.0))
        await self._emit({"type": "response.done", "response": response})

    async def _stream_reply(self, text: str, audio: bool, where: dict[str, Any]) -> float:
        fmt = PCM24K
        total = 0.0
        for n, word in enumerate(text.split(" ")):
            delta = word if n == 0 else " " + word
            if not audio:
                await self._emit({"type": "response.output_text.delta", **where, "delta": delta})
                continue
            await self._emit(
                {"type": "response.output_audio_transcript.delta", **where, "delta": delta}
            )
            pcm = tone_speech(word, fmt.rate)
            total += seconds(len(pcm), fmt)
            await self._emit(
                {"type": "response.output_audio.delta", **where, "delta": b64encode(pcm)}
            )
        return total

    def _usage(self, text: str, out_seconds: float) -> dict[str, Any]:
        audio_in = math.ceil(self._input_audio_seconds * 10)
        text_in = self._input_text_tokens + _tokens(str(self.session.get("instructions") or ""))
        audio_out = math.ceil(out_seconds * 20)
        text_out = _tokens(text)
        self._input_audio_seconds, self._input_text_tokens = 0.0, 0
        return {
            "total_tokens": audio_in + text_in + audio_out + text_out,
            "input_tokens": audio_in + text_in,
            "output_tokens": audio_out + text_out,
            "input_token_details": {
                "text_tokens": text_in,
                "audio_tokens": audio_in,
                "cached_tokens": 0,
                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0},
            },
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        }
