"""The sim's images and videos over the OpenAI wire, for offline tests and demos.

`POST /v1/images/generations` (JSON) and `POST /v1/images/edits` (multipart) answer with images
drawn by Pillow that deliberately carry metadata (EXIF with GPS coordinates, a PNG text chunk), so
a test can prove the gateway strips what an upstream returns. `POST /v1/videos` starts a job that
is `queued` until its first status read and `completed` from then on; its content is a short
H.264 MP4 written with PyAV. Each request is appended to the sim's request log as JSON, uploads
included as base64, so tests can read back the exact bytes the upstream got.
"""

from __future__ import annotations

import base64
import io
import time
import uuid
from collections import deque
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import av
import numpy as np
import orjson
from PIL import Image, ImageDraw, PngImagePlugin
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.egress.sim_wire import error_body
from adapters.wire.openai_media import (
    OPERATION,
    image_reply_from_wire,
    media_fields,
    uploads_of,
    video_reply_from_wire,
)
from core.envelope import Envelope, Modality
from core.errors import UpstreamRejected

SIM_GPS = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}
SIM_CAMERA = "agentgw-sim-camera"
_GPS_IFD = 0x8825
_MODEL_TAG = 0x0110
_MAX_SIDE = 256  # generated images are drawn at most this large (the size asked is in the reply)
_VIDEO_FPS = 4
MAX_JOBS = 1000  # video jobs (and their clips) a sim keeps, oldest dropped first


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def _error(status: int, message: str, param: str | None = None) -> Response:
    return _json(error_body(status, message, param), status)


def _dimensions(size: object, default: tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, str) and "x" in size:
        w, _, h = size.partition("x")
        if w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0:
            return int(w), int(h)
    return default


def sim_image(prompt: str, size: tuple[int, int], fmt: str) -> bytes:
    """An image for `prompt`, carrying EXIF (camera model, GPS) and, as PNG, a text chunk."""
    scale = min(1.0, _MAX_SIDE / max(size))
    drawn = (max(1, int(size[0] * scale)), max(1, int(size[1] * scale)))
    shade = sum(prompt.encode()) % 200
    image = Image.new("RGB", drawn, (shade, 90, 200 - shade))
    ImageDraw.Draw(image).text((4, 4), prompt[:20], fill="white")
    exif = Image.Exif()
    exif[_MODEL_TAG] = SIM_CAMERA
    exif[_GPS_IFD] = SIM_GPS
    out = io.BytesIO()
    if fmt == "jpeg":
        image.save(out, format="JPEG", exif=exif, comment=b"sim-comment")
    else:
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", "sim-generated")
        image.save(out, format="PNG", exif=exif, pnginfo=info)
    return out.getvalue()


