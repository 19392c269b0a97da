"""The Realtime ingress: `GET /v1/realtime?model=…` upgraded to a WebSocket, relayed to the
upstream session the router picks, under the same governance as every other call.

Before the socket is accepted: the key is authenticated (`Authorization: Bearer`, or the
subprotocol browsers send, `openai-insecure-api-key.<key>`), the model and the voice modality are
authorized, the session's slot and first response are reserved, and an upstream session is
opened, failing over across the model's targets. Any refusal there is an HTTP reply to the
handshake (401, 403, 404, 429, 502 …) in OpenAI's error shape: the socket is never accepted.

Then `RealtimeSession` relays events both ways. The session ends when either side closes; an
upstream that drops gets the client an `error` event and close code 1011, a session over quota (a
renewal refused, or audio past an `audio_seconds` limit) an `error` event and 1008. One span
covers the session, one each response (children of the session's). Privacy mode is the model's
setting or the key's scope.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import orjson
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from adapters.ingress.http import JSONResponse
from adapters.ingress.realtime_meter import QuotaEnded
from adapters.ingress.realtime_session import RealtimeSession, error_event
from core.config import Config
from core.envelope import Envelope, Modality, Usage
from core.errors import (
    BadRequest,
    GatewayError,
    PayloadTooLarge,
)
from core.pipeline import Call, CallInfo, Pipeline
from core.quota import Reservation
from core.realtime import RealtimeUpstream, UpstreamClosed, VoiceProvider, first_voice_target
from core.routing import BoundTarget
from core.tracing import new_request_id, traceparent

logger = logging.getLogger("agentgw.ingress.realtime")

KEY_PROTOCOL = "openai-insecure-api-key."
BETA_PROTOCOL = "openai-beta.realtime-v1"
CLOSE_NORMAL, CLOSE_POLICY, CLOSE_UPSTREAM = 1000, 1008, 1011
ROUTE = "/v1/realtime"


def _call_info(websocket: WebSocket) -> tuple[CallInfo, list[str]]:
    """The call's identity; a browser's key subprotocol becomes its bearer header."""
    offered = [str(p) for p in websocket.scope.get("subprotocols", [])]
    headers = {k.lower(): v for k, v in websocket.headers.items()}
    for protocol in offered:
        if protocol.startswith(KEY_PROTOCOL) and "authorization" not in headers:
            headers["authorization"] = "Bearer " + protocol.removeprefix(KEY_PROTOCOL)
    request_id = websocket.scope.get("state", {}).get("request_id") or new_request_id()
    client = websocket.client.host if websocket.client else None
    return CallInfo(request_id, ROUTE, headers, client), offered


async def _deny(websocket: WebSocket, error: GatewayError, request_id: str) -> None:
    body = {
        "error": {
            "message": error.message,
            "type": error.type,
            "param": error.param,
            "code": error.code,
        }
    }
    headers = {**error.headers(), "x-request-id": request_id}
    try:
        await websocket.send_denial_response(
            JSONResponse(body, status_code=error.status, headers=headers)
        )
    except RuntimeError:  # a server without the denial extension: a bare 403
        await websocket.close(CLOSE_POLICY)


@dataclass(frozen=True, slots=True)
class _Opened:
    """What a session has once its handshake may be accepted."""

    target: BoundTarget
    upstream: RealtimeUpstream
    reservation: Reservation


class RealtimeIngress:
    """The Realtime WebSocket, served over the pipeline."""

    def __init__(self, pipeline: Pipeline, config: Config) -> None:
        self._pipeline = pipeline
        self._voice = config.voice
        self._private = frozenset(m.name for m in config.models if m.privacy_mode)
        self._recognizer: Any = None

    def routes(self) -> list[BaseRoute]:
        return [WebSocketRoute(ROUTE, self.realtime)]

    async def realtime(self, websocket: WebSocket) -> None:
        info, offered = _call_info(websocket)
        try:
            call = await self._pipeline.begin(info)
        except GatewayError as exc:
            await _deny(websocket, exc, info.request_id)
            return
        model = websocket.query_params.get("model", "")
        beta = BETA_PROTOCOL in offered or info.headers.get("openai-beta", "").startswith(
            "realtime"
        )
        try:
            opened = await self._open(call, model, beta)
        except GatewayError as exc:
            await _deny(websocket, exc, info.request_id)
            return
        subprotocol = "realtime" if "realtime" in offered else None
        try:
            await websocket.accept(subprotocol=subprotocol)
        except (OSError, WebSocketDisconnect) as exc:
            await opened.upstream.aclose()
            await self._pipeline.settle(call, opened.reservation, None, Usage())
            await self._pipeline.fail(call, UpstreamClosed(f"The client went away: {exc}"))
            return
        await self._relay(websocket, call, opened, beta)

    async def _open(self, call: Call, model: str, beta: bool) -> _Opened:
        """Authorize, reserve the first response and open the upstream (span failed on error).

        Raises:
            GatewayError: the handshake must be refused with this error.
        """
        env = Envelope(id=call.request_id, modality=Modality.VOICE, model=model, stream=True)
        reservation = None
        try:
            if not model:
                raise BadRequest("The `model` query parameter is required.", param="model")
            targets = self._pipeline.admit(call, env)
            reservation = await self._pipeline.reserve(call, env)
            target, upstream = await self._connect(call, targets, beta)
        except GatewayError as exc:
            if reservation is not None:
                await self._pipeline.settle(call, reservation, None, Usage())
            await self._pipeline.fail(call, exc)
            raise
        call.span.provider, call.span.upstream_model = target.provider_name, target.model
        return _Opened(target, upstream, reservation)

    async def _connect(
        self, call: Call, targets: list[BoundTarget], beta: bool
    ) -> tuple[BoundTarget, RealtimeUpstream]:
        """The first target whose upstream accepts a realtime session (failover at connect).

        Raises:
            GatewayError: a non-retryable refusal, or AllTargetsFailed.
        """
        headers = {"traceparent": traceparent(call.trace)}
        if beta:
            headers["openai-beta"] = "realtime=v1"

        async def connect(voice: VoiceProvider, target: BoundTarget) -> RealtimeUpstream:
            return await voice.connect(target.model, headers)

        upstream, target = await first_voice_target(
            self._pipeline.router, targets, call.span.attempts, connect
        )
        return target, upstream

    async def _transcriber(self) -> Any:
        if self._recognizer is None:
            # Loaded on the first private session only: pocketsphinx is heavy.
            from adapters.wire.speech import Recognizer

            recognizer = Recognizer()
            await anyio.to_thread.run_sync(recognizer.warm)
            self._recognizer = recognizer
        return self._recognizer.recognize

    async def _relay(
        self,
        websocket: WebSocket,
        call: Call,
        opened: _Opened,
        beta: bool,
    ) -> None:
        target, upstream = opened.target, opened.upstream
        # Privacy mode is the model's setting or the key's (`scopes.privacy_mode`).
        private = call.span.model_requested in self._private or call.principal.scopes.privacy_mode
        lock = anyio.Lock()

        async def to_client(text: str) -> None:
            async with lock:
                await websocket.send_text(text)

        session = RealtimeSession(
            pipeline=self._pipeline,
            call=call,
            target=target,
            upstream=upstream,
            to_client=to_client,
            privacy=private,
            transcribe=await self._transcriber() if private else None,
            transcription_model=self._voice.transcription_model,
            beta=beta,
        )
        if private:
            call.span.flags.append("privacy_mode")
        ended: list[tuple[GatewayError, int]] = []
        try:
            async with anyio.create_task_group() as tg:
                await session.start(tg, opened.reservation)
                tg.start_soon(self._upstream_to_client, session, upstream, ended, tg.cancel_scope)
                await self._client_to_upstream(websocket, session, ended)
                tg.cancel_scope.cancel()
        except UpstreamClosed as exc:  # the gate's first session.update found it gone
            ended.append((exc, CLOSE_UPSTREAM))
        finally:
            with anyio.CancelScope(shield=True):
                await self._end(websocket, call, session, upstream, ended)

    async def _upstream_to_client(
        self,
        session: RealtimeSession,
        upstream: RealtimeUpstream,
        ended: list[tuple[GatewayError, int]],
        scope: anyio.CancelScope,
    ) -> None:
        try:
            while True:
                await session.from_upstream(await upstream.receive())
        except UpstreamClosed as exc:
            ended.append((exc, CLOSE_UPSTREAM))
        except QuotaEnded as exc:
            ended.append((exc.error, CLOSE_POLICY))
        except (OSError, WebSocketDisconnect):
            pass  # the client went away while we were sending: the client loop ends too
        scope.cancel()

    async def _client_to_upstream(
        self, websocket: WebSocket, session: RealtimeSession, ended: list[tuple[GatewayError, int]]
    ) -> None:
        limit = self._voice.max_frame_bytes
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                if text is None:
                    await session.client_error(
                        BadRequest("Binary frames are not part of the Realtime protocol.")
                    )
                    continue
                if len(text) > limit:
                    await session.client_error(
                        PayloadTooLarge(f"The event is larger than the limit of {limit} bytes.")
                    )
                    continue
                await session.from_client(text)
        except UpstreamClosed as exc:
            ended.append((exc, CLOSE_UPSTREAM))
        except QuotaEnded as exc:  # audio appended past an audio_seconds limit
            ended.append((exc.error, CLOSE_POLICY))
        except (OSError, WebSocketDisconnect):
            return

    async def _end(
        self,
        websocket: WebSocket,
        call: Call,
        session: RealtimeSession,
        upstream: RealtimeUpstream,
        ended: list[tuple[GatewayError, int]],
    ) -> None:
        error, code = ended[0] if ended else (None, CLOSE_NORMAL)
        await upstream.aclose()
        leftover = await session.close(error)
        call.span.extra["responses"] = session.meter.responses
        call.span.extra["audio_seconds_total"] = round(session.meter.audio_seconds, 3)
        call.span.extra["output_audio_seconds_total"] = round(session.meter.output_seconds, 3)
        if websocket.client_state is WebSocketState.CONNECTED:
            try:
                if error is not None:
                    await websocket.send_text(_dumps(error_event(error)))
                await websocket.close(code, error.message[:120] if error else None)
            except (OSError, WebSocketDisconnect, RuntimeError):
                pass
        if error is not None:
            await self._pipeline.fail(call, error, leftover)
        else:
            await self._pipeline.record(call, leftover)


def _dumps(event: Mapping[str, Any]) -> str:
    return orjson.dumps(event).decode()
