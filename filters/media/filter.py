"""The media filter: every image and video in a request (and every image in a reply) checked.

Requests: each `ImagePart` (OpenAI `image_url`, Anthropic image blocks, image-edit uploads, video
reference images) is decoded within limits, oriented, stripped of metadata, downscaled to the
virtual model's maximum, OCR-redacted when the caller opted in, and re-encoded as a `data:` URL;
each `VideoPart` has its container checked and a few frames decoded. Remote URLs are fetched only
when allowed (see `filters.media.fetch`). Replies: generated images are stripped too.

Findings (metadata kinds stripped, entities boxed out) go to the redaction log with scope `media`,
never with a value.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator, Awaitable, Collection
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import anyio

from core.access import Principal
from core.config import ConfigError
from core.config import MediaFilter as MediaConfig
from core.envelope import (
    AudioPart,
    Envelope,
    Finding,
    ImagePart,
    Part,
    Scope,
    StreamChunk,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    VideoPart,
)
from core.errors import FilterUnavailable, GatewayError
from core.filtering import Continue, Decision, FilterContext, Reject
from core.metrics import MediaMetrics
from filters.media.dataurl import Inline, data_url, is_data_url, parse_data_url
from filters.media.errors import RemoteMediaRefused, UnsupportedMediaFormat
from filters.media.fetch import FetchPolicy, fetch_media
from filters.media.images import DecodedImage, ImageLimits, decode_image, downscale, encode_image
from filters.media.video import check_video

if TYPE_CHECKING:
    from filters.media.ocr import OcrRedactor

logger = logging.getLogger("agentgw.filters.media")

FILTER_NAME = "media"
_ANY_MODEL = "*"


@dataclass(frozen=True, slots=True)
class _Job:
    """What to do to one image besides checking and stripping it."""

    ocr: bool
    max_side: int | None
    strip: bool


class MediaFilter:
    """Implements `core.filtering.Filter` for images and videos."""

    name = FILTER_NAME

    def __init__(
        self,
        config: MediaConfig,
        *,
        ocr: OcrRedactor | None = None,
        metrics: MediaMetrics | None = None,
    ) -> None:
        self.config = config
        self._limits = ImageLimits(
            frozenset(config.formats),
            config.max_bytes,
            config.max_pixels,
            config.animated,
            config.max_frames,
        )
        self._fetch = FetchPolicy(
            allow=config.fetch_remote,
            allow_private=config.allow_private_addresses,
            max_bytes=config.max_bytes,
            timeout_seconds=config.fetch_timeout_seconds,
            max_redirects=config.max_redirects,
            allow_hosts=frozenset(h.lower() for h in config.fetch_allow_hosts),
        )
        self._metrics = metrics
        wants_ocr = config.ocr or config.ocr_for.keys or config.ocr_for.org_paths
        if ocr is None and wants_ocr:
            ocr = _ocr_redactor(config.ocr_entities)
        self._ocr = ocr

    async def warm(self) -> None:
        """Load the OCR stack now (when configured), so the first request does not pay for it.

        Raises:
            ConfigError: OCR is configured but its packages or the tesseract program are missing.
        """
        if self._ocr is None:
            return
        try:
            await anyio.to_thread.run_sync(self._ocr.load)
        except ImportError as exc:
            raise ConfigError(
                "filters.media: OCR redaction needs the ocr extra (pip install 'agentgw[ocr]')"
            ) from exc
        except OSError as exc:
            raise ConfigError(
                "filters.media: OCR redaction needs the tesseract program (Debian: tesseract-ocr)"
            ) from exc

    def ocr_applies(self, principal: Principal) -> bool:
        """Whether this caller's images are OCR-redacted (everyone's, or by key or team)."""
        if self._ocr is None:
            return False
        if self.config.ocr:
            return True
        scope = self.config.ocr_for
        if principal.key_id in scope.keys or principal.key_name in scope.keys:
            return True
        path = principal.org_path
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in scope.org_paths)

    def max_side(self, model: str) -> int | None:
        sizes = self.config.downscale
        return sizes.get(model, sizes.get(_ANY_MODEL))

    async def on_request(self, env: Envelope, ctx: FilterContext) -> Decision:
        job = _Job(
            self.ocr_applies(ctx.principal), self.max_side(env.model), self.config.strip_metadata
        )
        return await self._checked(env, job)

    async def on_response(self, env: Envelope, ctx: FilterContext) -> Decision:
        # Generated images: checked and stripped like uploads, but never OCR'd or downscaled.
        job = _Job(ocr=False, max_side=None, strip=self.config.strip_metadata)
        return await self._checked(env, job)

    async def _checked(self, env: Envelope, job: _Job) -> Decision:
        """Every message's media put through `job`; the first refusal rejects the envelope."""
        try:
            for message in env.messages:
                await self._parts(message.parts, job, env.findings)
        except GatewayError as exc:
            return Reject(exc)
        return Continue()

    def on_stream(
        self, chunks: AsyncIterator[StreamChunk], ctx: FilterContext
    ) -> AsyncIterator[StreamChunk]:
        return chunks  # Streamed chat replies carry no media.

    async def _parts(self, parts: list[Part], job: _Job, findings: list[Finding]) -> None:
        for part in parts:
            match part:
                case ImagePart():
                    part.url = await self._counted("image", self._image(part.url, job, findings))
                case VideoPart():
                    part.url = await self._counted("video", self._video(part.url))
                case ToolResultPart():
                    await self._parts(part.content, job, findings)
                case TextPart() | AudioPart() | ToolCallPart():
                    pass

    async def _counted(self, kind: str, work: Awaitable[str]) -> str:
        """`work`'s new URL, with the item counted as processed or refused (by error code)."""
        try:
            url = await work
        except GatewayError as exc:
            if self._metrics is not None:
                self._metrics.refused.labels(kind, exc.code).inc()
            raise
        if self._metrics is not None:
            self._metrics.processed.labels(kind).inc()
        return url

    def _count_bytes(self, direction: str, size: int) -> None:
        if self._metrics is not None:
            self._metrics.bytes.labels(direction).inc(size)

    async def _inline(self, url: str, max_bytes: int) -> Inline:
        if is_data_url(url):
            inline = parse_data_url(url, max_bytes)
        elif url.split(":", 1)[0].lower() not in ("http", "https"):
            raise RemoteMediaRefused("Media URLs must be data: or http(s) URLs.")
        else:
            fetched = await fetch_media(url, replace(self._fetch, max_bytes=max_bytes))
            inline = Inline(fetched.content_type, fetched.data)
        self._count_bytes("in", len(inline.data))
        return inline

    async def _image(self, url: str, job: _Job, findings: list[Finding]) -> str:
        inline = await self._inline(url, self.config.max_bytes)
        try:
            with anyio.fail_after(self.config.timeout_ms / 1000):
                decoded, made = await anyio.to_thread.run_sync(
                    self._process, inline.data, job, abandon_on_cancel=True
                )
        except TimeoutError:
            raise FilterUnavailable("Media filter unavailable: the image took too long.") from None
        findings.extend(made)
        self._count_bytes("out", len(decoded[1]))
        return data_url(decoded[0], decoded[1])

    def _process(self, data: bytes, job: _Job) -> tuple[tuple[str, bytes], list[Finding]]:
        """Blocking: decode, orient, downscale, OCR-redact and re-encode one image."""
        image = decode_image(data, self._limits)
        findings: list[Finding] = []
        changed = False
        if job.ocr and image.animated:
            # Reading every frame would multiply OCR's cost by the frame count: refuse instead
            # of boxing out only some frames.
            raise UnsupportedMediaFormat(
                "Animated images cannot be OCR-redacted for this key; send a still image."
            )
        if job.max_side is not None:
            changed = downscale(image, job.max_side)
        if job.ocr:
            changed = self._redact(image, findings) or changed
        if job.strip:
            findings.extend(
                Finding(FILTER_NAME, kind, Scope.MEDIA, "strip") for kind in image.metadata
            )
            if image.metadata and self._metrics is not None:
                self._metrics.stripped.inc()
        elif not changed:
            return (image.mime, data), findings  # Checked, and nothing asked to change it.
        return (
            image.mime,
            encode_image(image, strip=job.strip, keep_icc=self.config.keep_icc),
        ), findings

    def _redact(self, image: DecodedImage, findings: list[Finding]) -> bool:
        assert self._ocr is not None
        if image.image.mode not in ("RGB", "RGBA", "L"):
            image.image = image.image.convert("RGBA" if "A" in image.image.getbands() else "RGB")
        try:
            found = self._ocr.redact(image.image)
        except Exception as exc:  # Tesseract is a separate program: any failure must fail closed.
            logger.warning("OCR redaction failed: %s", type(exc).__name__)
            raise FilterUnavailable("Media filter unavailable: OCR redaction failed.") from None
        if self._metrics is not None:
            self._metrics.ocr_runs.inc()
            for f in found:
                self._metrics.ocr_findings.labels(f.entity).inc()
        findings.extend(
            Finding(FILTER_NAME, f.entity, Scope.MEDIA, "redact", f.score, f.start, f.end)
            for f in found
        )
        return bool(found)

    async def _video(self, url: str) -> str:
        inline = await self._inline(url, self.config.max_video_bytes)
        formats = frozenset(self.config.video_formats)
        try:
            with anyio.fail_after(self.config.timeout_ms / 1000):
                info = await anyio.to_thread.run_sync(
                    check_video,
                    inline.data,
                    formats,
                    self.config.max_video_bytes,
                    abandon_on_cancel=True,
                )
        except TimeoutError:
            raise FilterUnavailable("Media filter unavailable: the video took too long.") from None
        self._count_bytes("out", len(inline.data))
        return url if is_data_url(url) else data_url(info.mime, inline.data)


def _ocr_redactor(entities: Collection[str]) -> OcrRedactor:
    # Imported only when OCR is configured: it brings the PII analyzer (and, on load, OpenCV).
    module = importlib.import_module("filters.media.ocr")
    redactor: OcrRedactor = module.OcrRedactor(entities)
    return redactor


def build_media_filter(config: MediaConfig, *, metrics: MediaMetrics | None = None) -> MediaFilter:
    """The filter for a `filters.media` config (the app's plugin factory)."""
    return MediaFilter(config, metrics=metrics)
