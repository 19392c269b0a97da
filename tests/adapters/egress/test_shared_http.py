"""The shared upstream client: one session serves every tenant, so it must keep nothing of one
caller's exchange for the next (an upstream's cookies above all).

The upstream is named `localhost`: a cookie jar ignores cookies set by a bare IP address.
"""

from __future__ import annotations

import pytest
from aiohttp import web

from adapters.egress.http import SharedHTTP

pytestmark = pytest.mark.anyio


async def test_a_cookie_an_upstream_sets_is_never_sent_on_a_later_call() -> None:
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        response = web.json_response({"ok": True})
        response.set_cookie("upstream_session", "caller-a", path="/")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    http = SharedHTTP()
    await http.open()
    try:
        for _ in range(2):
            async with http.session.post(
                f"http://localhost:{port}/v1/chat/completions", data=b"{}"
            ) as resp:
                assert resp.status == 200
                assert "upstream_session" in resp.headers.get("Set-Cookie", "")
    finally:
        await http.aclose()
        await runner.cleanup()
    assert seen == [None, None]
