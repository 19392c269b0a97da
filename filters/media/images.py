"""Images with Pillow: identify, bound, decode, orient, downscale, and re-encode without metadata.

The order matters for safety: the format and the pixel count come from the header alone (Pillow's
`open` is lazy), so a decompression bomb is refused before a single pixel is decoded. Only the
formats agentgw allows are even offered to Pillow's parsers. Re-encoding starts from a copy whose
`info` is emptied, so EXIF (GPS included), XMP, comments and PNG text chunks cannot ride along;
an ICC profile is passed back only when the configuration keeps it.

Animated GIF, WebP and APNG: with `animated="keep"` every frame is decoded (frames and their
pixels together bounded), oriented, downscaled and re-encoded from metadata-free copies with its
own duration, so the animation survives and no frame is dropped; with `"refuse"` they are a 400.
A phone's multi-picture JPEG (MPO) is not an animation: its first picture is the image.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass, field
from typing import Literal

from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from filters.media.errors import InvalidMedia, MediaTooLarge, UnsupportedMediaFormat

# Pillow's format names, ours, and the media type each is re-encoded as.
_FORMATS: dict[str, tuple[str, str]] = {
    "JPEG": ("jpeg", "image/jpeg"),
    "MPO": ("jpeg", "image/jpeg"),  # phone cameras' multi-picture JPEG: its first picture
    "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"),
    "GIF": ("gif", "image/gif"),
}
# Formats Pillow may try to identify (so a known but disallowed one gets a clear answer); the
# rest of Pillow's parsers are never run on client bytes.
_IDENTIFIABLE = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "ICO", "PPM")
_SAVE = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF"}
_GPS_IFD = 0x8825


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """What an image may be: formats (our names), encoded bytes and decoded pixels."""

    formats: frozenset[str]
    max_bytes: int
    max_pixels: int
    animated: Literal["keep", "refuse"] = "keep"
    max_frames: int = 200


@dataclass(slots=True)
class DecodedImage:
    """A checked, decoded image: its pixels, our format name and the metadata kinds it carried."""

    image: Image.Image
    format: str
    metadata: tuple[str, ...]
    exif: bytes | None = None
    icc_profile: bytes | None = None
    # An animation's later frames (the first is `image`), with every frame's duration in ms.
    frames: list[Image.Image] = field(default_factory=list)
    durations: list[int] = field(default_factory=list)
    loop: int | None = None

    @property
    def mime(self) -> str:
        return f"image/{self.format}"

    @property
    def animated(self) -> bool:
        return bool(self.frames)


def decode_image(data: bytes, limits: ImageLimits) -> DecodedImage:
    """Check `data` against `limits` and decode it, oriented by its EXIF.

    Raises:
        MediaTooLarge: too many bytes, or too many pixels (a decompression bomb).
        UnsupportedMediaFormat: an image format the limits do not allow.
        InvalidMedia: not an image, or corrupt or truncated.
    """
    if len(data) > limits.max_bytes:
        raise MediaTooLarge(f"The image is larger than the limit of {limits.max_bytes} bytes.")
    try:
        with warnings.catch_warnings():
            # Our own pixel limit is checked below; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=_IDENTIFIABLE)
    except Image.DecompressionBombError:
        raise _bomb(limits) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error, EOFError):
        raise InvalidMedia("The image could not be read: it is not a supported image.") from None
    known = _FORMATS.get(image.format or "")
    if known is None or known[0] not in limits.formats:
        allowed = ", ".join(sorted(limits.formats))
        raise UnsupportedMediaFormat(
            f"Image format {image.format or 'unknown'} is not allowed; allowed: {allowed}."
        )
    width, height = image.size
    if width * height > limits.max_pixels:
        raise _bomb(limits)
    metadata = _metadata_kinds(image)
    if known[0] != "jpeg" and getattr(image, "is_animated", False):
        return _decode_animation(image, known[0], metadata, limits)
    try:
        image.load()
        oriented = ImageOps.exif_transpose(image)
    except Image.DecompressionBombError:
        raise _bomb(limits) from None
    except (OSError, SyntaxError, ValueError, struct.error, EOFError):
        raise InvalidMedia("The image could not be decoded: it is corrupt or truncated.") from None
    # Taken after orienting: the EXIF kept (when not stripping) no longer says to rotate.
    exif, icc = oriented.info.get("exif"), image.info.get("icc_profile")
    return DecodedImage(
        oriented,
        known[0],
        metadata,
        exif if isinstance(exif, bytes) else None,
        icc if isinstance(icc, bytes) else None,
    )


def downscale(decoded: DecodedImage, max_side: int) -> bool:
    """Shrink the image in place so its longer side is at most `max_side`; whether it shrank."""
    if max(decoded.image.size) <= max_side:
        return False
    for frame in (decoded.image, *decoded.frames):
        frame.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return True


def encode_image(decoded: DecodedImage, *, strip: bool = True, keep_icc: bool = False) -> bytes:
    """Re-encode in the image's own format; with `strip`, no metadata but (optionally) ICC."""
    clean = decoded.image.copy()
    clean.info = {}
    fmt = decoded.format
    options: dict[str, object] = {}
    if fmt in ("jpeg", "webp"):
        options["quality"] = 90
    if fmt == "jpeg" and clean.mode not in ("RGB", "L", "CMYK"):
        clean = clean.convert("RGB")
    elif fmt == "webp" and clean.mode not in ("RGB", "RGBA"):
        clean = clean.convert("RGBA" if "A" in clean.mode else "RGB")
    if decoded.icc_profile and (keep_icc or not strip):
        options["icc_profile"] = decoded.icc_profile
    if decoded.exif and not strip and fmt in ("jpeg", "png", "webp"):
        options["exif"] = decoded.exif
    if decoded.frames:
        rest = []
        for frame in decoded.frames:
            copy = frame.copy()
            copy.info = {}
            rest.append(copy)
        options.update(save_all=True, append_images=rest, duration=decoded.durations)
        if decoded.loop is not None:
            options["loop"] = decoded.loop
    out = io.BytesIO()
    clean.save(out, format=_SAVE[fmt], **options)
    return out.getvalue()


