"""Voice egress to an OpenAI-wire upstream: realtime WebSocket sessions and the audio endpoints.

The realtime connection is an aiohttp WebSocket on the shared session; frames are relayed as text,
unparsed. The provider's credentials go on the handshake (`Authorization`), never the client's.
A handshake refused with an HTTP status maps like any upstream status (401/403 are the gateway's
misconfiguration, 429 and 5xx retryable); a refused connection is `UpstreamUnavailable`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from adapters.egress.http import SharedHTTP
from adapters.egress.upstream import json_object, status_error, timeouts, transport_error
from adapters.wire.audio import read_wav
from core.config import Provider as ProviderConfig
from core.envelope import Usage
from core.errors import GatewayError
from core.realtime import Speech, Transcription, UpstreamClosed

# Upstream events can carry whole audio responses; the client-facing limit is separate.
MAX_UPSTREAM_FRAME = 64 * 1024 * 1024


class OpenAIRealtimeConnection:
    """One realtime session with an OpenAI-wire upstream."""

    def __init__(self, name: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._name = name
        self._ws = ws

    async def send(self, frame: str) -> None:
        try:
            await self._ws.send_str(frame)
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            raise UpstreamClosed(f"Upstream '{self._name}' connection is gone.") from exc

    async def receive(self) -> str:
        msg = await self._ws.receive()
        if msg.type is aiohttp.WSMsgType.TEXT:
            text: str = msg.data
            return text
        if msg.type is aiohttp.WSMsgType.BINARY:
            data: bytes = msg.data
            return data.decode("utf-8", "replace")
        code = self._ws.close_code
        raise UpstreamClosed(f"Upstream '{self._name}' closed the session (code {code}).")

    async def aclose(self) -> None:
        if not self._ws.closed:
            await self._ws.close()


class OpenAIVoice:
    """The voice face of an `openai` provider (`base_url` ends in `/v1`)."""

    def __init__(self, config: ProviderConfig, http: SharedHTTP) -> None:
        self.name = config.name
        self._http = http
        self._base = (config.base_url or "").rstrip("/")
        self._headers = dict(config.headers)
        if config.api_key:
            self._headers["authorization"] = f"Bearer {config.api_key}"
        self._timeout, _ = timeouts(config)
        self._connect_timeout = config.connect_timeout_seconds

    async def connect(self, model: str, headers: Mapping[str, str]) -> OpenAIRealtimeConnection:
        url = self._base.replace("http", "ws", 1) + "/realtime"
        try:
            ws = await self._http.session.ws_connect(
                url,
                params={"model": model},
                headers={**headers, **self._headers},
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
                max_msg_size=MAX_UPSTREAM_FRAME,
                autoping=True,
                compress=0,
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise status_error(exc.status, str(exc.message).encode()) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise transport_error(self.name, exc) from exc
        return OpenAIRealtimeConnection(self.name, ws)

    async def transcribe(
        self, model: str, audio: bytes, filename: str, fields: Mapping[str, str]
    ) -> Transcription:
        form = aiohttp.FormData()
        for key, value in fields.items():
            form.add_field(key, value)
        form.add_field("model", model)
        form.add_field("file", audio, filename=filename or "audio.wav")
        raw = await self._post("/audio/transcriptions", form)
        body = json_object(raw)
        text = body.pop("text", "")
        return Transcription(str(text), _transcription_usage(body.get("usage")), body)

    async def speech(self, model: str, body: Mapping[str, Any]) -> Speech:
        payload = orjson.dumps({**body, "model": model})
        headers = {"content-type": "application/json"}
        raw, media_type = await self._post_raw("/audio/speech", payload, headers)
        return Speech(raw, media_type, Usage(audio_seconds=_duration(raw, media_type)))

    async def _post(self, path: str, data: aiohttp.FormData) -> bytes:
        return (await self._post_raw(path, data, {}))[0]

    async def _post_raw(
        self, path: str, data: Any, headers: Mapping[str, str]
    ) -> tuple[bytes, str]:
        try:
            async with self._http.session.post(
                self._base + path,
                data=data,
                headers={**self._headers, **headers},
                timeout=self._timeout,
            ) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise status_error(resp.status, raw)
                return raw, resp.content_type
        except GatewayError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise transport_error(self.name, exc) from exc


def _transcription_usage(usage: object) -> Usage:
    """Usage of a transcription: `{"type": "duration", "seconds"}` or token counts."""
    if not isinstance(usage, dict):
        return Usage()
    if usage.get("type") == "duration":
        value = usage.get("seconds")
        return Usage(audio_seconds=float(value) if isinstance(value, int | float) else 0.0)
    given, made = usage.get("input_tokens"), usage.get("output_tokens")
    return Usage(
        input_tokens=given if isinstance(given, int) else 0,
        output_tokens=made if isinstance(made, int) else 0,
    )


def _duration(raw: bytes, media_type: str) -> float:
    if media_type in ("audio/wav", "audio/x-wav", "audio/wave"):
        try:
            pcm, rate = read_wav(raw)
        except ValueError:
            return 0.0
        return len(pcm) / (2 * rate)
    if media_type == "audio/pcm":
        return len(raw) / 48_000
    return 0.0
