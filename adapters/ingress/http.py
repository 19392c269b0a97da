"""What every HTTP ingress shares: bounded body reads, JSON replies, the SSE response."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Mapping
from typing import Any, TypeVar

import anyio
import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from core.errors import InvalidJSON, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from core.pipeline import CallInfo
from core.tracing import new_request_id

logger = logging.getLogger("agentgw.ingress")

M = TypeVar("M", bound=BaseModel)


def call_info(request: Request, route: str) -> CallInfo:
    """The call's identity, taken before the body is read."""
    request_id = request.scope.get("state", {}).get("request_id") or new_request_id()
    client = request.client.host if request.client else None
    return CallInfo(request_id, route, request.headers, client)


async def read_body(request: Request, limit: int, *, form: bool = False) -> bytes:
    """The whole body, refusing more than `limit` bytes without reading past it.

    Unless `form` (the caller parses a multipart form), a multipart body is refused: the
    endpoint reads JSON, and a form would otherwise surface as a puzzling "not valid JSON".

    Raises:
        PayloadTooLarge: the declared or the actual size is over the limit.
        UnsupportedMediaType: a multipart form sent where JSON is expected.
    """
    if not form and request.headers.get("content-type", "").lower().startswith("multipart/"):
        raise UnsupportedMediaType(
            "This endpoint reads a JSON body (Content-Type: application/json), not a form."
        )
    declared = request.headers.get("content-length")
    too_large = PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes.")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_model(model: type[M], body: bytes) -> M:
    """Parse and validate a JSON body in one pass.

    Raises:
        InvalidJSON: the body is not a JSON object.
        ValidationFailed: it does not match `model`; the message names the first bad field.
    """
    if not body.strip():
        raise InvalidJSON("Request body is empty; expected a JSON object.")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        if first["type"] == "json_invalid":
            raise InvalidJSON("Request body is not valid JSON.") from None
        if first["type"] == "model_type" and not first["loc"]:
            raise InvalidJSON("Request body must be a JSON object.") from None
        where = _loc(first["loc"])
        detail = "; ".join(f"{_loc(e['loc']) or 'body'}: {e['msg']}" for e in errors[:3])
        raise ValidationFailed(f"Invalid request: {detail}", param=where or None) from None


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "list[ContentPart]", "list[str]", "list[int]", "list[list[int]]"):
            continue  # union branch names from pydantic say nothing to a client
        else:
            out += f".{part}" if out else part
    return out


class JSONResponse(Response):
    """A JSON response serialized with orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class SSEResponse(Response):
    """A server-sent-events response that always closes its source.

    The source is closed when it ends, when sending fails, and when the client disconnects
    (watched on `receive`), so an abandoned stream stops pulling from the upstream at once.
    """

    media_type = "text/event-stream"

    def __init__(
        self, source: AsyncGenerator[bytes, None], headers: Mapping[str, str] | None = None
    ) -> None:
        fixed = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        super().__init__(None, headers={**fixed, **(headers or {})})
        # Response computes a content-length from its (empty) body: a stream has none.
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self._source = source

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch_disconnect, receive, tg.cancel_scope)
                start = {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
                await send(start)
                async for data in self._source:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._source.aclose()

    @staticmethod
    async def _watch_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                scope.cancel()
                return
