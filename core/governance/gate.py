"""`GovernanceGate`: the pipeline's `QuotaGate` over limits, budgets and a counter store.

Reserve: estimate the request (prompt tokens plus `max_tokens`, or the model's default), price the
estimate, and check-and-increment every applicable limit and budget counter in one atomic store
call; the first counter that would overflow refuses the whole request. Settle: replace the
estimate with the metered usage and cost (deltas may be negative) and release concurrency slots,
exactly once per reservation.

Pricing before routing: the gate cannot know which target will serve the call, so it prices with
`price_for(virtual_model)`, which the app builds to answer the most expensive priced target of that
virtual model (and None if any target has no price). The estimate is therefore an upper bound, and
settle corrects it to the real cost. With no price, a `block` budget refuses the call: an unpriced
model is never counted as free.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Literal

from core.access import Principal
from core.envelope import Envelope, Modality, Usage
from core.errors import GatewayError, GovernanceUnavailable, QuotaExceeded, RateLimited
from core.governance.counters import (
    Admission,
    CounterAdjustment,
    CounterItem,
    CounterStore,
    CounterUnavailable,
)
from core.governance.headers import rate_limit_headers
from core.governance.model import Alert, Budget, Limit, levels_of
from core.governance.plan import (
    MICROS_PER_USD,
    TTL_MARGIN_SECONDS,
    Estimate,
    Held,
    Hold,
    budget_key,
    hold_budgets,
    hold_limits,
    limit_key,
    merge,
    used_amount,
)
from core.metering import estimate_prompt_tokens
from core.quota import Reservation

logger = logging.getLogger(__name__)

PriceFor = Callable[[str], "tuple[float, float] | None"]
"""A virtual model's (input, output) USD price per million tokens, or None when unpriced."""
AlertSink = Callable[[Alert], Awaitable[None]]
FailPolicy = Literal["closed", "open"]
DEFAULT_MAX_TOKENS = 4096


async def _no_alerts(alert: Alert) -> None:
    return None


