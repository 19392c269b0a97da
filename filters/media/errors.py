"""The media filter's refusals: each a `GatewayError`, so every ingress answers in its own shape."""

from __future__ import annotations

from core.errors import BadRequest, PayloadTooLarge, PermissionDenied, UnsupportedContent


class InvalidMedia(BadRequest):
    """The bytes are not a decodable image or video (corrupt, truncated, not what they claim)."""

    code = "invalid_media"


class MediaTooLarge(PayloadTooLarge):
    """Over the configured byte or pixel limit (a decompression bomb included)."""

    code = "media_too_large"


class UnsupportedMediaFormat(UnsupportedContent):
    """A format the configuration does not allow."""

    code = "unsupported_media_format"


class RemoteMediaRefused(PermissionDenied):
    """A remote URL that may not be fetched: fetching is off, or the address is private."""

    code = "remote_media_refused"


class RemoteMediaFailed(BadRequest):
    """The remote URL could not be fetched (status, timeout, too many redirects)."""

    code = "remote_media_failed"
