"""The OpenAI images and videos wire, both ways: JSON or multipart fields ↔ Envelope.

Requests carry the prompt as a text part and every uploaded image (an edit's images and mask, a
video's reference image) as an `ImagePart` with a `data:` URL, so the filters see all of them.
`params["operation"]` says which endpoint: `generate` or `edit` (images), `create` (videos).
Replies carry generated images as `ImagePart`s; a video job's upstream JSON rides in
`extra["video"]`.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.envelope import Envelope, ImagePart, Message, Modality, Part, TextPart, Usage
from core.errors import UnsupportedContent, ValidationFailed

OPERATION = "operation"
IMAGE_PARAMS = frozenset({"n", "size", "quality", "user"})
VIDEO_PARAMS = frozenset({"seconds", "size"})
DEFAULT_VIDEO_SECONDS = 4.0
_UPLOAD_ROLE = "upload"  # `ImagePart.extra` key: which form field an image came in


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow")


class ImageGenerationRequest(_Wire):
    model: str = Field(min_length=1)
    prompt: str = Field(min_length=1, max_length=32_000)
    n: int | None = Field(None, ge=1, le=10)
    size: str | None = None
    quality: str | None = None
    user: str | None = None


class ImageEditFields(ImageGenerationRequest):
    """The text fields of a multipart edit; the images travel beside them as `Upload`s."""


class ImageRef(BaseModel):
    """An image named in a JSON edit: a URL (http(s) or `data:`) or an uploaded file's id."""

    model_config = ConfigDict(extra="forbid")

    image_url: str | None = Field(None, min_length=1)
    file_id: str | None = Field(None, min_length=1)


class ImageEditJsonRequest(ImageGenerationRequest):
    """The JSON form of an edit: images by reference (`EditImageBodyJsonParam`)."""

    images: list[ImageRef] = Field(min_length=1, max_length=16)
    mask: ImageRef | None = None


class VideoCreateRequest(_Wire):
    model: str = Field(min_length=1)
    prompt: str = Field(min_length=1, max_length=32_000)
    seconds: str | None = Field(None, pattern=r"^\d{1,3}$")
    size: str | None = Field(None, pattern=r"^\d{2,5}x\d{2,5}$")


@dataclass(frozen=True, slots=True)
class Upload:
    """A file from a multipart form: its field name, filename, media type and bytes."""

    field: str
    filename: str
    mime: str
    data: bytes


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def data_url_bytes(url: str) -> tuple[str, bytes]:
    """The media type and bytes of a base64 `data:` URL.

    Raises:
        UnsupportedContent: not a base64 data URL.
    """
    header, sep, payload = url.removeprefix("data:").partition(",")
    mime, _, encoding = header.partition(";")
    if not url.startswith("data:") or not sep or encoding != "base64":
        raise UnsupportedContent("Media must travel as base64 data: URLs here.")
    try:
        return mime, base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise UnsupportedContent("The data: URL does not hold valid base64.") from None


