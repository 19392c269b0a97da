"""The bootstrap admin key, and brute-force protection over HTTP on both surfaces."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.access import hash_secret
from tests.adapters.admin.support import ROOT, Gateway, running

pytestmark = pytest.mark.anyio


async def test_without_agentgw_admin_key_one_is_generated_and_printed_only_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "agentgw.db"
    async with running(db, admin_key=None) as gw:
        assert (await gw.admin("GET", "/admin/whoami")).status_code == 401  # not the env one
        printed = capsys.readouterr().err
        match = re.search(r"shown only this once\): (agw_\S+)", printed)
        assert match is not None, printed
        secret = match.group(1)
        me = await gw.admin("GET", "/admin/whoami", key=secret)
        assert (me.json()["key_id"], me.json()["role"]) == ("bootstrap-admin", "admin")
        (event,) = (await gw.admin("GET", "/admin/audit", key=secret)).json()["data"]
        assert (event["action"], event["actor"]) == ("admin_key.generate", "system")
        assert (event["after"]["prefix"], event["source"]) == (secret[:12], "startup")
    dump = "\n".join(str(row) for row in gw.rows("SELECT * FROM audit_events"))
    assert secret not in dump and hash_secret(secret) not in dump
    assert gw.rows("SELECT value FROM settings") == [(hash_secret(secret),)]

    async with running(db, admin_key=None) as again:
        assert capsys.readouterr().err == ""  # printed once, never again
        assert (await again.admin("GET", "/admin/whoami", key=secret)).status_code == 200
    async with running(db) as configured:  # AGENTGW_ADMIN_KEY set later wins
        assert (await configured.admin("GET", "/admin/whoami", key=secret)).status_code == 401
        assert (await configured.admin("GET", "/admin/whoami", key=ROOT)).status_code == 200


async def test_a_configured_admin_key_is_neither_stored_nor_printed(
    gw: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (await gw.admin("GET", "/admin/whoami")).status_code == 200
    assert ROOT not in capsys.readouterr().err
    assert gw.rows("SELECT * FROM settings") == []
    assert (await gw.admin("GET", "/admin/keys")).json()["data"] == []


async def test_repeated_failures_from_one_address_are_slowed_then_locked_out(gw: Gateway) -> None:
    attacker = "203.0.113.9"
    for _ in range(5):
        assert (await gw.chat("agw_guess", address=attacker)).status_code == 401
    assert (await gw.chat("agw_guess", address=attacker)).status_code == 401  # sixth: wait 1 s
    throttled = await gw.chat("agw_guess", address=attacker)
    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == "1"
    assert throttled.json()["error"]["code"] == "too_many_failed_authentications"
    admin = await gw.admin("GET", "/admin/keys", key=ROOT, address=attacker)
    assert admin.status_code == 429  # the admin API is behind the same guard
    assert admin.json()["error"]["type"] == "rate_limit_error"
    assert (await gw.admin("GET", "/admin/whoami")).status_code == 200  # others unaffected

    delay = 1.0
    for _ in range(14):  # waits out each wait, failing again each time
        gw.clock.advance(delay)
        assert (await gw.chat("agw_guess", address=attacker)).status_code == 401
        delay = min(delay * 2, 60.0)
    locked = await gw.chat("agw_guess", address=attacker)
    assert (locked.status_code, locked.headers["retry-after"]) == (429, "900")
    metrics = (await gw.client().get("/metrics")).text
    assert "agentgw_auth_lockouts_total 1.0" in metrics
    assert "agentgw_auth_failures_total 20.0" in metrics
    assert "agentgw_auth_throttled_total 3.0" in metrics
