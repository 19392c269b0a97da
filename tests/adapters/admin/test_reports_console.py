"""Console sign-in rules, in process: who may sign in, cross-site posts, CSRF on sign-out, and
a revoked key's session ending at once."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.adapters.admin.reports_support import Stored
from tests.adapters.admin.support import ROOT, Gateway, running


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with running(tmp_path / "agentgw.db") as gateway:
        yield gateway


async def sign_in(gw: Gateway, secret: str, **headers: str) -> tuple[int, str | None, str]:
    reply = await gw.client().post(
        "/console/login",
        data={"key": secret},
        headers={"sec-fetch-site": "same-origin", **headers},
    )
    return reply.status_code, reply.cookies.get("agw_console"), reply.headers.get("location", "")


@pytest.mark.anyio
async def test_only_admin_finance_and_security_keys_sign_in(gw: Gateway) -> None:
    user = await gw.create_key(name="u")
    finance = await gw.create_key(name="f", role="finance")
    status, cookie, _ = await sign_in(gw, user["key"])
    assert (status, cookie) == (403, None)
    status, cookie, _ = await sign_in(gw, "agw_not-a-key")
    assert (status, cookie) == (401, None)
    status, cookie, where = await sign_in(gw, finance["key"])
    assert status == 303 and cookie and where == "/console/spend"
    status, cookie, where = await sign_in(gw, ROOT)
    assert status == 303 and cookie and where == "/console/spend"


@pytest.mark.anyio
async def test_a_cross_site_sign_in_is_refused(gw: Gateway) -> None:
    for headers in ({"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"}):
        status, cookie, _ = await sign_in(gw, ROOT, **headers)
        assert (status, cookie) == (403, None), headers
    reply = await gw.client().post(
        "/console/login", data={"key": ROOT}, headers={"origin": "https://evil.example"}
    )
    assert reply.status_code == 403


@pytest.mark.anyio
async def test_sign_out_needs_the_csrf_token_and_a_revoked_key_is_signed_out(gw: Gateway) -> None:
    security = await gw.create_key(name="s", role="security")
    _, cookie, _ = await sign_in(gw, security["key"])
    assert cookie
    client = gw.client()
    page = await client.get("/console/redactions")
    assert page.status_code == 200 and "Redaction log" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    forged = await client.post(
        "/console/logout",
        data={"csrf": "guess"},
    )
    assert forged.status_code == 403
    still = await client.get("/console/audit")
    assert still.status_code == 200 and "Audit chain intact" in still.text
    revoked = await gw.admin("DELETE", f"/admin/keys/{security['id']}")
    assert revoked.status_code == 200, revoked.text
    gone = await client.get("/console/audit")
    assert gone.status_code == 303 and gone.headers["location"] == "/console/login"


@pytest.mark.anyio
async def test_pages_without_a_session_send_the_browser_to_sign_in(gw: Gateway) -> None:
    for path in ("/console", "/console/spend", "/console/redactions"):
        reply = await gw.client().get(path)
        assert reply.status_code == 303 and reply.headers["location"] == "/console/login"
    csv = await gw.client().get("/console/explorer.csv")
    assert csv.status_code == 403


@pytest.mark.anyio
async def test_the_explorers_csv_link_downloads_what_the_page_shows(gw: Gateway) -> None:
    stored = Stored()
    gw.app.state.gateway.spans.add_sink(stored)
    user = await gw.create_key(name="u", org_path="research/nlp/chat")
    for _ in range(3):
        assert (await gw.chat(user["key"])).status_code == 200
    await stored.wait_for(3)
    finance = await gw.create_key(name="f", role="finance")
    await sign_in(gw, finance["key"])
    page = await gw.client().get("/console/explorer", params={"group1": "team", "team": "a&b"})
    assert page.status_code == 200
    page = await gw.client().get("/console/explorer", params={"group1": "key"})
    link = re.search(r'href="(/console/explorer\.csv\?[^"]+)"', page.text)
    assert link and user["id"] in page.text
    reply = await gw.client().get(html.unescape(link.group(1)))
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    assert [(r["key"], r["requests"]) for r in rows] == [(user["id"], "3")]


@pytest.mark.anyio
async def test_a_reconciliation_post_needs_the_role_and_the_csrf_token(gw: Gateway) -> None:
    form = {"provider": "sim", "csv": "date,model,cost\n2026-01-01,sim-1,1\n"}
    security = await gw.create_key(name="s", role="security")
    await sign_in(gw, security["key"])
    same = {"sec-fetch-site": "same-origin"}
    refused = await gw.client().post("/console/reconcile", data=form, headers=same)
    assert refused.status_code == 403
    finance = await gw.create_key(name="f", role="finance")
    await sign_in(gw, finance["key"])
    page = await gw.client().get("/console/reconcile")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    stale = await gw.client().post("/console/reconcile", data=form, headers=same)
    assert stale.status_code == 403
    ok = await gw.client().post(
        "/console/reconcile", data={**form, "csrf": token.group(1)}, headers=same
    )
    assert ok.status_code == 200 and "not_metered" in ok.text
    bad = await gw.client().post(
        "/console/reconcile", data={"csrf": token.group(1), "csv": "x"}, headers=same
    )
    assert bad.status_code == 422 and "provider" in bad.text


@pytest.mark.anyio
async def test_sessions_live_in_the_store_hashed_and_outlive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "sessions.db"
    async with running(db) as first:
        finance = await first.create_key(name="f", role="finance")
        _, cookie, _ = await sign_in(first, finance["key"])
        assert cookie
        [(token_hash, actor)] = first.rows("SELECT token_hash, actor FROM console_sessions")
        assert cookie not in token_hash and cookie not in actor and finance["key"] not in actor
        csrf = re.search(
            r'name="csrf" value="([^"]+)"', (await first.client().get("/console/spend")).text
        )
        assert csrf and csrf.group(1) not in token_hash
    async with running(db) as second:  # a restart (or another replica): still signed in
        client = second.client()
        client.cookies.set("agw_console", cookie, path="/console")
        page = await client.get("/console/spend")
        assert page.status_code == 200, page.text
        again = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert again and again.group(1) == csrf.group(1)
        out = await client.post(
            "/console/logout",
            data={"csrf": again.group(1)},
            headers={"sec-fetch-site": "same-origin"},
        )
        assert out.status_code == 303
        assert second.rows("SELECT count(*) FROM console_sessions") == [(0,)]
        client.cookies.set("agw_console", cookie, path="/console")
        assert (await client.get("/console/spend")).status_code == 303
        # Idle past the limit: the session ends and its row goes.
        _, idle, _ = await sign_in(second, finance["key"])
        assert idle and second.rows("SELECT count(*) FROM console_sessions") == [(1,)]
        second.clock.advance(1801)
        client.cookies.set("agw_console", idle, path="/console")
        assert (await client.get("/console/spend")).status_code == 303
        assert second.rows("SELECT count(*) FROM console_sessions") == [(0,)]