class GovernanceGate:
    """A `core.quota.QuotaGate` enforcing `limits` and `budgets` on a `CounterStore`."""

    def __init__(
        self,
        counters: CounterStore,
        *,
        limits: Sequence[Limit] = (),
        budgets: Sequence[Budget] = (),
        price_for: PriceFor,
        default_max_tokens: Mapping[str, int] | None = None,
        fallback_max_tokens: int = DEFAULT_MAX_TOKENS,
        alert_sink: AlertSink = _no_alerts,
        fail: FailPolicy = "closed",
        clock: Callable[[], float] = time.time,
        prefix: str = "agw:",
    ) -> None:
        self._counters = counters
        self._limits = tuple(limits)
        self._budgets = tuple(budgets)
        self._price_for = price_for
        self._default_max_tokens = dict(default_max_tokens or {})
        self._fallback_max_tokens = fallback_max_tokens
        self._alert_sink = alert_sink
        self._fail = fail
        self._clock = clock
        self._prefix = prefix
        self.unenforced = 0
        """Calls admitted unchecked (fail open) or settled without reaching the store."""

    def replace_rules(self, limits: Sequence[Limit], budgets: Sequence[Budget]) -> None:
        """Swap the rule set (admin changes); counters already held are settled as reserved."""
        self._limits, self._budgets = tuple(limits), tuple(budgets)

    async def reserve(self, principal: Principal, env: Envelope, request_id: str) -> Reservation:
        """Check every limit and budget above the call and hold its estimate, atomically.

        Raises:
            RateLimited: a limit is reached; `retry_after` is when its window resets.
            QuotaExceeded: a `block` budget is spent, or applies to a model with no price.
            GovernanceUnavailable: the counter store is down and the policy is `fail: closed`.
        """
        now = self._clock()
        levels = levels_of(principal, env)
        est = self._estimate(env)
        held = hold_limits(self._prefix, self._limits, levels, env, est, now)
        if est.cost_micros is not None:
            held += hold_budgets(self._prefix, self._budgets, levels, est.cost_micros, now)
        else:
            self._refuse_unpriced(env, hold_budgets(self._prefix, self._budgets, levels, 0, now))
        items = merge(held)
        hold = Hold(items, (), now)
        if est.cost_micros is None:
            hold.flags.append("unpriced")
        cost = None if est.cost_micros is None else est.cost_micros / MICROS_PER_USD
        reservation = Reservation(
            request_id, principal, cost, est.prompt_tokens + est.max_tokens, hold
        )
        if not items:
            return reservation
        admission = await self._admit(items)
        if admission is None:
            hold.enforced = False
            hold.flags.append("unenforced")
            return reservation
        if not admission.ok:
            raise _refusal(items, admission, now)
        hold.counts = admission.counts
        await self._alert_crossings(items, admission.counts, [i.amount for i in items], now)
        return reservation

    async def settle(self, reservation: Reservation, usage: Usage, cost_usd: float | None) -> None:
        """Replace the held estimate with what the call used; release its concurrency slots.

        Settling twice does nothing the second time. Never raises: a store outage is logged and
        counted in `unenforced` (the call already ran; only the counters lose this correction).
        """
        hold = reservation.hold
        if not isinstance(hold, Hold) or hold.settled:
            return
        hold.settled = True
        if not hold.enforced:
            return
        adjustments: list[CounterAdjustment] = []
        moved: list[Held] = []
        for item in hold.items:
            delta = used_amount(item, usage, cost_usd) - item.amount
            if delta:
                adjustments.append(CounterAdjustment(item.key, delta, item.ttl_seconds))
                moved.append(item)
        if not adjustments:
            return
        try:
            counts = await self._counters.settle(adjustments)
        except CounterUnavailable:
            logger.warning("settling %s: counter store unavailable", reservation.id)
            self.unenforced += 1
            return
        await self._alert_crossings(moved, counts, [a.delta for a in adjustments], self._clock())

    def headers(self, reservation: Reservation) -> dict[str, str]:
        """OpenAI-style `x-ratelimit-*` headers for the tightest request and token limits held."""
        hold = reservation.hold
        if not isinstance(hold, Hold) or not hold.enforced:
            return {}
        return rate_limit_headers(hold.items, hold.counts, hold.now)

    async def used(self, rule: Limit | Budget, *, at: float | None = None) -> int:
        """The current count of `rule`'s counter for its own target (micro-dollars for budgets).

        Raises:
            CounterUnavailable: the counter store cannot be reached.
        """
        key = self.key_of(rule, at=at)
        if key is None:
            return 0
        (count,) = await self._counters.get([key])
        return count

    def key_of(self, rule: Limit | Budget, *, at: float | None = None) -> str | None:
        """The counter key of `rule`'s current window (None outside a time-of-day window)."""
        now = self._clock() if at is None else at
        bucket = rule.window.bucket(now)
        if isinstance(rule, Budget):
            assert bucket is not None  # day and month windows always have a bucket
            return budget_key(self._prefix, rule, bucket)
        if rule.kind == "concurrent":
            return limit_key(self._prefix, rule, None)
        return None if bucket is None else limit_key(self._prefix, rule, bucket)

    @property
    def counters(self) -> CounterStore:
        return self._counters

    # -- steps ----------------------------------------------------------------------------

    def _estimate(self, env: Envelope) -> Estimate:
        prompt = estimate_prompt_tokens(env)
        max_out = 0 if env.modality is Modality.EMBEDDING else self._max_tokens(env)
        images = (_positive_int(env.params.get("n")) or 1) if env.modality is Modality.IMAGE else 0
        price = self._price_for(env.model)
        cost = None
        if price is not None:
            # USD per million tokens times tokens = micro-dollars; round away float noise, then up.
            cost = math.ceil(round(price[0] * prompt + price[1] * max_out, 6))
        return Estimate(prompt, max_out, cost, env.modality, images)

    def _max_tokens(self, env: Envelope) -> int:
        for name in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
            value = _positive_int(env.params.get(name))
            if value:
                return value
        return self._default_max_tokens.get(env.model, self._fallback_max_tokens)

    def _refuse_unpriced(self, env: Envelope, budgets: list[Held]) -> None:
        for item in budgets:
            if item.limit is not None:  # a `block` budget; shadow budgets let it through
                raise QuotaExceeded(
                    f"{item.rule.describe()} cannot admit model {env.model}: "
                    "it has no price in the price catalog",
                    retry_after=3600.0,
                )

    async def _admit(self, items: Sequence[Held]) -> Admission | None:
        """The store's verdict, or None when it is down and the policy is open.

        Raises:
            GovernanceUnavailable: the store is down and the policy is closed.
        """
        cells = [CounterItem(i.key, i.amount, i.limit, i.ttl_seconds) for i in items]
        try:
            return await self._counters.reserve(cells)
        except CounterUnavailable as exc:
            if self._fail == "closed":
                raise GovernanceUnavailable(
                    "limits and budgets cannot be checked: the counter store is unavailable"
                ) from exc
            logger.warning("counter store unavailable; admitting unchecked (fail: open)")
            self.unenforced += 1
            return None

    async def _alert_crossings(
        self, items: Sequence[Held], counts: Sequence[int], added: Sequence[int], now: float
    ) -> None:
        """Emit each budget threshold this step crossed, once per window across all replicas."""
        for item, count, amount in zip(items, counts, added, strict=True):
            budget = item.rule
            if not isinstance(budget, Budget) or amount <= 0:
                continue
            cap = budget.amount_micros
            for threshold in budget.thresholds:
                line = threshold * cap
                if not count - amount < line <= count:
                    continue
                marker = f"{item.key}:alert:{threshold}"
                ttl = item.reset_at - now + TTL_MARGIN_SECONDS
                try:
                    first = await self._counters.mark(marker, ttl)
                except CounterUnavailable:
                    logger.warning("alert dedupe for %s skipped: store unavailable", item.key)
                    continue
                if first:
                    await self._emit(budget, threshold, count)

    async def _emit(self, budget: Budget, threshold: float, count: int) -> None:
        alert = Alert(
            budget.level,
            budget.target,
            threshold,
            count / MICROS_PER_USD,
            budget.amount_usd,
            budget.period,
            budget.action,
        )
        try:
            await self._alert_sink(alert)
        except Exception:  # the sink is foreign code at a boundary: a dead sink never blocks
            logger.exception("alert sink failed for %s", budget.describe())


def _refusal(items: Sequence[Held], admission: Admission, now: float) -> GatewayError:
    assert admission.refused is not None  # a refused admission names its counter
    item = items[admission.refused]
    retry_after = max(1.0, item.reset_at - now)
    if isinstance(item.rule, Budget):
        return QuotaExceeded(f"{item.rule.describe()} is spent", retry_after=retry_after)
    return RateLimited(f"{item.rule.describe()} is reached", retry_after=retry_after)


def _positive_int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
