"""Remote images fetched by the media filter from a real local HTTP server (private addresses
allowed here, since the server is on loopback): bounded, redirects re-checked, then stripped."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from PIL import Image

from core.access import Principal
from core.config import MediaFilter as MediaConfig
from core.envelope import Envelope, ImagePart, Message, Modality
from core.filtering import Continue, FilterContext, Reject
from filters.media import MediaFilter, MediaTooLarge, RemoteMediaFailed, RemoteMediaRefused
from tests.filters.media import media_samples as s

pytestmark = pytest.mark.anyio

CONFIG = MediaConfig(
    fetch_remote=True, allow_private_addresses=True, max_bytes=100_000, max_redirects=2
)


@pytest.fixture
async def server() -> AsyncIterator[str]:
    photo = s.jpeg_with_gps()

    async def image(request: web.Request) -> web.Response:
        return web.Response(body=photo, content_type="image/jpeg")

    def redirect(to: str) -> web.Response:
        return web.Response(status=302, headers={"Location": to})

    async def hop(request: web.Request) -> web.Response:
        return redirect("/photo.jpg")

    async def loop(request: web.Request) -> web.Response:
        return redirect("/loop")

    async def to_file(request: web.Request) -> web.Response:
        return redirect("file:///etc/passwd")

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"\xff" * 300_000, content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/photo.jpg", image)
    app.router.add_get("/hop", hop)
    app.router.add_get("/loop", loop)
    app.router.add_get("/to-file", to_file)
    app.router.add_get("/big", big)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _filter(url: str, config: MediaConfig = CONFIG) -> tuple[Continue | Reject, str]:
    part = ImagePart(url)
    env = Envelope("req_1", Modality.CHAT, "vision", [Message("user", [part])])
    ctx = FilterContext("req_1", Principal("key_1", "k", "a/b/c"), "span_1", {})
    decision = await MediaFilter(config).on_request(env, ctx)
    assert isinstance(decision, Continue | Reject)
    return decision, part.url


async def test_a_fetched_image_follows_a_redirect_and_arrives_inline_and_stripped(
    server: str,
) -> None:
    decision, url = await _filter(server + "/hop")
    assert isinstance(decision, Continue)
    data = s.decode_data_url(url)
    assert url.startswith("data:image/jpeg;base64,")
    assert not Image.open(io.BytesIO(data)).getexif()


async def test_every_redirect_hop_is_checked_again(server: str) -> None:
    decision, _ = await _filter(server + "/to-file")
    assert isinstance(decision, Reject) and isinstance(decision.error, RemoteMediaRefused)


async def test_a_redirect_loop_stops_at_the_limit(server: str) -> None:
    decision, _ = await _filter(server + "/loop")
    assert isinstance(decision, Reject) and isinstance(decision.error, RemoteMediaFailed)
    assert "redirected more than 2 times" in decision.error.message


async def test_a_large_remote_body_is_refused_while_reading(server: str) -> None:
    decision, _ = await _filter(server + "/big")
    assert isinstance(decision, Reject) and isinstance(decision.error, MediaTooLarge)
    assert "remote media" in decision.error.message


async def test_an_error_status_is_a_clear_failure(server: str) -> None:
    decision, _ = await _filter(server + "/missing.png")
    assert isinstance(decision, Reject) and isinstance(decision.error, RemoteMediaFailed)
    assert "404" in decision.error.message


async def test_loopback_is_refused_when_private_addresses_are_not_allowed(server: str) -> None:
    strict = MediaConfig(fetch_remote=True)
    decision, _ = await _filter(server + "/photo.jpg", strict)
    assert isinstance(decision, Reject) and isinstance(decision.error, RemoteMediaRefused)


async def test_an_allowlisted_host_is_fetched_but_not_where_it_redirects(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    allowed = MediaConfig(fetch_remote=True, fetch_allow_hosts=[f"127.0.0.1:{port}"])
    decision, _ = await _filter(server + "/hop", allowed)  # a redirect on the same host:port
    assert isinstance(decision, Continue)
    elsewhere = MediaConfig(fetch_remote=True, fetch_allow_hosts=[f"127.0.0.1:{port + 1}"])
    decision, _ = await _filter(server + "/photo.jpg", elsewhere)
    assert isinstance(decision, Reject) and isinstance(decision.error, RemoteMediaRefused)