def _split(raw: dict[str, Any], known: frozenset[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    params = {k: v for k, v in raw.items() if k in known}
    extra = {k: v for k, v in raw.items() if k not in known and k not in ("model", "prompt")}
    return params, extra


def _uploads(uploads: list[Upload]) -> list[Part]:
    return [ImagePart(data_url(u.mime, u.data), extra={_UPLOAD_ROLE: u.field}) for u in uploads]


def image_request_to_envelope(
    req: ImageGenerationRequest, uploads: list[Upload], operation: str, request_id: str
) -> Envelope:
    """An images request (`generate`, or `edit` with its uploads) as an Envelope."""
    params, extra = _split(req.model_dump(exclude_unset=True), IMAGE_PARAMS)
    params[OPERATION] = operation
    # Images come back inline (they must be stripped on the way): a request for URLs is dropped.
    if extra.get("response_format") == "url":
        del extra["response_format"]
    parts: list[Part] = [TextPart(req.prompt), *_uploads(uploads)]
    return Envelope(
        id=request_id,
        modality=Modality.IMAGE,
        model=req.model,
        messages=[Message("user", parts)],
        params=params,
        extra=extra,
    )


def image_edit_json_to_envelope(req: ImageEditJsonRequest, request_id: str) -> Envelope:
    """A JSON edit as an Envelope: each referenced image an `ImagePart` the media filter checks
    (and fetches, when remote fetching is allowed) like an upload.

    Raises:
        UnsupportedContent: an image named by `file_id`, whose bytes the gateway cannot check.
    """
    refs = [("image[]" if len(req.images) > 1 else "image", r) for r in req.images]
    if req.mask is not None:
        refs.append(("mask", req.mask))
    parts: list[Part] = []
    for i, (role, ref) in enumerate(refs):
        where = "mask" if role == "mask" else f"images.{i}"
        if ref.image_url is None:
            raise UnsupportedContent(
                "Images named by file_id cannot be checked by this gateway; send image_url "
                "(an http(s) or data: URL).",
                param=where,
            )
        parts.append(ImagePart(ref.image_url, extra={_UPLOAD_ROLE: role}))
    env = image_request_to_envelope(req, [], "edit", request_id)
    for name in ("images", "mask"):
        env.extra.pop(name, None)
    env.messages[0].parts.extend(parts)
    return env


def video_request_to_envelope(
    req: VideoCreateRequest, uploads: list[Upload], request_id: str
) -> Envelope:
    params, extra = _split(req.model_dump(exclude_unset=True), VIDEO_PARAMS)
    params[OPERATION] = "create"
    parts: list[Part] = [TextPart(req.prompt), *_uploads(uploads)]
    return Envelope(
        id=request_id,
        modality=Modality.VIDEO,
        model=req.model,
        messages=[Message("user", parts)],
        params=params,
        extra=extra,
    )


def prompt_of(env: Envelope) -> str:
    return "".join(p.text for m in env.messages for p in m.parts if isinstance(p, TextPart))


def uploads_of(env: Envelope) -> list[Upload]:
    """The images of a request, as (already filtered) files to send on.

    Raises:
        UnsupportedContent: an image that is not a data: URL.
    """
    files: list[Upload] = []
    for message in env.messages:
        for i, part in enumerate(message.parts):
            if isinstance(part, ImagePart):
                mime, data = data_url_bytes(part.url)
                field = str(part.extra.get(_UPLOAD_ROLE, "image"))
                ext = mime.rsplit("/", 1)[-1] or "bin"
                files.append(Upload(field, f"{field.strip('[]')}-{i}.{ext}", mime, data))
    return files


def media_fields(env: Envelope) -> dict[str, Any]:
    """The non-file fields of an upstream media request (model already the upstream's)."""
    fields = {k: v for k, v in env.params.items() if k != OPERATION}
    return {**env.extra, **fields, "model": env.model, "prompt": prompt_of(env)}


# -- replies ----------------------------------------------------------------------------------


def image_reply_from_wire(body: dict[str, Any], request: Envelope) -> Envelope:
    """An images reply: each item a base64 image (or a URL) with its revised prompt.

    Raises:
        ValidationFailed: the reply holds no image list.
    """
    items = body.get("data")
    if not isinstance(items, list):
        raise ValidationFailed("The upstream's images reply has no data list.")
    parts: list[Part] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        extra = {k: v for k, v in item.items() if k not in ("b64_json", "url")}
        if isinstance(item.get("b64_json"), str):
            mime = f"image/{body.get('output_format') or 'png'}".replace("jpg", "jpeg")
            parts.append(ImagePart(f"data:{mime};base64,{item['b64_json']}", extra=extra))
        elif isinstance(item.get("url"), str):
            parts.append(ImagePart(item["url"], extra=extra))
    usage = Usage(images=len(parts), media_tier=_image_tier(body, request))
    tokens = body.get("usage")
    if isinstance(tokens, dict):
        usage.input_tokens = int(tokens.get("input_tokens") or 0)
        usage.output_tokens = int(tokens.get("output_tokens") or 0)
    rest = {k: v for k, v in body.items() if k not in ("data", "usage")}
    return Envelope(
        id=request.id,
        modality=Modality.IMAGE,
        model=request.model,
        messages=[Message("assistant", parts)],
        usage=usage,
        extra=rest,
        trace=request.trace,
        principal=request.principal,
    )


def image_reply_to_wire(env: Envelope) -> dict[str, Any]:
    data = []
    for message in env.messages:
        for part in message.parts:
            if isinstance(part, ImagePart):
                item = dict(part.extra)
                if part.url.startswith("data:"):
                    item["b64_json"] = part.url.split(",", 1)[1]
                else:
                    item["url"] = part.url
                data.append(item)
    body: dict[str, Any] = {"created": int(time.time()), **env.extra, "data": data}
    if env.usage is not None and (env.usage.input_tokens or env.usage.output_tokens):
        body["usage"] = {
            "input_tokens": env.usage.input_tokens,
            "output_tokens": env.usage.output_tokens,
            "total_tokens": env.usage.total_tokens,
        }
    return body


def video_seconds(job: dict[str, Any], request: Envelope | None = None) -> float:
    """A job's length in seconds: the upstream's word, else what was asked, else the default."""
    for value in (job.get("seconds"), request.params.get("seconds") if request else None):
        try:
            if value is not None:
                return float(value)
        except (TypeError, ValueError):
            continue
    return DEFAULT_VIDEO_SECONDS


def video_reply_from_wire(body: dict[str, Any], request: Envelope) -> Envelope:
    """A created video job; metered by the seconds the upstream committed to.

    Raises:
        ValidationFailed: the reply has no job id.
    """
    if not isinstance(body.get("id"), str):
        raise ValidationFailed("The upstream's video reply has no id.")
    return Envelope(
        id=request.id,
        modality=Modality.VIDEO,
        model=request.model,
        usage=Usage(
            video_seconds=video_seconds(body, request),
            media_tier=_text(body.get("size")) or _text(request.params.get("size")),
        ),
        extra={"video": body},
        trace=request.trace,
        principal=request.principal,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _image_tier(body: dict[str, Any], request: Envelope) -> str | None:
    """The "quality/size" of what was made (the upstream's word first, else what was asked)."""
    quality = _text(body.get("quality")) or _text(request.params.get("quality"))
    size = _text(body.get("size")) or _text(request.params.get("size"))
    return "/".join(t for t in (quality, size) if t) or None
