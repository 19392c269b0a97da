"""What every HTTP ingress shares: bounded body reads, JSON replies, the SSE response, and the
direct endpoints the hottest routes are served by."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

import anyio
import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from core.errors import InvalidJSON, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from core.pipeline import CallInfo
from core.tracing import new_request_id

logger = logging.getLogger("agentgw.ingress")

M = TypeVar("M", bound=BaseModel)


class Inbound(Protocol):
    """What the ingresses read of a request: Starlette's `Request`, or `Incoming`."""

    @property
    def scope(self) -> Scope: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def stream(self) -> AsyncGenerator[bytes, None]: ...


class Incoming:
    """A request as a direct endpoint reads it: the headers decoded once into a dict (keys are
    lower-case on the ASGI wire; the first of repeated headers wins, as in Starlette), the body
    read from `receive`."""

    __slots__ = ("headers", "receive", "scope")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.headers: dict[str, str] = {
            k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(scope["headers"])
        }

    async def stream(self) -> AsyncGenerator[bytes, None]:
        """The body's chunks as they arrive.

        Raises:
            ClientDisconnect: the client went away before the body was complete.
        """
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            body = message.get("body", b"")
            if body:
                yield body
            if not message.get("more_body", False):
                return

    async def read(self, limit: int) -> bytes:
        """The whole body, as `read_body` reads `stream()`, without an async generator's
        set-up and finalizer hooks (most bodies come in one message).

        Raises:
            ClientDisconnect: the client went away before the body was complete.
            PayloadTooLarge: more than `limit` bytes.
        """
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            body: bytes = message.get("body", b"")
            size += len(body)
            if size > limit:
                raise _too_large(limit)
            if body:
                chunks.append(body)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class Direct:
    """An endpoint that `core.app` serves ahead of Starlette's middleware and router.

    The chat routes carry nearly all traffic; the framework layers between uvicorn and the
    handler (two middlewares, the router's matching, `Request`, the exception wrappers) cost
    ~11 µs of CPU on every call (measured in-process). A `Direct` is an ASGI endpoint
    (registered as a `Route` as well, so 405s and the route listing are Starlette's), and
    does itself what the middleware would: the request id, and its `x-request-id` reply header.
    """

    direct = True  # the mark `core.app.GatewayApp` dispatches by

    def __init__(self, handler: Callable[[Incoming], Awaitable[Response]]) -> None:
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope.setdefault("state", {})
        request_id = state.get("request_id")
        from_middleware = request_id is not None  # reached through Starlette after all
        if request_id is None:
            request_id = state["request_id"] = new_request_id()
        response = await self._handler(Incoming(scope, receive))
        if not from_middleware:
            response.raw_headers.append((b"x-request-id", request_id.encode()))
        await response(scope, receive, send)


def call_info(request: Inbound, route: str) -> CallInfo:
    """The call's identity, taken before the body is read."""
    scope = request.scope
    request_id = scope.get("state", {}).get("request_id") or new_request_id()
    client = scope.get("client")
    return CallInfo(request_id, route, request.headers, client[0] if client else None)


async def read_body(request: Inbound, limit: int, *, form: bool = False) -> bytes:
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
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    if isinstance(request, Incoming):
        return await request.read(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes.")


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
    """A JSON response serialized with orjson.

    Its headers are built directly (Starlette's general `init_headers` is most of the cost of
    a response object), unless the caller sets a content type or length of its own.
    """

    media_type = "application/json"

    def __init__(
        self,
        content: Any,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if headers and any(k.lower() in ("content-type", "content-length") for k in headers):
            super().__init__(content, status_code, headers)
            return
        self.status_code = status_code
        self.background = None
        self.body = orjson.dumps(content)
        self.raw_headers = [
            (b"content-length", str(len(self.body)).encode()),
            (b"content-type", b"application/json"),
        ]
        if headers:
            self.raw_headers += [
                (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
            ]

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
        # The watcher is a bare asyncio task cancelling an anyio scope, not a task group: a
        # group (its scopes, the task it names and spawns, its cancel at the end) was ~10 % of
        # a whole streamed call's CPU (py-spy, in-process). Cancelling through the scope keeps
        # the shields below (the span recorded as a stream unwinds) working as under a group.
        stopped = anyio.CancelScope()
        watcher = asyncio.get_running_loop().create_task(_watch_disconnect(receive, stopped))
        watcher.add_done_callback(_retrieved)
        try:
            with stopped:
                start = {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
                await send(start)
                async for data in self._source:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            if unfinished(self._source):  # a finished generator closes without awaiting
                with anyio.CancelScope(shield=True):
                    await self._source.aclose()


def unfinished(source: AsyncGenerator[Any, None]) -> bool:
    """Whether closing `source` may still run code (and so needs shielding from cancellation):
    a native async generator that ran to its end has no frame left; anything else may."""
    return getattr(source, "ag_frame", True) is not None


def _retrieved(task: asyncio.Task[None]) -> None:
    # A receive that failed (the connection broke) ends the watch; asyncio would otherwise log
    # the never-retrieved exception when the task is collected.
    if not task.cancelled():
        task.exception()


async def _watch_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return
