"""What every admin endpoint shares: its declaration, the call it receives, and its replies.

An `Endpoint` is declared once and serves twice: as a Starlette route and as an operation in the
OpenAPI document, so the schema cannot drift from what is served. Errors leave in one JSON shape,
`{"error": {"message", "type", "code", "param"}}`, with the error's status.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.audit import Actor
from core.errors import GatewayError, InvalidJSON, PayloadTooLarge, ValidationFailed
from core.export import to_csv
from core.keyspec import explain
from core.roles import Permission
from core.timestamps import parse_instant


@dataclass(frozen=True, slots=True)
class Query:
    """A query parameter an endpoint accepts (any other is refused)."""

    name: str
    description: str
    type: str = "string"


@dataclass(frozen=True, slots=True)
class AdminCall:
    """One authenticated admin request, its body already validated."""

    actor: Actor
    path: Mapping[str, str]
    query: Mapping[str, str]
    body: BaseModel | None


@dataclass(frozen=True, slots=True)
class Listing:
    """Rows of a listing: JSON `{"object": "list", "data": rows}`, or CSV with `?format=csv`."""

    rows: list[dict[str, Any]]
    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Reply:
    """One object (or any JSON) with a status."""

    body: Any
    status: int = 200


Handler = Callable[[AdminCall], Awaitable[Reply | Listing]]
M = TypeVar("M", bound=BaseModel)


def body(call: AdminCall, model: type[M]) -> M:
    """The call's validated body, as the model its endpoint declares."""
    assert isinstance(call.body, model), "the endpoint declares this body model"
    return call.body


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An admin operation: route, documentation and validation in one declaration."""

    method: str
    path: str
    handler: Handler
    summary: str
    roles: str
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    query: tuple[Query, ...] = ()
    exportable: bool = False
    public: bool = False
    tags: tuple[str, ...] = field(default_factory=tuple)
    # Reads the body itself (another content type than JSON); else `body` is read as JSON.
    read_body: Callable[[Request, int], Awaitable[BaseModel]] | None = None
    # Checked before the body is read, so a role without it is refused (403) whatever it sent.
    permission: Permission | None = None

    @property
    def accepted_query(self) -> frozenset[str]:
        names = {q.name for q in self.query}
        return frozenset(names | {"format"} if self.exportable else names)


def error_response(error: GatewayError) -> JSONResponse:
    body = {
        "error": {
            "message": error.message,
            "type": error.type,
            "code": error.code,
            "param": error.param,
        }
    }
    return JSONResponse(body, status_code=error.status, headers=error.headers())


async def read_json_body(request: Request, model: type[BaseModel], limit: int) -> BaseModel:
    """The body validated against `model`.

    Raises:
        PayloadTooLarge: the body is over `limit` bytes.
        InvalidJSON: not a JSON object.
        ValidationFailed: does not match `model`; the message names every bad field (up to 5).
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes.")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        body = b"{}"  # an empty body is an empty object: every required field is then reported
    try:
        parsed = json.loads(body)
    except ValueError:
        raise InvalidJSON("Request body is not valid JSON.") from None
    if not isinstance(parsed, dict):
        raise InvalidJSON("Request body must be a JSON object.")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise validation_failed(exc) from None


def validation_failed(exc: ValidationError) -> ValidationFailed:
    """A 422 whose message names each bad field in words a client can act on."""
    message, param = explain(exc)
    return ValidationFailed("Invalid request: " + message, param=param)


def render(reply: Reply | Listing, query: Mapping[str, str]) -> Response:
    """JSON, or CSV for a listing asked for with `?format=csv`."""
    if isinstance(reply, Reply):
        return JSONResponse(reply.body, status_code=reply.status)
    if query.get("format") == "csv":
        return Response(
            to_csv(reply.rows, reply.columns),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": "attachment"},
        )
    return JSONResponse({"object": "list", "data": reply.rows})


def check_query(query: Mapping[str, str], endpoint: Endpoint) -> None:
    """Raises:
    ValidationFailed: a parameter the endpoint does not take, or a bad `format`.
    """
    unknown = sorted(set(query) - endpoint.accepted_query)
    if unknown:
        accepted = ", ".join(sorted(endpoint.accepted_query)) or "none"
        raise ValidationFailed(
            f"Unknown query parameter(s): {', '.join(unknown)} (accepted: {accepted}).",
            param=unknown[0],
        )
    if endpoint.exportable and query.get("format", "json") not in ("json", "csv"):
        raise ValidationFailed("format: expected 'json' or 'csv'.", param="format")


def query_instant(q: Mapping[str, str], name: str) -> float | None:
    """A time in the query (ISO 8601 or epoch seconds), or None when absent.

    Raises:
        ValidationFailed: it is present but not a time.
    """
    if name not in q:
        return None
    try:
        return parse_instant(q[name])
    except ValueError as exc:
        raise ValidationFailed(f"{name}: {exc}", param=name) from None


def query_integer(q: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """An integer in the query within [low, high], or `default` when absent.

    Raises:
        ValidationFailed: it is present but not such an integer.
    """
    if name not in q:
        return default
    text = q[name]
    if not text.isdigit() or not low <= int(text) <= high:
        raise ValidationFailed(f"{name}: expected an integer from {low} to {high}", param=name)
    return int(text)
