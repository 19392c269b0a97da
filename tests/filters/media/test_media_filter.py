"""The media filter in process: limits, metadata stripping, orientation, downscale, video checks."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from core.access import Principal
from core.config import ConfigError
from core.config import MediaFilter as MediaConfig
from core.envelope import Envelope, ImagePart, Message, Modality, Scope, TextPart, VideoPart
from core.errors import GatewayError
from core.filtering import Continue, FilterContext, Reject
from filters.media import (
    InvalidMedia,
    MediaFilter,
    MediaTooLarge,
    RemoteMediaRefused,
    UnsupportedMediaFormat,
)
from filters.media.fetch import public_address, resolve_checked
from tests.filters.media import media_samples as s

pytestmark = pytest.mark.anyio

ALICE = Principal(key_id="key_alice", key_name="alice", org_path="research/vision/demo")


def _ctx(principal: Principal = ALICE) -> FilterContext:
    return FilterContext("req_1", principal, "span_1", {})


def _env(*parts: ImagePart | VideoPart, model: str = "vision") -> Envelope:
    message = Message("user", [TextPart("look"), *parts])
    return Envelope(id="req_1", modality=Modality.CHAT, model=model, messages=[message])


async def _run(config: MediaConfig, env: Envelope) -> Continue | Reject:
    decision = await MediaFilter(config).on_request(env, _ctx())
    assert isinstance(decision, Continue | Reject)
    return decision


async def _refused(config: MediaConfig, url: str) -> GatewayError:
    decision = await _run(config, _env(ImagePart(url)))
    assert isinstance(decision, Reject), decision
    return decision.error


async def test_gps_exif_xmp_and_comment_are_gone_after_the_filter() -> None:
    original = s.jpeg_with_gps()
    assert b"secret-xmp" in original and b"secret-comment" in original
    part = ImagePart(s.data_url("image/jpeg", original))
    env = _env(part)
    assert isinstance(await _run(MediaConfig(), env), Continue)
    sent = s.decode_data_url(part.url)
    image = Image.open(io.BytesIO(sent))
    assert image.format == "JPEG"
    assert not image.getexif()
    assert not image.getexif().get_ifd(s.GPS_IFD)
    for marker in (b"Exif\x00\x00", b"SecretCam", b"secret-xmp", b"secret-comment", b"xmpmeta"):
        assert marker not in sent
    kinds = {(f.kind, f.scope, f.action) for f in env.findings}
    assert ("EXIF_GPS", Scope.MEDIA, "strip") in kinds
    assert ("XMP", Scope.MEDIA, "strip") in kinds


async def test_png_text_chunks_are_dropped() -> None:
    part = ImagePart(s.data_url("image/png", s.png_with_text()))
    assert isinstance(await _run(MediaConfig(), _env(part)), Continue)
    sent = s.decode_data_url(part.url)
    assert b"secret-author" not in sent and b"secret-description" not in sent
    assert b"tEXt" not in sent and b"iTXt" not in sent
    assert Image.open(io.BytesIO(sent)).format == "PNG"


async def test_exif_orientation_is_applied_before_stripping() -> None:
    # Orientation 6: the camera held sideways; the pixels must be turned, not the tag kept.
    part = ImagePart(s.data_url("image/jpeg", s.jpeg_with_gps((64, 32), orientation=6)))
    assert isinstance(await _run(MediaConfig(), _env(part)), Continue)
    assert Image.open(io.BytesIO(s.decode_data_url(part.url))).size == (32, 64)


async def test_images_shrink_to_the_models_longest_side() -> None:
    config = MediaConfig(downscale={"vision": 16, "*": 1000})
    part = ImagePart(s.data_url("image/png", s.png((64, 32))))
    assert isinstance(await _run(config, _env(part)), Continue)
    assert Image.open(io.BytesIO(s.decode_data_url(part.url))).size == (16, 8)


async def test_without_stripping_an_unchanged_image_passes_byte_for_byte() -> None:
    original = s.jpeg_with_gps()
    part = ImagePart(s.data_url("image/jpeg", original))
    assert isinstance(await _run(MediaConfig(strip_metadata=False), _env(part)), Continue)
    assert s.decode_data_url(part.url) == original


async def test_oversized_image_is_413() -> None:
    error = await _refused(MediaConfig(max_bytes=500), s.data_url("image/jpeg", s.jpeg_with_gps()))
    assert isinstance(error, MediaTooLarge)
    assert error.status == 413


@pytest.mark.parametrize("side", [6000, 30_000])
async def test_decompression_bomb_is_refused_from_its_header(side: int) -> None:
    bomb = s.decompression_bomb(side)
    assert len(bomb) < 100
    error = await _refused(MediaConfig(), s.data_url("image/png", bomb))
    assert isinstance(error, MediaTooLarge)
    assert "decompression bomb" in error.message


async def test_corrupt_and_non_image_bytes_are_400() -> None:
    for data in (s.corrupt_jpeg(), b"plain text, not an image"):
        error = await _refused(MediaConfig(), s.data_url("image/jpeg", data))
        assert isinstance(error, InvalidMedia)
        assert error.status == 400


async def test_broken_base64_is_400() -> None:
    error = await _refused(MediaConfig(), "data:image/png;base64,@@not-base64@@")
    assert isinstance(error, InvalidMedia)


async def test_disallowed_formats_are_refused_whatever_the_declared_type() -> None:
    error = await _refused(MediaConfig(), s.data_url("image/png", s.bmp()))
    assert isinstance(error, UnsupportedMediaFormat)
    assert "BMP" in error.message
    error = await _refused(MediaConfig(formats=["png"]), s.data_url("image/png", s.jpeg_with_gps()))
    assert isinstance(error, UnsupportedMediaFormat)


async def test_remote_urls_are_refused_unless_fetching_is_allowed() -> None:
    error = await _refused(MediaConfig(), "https://example.com/cat.png")
    assert isinstance(error, RemoteMediaRefused)
    assert error.status == 403


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x.png",
        "http://localhost:9/x.png",
        "http://[::1]:9/x.png",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.7/x.png",
        "http://[::ffff:127.0.0.1]/x.png",
        "file:///etc/passwd",
    ],
)
async def test_private_addresses_are_never_fetched(url: str) -> None:
    error = await _refused(MediaConfig(fetch_remote=True), url)
    assert isinstance(error, RemoteMediaRefused), error


async def test_resolution_refuses_loopback_names() -> None:
    with pytest.raises(RemoteMediaRefused):
        await resolve_checked("localhost", 80, allow_private=False)
    assert await resolve_checked("localhost", 80, allow_private=True)


def test_public_address_rules() -> None:
    import ipaddress

    assert public_address(ipaddress.ip_address("93.184.216.34"))
    for private in ("127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "::1", "fe80::1"):
        assert not public_address(ipaddress.ip_address(private))


async def test_a_video_part_is_checked_by_decoding_frames() -> None:
    part = VideoPart(s.data_url("video/mp4", s.mp4()))
    before = part.url
    assert isinstance(await _run(MediaConfig(), _env(part)), Continue)
    assert part.url == before


async def test_a_corrupt_or_oversized_video_is_refused() -> None:
    decision = await _run(MediaConfig(), _env(VideoPart(s.data_url("video/mp4", b"\x00" * 64))))
    assert isinstance(decision, Reject) and isinstance(decision.error, InvalidMedia)
    small = MediaConfig(max_video_bytes=100)
    decision = await _run(small, _env(VideoPart(s.data_url("video/mp4", s.mp4()))))
    assert isinstance(decision, Reject) and isinstance(decision.error, MediaTooLarge)


async def test_a_disallowed_video_container_is_refused() -> None:
    config = MediaConfig(video_formats=["webm"])
    decision = await _run(config, _env(VideoPart(s.data_url("video/mp4", s.mp4()))))
    assert isinstance(decision, Reject) and isinstance(decision.error, UnsupportedMediaFormat)


def test_ocr_applies_per_key_or_team() -> None:
    config = MediaConfig(ocr_for={"keys": ["bob"], "org_paths": ["research/vision"]})
    media = MediaFilter(config)
    assert media.ocr_applies(ALICE)  # by team
    bob = Principal(key_id="key_bob", key_name="bob", org_path="sales/x")
    assert media.ocr_applies(bob)  # by key name
    carol = Principal(key_id="key_carol", key_name="carol", org_path="research/visionary")
    assert not media.ocr_applies(carol)  # a prefix is a whole segment
    assert not MediaFilter(MediaConfig()).ocr_applies(ALICE)


async def test_without_stripping_a_downscaled_image_keeps_exif_but_not_the_rotation() -> None:
    config = MediaConfig(strip_metadata=False, downscale={"*": 16})
    part = ImagePart(s.data_url("image/jpeg", s.jpeg_with_gps((64, 32), orientation=6)))
    assert isinstance(await _run(config, _env(part)), Continue)
    image = Image.open(io.BytesIO(s.decode_data_url(part.url)))
    assert image.size == (8, 16)  # turned upright, then shrunk
    assert image.getexif().get_ifd(s.GPS_IFD) and s.ORIENTATION not in image.getexif()


def test_bad_media_options_fail_at_start() -> None:
    with pytest.raises(ValueError, match="at least 16 pixels"):
        MediaConfig(downscale={"*": 0})
    with pytest.raises(ConfigError, match="ocr_entities: unknown"):
        MediaFilter(MediaConfig(ocr=True, ocr_entities=["EMAIL", "PHONE_NUMBER"]))