def _decode_animation(
    image: Image.Image, fmt: str, metadata: tuple[str, ...], limits: ImageLimits
) -> DecodedImage:
    """Every frame of an animation, as RGBA copies (composited by Pillow), within limits.

    Raises:
        UnsupportedMediaFormat: animations are refused by the configuration.
        MediaTooLarge: more frames than allowed, or more pixels over all frames than allowed.
        InvalidMedia: a frame does not decode.
    """
    if limits.animated == "refuse":
        raise UnsupportedMediaFormat(
            "Animated images are not accepted by this gateway; send a still image."
        )
    width, height = image.size
    count = int(getattr(image, "n_frames", 1))
    if count > limits.max_frames:
        raise MediaTooLarge(f"The animation has {count} frames; the limit is {limits.max_frames}.")
    if width * height * count > limits.max_pixels:
        raise MediaTooLarge(
            "The animation's frames together have more pixels than the limit of "
            f"{limits.max_pixels} (possible decompression bomb)."
        )
    frames: list[Image.Image] = []
    durations: list[int] = []
    try:
        for frame in ImageSequence.Iterator(image):
            rgba = frame.convert("RGBA")  # loads the frame: WebP sets its duration only then
            duration = frame.info.get("duration")
            durations.append(int(duration) if isinstance(duration, int | float) else 100)
            frames.append(ImageOps.exif_transpose(rgba))
    except Image.DecompressionBombError:
        raise _bomb(limits) from None
    except (OSError, SyntaxError, ValueError, struct.error, EOFError):
        raise InvalidMedia("The animation could not be decoded: a frame is corrupt.") from None
    loop = image.info.get("loop")
    icc = image.info.get("icc_profile")
    return DecodedImage(
        frames[0],
        fmt,
        metadata,
        None,
        icc if isinstance(icc, bytes) else None,
        frames[1:],
        durations,
        loop if isinstance(loop, int) else None,
    )


def _metadata_kinds(image: Image.Image) -> tuple[str, ...]:
    """Which kinds of metadata the image carries (for the redaction log: kinds, never values)."""
    kinds: list[str] = []
    try:
        exif = image.getexif()
    except (OSError, SyntaxError, ValueError, struct.error):
        exif = Image.Exif()
    if exif.get_ifd(_GPS_IFD):
        kinds.append("EXIF_GPS")
    if len(exif) or "exif" in image.info:
        kinds.append("EXIF")
    if "xmp" in image.info or "XML:com.adobe.xmp" in image.info:
        kinds.append("XMP")
    if "icc_profile" in image.info:
        kinds.append("ICC_PROFILE")
    text = getattr(image, "text", None) if image.format == "PNG" else None
    if text or "comment" in image.info:
        kinds.append("TEXT")
    return tuple(kinds)


def _bomb(limits: ImageLimits) -> MediaTooLarge:
    return MediaTooLarge(
        f"The image has more pixels than the limit of {limits.max_pixels} "
        "(possible decompression bomb)."
    )
