"""One governed realtime session: the events between a client and its upstream, filtered,
metered and traced.

Audio deltas pass untouched, recognized from the first bytes of the frame without parsing it.
Every other event is parsed: text the caller sends (`conversation.item.create`) passes the request
filters, text the model sends passes the response filters (deltas through a `Lane`), and the
caller's transcript passes the request filters, because it is the caller's words.

The moderation gate (a moderation filter is configured): automatic responses are turned off
upstream, a `response.create` waits until every committed turn's transcript was checked, and a
turn that fails gets an `error` event and is deleted upstream instead of answered. Turns committed
by the upstream's voice detection are answered by the gateway once they pass.

Privacy mode (`privacy_mode: true` on the virtual model): appended audio stays in the gateway; on
commit it is transcribed here (pocketsphinx), filtered, and sent upstream as a text item. The
upstream never receives audio.

Metering: input audio seconds are counted from the bytes appended, output audio seconds from
the length of each audio delta's base64 (by the session's formats, without decoding); audio past
what the session reserved is reserved before the frame is relayed, and each `response.done` goes
to the session's `SessionMeter` (`realtime_meter`).

The upstream's reply to the gateway's own `session.update` (the gate's setup) is not relayed: the
client sees `session.updated` only for its own updates.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from anyio.abc import TaskGroup

from adapters.ingress.realtime_meter import SessionMeter, response_usage, token_split
from adapters.ingress.realtime_text import (
    Lane,
    delta_scope,
    slots_envelope,
    text_slots,
    write_back,
)
from adapters.wire.audio import (
    PCM24K,
    AudioFormat,
    audio_format,
    b64_size,
    b64_size_at,
    for_recognizer,
    seconds,
)
from core.envelope import Usage
from core.errors import GatewayError
from core.pipeline import Call, Pipeline
from core.quota import Reservation
from core.realtime import RealtimeUpstream
from core.routing import BoundTarget

logger = logging.getLogger("agentgw.ingress.realtime")

SendText = Callable[[str], Awaitable[None]]
Transcribe = Callable[[bytes], Awaitable[str]]

CLIENT_EVENTS = frozenset(
    {
        "session.update",
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "input_audio_buffer.clear",
        "output_audio_buffer.clear",
        "conversation.item.create",
        "conversation.item.retrieve",
        "conversation.item.truncate",
        "conversation.item.delete",
        "response.create",
        "response.cancel",
        "transcription_session.update",
    }
)
_AUDIO_DELTAS = (b"response.output_audio.delta", b"response.audio.delta")
# Delta events whose `delta` is text, and the key of the text in their `.done` event.
_TEXT_DELTAS = {
    "conversation.item.input_audio_transcription.delta": "transcript",
    "response.output_text.delta": "text",
    "response.text.delta": "text",
    "response.output_audio_transcript.delta": "transcript",
    "response.audio_transcript.delta": "transcript",
    "response.function_call_arguments.delta": "arguments",
}
_TEXT_DONES = {
    "response.output_text.done",
    "response.text.done",
    "response.output_audio_transcript.done",
    "response.audio_transcript.done",
    "response.function_call_arguments.done",
}
_TRANSCRIPT_DONE = "conversation.item.input_audio_transcription.completed"
_TYPE = re.compile(rb'"type"\s*:\s*"([a-z_.]+)"')
_DELTA = re.compile(r'"delta"\s*:\s*"')
_RESPONSE_ID = re.compile(r'"response_id"\s*:\s*"([^"]+)"')
_GATE_EVENT = "event_agw_gate"


def frame_type(frame: bytes) -> bytes | None:
    """The event type if it appears in the first bytes of the frame (servers send it first)."""
    match = _TYPE.search(frame, 0, 96)
    return match.group(1) if match else None


def error_event(error: GatewayError, event_id: object = None) -> dict[str, Any]:
    """A Realtime `error` event for `error`."""
    code = error.event_code if isinstance(error, ClientEventError) else error.code
    body = {"type": error.type, "code": code, "message": error.message}
    return {
        "type": "error",
        "event_id": f"event_agw_{uuid.uuid4().hex[:16]}",
        "error": {**body, "param": error.param, "event_id": event_id},
    }


class ClientEventError(GatewayError):
    """A client event the gateway cannot act on; `event_code` says why (the session goes on)."""

    status_code = 400
    code = "invalid_event"
    type = "invalid_request_error"

    def __init__(self, message: str, event_code: str) -> None:
        super().__init__(message)
        self.event_code = event_code


@dataclass(slots=True)
class _Response:
    call: Call
    lanes: dict[tuple[str, ...], Lane] = field(default_factory=dict)
    output_seconds: float = 0.0  # counted from its audio deltas


class RealtimeSession:
    """The event logic of one session; `core.pipeline` does the governance underneath."""

    def __init__(
        self,
        *,
        pipeline: Pipeline,
        call: Call,
        target: BoundTarget,
        upstream: RealtimeUpstream,
        to_client: SendText,
        privacy: bool,
        transcribe: Transcribe | None,
        transcription_model: str,
        beta: bool,
    ) -> None:
        self._pipeline = pipeline
        self._call = call
        self._upstream = upstream
        self._to_client = to_client
        self._privacy = privacy
        self._transcribe = transcribe
        self._transcription_model = transcription_model
        self._beta = beta
        names = pipeline.filter_names
        self._filtering = bool(names)
        self.gated = "moderation" in names
        self._format: AudioFormat = PCM24K
        self._out_format: AudioFormat = PCM24K
        self._audio = bytearray()  # privacy mode: the caller's audio, kept here
        self.meter = SessionMeter(pipeline, call, target, None)
        self._responses: dict[str, _Response] = {}
        self._latest: _Response | None = None  # where audio deltas without a response id count
        self._gate_replies = 0  # upstream replies to the gateway's own session.update, to swallow
        self._turn_lanes: dict[str, Lane] = {}
        self._unchecked: set[str] = set()  # committed turns whose transcript is not checked yet
        self._held: list[str] = []  # response.create frames waiting for those checks
        self._client_commits = 0
        self._auto = True
        self._refused_private_turn = False
        self._tg: TaskGroup | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, tg: TaskGroup, reservation: Reservation) -> None:
        """Take over the session's first reservation; set the upstream up for the gate."""
        self._tg = tg
        self.meter.take(reservation)
        if self.gated or self._privacy:
            self._gate_replies += 1
            await self._upstream.send(orjson.dumps(self._gate_update()).decode())

    def _gate_update(self) -> dict[str, Any]:
        transcription = None if self._privacy else {"model": self._transcription_model}
        detection = None if self._privacy else {"type": "server_vad", "create_response": False}
        if self._beta:
            session: dict[str, Any] = {
                "input_audio_transcription": transcription,
                "turn_detection": detection,
            }
        else:
            audio = {"input": {"transcription": transcription, "turn_detection": detection}}
            session = {"type": "realtime", "audio": audio}
        return {"type": "session.update", "event_id": _GATE_EVENT, "session": session}

    async def close(self, error: GatewayError | None) -> Usage:
        """Record every open response span and settle what is still held.

        Returns what the session itself used beyond its responses (audio no response heard).
        """
        for response in list(self._responses.values()):
            await self.meter.finish(response.call, None, error, response.output_seconds)
        self._responses.clear()
        for lane in self._turn_lanes.values():
            await lane.finish()
        return await self.meter.close()

    async def send_client(self, event: dict[str, Any]) -> None:
        await self._to_client(orjson.dumps(event).decode())

    async def client_error(self, error: GatewayError, event_id: object = None) -> None:
        await self.send_client(error_event(error, event_id))

    # -- client → upstream -----------------------------------------------------------------

    async def from_client(self, frame: str) -> None:
        """Act on one client frame: forward it (maybe rewritten), hold it, or answer an error.

        Raises:
            UpstreamClosed: the upstream is gone.
        """
        try:
            event = orjson.loads(frame)
        except orjson.JSONDecodeError:
            await self.client_error(_bad("The frame is not valid JSON.", "invalid_json"))
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            await self.client_error(
                _bad("An event is a JSON object with a string type.", "invalid_event")
            )
            return
        kind, event_id = event["type"], event.get("event_id")
        if kind not in CLIENT_EVENTS:
            await self.client_error(
                _bad(f"Unknown event type '{kind}'.", "unknown_event"), event_id
            )
            return
        try:
            out = await self._client_event(kind, event, frame)
        except GatewayError as exc:
            await self.client_error(exc, event_id)
            return
        if out is not None:
            await self._upstream.send(out)

    async def _client_event(self, kind: str, event: dict[str, Any], frame: str) -> str | None:
        match kind:
            case "input_audio_buffer.append":
                return await self._append(event, frame)
            case "input_audio_buffer.commit":
                return await self._commit(frame)
            case "input_audio_buffer.clear" if self._privacy:
                self._audio.clear()
                await self.send_client({"type": "input_audio_buffer.cleared"})
                return None
            case "session.update":
                return self._session_update(event)
            case "conversation.item.create":
                return await self._item_create(event, frame)
            case "response.create" if self.gated and (self._unchecked or self._client_commits):
                self._held.append(frame)
                return None
            case "response.create" if self._refused_private_turn:
                self._refused_private_turn = False  # it would answer the refused turn
                return None
            case _:
                return frame

    async def _append(self, event: dict[str, Any], frame: str) -> str | None:
        """Raises: QuotaEnded: the audio is over an `audio_seconds` limit (nothing relayed)."""
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise _bad("input_audio_buffer.append needs base64 `audio`.", "invalid_event")
        took = seconds(b64_size(audio), self._format)
        if self.meter.appended(took):
            await self.meter.extend(took, output=False)
        if not self._privacy:
            return frame
        try:
            self._audio += base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _bad("`audio` is not valid base64.", "invalid_audio") from exc
        return None

    async def _commit(self, frame: str) -> str | None:
        if not self._privacy:
            self._client_commits += 1
            return frame
        raw, self._audio = bytes(self._audio), bytearray()
        if not raw:
            raise _bad("The input audio buffer is empty.", "input_audio_buffer_commit_empty")
        assert self._transcribe is not None  # privacy mode always has a recognizer
        heard = await self._transcribe(for_recognizer(raw, self._format))
        item_id = f"item_agw_{uuid.uuid4().hex[:16]}"
        await self.send_client({"type": "input_audio_buffer.committed", "item_id": item_id})
        slots = text_slots({"transcript": heard})
        text = heard
        if slots:
            env = slots_envelope(self._call.request_id, self._model, "user", slots)
            try:
                env = await self._pipeline.filter_request(self._call, env)
            except GatewayError as exc:
                await self.client_error(exc)
                self._refused_private_turn = True
                return None
            write_back(env, slots)
            text = slots[0][0]["transcript"]
        await self.send_client(
            {
                "type": _TRANSCRIPT_DONE,
                "item_id": item_id,
                "content_index": 0,
                "transcript": text,
            }
        )
        item = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        }
        return orjson.dumps({"type": "conversation.item.create", "item": item}).decode()

    def _session_update(self, event: dict[str, Any]) -> str:
        session = event.get("session")
        if not isinstance(session, dict):
            raise _bad("session.update needs a `session` object.", "invalid_event")
        self._note_format(session)
        if not (self.gated or self._privacy):
            return orjson.dumps(event).decode()
        audio_in = (
            session.get("audio", {}).get("input")
            if isinstance(session.get("audio"), dict)
            else None
        )
        holders = [h for h in (session, audio_in) if isinstance(h, dict)]
        for holder in holders:
            if "turn_detection" in holder:
                detection = holder["turn_detection"]
                if self._privacy:
                    holder["turn_detection"] = None  # no audio goes up: nothing to detect
                elif isinstance(detection, dict):
                    self._auto = bool(detection.get("create_response", True))
                    detection["create_response"] = False
            for key in ("transcription", "input_audio_transcription"):
                if key in holder:
                    holder[key] = (
                        None
                        if self._privacy
                        else holder[key] or {"model": self._transcription_model}
                    )
        return orjson.dumps(event).decode()

    def _note_format(self, session: dict[str, Any]) -> None:
        audio = session.get("audio")
        audio = audio if isinstance(audio, dict) else {}
        sides = [audio.get(side) for side in ("input", "output")]
        named = [side.get("format") if isinstance(side, dict) else None for side in sides]
        fmt = audio_format(named[0] or session.get("input_audio_format"))
        if fmt is not None:
            self._format = fmt
        out = audio_format(named[1] or session.get("output_audio_format"))
        if out is not None:
            self._out_format = out

    async def _item_create(self, event: dict[str, Any], frame: str) -> str | None:
        item = event.get("item")
        if not isinstance(item, dict):
            raise _bad("conversation.item.create needs an `item` object.", "invalid_event")
        if self._privacy and any(
            isinstance(c, dict) and c.get("type") == "input_audio"
            for c in item.get("content") or []
        ):
            raise _bad(
                "Audio items are not accepted in privacy mode: append audio instead.",
                "privacy_mode",
            )
        slots = text_slots(item)
        if not slots or not self._filtering:
            return frame
        env = slots_envelope(self._call.request_id, self._model, "user", slots)
        env = await self._pipeline.filter_request(self._call, env)
        write_back(env, slots)
        return orjson.dumps(event).decode()

    @property
    def _model(self) -> str:
        return self._call.span.model_requested or ""

    # -- upstream → client -----------------------------------------------------------------

    async def from_upstream(self, frame: str) -> None:
        """Act on one upstream frame: relay it, filtered where it carries text.

        Raises:
            QuotaEnded: a response finished and the next one is over a limit or budget.
        """
        kind_bytes = frame_type(frame[:96].encode())
        if kind_bytes in _AUDIO_DELTAS:
            await self._played(frame)
            await self._to_client(frame)
            return
        try:
            event = orjson.loads(frame)
        except orjson.JSONDecodeError:
            logger.warning("upstream sent a frame that is not JSON; dropped")
            return
        if not isinstance(event, dict):
            return
        kind = str(event.get("type", ""))
        if kind in ("session.created", "session.updated"):
            if isinstance(event.get("session"), dict):
                self._note_format(event["session"])
            if kind == "session.updated" and self._gate_replies:
                self._gate_replies -= 1  # the reply to the gateway's own update: not the client's
                return
            await self._to_client(frame)
        elif kind == "error" and self._gate_replies and _answers_gate(event):
            self._gate_replies -= 1
            logger.warning("the upstream refused the gateway's session.update: %s", frame[:300])
        elif kind == "response.created":
            self._open_response(event)
            await self._to_client(frame)
        elif kind in _TEXT_DELTAS and self._filtering:
            await self._delta(kind, event)
        elif kind in _TEXT_DONES and self._filtering:
            await self._text_done(kind, event)
        elif kind == _TRANSCRIPT_DONE:
            await self._transcript_done(event)
        elif kind == "input_audio_buffer.committed":
            self._committed(event)
            await self._to_client(frame)
        elif kind == "response.done":
            await self._response_done(event)
        elif kind == "error" and self._client_commits:
            # A refused commit (an empty buffer) will never be committed: stop waiting for it.
            self._client_commits -= 1
            await self._to_client(frame)
            await self._release_held()
        elif self._filtering and text_slots(event):
            await self._relay_filtered(event)
        else:
            await self._to_client(frame)

    def _open_response(self, event: dict[str, Any]) -> None:
        response = event.get("response")
        rid = str(response.get("id")) if isinstance(response, dict) else ""
        if rid and rid not in self._responses:
            self._responses[rid] = self._latest = _Response(self.meter.response_call())

    def _lane_key(self, event: dict[str, Any]) -> tuple[str, ...]:
        return tuple(
            str(event.get(k, "")) for k in ("response_id", "item_id", "content_index", "call_id")
        )

    def _lane(self, kind: str, event: dict[str, Any]) -> Lane | None:
        if self._tg is None:
            return None
        if kind.startswith("conversation.item."):
            item_id = str(event.get("item_id", ""))
            lane = self._turn_lanes.get(item_id)
            if lane is None:
                lane = self._turn_lanes[item_id] = self._new_lane(kind, turn=True)
            return lane
        response = self._responses.get(str(event.get("response_id", "")))
        if response is None:
            return None
        key = self._lane_key(event)
        lane = response.lanes.get(key)
        if lane is None:
            lane = response.lanes[key] = self._new_lane(kind)
        return lane

    def _new_lane(self, kind: str, *, turn: bool = False) -> Lane:
        assert self._tg is not None

        async def emit(template: dict[str, Any], text: str) -> None:
            await self.send_client({**template, "delta": text})

        async def blocked(error: GatewayError) -> None:
            if turn:
                return  # the turn's completed transcript is refused with the error event
            await self.client_error(error)
            await self._upstream.send('{"type":"response.cancel"}')

        return Lane(
            self._tg,
            lambda s: self._pipeline.filter_stream(self._call, s),
            emit,
            blocked,
            delta_scope(kind),
        )

    async def _delta(self, kind: str, event: dict[str, Any]) -> None:
        delta = event.get("delta")
        lane = self._lane(kind, event)
        if lane is None or not isinstance(delta, str):
            await self._relay_filtered(event)
            return
        await lane.push(event, delta)

    async def _text_done(self, kind: str, event: dict[str, Any]) -> None:
        key = "text" if "text" in kind else "transcript" if "transcript" in kind else "arguments"
        response = self._responses.get(str(event.get("response_id", "")))
        lane = response.lanes.pop(self._lane_key(event), None) if response else None
        if lane is None:
            await self._relay_filtered(event)
            return
        text = await lane.finish()
        if text is None:
            return  # blocked: the client already has the error event
        event[key] = text
        await self.send_client(event)

    async def _transcript_done(self, event: dict[str, Any]) -> None:
        item_id = str(event.get("item_id", ""))
        lane = self._turn_lanes.pop(item_id, None)
        if lane is not None:
            await lane.finish()
        try:
            if self._filtering:
                slots = text_slots(event)
                if slots:
                    env = slots_envelope(self._call.request_id, self._model, "user", slots)
                    env = await self._pipeline.filter_request(self._call, env)
                    write_back(env, slots)
        except GatewayError as exc:
            await self._refuse_turn(item_id, exc)
            return
        await self.send_client(event)
        await self._turn_checked(item_id)

    def _committed(self, event: dict[str, Any]) -> None:
        item_id = str(event.get("item_id", ""))
        manual = self._client_commits > 0
        self._client_commits = max(0, self._client_commits - 1)
        if self.gated:
            self._unchecked.add(item_id)
            if not manual and self._auto:
                self._unchecked.add(f"auto:{item_id}")

    async def _turn_checked(self, item_id: str) -> None:
        self._unchecked.discard(item_id)
        answer = f"auto:{item_id}" in self._unchecked
        self._unchecked.discard(f"auto:{item_id}")
        if answer:
            await self._upstream.send('{"type":"response.create"}')
        await self._release_held()

    async def _refuse_turn(self, item_id: str, error: GatewayError) -> None:
        await self.client_error(error)
        self._unchecked.discard(item_id)
        self._unchecked.discard(f"auto:{item_id}")
        if item_id:
            delete = {"type": "conversation.item.delete", "item_id": item_id}
            await self._upstream.send(orjson.dumps(delete).decode())
        if not self._unchecked and not self._client_commits:
            self._held.clear()  # the responses asked for would answer the refused turn

    async def _release_held(self) -> None:
        if self._unchecked or self._client_commits:
            return
        held, self._held = self._held, []
        for frame in held:
            await self._upstream.send(frame)

    async def _relay_filtered(self, event: dict[str, Any]) -> None:
        slots = text_slots(event)
        if slots and self._filtering:
            env = slots_envelope(self._call.request_id, self._model, "assistant", slots)
            try:
                env = await self._pipeline.filter_response(self._call, env)
            except GatewayError:
                return  # refused text: the error event went out with the delta or turn
            write_back(env, slots)
        await self.send_client(event)

    async def _response_done(self, event: dict[str, Any]) -> None:
        body = event.get("response")
        body = body if isinstance(body, dict) else {}
        rid = str(body.get("id", ""))
        if rid not in self._responses:
            self._open_response({"response": body})
        response = self._responses.pop(rid, None)
        if response is self._latest:
            self._latest = None
        if response is not None:
            for lane in response.lanes.values():
                await lane.finish()
        await self._relay_filtered(event) if self._filtering else await self.send_client(event)
        if response is not None:
            response.call.span.extra.update(token_split(body.get("usage")))
            usage = response_usage(body.get("usage"))
            await self.meter.finish(response.call, usage, None, response.output_seconds)

    async def _played(self, frame: str) -> None:
        """Count an output audio delta's seconds (from its base64 length, by the session's
        output format) on its response, reserving audio first when it is needed.

        Raises:
            QuotaEnded: the audio is over an `audio_seconds` limit (the frame is not relayed).
        """
        found = _DELTA.search(frame)
        if found is None:
            return
        start = found.end()
        end = frame.find('"', start)
        if end < 0:
            return
        took = seconds(b64_size_at(frame, start, end), self._out_format)
        if self.meter.played(took):
            await self.meter.extend(took, output=True)
        rid = _RESPONSE_ID.search(frame, 0, start)
        response = self._responses.get(rid.group(1)) if rid else None
        response = response or self._latest
        if response is not None:
            response.output_seconds += took


def _answers_gate(event: dict[str, Any]) -> bool:
    error = event.get("error")
    return isinstance(error, dict) and error.get("event_id") == _GATE_EVENT


def _bad(message: str, code: str) -> GatewayError:
    return ClientEventError(message, code)


__all__ = ["CLIENT_EVENTS", "RealtimeSession", "error_event"]
