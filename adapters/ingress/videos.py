"""OpenAI videos ingress: `POST /v1/videos`, `GET /v1/videos/{id}`, `GET /v1/videos/{id}/content`.

Creating a job runs the whole pipeline (the prompt through the text filters, a reference image
through the media filter, seconds metered and counted against `video_seconds` limits). The job is
then kept under an id of agentgw's own, mapped to the upstream's, and owned by the creating key:
status and content requests from any other key get 404. Status and content are read live from
the upstream that made the job; each read is one span of its own and counts against `requests`
(and `concurrent`) limits like any other call, never against `video_seconds` or budgets.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from adapters.ingress.http import JSONResponse, parse_json_model, read_body
from adapters.ingress.media_http import guarded, is_multipart, read_form, validate_form
from adapters.wire.openai_media import VideoCreateRequest, video_request_to_envelope, video_seconds
from core.access import authorize_modality
from core.envelope import Envelope, Modality, Usage
from core.errors import NotFound, UnsupportedContent, UpstreamError, ValidationFailed
from core.media import VideoJob, VideoJobStore, VideoUpstream, new_video_id
from core.pipeline import Call, Pipeline
from core.quota import Reservation

_REFERENCE_FIELD = "input_reference"
_VARIANTS = frozenset({"video", "thumbnail", "spritesheet"})
# What a status or content read holds: it is a request, but it makes no video seconds.
_READ_LIMITS = frozenset({"requests", "concurrent"})


class VideosIngress:
    """The OpenAI video-job endpoints, served over the pipeline."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        jobs: VideoJobStore,
        providers: Mapping[str, object],
        max_body_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._pipeline = pipeline
        self._jobs = jobs
        self._providers = providers
        self._max_body = max_body_bytes
        self._clock = clock

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/videos", self.create, methods=["POST"]),
            Route("/v1/videos/{video_id}", self.status, methods=["GET"]),
            Route("/v1/videos/{video_id}/content", self.content, methods=["GET"]),
        ]

    async def create(self, request: Request) -> Response:
        async def run(call: Call) -> Response:
            env = await self._decode(request, call)
            reply = await self._pipeline.complete(call, env)
            upstream = reply.extra.get("video")
            if not isinstance(upstream, dict):
                raise UpstreamError("The upstream's video reply has no job.")
            job = VideoJob(
                id=new_video_id(),
                key_id=call.principal.key_id,
                model=env.model,
                provider=call.span.provider or "",
                upstream_model=call.span.upstream_model or "",
                upstream_id=str(upstream["id"]),
                seconds=video_seconds(upstream, env),
                size=_text(upstream.get("size")) or _text(env.params.get("size")),
                created_at=self._clock(),
            )
            await self._jobs.save_video_job(job)
            return JSONResponse(_client_job(upstream, job), headers=call.headers)

        return await guarded(self._pipeline, request, "openai.videos.create", run)

    async def status(self, request: Request) -> Response:
        async def run(call: Call) -> Response:
            job, upstream, env, held = await self._owned(request, call)
            try:
                body = await upstream.video_status(job.upstream_id, env)
            finally:
                with anyio.CancelScope(shield=True):
                    await self._pipeline.settle(call, held, None, Usage())
            await self._pipeline.record(call, Usage())
            return JSONResponse(_client_job(body, job), headers=call.headers)

        return await guarded(self._pipeline, request, "openai.videos.status", run)

    async def content(self, request: Request) -> Response:
        async def run(call: Call) -> Response:
            variant = request.query_params.get("variant")
            if variant is not None and variant not in _VARIANTS:
                raise ValidationFailed("variant must be video, thumbnail or spritesheet")
            job, upstream, env, held = await self._owned(request, call)
            try:
                chunks = upstream.video_content(job.upstream_id, variant, env)
                # The first chunk proves the upstream answered: errors before it are plain JSON.
                first = await anext(aiter(chunks), b"")
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self._pipeline.settle(call, held, None, Usage())
                raise
            media_type = "image/webp" if variant in ("thumbnail", "spritesheet") else "video/mp4"
            return StreamingResponse(
                self._relay(call, held, first, chunks),
                media_type=media_type,
                headers=call.headers,
            )

        return await guarded(self._pipeline, request, "openai.videos.content", run)

    async def _relay(
        self, call: Call, held: Reservation, first: bytes, rest: AsyncIterator[bytes]
    ) -> AsyncGenerator[bytes, None]:
        try:
            if first:
                yield first
            async for chunk in rest:
                yield chunk
        finally:
            with anyio.CancelScope(shield=True):
                aclose = getattr(rest, "aclose", None)
                if aclose is not None:
                    await aclose()
                await self._pipeline.settle(call, held, None, Usage())
                await self._pipeline.record(call, Usage())

    async def _decode(self, request: Request, call: Call) -> Envelope:
        if is_multipart(request):
            form = await read_form(request, self._max_body)
            req = validate_form(VideoCreateRequest, form.fields)
            uploads = [f for f in form.files if f.field == _REFERENCE_FIELD]
        else:
            req = parse_json_model(VideoCreateRequest, await read_body(request, self._max_body))
            uploads = []
        return video_request_to_envelope(req, uploads, call.request_id)

    async def _owned(
        self, request: Request, call: Call
    ) -> tuple[VideoJob, VideoUpstream, Envelope, Reservation]:
        """The caller's job, the upstream that made it, and the read's hold on the caller's
        `requests` limits (settle it); anyone else's job does not exist.

        Raises:
            NotFound: no such job, or another key's.
            PermissionDenied: the key may not use video.
            RateLimited: a `requests` or `concurrent` limit is reached.
        """
        video_id = request.path_params["video_id"]
        job = await self._jobs.video_job(video_id)
        if job is None or job.key_id != call.principal.key_id:
            # A miss is a request too: job ids cannot be probed past the caller's limits.
            probe = Envelope(id=call.request_id, modality=Modality.VIDEO, model="")
            probe.principal, probe.trace = call.principal, call.trace
            await self._pipeline.settle(
                call, await self._pipeline.reserve(call, probe, only=_READ_LIMITS), None, Usage()
            )
            raise NotFound(f"No video job with id '{video_id}'.", param="video_id")
        span = call.span
        span.modality, span.model_requested = Modality.VIDEO.value, job.model
        span.provider, span.upstream_model = job.provider, job.upstream_model
        authorize_modality(call.principal, Modality.VIDEO.value)
        upstream = self._providers.get(job.provider)
        if not isinstance(upstream, VideoUpstream):
            raise UnsupportedContent(f"Provider '{job.provider}' no longer serves video jobs.")
        env = Envelope(
            id=call.request_id,
            modality=Modality.VIDEO,
            model=job.model,
            trace=call.trace,
            principal=call.principal,
        )
        # Limits are the virtual model's; the upstream is asked for its own model.
        held = await self._pipeline.reserve(call, env, only=_READ_LIMITS)
        env.model = job.upstream_model
        return job, upstream, env, held


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _client_job(upstream: Mapping[str, Any], job: VideoJob) -> dict[str, Any]:
    """The upstream's job object as the client sees it: our id and our model name."""
    body = dict(upstream)
    body["id"] = job.id
    body["model"] = job.model
    body.setdefault("object", "video")
    if body.get("remixed_from_video_id"):
        body["remixed_from_video_id"] = None  # an upstream id, which clients never see
    return body
