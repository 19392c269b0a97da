"""OpenAI images ingress: `POST /v1/images/generations` (JSON), `POST /v1/images/edits` (multipart,
or JSON with images by URL: `images: [{image_url}]`, `mask: {image_url}`).

Prompts go through the text filters, uploaded images (and the mask) through the media filter, and
the images an upstream returns are stripped of metadata before the client sees them. One image is
one metered unit (`Usage.images`, priced `per_image`) and counts against `images` limits.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from adapters.ingress.http import JSONResponse, parse_json_model, read_body
from adapters.ingress.media_http import guarded, is_multipart, read_form, validate_form
from adapters.wire.openai_media import (
    ImageEditFields,
    ImageEditJsonRequest,
    ImageGenerationRequest,
    image_edit_json_to_envelope,
    image_reply_to_wire,
    image_request_to_envelope,
)
from core.envelope import Envelope
from core.errors import ValidationFailed
from core.pipeline import Call, Pipeline

_IMAGE_FIELDS = ("image", "image[]", "mask")


class ImagesIngress:
    """The OpenAI images endpoints, served over the pipeline."""

    def __init__(self, pipeline: Pipeline, *, max_body_bytes: int) -> None:
        self._pipeline = pipeline
        self._max_body = max_body_bytes

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/images/generations", self.generations, methods=["POST"]),
            Route("/v1/images/edits", self.edits, methods=["POST"]),
        ]

    async def generations(self, request: Request) -> Response:
        async def run(call: Call) -> Response:
            req = parse_json_model(ImageGenerationRequest, await read_body(request, self._max_body))
            env = image_request_to_envelope(req, [], "generate", call.request_id)
            reply = await self._pipeline.complete(call, env)
            return JSONResponse(image_reply_to_wire(reply), headers=call.headers)

        return await guarded(self._pipeline, request, "openai.images.generations", run)

    async def edits(self, request: Request) -> Response:
        async def run(call: Call) -> Response:
            env = await self._edit(request, call)
            reply = await self._pipeline.complete(call, env)
            return JSONResponse(image_reply_to_wire(reply), headers=call.headers)

        return await guarded(self._pipeline, request, "openai.images.edits", run)

    async def _edit(self, request: Request, call: Call) -> Envelope:
        if not is_multipart(request):
            body = await read_body(request, self._max_body)
            return image_edit_json_to_envelope(
                parse_json_model(ImageEditJsonRequest, body), call.request_id
            )
        form = await read_form(request, self._max_body)
        fields = validate_form(ImageEditFields, form.fields)
        uploads = [f for f in form.files if f.field in _IMAGE_FIELDS]
        if not any(f.field != "mask" for f in uploads):
            raise ValidationFailed("Invalid request: image: Field required", param="image")
        return image_request_to_envelope(fields, uploads, "edit", call.request_id)