def sim_video(seconds: float, size: tuple[int, int]) -> bytes:
    """A short H.264 MP4 of `seconds` at a few frames a second, drawn small."""
    scale = min(1.0, 64 / max(size))
    width = max(16, int(size[0] * scale) // 2 * 2)
    height = max(16, int(size[1] * scale) // 2 * 2)
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=_VIDEO_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, _VIDEO_FPS)
        for i in range(max(1, round(seconds * _VIDEO_FPS))):
            pixels = np.full((height, width, 3), (i * 25) % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


class SimMediaError(Exception):
    """A request the sim refuses, with the HTTP status a real upstream would answer."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


class SimMediaEngine:
    """Images and video jobs, shared by the HTTP face (`SimMedia`) and the in-process sim."""

    def __init__(self) -> None:
        self._jobs: dict[str, dict[str, Any]] = {}
        self._videos: dict[str, bytes] = {}

    def images(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """An images reply for generation or edit `fields`.

        Raises:
            SimMediaError: no prompt, or `n` out of range.
        """
        prompt = _prompt(fields)
        n = int(fields.get("n") or 1)
        if not 1 <= n <= 10:
            raise SimMediaError(400, "n must be between 1 and 10", "n")
        size = _dimensions(fields.get("size"), (1024, 1024))
        fmt = "jpeg" if fields.get("output_format") in ("jpeg", "jpg") else "png"
        data = [
            {"b64_json": base64.b64encode(sim_image(f"{prompt} {i}", size, fmt)).decode()}
            for i in range(n)
        ]
        return {
            "created": int(time.time()),
            "data": data,
            "size": f"{size[0]}x{size[1]}",
            "quality": fields.get("quality") or "medium",
            "output_format": fmt,
            "usage": {"input_tokens": len(prompt.split()), "output_tokens": 0, "total_tokens": 0},
        }

    def create_video(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """A new job, `queued` until its first status read.

        Raises:
            SimMediaError: no prompt, or seconds out of range.
        """
        _prompt(fields)
        seconds = str(fields.get("seconds") or "4")
        if not seconds.isdigit() or not 1 <= int(seconds) <= 60:
            raise SimMediaError(400, "seconds must be a whole number from 1 to 60", "seconds")
        video_id = f"video_sim{uuid.uuid4().hex}"
        job = {
            "id": video_id,
            "object": "video",
            "created_at": int(time.time()),
            "status": "queued",
            "model": fields.get("model") or "sim-video-1",
            "progress": 0,
            "seconds": seconds,
            "size": fields.get("size") or "720x1280",
            "completed_at": None,
            "expires_at": None,
            "error": None,
            "remixed_from_video_id": None,
        }
        self._jobs[video_id] = job
        if len(self._jobs) > MAX_JOBS:  # a long-running demo sim must not grow without bound
            oldest = next(iter(self._jobs))
            del self._jobs[oldest]
            self._videos.pop(oldest, None)
        return dict(job)

    def video(self, video_id: str) -> dict[str, Any]:
        """The job, `completed` from its first read on.

        Raises:
            SimMediaError: no such job (404).
        """
        job = self._job(video_id)
        if job["status"] != "completed":
            job.update(status="completed", progress=100, completed_at=int(time.time()))
        return dict(job)

    def content(self, video_id: str) -> bytes:
        """The job's MP4.

        Raises:
            SimMediaError: no such job (404), or not completed yet (409).
        """
        job = self._job(video_id)
        if job["status"] != "completed":
            raise SimMediaError(409, "The video is not ready yet.")
        if video_id not in self._videos:
            size = _dimensions(job["size"], (720, 1280))
            self._videos[video_id] = sim_video(float(job["seconds"]), size)
        return self._videos[video_id]

    def _job(self, video_id: str) -> dict[str, Any]:
        job = self._jobs.get(video_id)
        if job is None:
            raise SimMediaError(404, "No video job with that id.")
        return job


def _prompt(fields: Mapping[str, Any]) -> str:
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise SimMediaError(400, "prompt is required", "prompt")
    return prompt


class SimMedia:
    """The media routes of one sim server, sharing its request log."""

    def __init__(self, requests: deque[Any]) -> None:
        self._requests = requests
        self._engine = SimMediaEngine()

    def routes(self) -> list[Route]:
        return [
            Route("/v1/images/generations", self.generations, methods=["POST"]),
            Route("/v1/images/edits", self.edits, methods=["POST"]),
            Route("/v1/videos", self.create_video, methods=["POST"]),
            Route("/v1/videos/{video_id}", self.video, methods=["GET"]),
            Route("/v1/videos/{video_id}/content", self.content, methods=["GET"]),
        ]

    async def _fields(self, request: Request, path: str) -> dict[str, Any]:
        """The JSON or form fields sent (files as base64 lists), recorded with the path.

        Raises:
            SimMediaError: a body that is neither a form nor a JSON object.
        """
        kind = request.headers.get("content-type", "")
        if kind.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            fields: dict[str, Any] = {}
            async with request.form() as form:
                for name, value in form.multi_items():
                    if isinstance(value, UploadFile):
                        encoded = base64.b64encode(await value.read()).decode()
                        fields.setdefault(name, []).append(encoded)
                    else:
                        fields[name] = value
        else:
            try:
                body = orjson.loads(await request.body())
            except orjson.JSONDecodeError:
                raise SimMediaError(
                    400, "We could not parse the JSON body of your request."
                ) from None
            if not isinstance(body, dict):
                raise SimMediaError(400, "The request body must be a JSON object.")
            fields = body
        self._requests.append({"_path": path, **fields})
        return fields

    async def generations(self, request: Request) -> Response:
        try:
            return _json(self._engine.images(await self._fields(request, "/v1/images/generations")))
        except SimMediaError as exc:
            return _error(exc.status, exc.message, exc.param)

    async def edits(self, request: Request) -> Response:
        try:
            fields = await self._fields(request, "/v1/images/edits")
            if not (fields.get("image") or fields.get("image[]")):
                raise SimMediaError(400, "image is required", "image")
            return _json(self._engine.images(fields))
        except SimMediaError as exc:
            return _error(exc.status, exc.message, exc.param)

    async def create_video(self, request: Request) -> Response:
        try:
            return _json(self._engine.create_video(await self._fields(request, "/v1/videos")))
        except SimMediaError as exc:
            return _error(exc.status, exc.message, exc.param)

    async def video(self, request: Request) -> Response:
        try:
            return _json(self._engine.video(request.path_params["video_id"]))
        except SimMediaError as exc:
            return _error(exc.status, exc.message, exc.param)

    async def content(self, request: Request) -> Response:
        try:
            data = self._engine.content(request.path_params["video_id"])
        except SimMediaError as exc:
            return _error(exc.status, exc.message, exc.param)
        return Response(data, media_type="video/mp4")


class SimMediaProvider:
    """The same images and video jobs served in process, for `SimProvider` (no HTTP)."""

    def __init__(self) -> None:
        self._engine = SimMediaEngine()

    def send(self, env: Envelope) -> Envelope:
        """Generate or edit images, or create a video job.

        Raises:
            UpstreamRejected: what the HTTP face would answer with a 4xx.
        """
        operation = env.params.get(OPERATION)
        fields = media_fields(env)
        try:
            if env.modality is Modality.IMAGE and operation in ("generate", "edit"):
                if operation == "edit" and not uploads_of(env):
                    raise SimMediaError(400, "image is required", "image")
                return image_reply_from_wire(self._engine.images(fields), env)
            if env.modality is Modality.VIDEO and operation == "create":
                return video_reply_from_wire(self._engine.create_video(fields), env)
        except SimMediaError as exc:
            raise _rejected(exc) from None
        raise UpstreamRejected(f"sim cannot do {env.modality} {operation}", upstream_status=400)

    def video_status(self, upstream_id: str) -> dict[str, Any]:
        """A job's status, as the HTTP face answers it.

        Raises:
            UpstreamRejected: no such job (404).
        """
        try:
            return self._engine.video(upstream_id)
        except SimMediaError as exc:
            raise _rejected(exc) from None

    def video_content(self, upstream_id: str) -> bytes:
        """A job's MP4, as the HTTP face answers it.

        Raises:
            UpstreamRejected: no such job (404), or not ready (409).
        """
        try:
            return self._engine.content(upstream_id)
        except SimMediaError as exc:
            raise _rejected(exc) from None


def _rejected(exc: SimMediaError) -> UpstreamRejected:
    return UpstreamRejected(exc.message, upstream_status=exc.status, param=exc.param)
