"""The simulated model over the OpenAI wire: a standalone Starlette app (`agentgw sim`).

Routes: `POST /v1/chat/completions` (JSON or SSE), `POST /v1/embeddings`, `POST /v1/moderations`
(`sim_moderation`), `GET /v1/models`,
`GET /healthz`, and for tests `GET /_sim/requests` (the JSON bodies received, newest last, at most
`RECORDED_REQUESTS`), `GET /_sim/headers` (their `x-*` headers), `DELETE /_sim/requests`, and
`POST /_sim/release` (lets streams held by `hold_after_chunks` go on). API keys are neither
checked nor recorded.

The Anthropic Messages face (`POST /v1/messages`, in `sim_anthropic`) shares the options, the
fault RNG, the request log and the release event; it records auth headers at
`GET /_sim/anthropic/headers`. Images (`/v1/images/generations`, `/v1/images/edits`) and video
jobs (`/v1/videos` …) live in `sim_media` and log their requests here too (`_path` says which,
uploads as base64).
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from adapters.egress.sim_anthropic import SimAnthropicFace
from adapters.egress.sim_audio import SimVoiceFace
from adapters.egress.sim_embeddings import embedding_vector, encode_base64
from adapters.egress.sim_media import SimMedia
from adapters.egress.sim_model import SimChatReply, SimRequestError, chat_reply, stream_deltas
from adapters.egress.sim_moderation import moderation_body, moderation_texts
from adapters.egress.sim_options import FaultInjector, SimOptions
from adapters.egress.sim_wire import (
    ChatCall,
    chunk_body,
    completion_body,
    error_body,
    parse_chat,
    parse_embeddings,
    usage_chunk_body,
)

__all__ = ["RECORDED_REQUESTS", "SimOptions", "build_sim_app", "serve_sim"]

RECORDED_REQUESTS = 1000
MODELS = ("sim-1", "sim-embedding-1", "sim-moderation-1")


def _json(body: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _error(status: int, message: str, param: str | None = None) -> Response:
    # A client honouring Retry-After backs off briefly instead of hammering a 429.
    headers = {"Retry-After": "1"} if status == 429 else None
    return _json(error_body(status, message, param), status, headers)


def _sse(body: object) -> bytes:
    return b"data: " + orjson.dumps(body) + b"\n\n"


class _SimEndpoints:
    """The routes of one sim server, sharing its options, fault RNG and request log."""

    def __init__(self, options: SimOptions, requests: deque[Any]) -> None:
        self._options = options
        self._faults = FaultInjector(options)
        self._requests = requests
        # Only `x-*` headers: what a provider's `headers:` config adds, never a credential.
        self._headers: deque[dict[str, str]] = deque(maxlen=requests.maxlen)
        self._released: anyio.Event | None = None

    def _release_event(self) -> anyio.Event:
        # Created on first use: an anyio Event belongs to the running event loop.
        if self._released is None:
            self._released = anyio.Event()
        return self._released

    async def _body(self, request: Request) -> Mapping[str, Any] | Response:
        """The JSON object sent, recorded; or the 400 reply for a body that is not one."""
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _error(400, "We could not parse the JSON body of your request.")
        self._requests.append(body)
        self._headers.append({k: v for k, v in request.headers.items() if k.startswith("x-")})
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object.")
        return body

    async def _delay_or_fault(self) -> Response | None:
        if self._options.latency_ms:
            await anyio.sleep(self._options.latency_ms / 1000)
        if self._faults.should_fail():
            status = self._options.fail_status
            return _error(status, f"sim: injected failure ({status})")
        return None

    async def chat_completions(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        try:
            call = parse_chat(body)
            reply = chat_reply(call.request, self._options)
        except SimRequestError as exc:
            return _error(400, exc.message, exc.param)
        fault = await self._delay_or_fault()
        if fault is not None:
            return fault
        reply_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if call.stream:
            return StreamingResponse(
                self._stream(call, reply, reply_id, created),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        if self._options.ttft_ms:
            await anyio.sleep(self._options.ttft_ms / 1000)
        return _json(completion_body(reply, call.model, reply_id, created))

    async def _stream(
        self, call: ChatCall, reply: SimChatReply, reply_id: str, created: int
    ) -> AsyncIterator[bytes]:
        chunks = [
            chunk_body(d, call.model, reply_id, created, include_usage=call.include_usage)
            for d in stream_deltas(reply)
        ]
        if call.include_usage:
            chunks.append(usage_chunk_body(reply.usage, call.model, reply_id, created))
        drop_after = self._options.drop_after_chunks
        for n, chunk in enumerate(chunks):
            if drop_after is not None and n >= drop_after:
                return  # The upstream went away mid-stream: no usage, no [DONE].
            if n == self._options.hold_after_chunks:
                await self._release_event().wait()
            delay = self._options.ttft_ms if n == 0 else self._options.chunk_delay_ms
            if delay:
                await anyio.sleep(delay / 1000)
            yield _sse(chunk)
        yield b"data: [DONE]\n\n"

    async def embeddings(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        try:
            call = parse_embeddings(body)
        except SimRequestError as exc:
            return _error(400, exc.message, exc.param)
        fault = await self._delay_or_fault()
        if fault is not None:
            return fault
        data = []
        for index, item in enumerate(call.inputs):
            vector = embedding_vector(item.text, call.dimensions)
            embedding: object = encode_base64(vector) if call.base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(i.tokens for i in call.inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return _json({"object": "list", "data": data, "model": call.model, "usage": usage})

    async def moderations(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        try:
            texts = moderation_texts(body)
        except ValueError as exc:
            return _error(400, str(exc), "input")
        fault = await self._delay_or_fault()
        if fault is not None:
            return fault
        model = str(body.get("model") or "sim-moderation-1")
        return _json(moderation_body(model, f"modr-{uuid.uuid4().hex}", texts))

    async def models(self, request: Request) -> Response:
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "agentgw-sim"} for m in MODELS
        ]
        return _json({"object": "list", "data": data})

    async def healthz(self, request: Request) -> Response:
        return _json({"status": "ok"})

    async def recorded(self, request: Request) -> Response:
        return _json(list(self._requests))

    async def clear_recorded(self, request: Request) -> Response:
        self._requests.clear()
        self._headers.clear()
        return Response(status_code=204)

    async def recorded_headers(self, request: Request) -> Response:
        return _json(list(self._headers))

    async def release(self, request: Request) -> Response:
        self._release_event().set()
        return Response(status_code=204)


def build_sim_app(options: SimOptions) -> Starlette:
    """The sim's OpenAI-compatible HTTP app; `app.state.sim_requests` holds the bodies received."""
    requests: deque[Any] = deque(maxlen=RECORDED_REQUESTS)
    endpoints = _SimEndpoints(options, requests)
    anthropic = SimAnthropicFace(options, endpoints._faults, requests, endpoints._release_event)
    voice = SimVoiceFace(options, endpoints._faults, requests)
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", endpoints.chat_completions, methods=["POST"]),
            Route("/v1/embeddings", endpoints.embeddings, methods=["POST"]),
            Route("/v1/moderations", endpoints.moderations, methods=["POST"]),
            Route("/v1/models", endpoints.models, methods=["GET"]),
            Route("/healthz", endpoints.healthz, methods=["GET"]),
            Route("/_sim/requests", endpoints.recorded, methods=["GET"]),
            Route("/_sim/requests", endpoints.clear_recorded, methods=["DELETE"]),
            Route("/_sim/headers", endpoints.recorded_headers, methods=["GET"]),
            Route("/_sim/release", endpoints.release, methods=["POST"]),
            Route("/v1/messages", anthropic.messages, methods=["POST"]),
            Route("/_sim/anthropic/headers", anthropic.recorded_headers, methods=["GET"]),
            *voice.routes(),
            *SimMedia(requests).routes(),
        ]
    )
    app.state.sim_requests = requests
    return app


def serve_sim(host: str, port: int, options: SimOptions) -> None:
    """Serve the sim over HTTP until interrupted (blocks; runs its own event loop).

    Access logs are off (a benchmark would drown in them) but startup lines stay on: scripts
    and tests wait for uvicorn's "Uvicorn running on" line to know the port is open.
    """
    config = uvicorn.Config(
        build_sim_app(options), host=host, port=port, log_level="info", access_log=False
    )
    uvicorn.Server(config).run()
