"""Videos with PyAV: the container must be an allowed one and a few frames must really decode.

A video is passed on as it came (re-encoding video is an upstream's job, not a gateway's), but
only after the container is identified, its first video stream found and a few frames decoded,
so corrupt or disguised bytes never reach a provider.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import av

from filters.media.errors import InvalidMedia, MediaTooLarge, UnsupportedMediaFormat

FRAMES_TO_DECODE = 3
# FFmpeg's demuxer names, and ours.
_CONTAINERS = {
    "mov,mp4,m4a,3gp,3g2,mj2": "mp4",
    "matroska,webm": "webm",
}
_MIME = {"mp4": "video/mp4", "webm": "video/webm", "mov": "video/quicktime"}


@dataclass(frozen=True, slots=True)
class VideoInfo:
    format: str
    width: int
    height: int
    seconds: float | None
    frames_decoded: int

    @property
    def mime(self) -> str:
        return _MIME[self.format]


def check_video(data: bytes, formats: frozenset[str], max_bytes: int) -> VideoInfo:
    """Identify the container and decode a few frames of its first video stream.

    Raises:
        MediaTooLarge: over `max_bytes`.
        UnsupportedMediaFormat: a container the configuration does not allow.
        InvalidMedia: not a video, no video stream, or no frame decodes.
    """
    if len(data) > max_bytes:
        raise MediaTooLarge(f"The video is larger than the limit of {max_bytes} bytes.")
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.FFmpegError, ValueError, OSError):
        raise InvalidMedia("The video could not be read: it is not a supported video.") from None
    with container:
        name = _CONTAINERS.get(container.format.name, container.format.name)
        # MP4 and QuickTime share one demuxer: either is allowed when either is.
        allowed = name in formats or (name == "mp4" and "mov" in formats)
        if not allowed:
            raise UnsupportedMediaFormat(
                f"Video container {name} is not allowed; allowed: {', '.join(sorted(formats))}."
            )
        if not container.streams.video:
            raise InvalidMedia("The video has no video stream.")
        stream = container.streams.video[0]
        decoded = 0
        try:
            for frame in container.decode(stream):
                decoded += 1
                width, height = frame.width, frame.height
                if decoded >= FRAMES_TO_DECODE:
                    break
        except (av.FFmpegError, ValueError, OSError):
            raise InvalidMedia("The video could not be decoded: it is corrupt.") from None
        if not decoded:
            raise InvalidMedia("The video holds no decodable frame.")
        seconds = None
        if container.duration is not None:
            seconds = container.duration / av.time_base
        return VideoInfo("mp4" if name == "mov" else name, width, height, seconds, decoded)
