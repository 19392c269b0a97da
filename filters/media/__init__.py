"""Media filter: images and videos checked, stripped of metadata and (opt-in) OCR-redacted.

Build it with `build_media_filter(config)`; it implements `core.filtering.Filter`.
"""

from __future__ import annotations

from filters.media.errors import (
    InvalidMedia,
    MediaTooLarge,
    RemoteMediaFailed,
    RemoteMediaRefused,
    UnsupportedMediaFormat,
)
from filters.media.filter import FILTER_NAME, MediaFilter, build_media_filter

__all__ = [
    "FILTER_NAME",
    "InvalidMedia",
    "MediaFilter",
    "MediaTooLarge",
    "RemoteMediaFailed",
    "RemoteMediaRefused",
    "UnsupportedMediaFormat",
    "build_media_filter",
]
