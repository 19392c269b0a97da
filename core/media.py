"""Media jobs: agentgw's own video job ids, mapped to the upstream's and owned by one key.

A client never sees an upstream's job id: `POST /v1/videos` stores a `VideoJob` under a fresh id
of ours, and status and content requests find it again only for the key that created it (any
other key gets 404, as if the job did not exist). Status and content are read live from the
upstream that made the job, through `VideoUpstream`.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from core.envelope import Envelope, Modality, Usage

VIDEO_ID_PREFIX = "video_"


def new_video_id() -> str:
    return VIDEO_ID_PREFIX + secrets.token_hex(16)


@dataclass(frozen=True, slots=True)
class VideoJob:
    """One video generation job as agentgw keeps it (no prompt, no content: only the mapping)."""

    id: str
    key_id: str
    model: str
    provider: str
    upstream_model: str
    upstream_id: str
    seconds: float
    size: str | None
    created_at: float


class VideoJobStore(Protocol):
    """Where video jobs are kept (`store.sqlite`, `store.memory`)."""

    async def save_video_job(self, job: VideoJob) -> None:
        """Store a new job.

        Raises:
            core.state.AlreadyExists: a job with that id is stored already.
        """
        ...

    async def video_job(self, job_id: str) -> VideoJob | None:
        """The job with that id, or None."""
        ...


@runtime_checkable
class VideoUpstream(Protocol):
    """What a provider that serves video jobs offers besides `Provider.send`."""

    async def video_status(self, upstream_id: str, env: Envelope) -> dict[str, Any]:
        """The upstream's job object.

        Raises:
            UpstreamError: or a subclass.
        """
        ...

    def video_content(
        self, upstream_id: str, variant: str | None, env: Envelope
    ) -> AsyncIterator[bytes]:
        """The job's bytes as they arrive (the first chunk proves the upstream answered).

        Raises:
            UpstreamError: or a subclass.
        """
        ...


DEFAULT_VIDEO_SECONDS = 4
"""A video job's length when the request does not say (OpenAI's default)."""


def media_usage(env: Envelope) -> Usage | None:
    """What an image or video request asks for, as usage to price before it runs.

    Images: `n` (default 1) at the "quality/size" tier; videos: `seconds` (default 4) at the
    size. None for every other modality (those are priced from tokens).
    """
    if env.modality is Modality.IMAGE:
        count = _positive_int(env.params.get("n")) or 1
        quality, size = _text(env.params.get("quality")), _text(env.params.get("size"))
        tier = "/".join(t for t in (quality, size) if t) or None
        return Usage(images=count, media_tier=tier)
    if env.modality is Modality.VIDEO:
        seconds = env.params.get("seconds")
        if isinstance(seconds, str) and seconds.isdigit():
            seconds = int(seconds)
        length = _positive_int(seconds) or DEFAULT_VIDEO_SECONDS
        return Usage(video_seconds=length, media_tier=_text(env.params.get("size")))
    return None


def _positive_int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
