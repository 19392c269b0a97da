"""The sim's voice routes: `/v1/realtime` (WebSocket), `/v1/audio/transcriptions` and
`/v1/audio/speech`.

Transcription recognizes the uploaded WAV with pocketsphinx; speech is generated audio (a tone per
word) as WAV or raw 24 kHz PCM. For tests: `POST /_sim/realtime/drop` closes every open realtime
connection with 1011 (an upstream that goes away mid-session).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import anyio
import orjson
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from adapters.egress.sim_options import FaultInjector, SimOptions
from adapters.egress.sim_realtime import SimRealtimeSession
from adapters.egress.sim_wire import error_body
from adapters.wire.audio import AudioFormat, for_recognizer, read_wav, write_wav
from adapters.wire.speech import Recognizer, tone_speech

SPEECH_RATE = 24_000
MAX_UPLOAD = 25 * 1024 * 1024


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def _error(status: int, message: str, param: str | None = None) -> Response:
    return _json(error_body(status, message, param), status)


class SimVoiceFace:
    """The voice routes of one sim server, sharing its options and request log."""

    def __init__(self, options: SimOptions, faults: FaultInjector, requests: deque[Any]) -> None:
        self._options = options
        self._faults = faults
        self._requests = requests
        self._recognizer = Recognizer()
        self._drop: anyio.Event | None = None

    def routes(self) -> list[BaseRoute]:
        return [
            WebSocketRoute("/v1/realtime", self.realtime),
            Route("/v1/audio/transcriptions", self.transcriptions, methods=["POST"]),
            Route("/v1/audio/speech", self.speech, methods=["POST"]),
            Route("/_sim/realtime/drop", self.drop, methods=["POST"]),
        ]

    def _drop_event(self) -> anyio.Event:
        if self._drop is None:
            self._drop = anyio.Event()
        return self._drop

    async def drop(self, request: Request) -> Response:
        self._drop_event().set()
        self._drop = None  # sessions opened later are not dropped
        return Response(status_code=204)

    async def realtime(self, websocket: WebSocket) -> None:
        if self._faults.should_fail():
            status = self._options.fail_status
            reply = _error(status, f"sim: injected failure ({status})")
            await websocket.send_denial_response(reply)
            return
        model = websocket.query_params.get("model", "sim-realtime")
        beta = websocket.headers.get("openai-beta", "").startswith("realtime=v1")
        await websocket.accept()
        dropped = self._drop_event()

        async def emit(event: dict[str, Any]) -> None:
            await websocket.send_text(orjson.dumps(event).decode())

        session = SimRealtimeSession(model, emit, self._requests.append, self._recognizer, beta)
        async with anyio.create_task_group() as tg:

            async def cut() -> None:
                await dropped.wait()
                await websocket.close(code=1011, reason="sim: dropped")
                tg.cancel_scope.cancel()

            tg.start_soon(cut)
            try:
                await session.open()
                while True:
                    message = await websocket.receive()
                    if message["type"] == "websocket.disconnect":
                        break
                    frame = message.get("text") or message.get("bytes") or b""
                    await session.receive(frame)
            except WebSocketDisconnect:
                pass
            tg.cancel_scope.cancel()

    async def transcriptions(self, request: Request) -> Response:
        try:
            form = await request.form(max_part_size=MAX_UPLOAD)
        except Exception as exc:  # multipart parser errors are many; all are the client's
            return _error(400, f"Could not parse the multipart form: {type(exc).__name__}")
        upload, model = form.get("file"), form.get("model")
        if not isinstance(upload, UploadFile):
            return _error(400, "file is required.", "file")
        if not isinstance(model, str) or not model:
            return _error(400, "model is required.", "model")
        data = await upload.read()
        self._requests.append({"model": model, "file_bytes": len(data)})
        if self._faults.should_fail():
            return _error(self._options.fail_status, "sim: injected failure")
        try:
            pcm, rate = read_wav(data)
        except ValueError as exc:
            return _error(400, f"sim: {exc}", "file")
        duration = len(pcm) / (2 * rate)
        text = await self._recognizer.recognize(for_recognizer(pcm, AudioFormat("pcm16", rate)))
        usage = {"type": "duration", "seconds": math.ceil(duration)}
        if form.get("response_format") == "text":
            return Response(text, media_type="text/plain")
        return _json({"text": text, "usage": usage})

    async def speech(self, request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object.")
        self._requests.append(body)
        text, fmt = body.get("input"), body.get("response_format") or "wav"
        if not isinstance(text, str) or not text:
            return _error(400, "input is required.", "input")
        if fmt not in ("wav", "pcm"):
            return _error(400, "sim: response_format must be wav or pcm.", "response_format")
        if self._faults.should_fail():
            return _error(self._options.fail_status, "sim: injected failure")
        pcm = tone_speech(text, SPEECH_RATE)
        if fmt == "pcm":
            return Response(pcm, media_type="audio/pcm")
        return Response(write_wav(pcm, SPEECH_RATE), media_type="audio/wav")
