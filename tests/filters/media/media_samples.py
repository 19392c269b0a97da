"""Media made in the test itself with Pillow and PyAV (tiny, so nothing big lives in fixtures/)."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from fractions import Fraction
from typing import Any

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

GPS_IFD = 0x8825
ORIENTATION = 0x0112
EMAIL = "jane.doe@example.com"
PHONE = "212-555-0187"


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def decode_data_url(url: str) -> bytes:
    assert url.startswith("data:"), url[:40]
    return base64.b64decode(url.split(",", 1)[1])


def jpeg_with_gps(size: tuple[int, int] = (64, 32), orientation: int | None = None) -> bytes:
    """A JPEG whose EXIF holds GPS coordinates, a camera model, and optionally an orientation."""
    image = Image.new("RGB", size, (200, 30, 30))
    exif = Image.Exif()
    exif[0x0110] = "SecretCam 3000"  # Model
    if orientation is not None:
        exif[ORIENTATION] = orientation
    exif[GPS_IFD] = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    out = io.BytesIO()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">secret-xmp</x:xmpmeta>'
    image.save(out, format="JPEG", exif=exif, xmp=xmp, comment=b"secret-comment")
    return out.getvalue()


def png_with_text() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "secret-author")
    info.add_itxt("Description", "secret-description")
    out = io.BytesIO()
    Image.new("RGBA", (40, 40), (0, 0, 255, 255)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def bmp() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, format="BMP")
    return out.getvalue()


def png(size: tuple[int, int] = (32, 32)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (0, 128, 0)).save(out, format="PNG")
    return out.getvalue()


def corrupt_jpeg() -> bytes:
    """A JPEG cut off after its header: identifiable, but its pixels do not decode."""
    whole = jpeg_with_gps((256, 256))
    return whole[: len(whole) // 3]


def decompression_bomb(side: int = 30_000) -> bytes:
    """A tiny PNG whose header claims side by side pixels (decoding it would take gigabytes)."""
    raw = png((1, 1))
    ihdr_at = raw.index(b"IHDR")
    fields = struct.pack(">II", side, side) + raw[ihdr_at + 12 : ihdr_at + 17]
    chunk = b"IHDR" + fields
    patched = chunk + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
    return raw[:ihdr_at] + patched + raw[ihdr_at + 4 + 13 + 4 :]


def screenshot() -> bytes:
    """A PNG screenshot with an e-mail address and a phone number, large enough for Tesseract."""
    image = Image.new("RGB", (720, 200), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=30)
    draw.text((20, 30), f"Mail: {EMAIL}", fill="black", font=font)
    draw.text((20, 110), f"Call: {PHONE}", fill="black", font=font)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def mp4(frames: int = 6, size: tuple[int, int] = (64, 48), fps: int = 6) -> bytes:
    """A short H.264 MP4 made with PyAV."""
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        for i in range(frames):
            pixels = np.full((size[1], size[0], 3), (i * 40) % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


ANIMATION_COLOURS = ("red", "green", "blue")
ANIMATION_DURATIONS = [50, 60, 70]


def animated(fmt: str, frames: int = 3) -> bytes:
    """An animation (GIF, WEBP or PNG, i.e. APNG) of solid-colour frames carrying metadata."""
    colours = [ANIMATION_COLOURS[i % 3] for i in range(frames)]
    images = [Image.new("RGB", (40, 30), c) for c in colours]
    durations = [ANIMATION_DURATIONS[i % 3] for i in range(frames)]
    options: dict[str, Any] = {"save_all": True, "append_images": images[1:], "loop": 0}
    options["duration"] = durations
    if fmt == "GIF":
        options["comment"] = b"secret-comment"
    elif fmt == "WEBP":
        exif = Image.Exif()
        exif[0x010F] = "SecretCam"
        options.update(exif=exif.tobytes(), xmp=b"secret-xmp")
    else:
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", "secret-comment")
        options["pnginfo"] = info
    out = io.BytesIO()
    images[0].save(out, format=fmt, **options)
    return out.getvalue()
