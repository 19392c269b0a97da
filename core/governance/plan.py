"""What one request holds: the counters it touches, how much it reserves on each, and why.

The gate turns the rules that apply to a request into `Held` counters (one per distinct key), sends
them to the counter store in one step, and keeps them in the reservation so settling adjusts
exactly the buckets that were reserved, even if the window rolled over meanwhile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.envelope import Envelope, Modality, Usage
from core.governance.counters import CounterItem
from core.governance.model import Budget, Limit, budget_applies, limit_applies
from core.governance.windows import Bucket
from core.rulespec import Kind, Level

MICROS_PER_USD = 1_000_000
TTL_MARGIN_SECONDS = 60.0
CONCURRENCY_TTL_SECONDS = 3600.0  # a crashed replica's slots free themselves after an idle hour
# Kinds that only traffic of one modality uses: a spent tool-call allowance must not stop chat.
_KIND_MODALITY: dict[Kind, Modality] = {
    "audio_seconds": Modality.VOICE,
    "images": Modality.IMAGE,
    "video_seconds": Modality.VIDEO,
    "tool_calls": Modality.TOOL,
}


def to_micros(usd: float) -> int:
    """USD as integer micro-dollars, the unit budgets are counted in."""
    return round(usd * MICROS_PER_USD)


@dataclass(frozen=True, slots=True)
class Estimate:
    """What the gate expects a request to use, before it runs."""

    prompt_tokens: int
    max_tokens: int
    cost_micros: int | None
    modality: Modality
    images: int
    # The seconds a video job asks for (a job's length is known before it runs).
    video_seconds: int = 0
    # The audio seconds a realtime session reserves ahead of relaying them.
    audio_seconds: int = 0


@dataclass(frozen=True, slots=True)
class Held(CounterItem):
    """One counter a reservation holds: the key, the amount added, and the rule it serves.

    A `CounterItem` itself (key, amount, limit, TTL), so the store is handed the held items as
    they are.
    """

    reset_at: float
    rule: Limit | Budget


@dataclass(slots=True)
class Hold:
    """The mutable part of a reservation: what is held, and whether it was settled yet."""

    items: tuple[Held, ...]
    counts: tuple[int, ...]
    now: float
    enforced: bool = True
    settled: bool = False
    flags: list[str] = field(default_factory=list)


def limit_key(prefix: str, limit: Limit, bucket: Bucket | None) -> str:
    scope = f"model={limit.model}" if limit.model else f"tool={limit.tool}" if limit.tool else "*"
    # A shadow rule counts on its own key: rolled out beside a blocking rule of the same shape,
    # it must not be merged away (`merge`) or share that rule's alert markers.
    shadow = ":shadow" if limit.action == "alert-only" else ""
    base = f"{prefix}lim:{limit.level}:{limit.target}:{limit.kind}:{scope}{shadow}"
    return base if bucket is None else f"{base}:{limit.window.spec}:{bucket.name}"


def budget_key(prefix: str, budget: Budget, bucket: Bucket) -> str:
    shadow = ":shadow" if budget.action == "alert-only" else ""
    return f"{prefix}bud:{budget.level}:{budget.target}:{budget.period}{shadow}:{bucket.name}"


def reserved_amount(kind: Kind, est: Estimate) -> int:
    """What a request reserves on a counter of `kind` before it runs (seconds are unknown yet)."""
    match kind:
        case "requests" | "concurrent":
            return 1
        case "input_tokens":
            return est.prompt_tokens
        case "output_tokens":
            return est.max_tokens
        case "total_tokens":
            return est.prompt_tokens + est.max_tokens
        case "images":
            return est.images
        case "tool_calls":
            return 1 if est.modality is Modality.TOOL else 0
        case "video_seconds":
            return est.video_seconds
        case "audio_seconds":
            return est.audio_seconds


def used_amount(held: Held, usage: Usage, cost_usd: float | None) -> int:
    """What a finished request really used on `held`'s counter.

    A budget settled without a cost keeps its estimate when the call consumed anything (an unpriced
    fallback target must not count as free) and drops to zero when nothing was served.
    """
    rule = held.rule
    if isinstance(rule, Budget):
        if cost_usd is not None:
            return to_micros(cost_usd)
        consumed = usage.total_tokens or usage.images or usage.audio_seconds or usage.video_seconds
        return held.amount if consumed else 0
    match rule.kind:
        case "requests" | "tool_calls":
            return held.amount
        case "concurrent":
            return 0
        case "input_tokens":
            return usage.input_tokens
        case "output_tokens":
            return usage.output_tokens
        case "total_tokens":
            return usage.total_tokens
        case "images":
            return usage.images
        case "audio_seconds":
            return math.ceil(usage.audio_seconds)
        case "video_seconds":
            return math.ceil(usage.video_seconds)


def hold_limits(
    prefix: str,
    limits: Sequence[Limit],
    levels: dict[Level, str],
    env: Envelope,
    est: Estimate,
    now: float,
) -> list[Held]:
    """The counters the applicable limits touch (limits outside their time-of-day span skip)."""
    held: list[Held] = []
    for limit in limits:
        if not limit_applies(limit, levels, env):
            continue
        if _KIND_MODALITY.get(limit.kind, env.modality) is not env.modality:
            continue
        cap = limit.amount if limit.action == "block" else None
        if limit.kind == "concurrent":
            key = limit_key(prefix, limit, None)
            held.append(Held(key, 1, cap, CONCURRENCY_TTL_SECONDS, now, limit))
            continue
        bucket = limit.window.bucket(now)
        if bucket is None:
            continue
        ttl = bucket.reset_at - now + TTL_MARGIN_SECONDS
        amount = reserved_amount(limit.kind, est)
        key = limit_key(prefix, limit, bucket)
        held.append(Held(key, amount, cap, ttl, bucket.reset_at, limit))
    return held


def hold_budgets(
    prefix: str, budgets: Sequence[Budget], levels: dict[Level, str], cost_micros: int, now: float
) -> list[Held]:
    """The counters the applicable budgets touch; `alert-only` ones count but never refuse."""
    held: list[Held] = []
    for budget in budgets:
        if not budget_applies(budget, levels):
            continue
        bucket = budget.window.bucket(now)
        assert bucket is not None  # day and month windows always have a bucket
        ttl = bucket.reset_at - now + TTL_MARGIN_SECONDS
        cap = budget.amount_micros if budget.action == "block" else None
        key = budget_key(prefix, budget, bucket)
        held.append(Held(key, cost_micros, cap, ttl, bucket.reset_at, budget))
    return held


def merge(held: Sequence[Held]) -> tuple[Held, ...]:
    """One entry per key (two rules may name the same counter): the tighter cap wins."""
    by_key: dict[str, Held] = {}
    for item in held:
        seen = by_key.get(item.key)
        if seen is None or _tighter(item.limit, seen.limit):
            by_key[item.key] = item
    return tuple(by_key.values())


def _tighter(a: int | None, b: int | None) -> bool:
    return a is not None and (b is None or a < b)
