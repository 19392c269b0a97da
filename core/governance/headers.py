"""OpenAI-style rate-limit headers, from what a reservation already learned from the store.

`x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests`, `x-ratelimit-reset-requests` and
the same for `-tokens`, each for the tightest limit of its family (the least remaining). The
counts come from the admission itself, so the headers cost no extra round trip.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.governance.model import TOKEN_KINDS, Limit
from core.governance.plan import Held


def rate_limit_headers(items: Sequence[Held], counts: Sequence[int], now: float) -> dict[str, str]:
    """The headers for the tightest `requests` limit and the tightest token limit held."""
    headers: dict[str, str] = {}
    families = {"requests": ("requests",), "tokens": TOKEN_KINDS}
    for family, kinds in families.items():
        tightest: tuple[int, Limit, float] | None = None
        for item, count in zip(items, counts, strict=True):
            rule = item.rule
            # A shadow limit refuses nothing, so it must not tell clients to slow down.
            if isinstance(rule, Limit) and rule.kind in kinds and rule.action == "block":
                remaining = max(0, rule.amount - count)
                if tightest is None or remaining < tightest[0]:
                    tightest = (remaining, rule, item.reset_at)
        if tightest is not None:
            remaining, rule, reset_at = tightest
            headers[f"x-ratelimit-limit-{family}"] = str(rule.amount)
            headers[f"x-ratelimit-remaining-{family}"] = str(remaining)
            headers[f"x-ratelimit-reset-{family}"] = duration(max(0.0, reset_at - now))
    return headers


def duration(seconds: float) -> str:
    """A duration the way OpenAI spells it: `1s`, `6m0s`, `1h2m3s`."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
