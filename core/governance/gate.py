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
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import replace
from typing import Literal

from core.access import Principal
from core.envelope import Envelope, Modality, Usage
from core.errors import GatewayError, GovernanceUnavailable, QuotaExceeded, RateLimited
from core.governance.counters import (
    Admission,
    CounterAdjustment,
    CounterStore,
    CounterUnavailable,
)
from core.governance.headers import rate_limit_headers
from core.governance.model import (
    Alert,
    Budget,
    CounterOutage,
    Limit,
    LimitAlert,
    key_levels,
    with_agent,
)
from core.governance.plan import (
    CONCURRENCY_TTL_SECONDS,
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
from core.rulespec import Level

logger = logging.getLogger(__name__)

PriceFor = Callable[[str], "tuple[float, float] | None"]
"""A virtual model's (input, output) USD price per million tokens, or None when unpriced."""
GateAlert = Alert | LimitAlert | CounterOutage
AlertSink = Callable[[GateAlert], Awaitable[None]]
"""Receives budget threshold crossings, shadow-limit refusals and counter-store outages; must not
block (it is awaited on the request path)."""
_OUTAGE_ALERT_SECONDS = 60.0
FailPolicy = Literal["closed", "open"]
DEFAULT_MAX_TOKENS = 4096


async def _no_alerts(alert: GateAlert) -> None:
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
        self._shadow = _has_shadow_limits(self._limits)
        # Each key's levels (they change only with its record, and so with its Principal).
        self._key_levels: dict[str, tuple[Principal, dict[Level, str]]] = {}
        self._price_for = price_for
        self._default_max_tokens = dict(default_max_tokens or {})
        self._fallback_max_tokens = fallback_max_tokens
        self._alert_sink = alert_sink
        self._fail = fail
        self._clock = clock
        self._prefix = prefix
        self.unenforced = 0
        """Calls admitted unchecked (fail open) or settled without reaching the store."""
        self._outage_alerted_at = -math.inf

    def replace_rules(self, limits: Sequence[Limit], budgets: Sequence[Budget]) -> None:
        """Swap the rule set (admin changes); counters already held are settled as reserved."""
        self._limits, self._budgets = tuple(limits), tuple(budgets)
        self._shadow = _has_shadow_limits(self._limits)

    async def reserve(
        self,
        principal: Principal,
        env: Envelope,
        request_id: str,
        *,
        cost_usd: float | None = None,
        only: Collection[str] | None = None,
        prompt_tokens: int | None = None,
    ) -> Reservation:
        """Check every limit and budget above the call and hold its estimate, atomically.

        `cost_usd` is the call's price when it is known before it runs (an MCP tool's per-call
        price); otherwise the estimate is priced from tokens. `only`: hold just the limits of
        these kinds (`"budget"` names the budgets), as a realtime session's renewals do.
        `prompt_tokens`: `estimate_prompt_tokens(env)`, when the caller has it already.

        Raises:
            RateLimited: a limit is reached; `retry_after` is when its window resets.
            QuotaExceeded: a `block` budget is spent, or applies to a model with no price.
            GovernanceUnavailable: the counter store is down and the policy is `fail: closed`.
        """
        now = self._clock()
        levels = with_agent(self._levels_of_key(principal), env)
        est = self._estimate(env, cost_usd, prompt_tokens)
        held = hold_limits(self._prefix, self._limits, levels, env, est, now)
        if only is not None:
            held = [h for h in held if isinstance(h.rule, Limit) and h.rule.kind in only]
        budgets = only is None or "budget" in only
        if budgets and est.cost_micros is not None:
            held += hold_budgets(self._prefix, self._budgets, levels, est.cost_micros, now)
        elif budgets:
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
        if self._shadow:
            await self._alert_shadow_limits(items, admission.counts, now)
        return reservation

    def _levels_of_key(self, principal: Principal) -> dict[Level, str]:
        known = self._key_levels.get(principal.key_id)
        if known is not None and known[0] is principal:
            return known[1]
        levels = key_levels(principal)
        if len(self._key_levels) >= 10_000:
            self._key_levels.clear()
        self._key_levels[principal.key_id] = (principal, levels)
        return levels

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

    def split(
        self, reservation: Reservation, kinds: Collection[str]
    ) -> tuple[Reservation, Reservation]:
        """`reservation` as two: the limits of `kinds` and the rest, each settled on its own."""
        hold = reservation.hold
        if not isinstance(hold, Hold):
            return replace(reservation, hold=None), reservation
        picked = [isinstance(i.rule, Limit) and i.rule.kind in kinds for i in hold.items]
        counted = len(hold.counts) == len(hold.items)

        def part(keep: bool) -> Reservation:
            ours = [n for n, p in enumerate(picked) if p is keep]
            items = tuple(hold.items[n] for n in ours)
            counts = tuple(hold.counts[n] for n in ours) if counted else ()
            held = Hold(items, counts, hold.now, hold.enforced, hold.settled, list(hold.flags))
            return replace(reservation, hold=held)

        return part(True), part(False)

    def headers(self, reservation: Reservation) -> dict[str, str]:
        """OpenAI-style `x-ratelimit-*` headers for the tightest request and token limits held."""
        hold = reservation.hold
        if not isinstance(hold, Hold) or not hold.enforced or not hold.items:
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

    async def reset(self, rule: Limit | Budget) -> int:
        """Zero `rule`'s current-window counter and re-arm the alerts it raised in this window;
        returns the count it had.

        Raises:
            CounterUnavailable: the counter store cannot be reached.
        """
        now = self._clock()
        key = self.key_of(rule, at=now)
        if key is None:
            return 0
        (used,) = await self._counters.get([key])
        bucket = rule.window.bucket(now)
        left = CONCURRENCY_TTL_SECONDS if bucket is None else bucket.reset_at - now
        ttl = left + TTL_MARGIN_SECONDS
        bump = CounterAdjustment(_resets_key(key), 1, ttl)
        await self._counters.settle([CounterAdjustment(key, -used, ttl), bump] if used else [bump])
        return used

    @property
    def counters(self) -> CounterStore:
        return self._counters

    # -- steps ----------------------------------------------------------------------------

    def _estimate(
        self, env: Envelope, cost_usd: float | None = None, prompt_tokens: int | None = None
    ) -> Estimate:
        prompt = estimate_prompt_tokens(env) if prompt_tokens is None else prompt_tokens
        # A tool call produces no model tokens: only embeddings and tools reserve no output.
        no_output = env.modality in (Modality.EMBEDDING, Modality.TOOL, Modality.MODERATION)
        max_out = 0 if no_output else self._max_tokens(env)
        images = (_positive_int(env.params.get("n")) or 1) if env.modality is Modality.IMAGE else 0
        price = None if cost_usd is not None else self._price_for(env.model)
        cost = None if cost_usd is None else math.ceil(round(cost_usd * MICROS_PER_USD, 6))
        if price is not None:
            # USD per million tokens times tokens = micro-dollars; round away float noise, then up.
            cost = math.ceil(round(price[0] * prompt + price[1] * max_out, 6))
        seconds = _seconds(env.params.get("seconds")) if env.modality is Modality.VIDEO else 0
        # A realtime session reserves the audio it is about to relay, in steps.
        voice = env.modality is Modality.VOICE
        audio = _positive_int(env.params.get("audio_seconds")) if voice else 0
        return Estimate(prompt, max_out, cost, env.modality, images, seconds, audio)

    def _max_tokens(self, env: Envelope) -> int:
        params = env.params
        for name in _MAX_TOKEN_PARAMS:
            if name in params:
                value = _positive_int(params[name])
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
        try:
            return await self._counters.reserve(items)  # each `Held` is a `CounterItem`
        except CounterUnavailable as exc:
            await self._alert_outage()
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
                # A changed amount is a new budget, a reset a new start: either may alert again.
                rearmed = await self._rearmed(item.key)
                marker = f"{item.key}:alert:{cap}:{threshold}{rearmed}"
                ttl = item.reset_at - now + TTL_MARGIN_SECONDS
                try:
                    first = await self._counters.mark(marker, ttl)
                except CounterUnavailable:
                    logger.warning("alert dedupe for %s skipped: store unavailable", item.key)
                    continue
                if first:
                    # The budget key ends in its window's bucket name (`plan.budget_key`).
                    window = item.key.rsplit(":", 1)[-1] + rearmed
                    await self._emit(budget, threshold, count, window)

    async def _alert_shadow_limits(
        self, items: Sequence[Held], counts: Sequence[int], now: float
    ) -> None:
        """Alert once per window when an `alert-only` limit would have refused this call."""
        for item, count in zip(items, counts, strict=True):
            rule = item.rule
            if not isinstance(rule, Limit) or rule.action == "block":
                continue
            if not (count - item.amount >= rule.amount or count > rule.amount):
                continue
            rearmed = await self._rearmed(item.key)
            marker = f"{item.key}:alert:{rule.amount}{rearmed}"
            try:
                if not await self._counters.mark(marker, item.ttl_seconds):
                    continue
            except CounterUnavailable:
                logger.warning("alert dedupe for %s skipped: store unavailable", item.key)
                continue
            # A concurrency limit has no window: it alerts at most hourly (the marker's TTL).
            hour = str(int(now - now % 3600))
            bucket = (hour if rule.kind == "concurrent" else item.key.rsplit(":", 1)[-1]) + rearmed
            alert = LimitAlert(rule.level, rule.target, rule.kind, rule.amount, count,
                               rule.window.spec, bucket, rule.model, rule.tool)  # fmt: skip
            await self._send(alert, rule.describe())

    async def _rearmed(self, key: str) -> str:
        """`:rN` after the N-th reset of `key`'s window, so alerts raised before it fire again
        (read only when an alert is due, never on the common path)."""
        try:
            (resets,) = await self._counters.get([_resets_key(key)])
        except CounterUnavailable:
            return ""
        return f":r{resets}" if resets else ""

    async def _alert_outage(self) -> None:
        """Report an unreachable counter store (at most once a minute from this process)."""
        now = self._clock()
        if now - self._outage_alerted_at < _OUTAGE_ALERT_SECONDS:
            return
        self._outage_alerted_at = now
        minute = str(int(now - now % 60))
        await self._send(CounterOutage(self._fail, minute), "the counter store")

    async def _send(self, alert: GateAlert, about: str) -> None:
        try:
            await self._alert_sink(alert)
        except Exception:  # the sink is foreign code at a boundary: a dead sink never blocks
            logger.exception("alert sink failed for %s", about)

    async def _emit(self, budget: Budget, threshold: float, count: int, window: str) -> None:
        alert = Alert(
            budget.level,
            budget.target,
            threshold,
            count / MICROS_PER_USD,
            budget.amount_usd,
            budget.period,
            budget.action,
            window,
        )
        await self._send(alert, budget.describe())


def _refusal(items: Sequence[Held], admission: Admission, now: float) -> GatewayError:
    assert admission.refused is not None  # a refused admission names its counter
    item = items[admission.refused]
    retry_after = max(1.0, item.reset_at - now)
    if isinstance(item.rule, Budget):
        return QuotaExceeded(f"{item.rule.describe()} is spent", retry_after=retry_after)
    return RateLimited(f"{item.rule.describe()} is reached", retry_after=retry_after)


def _resets_key(key: str) -> str:
    return f"{key}:resets"


_MAX_TOKEN_PARAMS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def _has_shadow_limits(limits: Sequence[Limit]) -> bool:
    return any(limit.action != "block" for limit in limits)


def _positive_int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _seconds(value: object) -> int:
    # The OpenAI videos wire sends seconds as a string ("4"); a job's default length is 4.
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return _positive_int(value) or 4
