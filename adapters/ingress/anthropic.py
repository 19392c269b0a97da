"""Anthropic-compatible ingress: `POST /v1/messages` and `POST /v1/messages/count_tokens`.

What Claude Code and the `anthropic` SDK call. The key comes as `x-api-key` or
`Authorization: Bearer`. Every error leaves here in Anthropic's shape,
`{"type": "error", "error": {"type", "message"}, "request_id"}`, with the status of our error
tree; an error after a stream has begun is an `event: error` SSE event.

`count_tokens` is answered by the gateway itself with an estimate (`estimate_prompt_tokens`, the
figure budgets reserve by) and calls no upstream. Like `/v1/models` it records no span: it spends
nothing, and Claude Code calls it often enough that spans would drown the calls that do spend.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import anyio
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
)
from adapters.wire.anthropic import (
    BETA_MARK,
    CountTokensRequest,
    MessagesRequest,
    messages_request_to_envelope,
)
from adapters.wire.anthropic_encode import message_reply_to_wire
from adapters.wire.anthropic_stream import StreamEncoder, sse_event
from core.access import authorize_modality, authorize_model
from core.envelope import Envelope, StreamChunk
from core.errors import (
    FilterUnavailable,
    GatewayError,
    Internal,
    UpstreamUnavailable,
)
from core.metering import estimate_prompt_tokens
from core.pipeline import Call, Pipeline

logger = logging.getLogger("agentgw.ingress.anthropic")

_TYPES_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def error_type(error: GatewayError) -> str:
    """Anthropic's error type for one of ours, by class first, then by status."""
    match error:
        case FilterUnavailable():
            return "api_error"  # our own filter failed: not a capacity problem to back off from
        case UpstreamUnavailable():
            return "overloaded_error"
    status = error.status
    if status in _TYPES_BY_STATUS:
        return _TYPES_BY_STATUS[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def error_body(error: GatewayError, request_id: str) -> dict[str, Any]:
    """The JSON of an error in Anthropic's shape."""
    detail = {"type": error_type(error), "message": error.message}
    return {"type": "error", "error": detail, "request_id": request_id}


def error_response(error: GatewayError, request_id: str) -> JSONResponse:
    """An error in Anthropic's shape, with the error's status and headers."""
    body = error_body(error, request_id)
    return JSONResponse(body, status_code=error.status, headers=error.headers())


class AnthropicIngress:
    """The Anthropic Messages wire, served over the pipeline."""

    def __init__(self, pipeline: Pipeline, *, max_body_bytes: int) -> None:
        self._pipeline = pipeline
        self._max_body = max_body_bytes

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/messages", Direct(self.messages), methods=["POST"]),
            Route("/v1/messages/count_tokens", self.count_tokens, methods=["POST"]),
        ]

    async def messages(self, request: Inbound) -> Response:
        async def run(call: Call) -> Response:
            body = await read_body(request, self._max_body)
            req = parse_json_model(MessagesRequest, body)
            env = messages_request_to_envelope(req, call.request_id)
            beta = request.headers.get("anthropic-beta")
            if beta:
                # Betas change what a request means; an Anthropic upstream must see them too.
                env.params[BETA_MARK] = beta
            if env.stream:
                chunks = await self._pipeline.stream(call, env)
                return SSEResponse(self._sse(call, env, chunks), headers=call.headers)
            reply = await self._pipeline.complete(call, env)
            return JSONResponse(
                message_reply_to_wire(reply, _message_id(call)), headers=call.headers
            )

        return await self._guarded(request, "anthropic.messages", run, record=True)

    async def count_tokens(self, request: Request) -> Response:
        async def run(call: Call) -> Response:
            body = await read_body(request, self._max_body)
            req = parse_json_model(CountTokensRequest, body)
            env = messages_request_to_envelope(req, call.request_id)
            authorize_modality(call.principal, env.modality.value)
            authorize_model(call.principal, env.model)
            self._pipeline.router.route(env.model)  # an unknown model is a 404, as on /messages
            return JSONResponse({"input_tokens": estimate_prompt_tokens(env)})

        return await self._guarded(request, "anthropic.count_tokens", run, record=False)

    async def _guarded(
        self,
        request: Inbound,
        route: str,
        run: Callable[[Call], Awaitable[Response]],
        *,
        record: bool,
    ) -> Response:
        """Authenticate, run, and turn every failure into an Anthropic error.

        With `record`, a failure leaves the call's span (the pipeline records successes).
        """
        info = call_info(request, route)
        call: Call | None = None
        try:
            call = await self._pipeline.begin(info)
            return await run(call)
        except GatewayError as exc:
            if call is not None and record:
                await self._pipeline.fail(call, exc)
            return error_response(exc, info.request_id)
        except Exception:  # the outermost boundary: a bug must still answer in our shape
            logger.exception("unexpected failure in %s", route)
            error = Internal("The gateway failed to handle this request.")
            if call is not None and record:
                await self._pipeline.fail(call, error)
            return error_response(error, info.request_id)

    async def _sse(
        self, call: Call, env: Envelope, chunks: AsyncGenerator[StreamChunk, None]
    ) -> AsyncGenerator[bytes, None]:
        encoder = StreamEncoder(_message_id(call), env.model, estimate_prompt_tokens(env))
        try:
            async for chunk in chunks:
                events = encoder.feed(chunk)
                if events:
                    yield b"".join(events)
            yield b"".join(encoder.finish())
        except GatewayError as exc:
            # Bytes are already out: the error travels as the event the SDKs raise on.
            yield sse_event("error", error_body(exc, call.request_id))
        finally:
            with anyio.CancelScope(shield=True):
                await chunks.aclose()


def _message_id(call: Call) -> str:
    return "msg_" + call.request_id.removeprefix("req_")
