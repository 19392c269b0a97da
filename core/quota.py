"""Quotas and budgets: reserve an estimate before the call, settle to the metered cost after it.

The pipeline calls a `QuotaGate` at both points. The foundation ships `Unlimited`; the governance
layer plugs in gates backed by in-process or Redis counters.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Protocol

from core.access import Principal
from core.envelope import Envelope, Usage


@dataclass(frozen=True, slots=True)
class Reservation:
    """What was held for one call, to be settled once."""

    id: str
    principal: Principal
    estimated_cost_usd: float | None
    estimated_tokens: int
    # What the gate holds for this call (its counters), opaque to the pipeline.
    hold: object | None = None


class QuotaGate(Protocol):
    """The governance seam of the pipeline."""

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
        """Check every limit and budget above the call and hold an estimate, atomically.

        `cost_usd`: the call's price when known before it runs (an MCP tool's per-call price).
        `prompt_tokens`: `estimate_prompt_tokens(env)` when the caller has it already.
        `only`: hold just the limits of these kinds (`"budget"` names the budgets); None: all.

        Raises:
            RateLimited: a rate or token limit is reached.
            QuotaExceeded: a budget is spent.
        """
        ...

    async def settle(self, reservation: Reservation, usage: Usage, cost_usd: float | None) -> None:
        """Replace the held estimate with what the call really used."""
        ...

    def headers(self, reservation: Reservation) -> dict[str, str]:
        """Response headers describing the limits the call was counted against."""
        ...

    def split(
        self, reservation: Reservation, kinds: Collection[str]
    ) -> tuple[Reservation, Reservation]:
        """`reservation` as two settled separately: the limits of `kinds`, and the rest (a
        long-lived call keeps its concurrency slot while its budget part is renewed)."""
        ...


class Unlimited:
    """A gate with no limits: reserves nothing and settles nothing."""

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
        return Reservation(request_id, principal, None, 0)

    async def settle(self, reservation: Reservation, usage: Usage, cost_usd: float | None) -> None:
        return None

    def headers(self, reservation: Reservation) -> dict[str, str]:
        return {}

    def split(
        self, reservation: Reservation, kinds: Collection[str]
    ) -> tuple[Reservation, Reservation]:
        return replace(reservation, hold=None), reservation
