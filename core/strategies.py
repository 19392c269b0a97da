"""Strategies: how a virtual model orders its eligible targets for one request.

The first target in the order gets the request; the rest are its failover order.

- `priority`: as listed in the config.
- `weighted`: weighted sampling without replacement (canary percentages): the first pick follows
  the weights, the rest follow in weighted-random order. A weight of 0 drains a target.
- `least-latency`: lowest EWMA of recent successful latency first (time to the reply, or to the
  first chunk of a stream); targets never tried yet come first, so each gets measured.
- `least-busy`: fewest calls in flight through this gateway first (streams count until they end).
- `cost`: cheapest estimated cost of this request by the price catalog first (estimated prompt
  tokens * input price + expected output tokens * output price + per-call price); unpriced
  targets last.

Ties keep the config order. Under every strategy but `priority`, a weight of 0 drains a target.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from core.metering import PriceCatalog
from core.targets import BoundTarget

STRATEGIES = ("priority", "weighted", "least-latency", "least-busy", "cost")
LIVE_STRATEGIES = frozenset({"least-latency", "least-busy"})
"""Strategies whose order depends on load, so the router ranks again at the moment of sending."""

_PER_MILLION = 1_000_000


class TargetLoad:
    """In-flight counts and latency averages per target key, as this gateway has seen them."""

    def __init__(self, alpha: float = 0.3) -> None:
        # alpha weighs the newest sample: 0.3 follows a shift within a handful of calls while one
        # slow outlier moves the average by less than a third.
        self._alpha = alpha
        self._in_flight: dict[str, int] = {}
        self._latency: dict[str, float] = {}

    def started(self, key: str) -> None:
        self._in_flight[key] = self._in_flight.get(key, 0) + 1

    def finished(self, key: str) -> None:
        left = self._in_flight.get(key, 0) - 1
        if left > 0:
            self._in_flight[key] = left
        else:
            self._in_flight.pop(key, None)

    def observe(self, key: str, latency_ms: float) -> None:
        """Fold one successful call's latency into the target's moving average."""
        old = self._latency.get(key)
        self._latency[key] = latency_ms if old is None else old + self._alpha * (latency_ms - old)

    def in_flight(self, key: str) -> int:
        return self._in_flight.get(key, 0)

    def latency(self, key: str) -> float | None:
        """The moving average in milliseconds, or None for a target never measured."""
        return self._latency.get(key)


class Ranking:
    """Orders targets by a virtual model's strategy, with the state the strategies read."""

    def __init__(self, rng: random.Random, load: TargetLoad, prices: PriceCatalog) -> None:
        self._rng = rng
        self._load = load
        self._prices = prices

    def rank(
        self,
        strategy: str,
        targets: Sequence[BoundTarget],
        *,
        prompt_tokens: int = 0,
        output_tokens: int = 0,
    ) -> list[BoundTarget]:
        """`targets` in the order to try them under `strategy`.

        Raises:
            ValueError: an unknown strategy (the config schema admits only known ones).
        """
        if strategy == "priority":
            return list(targets)
        live = [t for t in targets if t.weight > 0]
        match strategy:
            case "weighted":
                return self._weighted(live)
            case "least-latency":
                return sorted(live, key=self._latency_key)
            case "least-busy":
                return sorted(live, key=lambda t: self._load.in_flight(t.key))
            case "cost":
                return sorted(live, key=lambda t: self._cost_key(t, prompt_tokens, output_tokens))
        raise ValueError(f"unknown strategy {strategy!r} (expected one of {', '.join(STRATEGIES)})")

    def _weighted(self, targets: list[BoundTarget]) -> list[BoundTarget]:
        if len(targets) < 2:
            return targets
        # Efraimidis-Spirakis: key u^(1/w) per target, highest first. The first pick follows the
        # weights exactly; the rest remain as failover candidates in weighted order.
        keyed = [(self._rng.random() ** (1.0 / t.weight), t) for t in targets]
        return [t for _, t in sorted(keyed, key=lambda kt: kt[0], reverse=True)]

    def _latency_key(self, target: BoundTarget) -> tuple[int, float]:
        latency = self._load.latency(target.key)
        return (0, 0.0) if latency is None else (1, latency)

    def _cost_key(self, target: BoundTarget, prompt: int, output: int) -> tuple[int, float]:
        price = self._prices.price(target.provider_name, target.model)
        if price is None:
            return (1, 0.0)
        cost = (
            prompt * price.input_per_1m + output * price.output_per_1m
        ) / _PER_MILLION + price.per_call
        return (0, cost)
