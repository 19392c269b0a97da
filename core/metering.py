"""Usage to money, from the price catalog in the config."""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Iterable

from core.config import Price
from core.envelope import Envelope, Usage
from core.timestamps import parse_instant

_PER_MILLION = 1_000_000


class PriceCatalog:
    """Prices per (provider, upstream model). A model with no price has no cost, not zero.

    A model may have several prices, each from its `effective_from` on; a call is priced with the
    one in effect when it is metered, so a price change never rewrites what was already metered.
    """

    def __init__(self, prices: Iterable[Price], *, clock: Callable[[], float] = time.time) -> None:
        versions: dict[tuple[str, str], list[tuple[float, Price]]] = {}
        for p in prices:
            since = -math.inf if p.effective_from is None else parse_instant(p.effective_from)
            versions.setdefault((p.provider, p.model), []).append((since, p))
        self._versions = {k: sorted(v, key=lambda sp: sp[0]) for k, v in versions.items()}
        self._clock = clock

    def price(self, provider: str, model: str, at: float | None = None) -> Price | None:
        """The price in effect at `at` (default: now), or None."""
        versions = self._versions.get((provider, model))
        if not versions:
            return None
        if len(versions) == 1 and versions[0][0] == -math.inf:  # one price, always in effect
            return versions[0][1]
        when = self._clock() if at is None else at
        i = bisect.bisect_right([since for since, _ in versions], when)
        return versions[i - 1][1] if i else None

    def add(self, p: Price) -> None:
        """One more version (`core.ops.prices`): applies from its `effective_from` on."""
        since = -math.inf if p.effective_from is None else parse_instant(p.effective_from)
        known = self._versions.get((p.provider, p.model), [])
        self._versions[(p.provider, p.model)] = sorted([*known, (since, p)], key=lambda sp: sp[0])

    def versions(self) -> list[tuple[float, Price]]:
        """Every price with the time it takes effect from (-inf: always), by model then time."""
        return [v for key in sorted(self._versions) for v in self._versions[key]]

    def cost(
        self,
        provider: str,
        model: str,
        usage: Usage,
        *,
        at: float | None = None,
        upstream_seconds: float | None = None,
    ) -> float | None:
        """The USD cost of `usage` on that model, or None when the catalog has no price.

        `upstream_seconds` is the served attempt's own time: the base of GPU-time cost for a
        self-hosted target (`per_gpu_second`), so private and public models are attributed alike.
        """
        price = self.price(provider, model, at)
        if price is None:
            return None
        extra = 0.0
        if price.cache_write_per_1m is not None:
            extra += usage.cache_write_tokens * price.cache_write_per_1m / _PER_MILLION
        output = usage.output_tokens
        if price.reasoning_per_1m is not None:
            reasoning = min(usage.reasoning_tokens, usage.output_tokens)
            output -= reasoning
            extra += reasoning * price.reasoning_per_1m / _PER_MILLION
        if upstream_seconds is not None:
            extra += upstream_seconds * price.per_gpu_second
        cached = min(usage.cached_tokens, usage.input_tokens)
        cached_price = (
            price.input_per_1m if price.cached_input_per_1m is None else price.cached_input_per_1m
        )
        return (
            (usage.input_tokens - cached) * price.input_per_1m / _PER_MILLION
            + cached * cached_price / _PER_MILLION
            + output * price.output_per_1m / _PER_MILLION
            + usage.images * price.image_price(usage.media_tier)
            + usage.video_seconds * price.video_second_price(usage.media_tier)
            + usage.audio_seconds * price.per_audio_second
            + price.per_call
            + extra
        )


def estimate_tokens(text: str) -> int:
    """A provider-neutral token estimate: about four characters a token, never zero for text."""
    return (len(text) + 3) // 4


def estimate_prompt_tokens(env: Envelope) -> int:
    """Estimated input tokens: the text plus a few tokens of framing per message and tool."""
    tools = sum(
        estimate_tokens(t.name + (t.description or "") + str(t.parameters or "")) for t in env.tools
    )
    return estimate_tokens(env.text()) + 4 * len(env.messages) + tools
