"""The app builds the configured filters and keeps the PII secret stable across restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.redaction import PII_SECRET_SETTING
from tests.adapters.admin.support import running

pytestmark = pytest.mark.anyio


async def test_filters_are_built_in_order_and_the_generated_secret_survives_a_restart(
    tmp_path: Path,
) -> None:
    db = tmp_path / "gw.db"
    filters = {"pii": {}, "moderation": {"action": "flag"}, "injection": {"action": "block"}}
    async with running(db, filters=filters) as gw:
        built = gw.app.state.gateway.filters
        assert [f.name for f in built] == ["pii", "moderation", "injection"]
        first = gw.rows(f"SELECT value FROM settings WHERE name = '{PII_SECRET_SETTING}'")
        audit = gw.rows(
            "SELECT action, \"after\" FROM audit_events WHERE action = 'setting.generate'"
        )
    assert first and audit
    assert first[0][0] not in audit[0][1]  # the audit event names the setting, not its value
    async with running(db, filters=filters) as gw:
        again = gw.rows(f"SELECT value FROM settings WHERE name = '{PII_SECRET_SETTING}'")
    assert again == first


async def test_a_request_blocked_for_pii_is_a_400_with_its_findings_logged(tmp_path: Path) -> None:
    filters = {"pii": {"action": "block"}}
    async with running(tmp_path / "gw.db", filters=filters) as gw:
        key = (await gw.create_key(name="k"))["key"]
        resp = await gw.client().post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "sim", "messages": [{"role": "user", "content": "SSN 219-09-9999"}]},
        )
        assert resp.status_code == 400
        assert "US_SSN" in resp.text and "219-09" not in resp.text
    rows = gw.rows("SELECT entity_type, action, value_hash FROM redaction_events")
    assert [(r[0], r[1]) for r in rows] == [("US_SSN", "block")] and rows[0][2]
    assert gw.rows("SELECT redactions FROM spans WHERE http_status = 400") == [(1,)]


async def test_the_media_filter_is_built_and_meets_requests_last(tmp_path: Path) -> None:
    filters: dict[str, Any] = {"injection": {"action": "flag"}, "media": {}}
    async with running(tmp_path / "gw.db", filters=filters) as gw:
        assert [f.name for f in gw.app.state.gateway.filters] == ["injection", "media"]
