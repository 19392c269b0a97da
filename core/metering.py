"""Usage to money, from the price catalog in the config."""

from __future__ import annotations

from collections.abc import Iterable

from core.config import Price
from core.envelope import Envelope, Usage

_PER_MILLION = 1_000_000


class PriceCatalog:
    """Prices per (provider, upstream model). A model with no price has no cost, not zero."""

    def __init__(self, prices: Iterable[Price]) -> None:
        self._prices = {(p.provider, p.model): p for p in prices}

    def price(self, provider: str, model: str) -> Price | None:
        return self._prices.get((provider, model))

    def cost(self, provider: str, model: str, usage: Usage) -> float | None:
        """The USD cost of `usage` on that model, or None when the catalog has no price."""
        price = self._prices.get((provider, model))
        if price is None:
            return None
        cached = min(usage.cached_tokens, usage.input_tokens)
        cached_price = (
            price.input_per_1m if price.cached_input_per_1m is None else price.cached_input_per_1m
        )
        return (
            (usage.input_tokens - cached) * price.input_per_1m / _PER_MILLION
            + cached * cached_price / _PER_MILLION
            + usage.output_tokens * price.output_per_1m / _PER_MILLION
            + usage.images * price.per_image
            + usage.video_seconds * price.per_video_second
            + usage.audio_seconds * price.per_audio_second
            + price.per_call
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
