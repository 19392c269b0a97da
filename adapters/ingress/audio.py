"""The audio endpoints: `POST /v1/audio/transcriptions` (multipart) and `POST /v1/audio/speech`.

Both take the one path: authenticate, authorize (modality `voice`), reserve, filter, route with
failover, filter, meter, settle, record. A transcript is filtered on its way back (scope
transcript), so a number said in the recording comes back redacted; the text to speak is filtered
and moderated on its way up, so the provider never voices what policy refuses. Errors leave in
OpenAI's shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from adapters.ingress.http import JSONResponse, parse_json_model, read_body
from adapters.ingress.media_http import guarded, read_form, validate_form
from adapters.wire.audio import read_wav
from core.config import Config
from core.envelope import AudioPart, Envelope, Message, Modality, TextPart, Usage
from core.errors import GatewayError, UnsupportedMediaType, ValidationFailed
from core.metering import estimate_tokens
from core.pipeline import Call, Pipeline
from core.realtime import Speech, Transcription, VoiceProvider, first_voice_target
from core.routing import BoundTarget

T = TypeVar("T")
_PASSED_FIELDS = ("language", "prompt", "response_format", "temperature")
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


class SpeechRequest(BaseModel):
    """The fields of `POST /v1/audio/speech` the gateway checks; others pass through."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: str = Field(min_length=1)
    voice: str | None = None
    instructions: str | None = None
    response_format: str | None = None
    speed: float | None = None


class TranscriptionFields(BaseModel):
    """The text fields of a transcription form; the audio travels beside them as `file`."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    language: str | None = None
    prompt: str | None = None
    response_format: str | None = None
    temperature: float | None = None


class AudioIngress:
    """Transcription and speech, served over the pipeline."""

    def __init__(self, pipeline: Pipeline, config: Config) -> None:
        self._pipeline = pipeline
        self._max_body = config.listen.max_body_bytes

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/audio/transcriptions", self.transcriptions, methods=["POST"]),
            Route("/v1/audio/speech", self.speech, methods=["POST"]),
        ]

    async def _run(
        self, request: Request, route: str, run: Callable[[Call], Awaitable[Response]]
    ) -> Response:
        """`run` guarded like every media call, its reply carrying the call's headers."""

        async def with_headers(call: Call) -> Response:
            response = await run(call)
            response.headers.update(call.headers)
            return response

        return await guarded(self._pipeline, request, route, with_headers)

    async def _route(
        self,
        call: Call,
        env: Envelope,
        attempt: Callable[[VoiceProvider, BoundTarget], Awaitable[T]],
    ) -> tuple[T, BoundTarget, Any, Envelope]:
        """Admit and reserve, filter the request, then try each target in turn.

        Raises:
            GatewayError: refused, or every target failed (the reservation is released).
        """
        targets = self._pipeline.admit(call, env)
        reservation = await self._pipeline.reserve(call, env)
        try:
            env = await self._pipeline.filter_request(call, env)
            result, target = await first_voice_target(
                self._pipeline.router, targets, call.span.attempts, attempt
            )
        except GatewayError:
            await self._pipeline.settle(call, reservation, None, Usage())
            raise
        return result, target, reservation, env

    async def transcriptions(self, request: Request) -> Response:
        async def run(call: Call) -> Response:
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind not in _FORM_TYPES:
                raise UnsupportedMediaType(
                    f"Content-Type '{kind or 'none'}' is not accepted: send multipart/form-data."
                )
            form = await read_form(request, self._max_body)
            model = validate_form(TranscriptionFields, form.fields).model
            upload = next((f for f in form.files if f.field == "file"), None)
            if upload is None:
                raise ValidationFailed("Invalid request: file: Field required", param="file")
            audio = upload.data
            fields = {k: v for k in _PASSED_FIELDS if (v := form.fields.get(k)) is not None}
            parts: list[AudioPart | TextPart] = [AudioPart(data="", format="upload")]
            if fields.get("prompt"):
                parts.append(TextPart(fields["prompt"]))
            env = Envelope(
                id=call.request_id,
                modality=Modality.VOICE,
                model=model,
                messages=[Message(role="user", parts=list(parts))],
            )

            async def transcribe(voice: VoiceProvider, target: BoundTarget) -> Transcription:
                # The prompt as the filters left it (they ran after admission).
                prompt = env.messages[0].text()
                sent = {**fields, "prompt": prompt} if prompt else fields
                name = upload.filename or "audio.wav"
                return await voice.transcribe(target.model, audio, name, sent)

            result, target, reservation, env = await self._route(call, env, transcribe)
            reply = Envelope(
                id=call.request_id,
                modality=Modality.VOICE,
                model=model,
                messages=[
                    Message(
                        role="assistant",
                        parts=[AudioPart(data="", format="upload", transcript=result.text)],
                    )
                ],
            )
            usage = result.usage
            if not usage.audio_seconds:
                usage.audio_seconds = _wav_seconds(audio)
            try:
                reply = await self._pipeline.filter_response(call, reply)
            finally:
                await self._pipeline.settle(call, reservation, target, usage)
            await self._pipeline.record(call, usage)
            part = reply.messages[0].parts[0]
            text = part.transcript if isinstance(part, AudioPart) else None
            if fields.get("response_format") == "text":
                return PlainTextResponse(text or "")
            return JSONResponse({**result.extra, "text": text or ""})

        return await self._run(request, "/v1/audio/transcriptions", run)

    async def speech(self, request: Request) -> Response:
        async def run(call: Call) -> Response:
            raw = await read_body(request, self._max_body)
            checked = parse_json_model(SpeechRequest, raw)
            model, text = checked.model, checked.input
            body: dict[str, Any] = orjson.loads(raw)  # as sent: unknown fields pass through
            env = Envelope(
                id=call.request_id,
                modality=Modality.VOICE,
                model=model,
                messages=[Message(role="user", parts=[TextPart(text)])],
            )

            async def speak(voice: VoiceProvider, target: BoundTarget) -> Speech:
                return await voice.speech(target.model, {**body, "input": env.text()})

            result, target, reservation, env = await self._route(call, env, speak)
            spoken = {"input": env.text()}
            usage = result.usage
            usage.input_tokens = usage.input_tokens or estimate_tokens(spoken["input"])
            await self._pipeline.settle(call, reservation, target, usage)
            await self._pipeline.record(call, usage)
            return Response(result.audio, media_type=result.media_type)

        return await self._run(request, "/v1/audio/speech", run)


def _wav_seconds(audio: bytes) -> float:
    try:
        pcm, rate = read_wav(audio)
    except ValueError:
        return 0.0
    return len(pcm) / (2 * rate)
