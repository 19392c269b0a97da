"""What the images, videos and audio ingresses share: the guarded run and multipart forms."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from adapters.ingress.http import call_info, read_body
from adapters.ingress.openai import error_response
from adapters.wire.openai_media import Upload
from core.errors import (
    GatewayError,
    Internal,
    InvalidJSON,
    UnsupportedMediaType,
    ValidationFailed,
)
from core.pipeline import Call, Pipeline

logger = logging.getLogger("agentgw.ingress.media")

M = TypeVar("M", bound=BaseModel)

MAX_FORM_FILES = 16
MAX_FORM_FIELDS = 64


@dataclass(slots=True)
class Form:
    """A multipart form: its text fields and its files."""

    fields: dict[str, str] = field(default_factory=dict)
    files: list[Upload] = field(default_factory=list)


async def guarded(
    pipeline: Pipeline, request: Request, route: str, run: Callable[[Call], Awaitable[Response]]
) -> Response:
    """Authenticate, run, and turn every failure into an OpenAI error (span recorded)."""
    call: Call | None = None
    try:
        call = await pipeline.begin(call_info(request, route))
        return await run(call)
    except GatewayError as exc:
        if call is not None:
            await pipeline.fail(call, exc)
        return error_response(exc)
    except Exception:  # the outermost boundary: a bug must still answer in our shape
        logger.exception("unexpected failure in %s", route)
        error = Internal("The gateway failed to handle this request.")
        if call is not None:
            await pipeline.fail(call, error)
        return error_response(error)


def is_multipart(request: Request) -> bool:
    """Whether the body is a multipart form; else it is read as JSON.

    Raises:
        UnsupportedMediaType: the body is declared as neither (plain text, url-encoded, ...).
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        return True
    if kind and kind != "application/json" and not kind.endswith("+json"):
        raise UnsupportedMediaType(
            f"Content-Type '{kind}' is not accepted: send multipart/form-data or application/json."
        )
    return False


async def read_form(request: Request, limit: int) -> Form:
    """A multipart body, read within `limit` bytes first and parsed from memory.

    Raises:
        PayloadTooLarge: the body is over `limit`.
        InvalidJSON: the body is not a multipart form (the client's protocol error for bad bodies).
    """
    body = await read_body(request, limit, form=True)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    form = Form()
    try:
        async with Request(request.scope, replay).form(
            max_files=MAX_FORM_FILES, max_fields=MAX_FORM_FIELDS
        ) as parsed:
            for name, value in parsed.multi_items():
                if isinstance(value, UploadFile):
                    data = await value.read()
                    mime = value.content_type or "application/octet-stream"
                    form.files.append(Upload(name, value.filename or name, mime, data))
                else:
                    form.fields[name] = value
    except (MultiPartException, HTTPException, ValueError) as exc:
        raise InvalidJSON(f"The multipart body could not be parsed: {exc}") from None
    return form


def validate_form(model: type[M], fields: Mapping[str, str]) -> M:
    """A form's text fields validated as `model` (strings coerced as JSON would not be).

    Raises:
        ValidationFailed: the first bad field named in the message and as `param`.
    """
    try:
        return model.model_validate(dict(fields))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or None
        raise ValidationFailed(
            f"Invalid request: {where or 'body'}: {first['msg']}", param=where
        ) from None
