"""A stream that ends without usage is settled from its estimate and flagged, never as zero."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.adapters.admin.support import running
from tests.core.test_governance_app import PRICES, chat

pytestmark = pytest.mark.anyio


async def test_a_stream_cut_before_its_usage_counts_its_estimate_on_budget_and_limit(
    tmp_path: Path,
) -> None:
    cut = {"name": "sim", "type": "sim", "sim": {"drop_after_chunks": 2}}
    async with running(tmp_path / "g.db", prices=PRICES, providers=[cut]) as gw:
        key = await gw.create_key(name="k")
        budget = {"level": "key", "target": key["id"], "amount_usd": 1.0}
        limit = {"level": "key", "target": key["id"], "kind": "output_tokens", "amount": 1000}
        budget_id = (await gw.admin("POST", "/admin/budgets", json=budget)).json()["id"]
        limit_id = (await gw.admin("POST", "/admin/limits", json=limit)).json()["id"]
        await chat(gw, key["key"], stream=True)
        spent = (await gw.admin("GET", f"/admin/budgets/{budget_id}")).json()["used_usd"]
        tokens = (await gw.admin("GET", f"/admin/limits/{limit_id}")).json()["used"]
    ((cost, output, flags),) = gw.rows("SELECT cost_usd, output_tokens, flags FROM spans")
    assert "usage_estimated" in json.loads(flags)
    assert output > 0 and tokens == output  # the estimate, on the limit and on the span
    assert spent == pytest.approx(cost) and cost > 0
