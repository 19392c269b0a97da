"""The governance layer as the app runs it: the gate, its counter store, rules and alerts.

Built by `core.app`, which names the Redis counter store by registry string (loaded only when
`redis:` is set). Without Redis the counters live in this process (`MemoryCounters`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from core.alert_store import AlertStore
from core.alerting import AlertFeed
from core.audit import AuditLog
from core.config import Config
from core.governance import CounterStore, CounterUnavailable, GovernanceGate, MemoryCounters
from core.metering import PriceCatalog
from core.rulebook import RuleBook
from core.state import Store

REDIS_COUNTERS = "store.redis_counters:RedisCounters"


@dataclass
class Governor:
    """Everything governance needs at run time."""

    gate: GovernanceGate
    rules: RuleBook
    alerts: AlertFeed
    counters: CounterStore
    backend: str

    async def available(self) -> bool:
        """Whether the counter store answers now (probed, so a mid-run outage shows)."""
        try:
            await self.counters.get(["agw:probe"])
        except CounterUnavailable:
            return False
        return True


def build_governor(
    config: Config,
    store: Store,
    audit: AuditLog,
    load: Callable[[str], Any],
    *,
    clock: Callable[[], float],
) -> Governor:
    """The gate over the configured counters, rules from the config, alerts to its webhooks."""
    if config.redis is not None:
        spec = config.redis
        factory = load(REDIS_COUNTERS)
        counters = cast(
            CounterStore, factory.from_url(spec.url, spec.max_connections, spec.timeout_ms)
        )
        backend = "redis"
    else:
        counters, backend = MemoryCounters(), "memory"
    hooks = config.alerts
    alerts = AlertFeed(
        [w.url for w in hooks.webhooks],
        store=cast(AlertStore, store),  # every backend implements it (core.alert_store)
        audit=audit,
        attempts=hooks.attempts,
        backoff_seconds=hooks.backoff_seconds,
        timeout_seconds=hooks.timeout_seconds,
        clock=clock,
    )
    gov = config.governance
    defaults = {m.name: gov.default_max_tokens or m.default_max_tokens for m in config.models}
    gate = GovernanceGate(
        counters,
        price_for=price_lookup(config),
        default_max_tokens=defaults,
        alert_sink=alerts,
        fail=gov.fail,
        prefix=gov.prefix,
    )
    rules = RuleBook(store, audit, gate, config.limits, config.budgets, clock=clock)
    return Governor(gate, rules, alerts, counters, backend)


def price_lookup(config: Config) -> Callable[[str], tuple[float, float] | None]:
    """Each virtual model's most expensive (input, output) token price over its targets.

    None when any target has no price: a budget must never count an unpriced call as free.
    """
    catalog = PriceCatalog(config.prices)
    table: dict[str, tuple[float, float] | None] = {}
    for model in config.models:
        prices = [catalog.price(t.provider, t.model) for t in model.targets]
        if any(p is None for p in prices):
            table[model.name] = None
            continue
        known = [p for p in prices if p is not None]
        table[model.name] = (
            max(p.input_per_1m for p in known),
            max(p.output_per_1m for p in known),
        )
    return lambda name: table.get(name)
