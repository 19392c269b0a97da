"""Animated GIF, WebP and APNG: every frame kept and stripped (`animated: keep`, the default) or
refused with a clear 4xx (`animated: refuse`); never a silently dropped frame. Plus the media
filter's metrics (`agentgw_media_*`) on the same images."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageSequence
from prometheus_client import CollectorRegistry

from core.access import Principal
from core.config import MediaFilter as MediaConfig
from core.envelope import Envelope, ImagePart, Message, Modality, TextPart
from core.filtering import Continue, FilterContext, Reject
from core.metrics import MediaMetrics
from filters.media import MediaFilter, MediaTooLarge, UnsupportedMediaFormat
from tests.filters.media import media_samples as s

pytestmark = pytest.mark.anyio

FORMATS = {"GIF": "image/gif", "WEBP": "image/webp", "PNG": "image/png"}
SECRETS = (b"secret-comment", b"SecretCam", b"secret-xmp", b"tEXt", b"Exif")


async def _run(
    config: MediaConfig, url: str, metrics: MediaMetrics | None = None
) -> tuple[Continue | Reject, str]:
    part = ImagePart(url)
    env = Envelope("req_1", Modality.CHAT, "vision", [Message("user", [TextPart("hi"), part])])
    ctx = FilterContext("req_1", Principal("key_1", "k", "a/b/c"), "span_1", {})
    decision = await MediaFilter(config, metrics=metrics).on_request(env, ctx)
    assert isinstance(decision, Continue | Reject)
    return decision, part.url


@pytest.mark.parametrize("fmt", list(FORMATS))
async def test_every_frame_is_kept_with_its_timing_and_without_metadata(fmt: str) -> None:
    original = s.animated(fmt)
    assert any(secret in original for secret in SECRETS)
    decision, url = await _run(MediaConfig(), s.data_url(FORMATS[fmt], original))
    assert isinstance(decision, Continue)
    sent = s.decode_data_url(url)
    for secret in SECRETS:
        assert secret not in sent, secret
    image = Image.open(io.BytesIO(sent))
    assert image.format == fmt and getattr(image, "n_frames", 1) == 3
    colours, durations = [], []
    for frame in ImageSequence.Iterator(image):
        pixel = frame.convert("RGB").getpixel((5, 5))
        assert isinstance(pixel, tuple)
        durations.append(frame.info.get("duration"))
        colours.append(max(range(3), key=lambda band: pixel[band]))
    assert colours == [0, 1, 2]  # red, green, blue: in order, none dropped
    assert durations == s.ANIMATION_DURATIONS


async def test_downscaling_an_animation_shrinks_every_frame() -> None:
    config = MediaConfig(downscale={"*": 20})
    decision, url = await _run(config, s.data_url("image/gif", s.animated("GIF")))
    assert isinstance(decision, Continue)
    image = Image.open(io.BytesIO(s.decode_data_url(url)))
    assert getattr(image, "n_frames", 1) == 3
    for frame in ImageSequence.Iterator(image):
        assert max(frame.size) <= 20


@pytest.mark.parametrize("fmt", list(FORMATS))
async def test_animations_are_refused_when_configured(fmt: str) -> None:
    decision, _ = await _run(
        MediaConfig(animated="refuse"), s.data_url(FORMATS[fmt], s.animated(fmt))
    )
    assert isinstance(decision, Reject) and isinstance(decision.error, UnsupportedMediaFormat)
    assert decision.error.status == 400 and "Animated" in decision.error.message
    # A still image of the same formats still passes.
    still, _ = await _run(MediaConfig(animated="refuse"), s.data_url("image/png", s.png()))
    assert isinstance(still, Continue)


async def test_too_many_frames_or_pixels_over_all_frames_are_413() -> None:
    many = s.data_url("image/gif", s.animated("GIF", frames=6))
    decision, _ = await _run(MediaConfig(max_frames=5), many)
    assert isinstance(decision, Reject) and isinstance(decision.error, MediaTooLarge)
    assert "6 frames" in decision.error.message
    # 40x30 pixels a frame: six frames are 7200 pixels, over a 5000-pixel limit per image.
    decision, _ = await _run(MediaConfig(max_pixels=5000), many)
    assert isinstance(decision, Reject) and isinstance(decision.error, MediaTooLarge)


async def test_metrics_count_processed_stripped_refused_and_bytes() -> None:
    registry = CollectorRegistry()
    metrics = MediaMetrics(registry)
    photo = s.jpeg_with_gps()
    decision, url = await _run(MediaConfig(), s.data_url("image/jpeg", photo), metrics)
    assert isinstance(decision, Continue)
    refused, _ = await _run(MediaConfig(), s.data_url("image/jpeg", s.corrupt_jpeg()), metrics)
    assert isinstance(refused, Reject)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("agentgw_media_processed_total", kind="image") == 1
    assert value("agentgw_media_stripped_total") == 1
    assert value("agentgw_media_refused_total", kind="image", reason="invalid_media") == 1
    assert value("agentgw_media_bytes_total", direction="out") == len(s.decode_data_url(url))
    received = value("agentgw_media_bytes_total", direction="in")
    assert received == len(photo) + len(s.corrupt_jpeg())
