"""Month-end (or day-end) projections per budget, from recent spend; an alert when a projection
exceeds its budget.

    projected = spent so far this period + recent rate x time left in the period

The recent rate is the spend of the last 7 days (for a monthly budget) or the last 24 hours (for
a daily one), per second. Spend is read from the usage aggregates filtered to the budget's level
and target, so it counts what was metered, not what the budget counters reserved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import anyio

from core.alerting import AlertFeed
from core.ops.attribution import month_bounds
from core.reports import DAY, Dimension, UsageQuery, UsageStore
from core.rulebook import Rule
from core.rulespec import BudgetSpec

logger = logging.getLogger("agentgw.forecast")

FORECAST_COLUMNS = (
    "budget_id",
    "level",
    "target",
    "period",
    "amount_usd",
    "spent_usd",
    "rate_usd_per_day",
    "projected_usd",
    "projected_pct",
    "over_budget",
)
_LEVEL_DIMENSION: dict[str, Dimension | None] = {
    "key": "key",
    "project": "project",
    "team": "team",
    "department": "department",
    "customer": "customer",
    "app": "app",
    "agent": "agent",
    "organization": None,
}


@dataclass(frozen=True, slots=True)
class Forecast:
    """One budget's projection for its current period."""

    budget_id: str
    level: str
    target: str
    period: str
    period_start: float
    amount_usd: float
    spent_usd: float
    rate_usd_per_day: float
    projected_usd: float
    projected_pct: float | None
    over_budget: bool


def period_bounds(period: str, now: float) -> tuple[float, float]:
    if period == "day":
        start = now - now % DAY
        return start, start + DAY
    return month_bounds(None, now)


async def _spent(store: UsageStore, spec: BudgetSpec, since: float, until: float) -> float:
    dim = _LEVEL_DIMENSION.get(spec.level)
    filters = {} if dim is None else {dim: spec.target}
    rows = await store.usage(UsageQuery((), "all", since, until, filters))
    return sum(r.totals.cost_usd for r in rows)


async def forecast(store: UsageStore, rule: Rule, now: float) -> Forecast | None:
    """The projection of one budget rule (None for a limit)."""
    spec = rule.spec
    if not isinstance(spec, BudgetSpec):
        return None
    start, end = period_bounds(spec.period, now)
    lookback = DAY if spec.period == "day" else 7 * DAY
    spent = await _spent(store, spec, start, now)
    recent = await _spent(store, spec, now - lookback, now)
    rate = recent / lookback
    projected = spent + rate * max(end - now, 0.0)
    return Forecast(
        budget_id=rule.id,
        level=spec.level,
        target=spec.target,
        period=spec.period,
        period_start=start,
        amount_usd=spec.amount_usd,
        spent_usd=round(spent, 9),
        rate_usd_per_day=round(rate * DAY, 9),
        projected_usd=round(projected, 9),
        projected_pct=round(100 * projected / spec.amount_usd, 2) if spec.amount_usd else None,
        over_budget=projected > spec.amount_usd,
    )


async def forecasts(store: UsageStore, rules: Sequence[Rule], now: float) -> list[Forecast]:
    out = [await forecast(store, rule, now) for rule in rules]
    return [f for f in out if f is not None]


def forecast_view(f: Forecast) -> dict[str, Any]:
    return {name: getattr(f, name) for name in FORECAST_COLUMNS}


class ForecastWatch:
    """Checks every budget's projection now and then; alerts once per budget and period."""

    def __init__(
        self,
        store: UsageStore,
        rules: Callable[[], Sequence[Rule]],
        sink: AlertFeed,
        *,
        clock: Callable[[], float],
        every_seconds: float = 900.0,
    ) -> None:
        self._store, self._rules, self._sink = store, rules, sink
        self._clock, self._every = clock, every_seconds

    async def check(self) -> list[Forecast]:
        """Project every budget now; raise an alert for each projected over its budget."""
        over = [
            f for f in await forecasts(self._store, self._rules(), self._clock()) if f.over_budget
        ]
        for f in over:
            month = datetime.fromtimestamp(f.period_start, UTC).date().isoformat()
            await self._sink.raise_alert(
                "budget_forecast",
                f"budget of {f.level} {f.target} is projected to reach {f.projected_usd:.2f} USD "
                f"of {f.amount_usd:.2f} by the end of the {f.period} starting {month}",
                severity="warning",
                level=f.level,
                target=f.target,
                details=asdict(f),
                dedupe_key=f"forecast:{f.budget_id}:{f.period_start:.0f}",
            )
        return over

    async def run(self) -> None:
        """Check now and every `every_seconds`, until cancelled."""
        while True:
            try:
                await self.check()
            except Exception:  # a task of its own: a store failure must not end the gateway
                logger.exception("budget forecast failed")
            await anyio.sleep(self._every)  # a schedule, not a wait for an event
