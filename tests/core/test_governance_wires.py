"""Over-limit and over-budget answers as the real SDKs see them, on the OpenAI and the Anthropic
wire: 429, the right error type, `Retry-After`, and `x-ratelimit-*` headers on what passes."""

from __future__ import annotations

from pathlib import Path

import anthropic
import httpx2
import openai
import pytest

from tests.adapters.admin.support import Gateway, running
from tests.core.test_governance_app import COST, PRICES

pytestmark = pytest.mark.anyio
LONG = "one two three four five six seven eight nine ten"


def sdks(gw: Gateway, secret: str) -> tuple[openai.AsyncOpenAI, anthropic.AsyncAnthropic]:
    """Both SDKs on the in-process app (they ship their own httpx, `httpx2`), with their
    retries off so a 429 reaches the test."""
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=gw.app), base_url="http://gw")
    oa = openai.AsyncOpenAI(api_key=secret, base_url="http://gw/v1", http_client=http,
                            max_retries=0)  # fmt: skip
    an = anthropic.AsyncAnthropic(api_key=secret, base_url="http://gw", http_client=http,
                                  max_retries=0)  # fmt: skip
    return oa, an


async def openai_call(client: openai.AsyncOpenAI) -> httpx2.Response:
    raw = await client.chat.completions.with_raw_response.create(
        model="sim", max_tokens=5, messages=[{"role": "user", "content": LONG}]
    )
    return raw.http_response


async def anthropic_call(client: anthropic.AsyncAnthropic) -> httpx2.Response:
    raw = await client.messages.with_raw_response.create(
        model="sim", max_tokens=5, messages=[{"role": "user", "content": LONG}]
    )
    return raw.http_response


async def test_a_spent_budget_is_insufficient_quota_on_both_wires(tmp_path: Path) -> None:
    async with running(tmp_path / "g.db", prices=PRICES) as gw:
        key = await gw.create_key(name="k")
        rule = {"level": "key", "target": key["id"], "amount_usd": COST}
        assert (await gw.admin("POST", "/admin/budgets", json=rule)).status_code == 201
        oa, an = sdks(gw, key["key"])
        await openai_call(oa)
        with pytest.raises(openai.RateLimitError) as on_openai:
            await openai_call(oa)
        with pytest.raises(anthropic.RateLimitError) as on_anthropic:
            await anthropic_call(an)
    openai_error = on_openai.value
    assert openai_error.status_code == 429 and openai_error.code == "insufficient_quota"
    assert f"budget of key {key['id']} is spent" in openai_error.message
    assert int(openai_error.response.headers["retry-after"]) >= 1
    body = on_anthropic.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error"
    assert f"budget of key {key['id']}" in body["error"]["message"]
    assert int(on_anthropic.value.response.headers["retry-after"]) >= 1


async def test_a_reached_limit_is_rate_limit_exceeded_and_passing_calls_carry_headers(
    tmp_path: Path,
) -> None:
    async with running(tmp_path / "g.db", prices=PRICES) as gw:
        key = await gw.create_key(name="k")
        for rule in ({"level": "team", "target": "research/agents", "kind": "requests",
                      "amount": 2, "window": "hour"},
                     {"level": "key", "target": key["id"], "kind": "total_tokens",
                      "amount": 1000}):  # fmt: skip
            assert (await gw.admin("POST", "/admin/limits", json=rule)).status_code == 201
        oa, an = sdks(gw, key["key"])
        first = await openai_call(oa)
        second = await anthropic_call(an)
        with pytest.raises(openai.RateLimitError) as on_openai:
            await openai_call(oa)
        with pytest.raises(anthropic.RateLimitError) as on_anthropic:
            await anthropic_call(an)
    for reply, remaining in ((first, "1"), (second, "0")):
        assert reply.headers["x-ratelimit-limit-requests"] == "2"
        assert reply.headers["x-ratelimit-remaining-requests"] == remaining
        assert reply.headers["x-ratelimit-reset-requests"].endswith("s")
        assert reply.headers["x-ratelimit-limit-tokens"] == "1000"
        assert int(reply.headers["x-ratelimit-remaining-tokens"]) < 1000
    assert on_openai.value.code == "rate_limit_exceeded"
    assert "requests per hour limit of team research/agents" in on_openai.value.message
    assert 1 <= int(on_openai.value.response.headers["retry-after"]) <= 3600
    body = on_anthropic.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "rate_limit_error"
    assert 1 <= int(on_anthropic.value.response.headers["retry-after"]) <= 3600
