"""OpenAI-compatible ingress: `/v1/chat/completions`, `/v1/embeddings`, `/v1/moderations`,
`/v1/models`.

Decodes the wire into an Envelope, hands it to the pipeline and encodes the reply. Every error
leaves here in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from adapters.ingress.http import (
    Direct,
    Inbound,
    JSONResponse,
    SSEResponse,
    call_info,
    parse_json_model,
    read_body,
    unfinished,
)
from adapters.wire.openai import (
    ChatRequest,
    EmbeddingRequest,
    ModerationRequest,
    chat_reply_to_wire,
    chat_request_to_envelope,
    chunk_to_wire,
    embedding_reply_to_wire,
    embedding_request_to_envelope,
    moderation_reply_to_wire,
    moderation_request_to_envelope,
    usage_chunk_to_wire,
)
from core.envelope import Envelope, StreamChunk, Usage
from core.errors import GatewayError, Internal, ModelNotFound
from core.pipeline import Call, Pipeline

logger = logging.getLogger("agentgw.ingress.openai")

_DONE = b"data: [DONE]\n\n"


def error_response(error: GatewayError) -> JSONResponse:
    """An error in OpenAI's shape, with the error's status and headers."""
    body = {
        "error": {
            "message": error.message,
            "type": error.type,
            "param": error.param,
            "code": error.code,
        }
    }
    return JSONResponse(body, status_code=error.status, headers=error.headers())


class OpenAIIngress:
    """The OpenAI wire, served over the pipeline."""

    def __init__(self, pipeline: Pipeline, *, max_body_bytes: int) -> None:
        self._pipeline = pipeline
        self._max_body = max_body_bytes

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/chat/completions", Direct(self.chat_completions), methods=["POST"]),
            Route("/v1/embeddings", Direct(self.embeddings), methods=["POST"]),
            Route("/v1/moderations", self.moderations, methods=["POST"]),
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", self.get_model, methods=["GET"]),
        ]

    async def chat_completions(self, request: Inbound) -> Response:
        async def run(call: Call) -> Response:
            body = await read_body(request, self._max_body)
            req = parse_json_model(ChatRequest, body)
            env = chat_request_to_envelope(req, call.request_id)
            if env.stream:
                chunks = await self._pipeline.stream(call, env)
                return SSEResponse(self._sse(call, env, chunks), headers=call.headers)
            reply = await self._pipeline.complete(call, env)
            return JSONResponse(
                chat_reply_to_wire(reply, _completion_id(call)), headers=call.headers
            )

        return await self._guarded(request, "openai.chat", run)

    async def embeddings(self, request: Inbound) -> Response:
        async def run(call: Call) -> Response:
            body = await read_body(request, self._max_body)
            req = parse_json_model(EmbeddingRequest, body)
            env = embedding_request_to_envelope(req, call.request_id)
            reply = await self._pipeline.complete(call, env)
            return JSONResponse(embedding_reply_to_wire(reply), headers=call.headers)

        return await self._guarded(request, "openai.embeddings", run)

    async def moderations(self, request: Request) -> Response:
        async def run(call: Call) -> Response:
            body = await read_body(request, self._max_body)
            req = parse_json_model(ModerationRequest, body)
            env = moderation_request_to_envelope(req, call.request_id)
            reply = await self._pipeline.complete(call, env)
            moderation_id = "modr-" + call.request_id.removeprefix("req_")
            return JSONResponse(
                moderation_reply_to_wire(reply, moderation_id), headers=call.headers
            )

        return await self._guarded(request, "openai.moderations", run)

    async def list_models(self, request: Request) -> Response:
        try:
            call = await self._pipeline.begin(call_info(request, "openai.models"))
        except GatewayError as exc:
            return error_response(exc)
        names = self._pipeline.models_for(call.principal)
        return JSONResponse({"object": "list", "data": [_model_card(n) for n in names]})

    async def get_model(self, request: Request) -> Response:
        try:
            call = await self._pipeline.begin(call_info(request, "openai.models"))
        except GatewayError as exc:
            return error_response(exc)
        name = request.path_params["model"]
        if name not in self._pipeline.models_for(call.principal):
            return error_response(ModelNotFound(f"The model '{name}' does not exist."))
        return JSONResponse(_model_card(name))

    async def _guarded(
        self, request: Inbound, route: str, run: Callable[[Call], Awaitable[Response]]
    ) -> Response:
        """Authenticate, run, and turn every failure into an OpenAI error (span recorded)."""
        call: Call | None = None
        try:
            call = await self._pipeline.begin(call_info(request, route))
            return await run(call)
        except GatewayError as exc:
            if call is not None:
                await self._pipeline.fail(call, exc)
            return error_response(exc)
        except Exception:  # the outermost boundary: a bug must still answer in our shape
            logger.exception("unexpected failure in %s", route)
            error = Internal("The gateway failed to handle this request.")
            if call is not None:
                await self._pipeline.fail(call, error)
            return error_response(error)

    async def _sse(
        self, call: Call, env: Envelope, chunks: AsyncGenerator[StreamChunk, None]
    ) -> AsyncGenerator[bytes, None]:
        completion_id = _completion_id(call)
        created = int(time.time())
        include_usage = bool(env.params.get("include_usage"))
        usage: Usage | None = None
        try:
            async for chunk in chunks:
                if chunk.usage is not None:
                    usage = chunk.usage
                if chunk.usage_only and not chunk.extra:
                    continue
                wire = chunk_to_wire(chunk, completion_id, env.model, created)
                yield b"data: " + orjson.dumps(wire) + b"\n\n"
            if include_usage and usage is not None:
                # The usage event and the end leave in one write.
                wire = usage_chunk_to_wire(usage, completion_id, env.model, created)
                yield b"data: " + orjson.dumps(wire) + b"\n\n" + _DONE
            else:
                yield _DONE
        except GatewayError as exc:
            # Bytes are already out: the error travels as an SSE event the SDKs raise on.
            error = {
                "error": {
                    "message": exc.message,
                    "type": exc.type,
                    "param": exc.param,
                    "code": exc.code,
                }
            }
            yield b"data: " + orjson.dumps(error) + b"\n\n"
        finally:
            if unfinished(chunks):
                with anyio.CancelScope(shield=True):
                    await chunks.aclose()


def _completion_id(call: Call) -> str:
    return "chatcmpl-" + call.request_id.removeprefix("req_")


def _model_card(name: str) -> dict[str, object]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "agentgw"}
