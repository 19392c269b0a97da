"""`data:` URLs: the inline form images and videos travel in on every wire."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from filters.media.errors import InvalidMedia, MediaTooLarge


@dataclass(frozen=True, slots=True)
class Inline:
    """The bytes of a `data:` URL and the media type it declared."""

    mime: str
    data: bytes


def is_data_url(url: str) -> bool:
    return url[:5].lower() == "data:"


def parse_data_url(url: str, max_bytes: int) -> Inline:
    """Decode a base64 `data:` URL, refusing one whose bytes would exceed `max_bytes`.

    Raises:
        InvalidMedia: not a base64 data URL, or the base64 is broken.
        MediaTooLarge: the decoded size is over `max_bytes` (checked before decoding).
    """
    header, sep, payload = url[5:].partition(",")
    mime, _, encoding = header.partition(";")
    if not sep or encoding.lower() != "base64":
        raise InvalidMedia("Inline media must be a base64 data: URL.")
    # Four base64 characters carry three bytes: refuse before allocating the decoded copy.
    if len(payload) * 3 // 4 > max_bytes + 3:
        raise MediaTooLarge(f"The media is larger than the limit of {max_bytes} bytes.")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidMedia("The data: URL does not hold valid base64.") from None
    if len(data) > max_bytes:
        raise MediaTooLarge(f"The media is larger than the limit of {max_bytes} bytes.")
    return Inline(mime.strip().lower(), data)


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
