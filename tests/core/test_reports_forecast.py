"""Budget forecasts: month-end projection from the last week's spend, and one alert per budget
and period when the projection is over the budget."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.alerting import AlertFeed
from core.ops.forecast import ForecastWatch, forecast
from core.reports import DAY
from core.rulebook import Rule
from core.rulespec import BudgetSpec
from core.tracing import Span
from store import MemoryStore

NOW = datetime(2026, 3, 11, 0, 0, tzinfo=UTC).timestamp()  # 20 days left in March


def spans_per_day(key: str, team_path: str, usd_per_day: float, days: int) -> list[Span]:
    out: list[Span] = []
    for d in range(days):
        for i in range(4):
            n = len(out)
            out.append(
                Span(
                    f"req_{key}_{d}_{i}",
                    f"{n:016x}",
                    f"{n:032x}",
                    NOW - (d + 1) * DAY + i * 3600,
                    key_id=key,
                    org_path=team_path,
                    cost_usd=usd_per_day / 4,
                )
            )
    return out


@pytest.mark.anyio
async def test_projection_is_spend_so_far_plus_the_weekly_rate_for_the_rest_of_the_month() -> None:
    store = MemoryStore()
    await store.record_spans(spans_per_day("key_a", "research/agents/demo", 2.0, 10))
    rule = Rule("b1", "admin", BudgetSpec(level="team", target="research/agents", amount_usd=50))
    f = await forecast(store, rule, NOW)
    assert f is not None
    assert f.spent_usd == pytest.approx(20.0)  # March 1-10
    assert f.rate_usd_per_day == pytest.approx(2.0)
    assert f.projected_usd == pytest.approx(20.0 + 2.0 * 21)
    assert f.over_budget is True
    other = Rule("b2", "admin", BudgetSpec(level="key", target="key_zzz", amount_usd=1))
    quiet = await forecast(store, other, NOW)
    assert quiet is not None and quiet.projected_usd == 0 and not quiet.over_budget


@pytest.mark.anyio
async def test_an_overrun_projection_alerts_once_per_budget_and_period() -> None:
    store = MemoryStore()
    await store.record_spans(spans_per_day("key_a", "research/agents/demo", 2.0, 10))
    await store.record_spans(spans_per_day("key_b", "finance/ledger/close", 0.1, 10))
    rules = [
        Rule("over", "admin", BudgetSpec(level="key", target="key_a", amount_usd=40)),
        Rule("fine", "admin", BudgetSpec(level="key", target="key_b", amount_usd=40)),
        Rule(
            "daily",
            "admin",
            BudgetSpec(level="organization", target="*", amount_usd=100, period="day"),
        ),
    ]
    feed = AlertFeed([], store=MemoryStore())
    watch = ForecastWatch(store, lambda: rules, feed, clock=lambda: NOW)
    assert [f.budget_id for f in await watch.check()] == ["over"]
    await watch.check()
    alerts = feed.listing()
    assert [(a["kind"], a["level"], a["target"]) for a in alerts] == [
        ("budget_forecast", "key", "key_a")
    ]
