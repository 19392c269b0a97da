"""Price versions added at run time (admin API, CLI), merged with the config's catalog.

The config's `prices:` are the catalog a gateway starts with; a version added later is stored
(with its audit event, in one transaction), merged into the running catalog at once, and read
back at every start, so it survives restarts and reaches every replica (the change feed's
`prices` topic makes them re-read).

A price never rewrites history: a new version takes effect at its `effective_from`, which must be
now or later (omitted: now). A date in the past is refused, because the calls metered since then
were priced with the version in effect when they were metered, and the catalog would then
disagree with the recorded spend. Two versions of one model cannot share an effective date.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from core.audit import (
    Actor,
    AuditDraft,
    AuditEvent,
    AuditLog,
    AuditQuery,
    AuditStore,
    Change,
)
from core.config import Price
from core.errors import Conflict, ValidationFailed
from core.metering import PriceCatalog
from core.state import AlreadyExists
from core.timestamps import iso, parse_instant

logger = logging.getLogger("agentgw.prices")

PRICES = "prices"
"""The change-feed topic: a price version was added (replicas re-read the stored versions)."""
POLL_SECONDS = 30.0
# A clock skew between the caller and the gateway should not refuse "now".
GRACE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class PriceVersion:
    """A stored price version: the price (its `effective_from` set) and who added it when."""

    id: str
    price: Price
    since: float
    added_at: float
    added_by: str


class PriceVersionStore(AuditStore, Protocol):
    """Where added versions live; every store backend keeps them."""

    async def price_versions(self) -> list[PriceVersion]:
        """Every stored version, oldest effective date first."""
        ...

    async def commit_price(self, version: PriceVersion, draft: AuditDraft) -> AuditEvent:
        """Store `version` and append `draft` as the next audit event, in one transaction.

        Raises:
            core.state.AlreadyExists: that model has a version with that effective date.
        """
        ...


class PriceBook:
    """The running catalog plus the stored versions: add, list, reload."""

    def __init__(
        self,
        catalog: PriceCatalog,
        store: PriceVersionStore,
        *,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[str], None] = lambda subject: None,
    ) -> None:
        self.catalog = catalog
        self._store = store
        self._clock = clock
        self._merged: set[str] = set()
        self.on_change = on_change

    async def open(self) -> None:
        """Merge the stored versions into the catalog (at start, and when a replica says)."""
        added = 0
        for version in await self._store.price_versions():
            if version.id not in self._merged:
                self.catalog.add(version.price)
                self._merged.add(version.id)
                added += 1
        if added:
            logger.info("prices: %d stored price version(s) merged into the catalog", added)

    async def poll(self, seconds: float = POLL_SECONDS) -> None:
        """Re-read the stored versions every `seconds` until cancelled: a version added by the
        CLI (or a replica, without a change feed) applies here within that time."""
        while True:
            await anyio.sleep(seconds)
            try:
                await self.open()
            except Exception:  # the store is briefly unreachable: the next round retries
                logger.warning("prices: re-reading the stored versions failed", exc_info=True)

    async def refresh(self, subject: str) -> None:
        """A change-feed handler: re-read the stored versions."""
        await self.open()

    async def add(self, actor: Actor, price: Price) -> PriceVersion:
        """Store a new version (audited) and apply it now.

        Raises:
            ValidationFailed: `effective_from` is in the past.
            Conflict: the model has a version with that effective date already.
        """
        now = self._clock()
        since = now if price.effective_from is None else parse_instant(price.effective_from)
        if since < now - GRACE_SECONDS:
            raise ValidationFailed(
                f"effective_from {iso(since)} is in the past: a price change applies from now "
                "on and never re-prices calls already metered.",
                param="effective_from",
            )
        price = price.model_copy(update={"effective_from": iso(since)})
        version = PriceVersion(
            "price_" + secrets.token_hex(8), price, since, round(now, 6), actor.id
        )
        if any(s == since for s, p in self.catalog.versions() if _same_model(p, price)):
            raise _taken(price)
        obj = f"price:{price.provider}/{price.model}@{iso(since)}"
        log = AuditLog(_WithPrice(self._store, version), clock=self._clock)
        try:
            await log.record(actor, "price.add", obj, before=None, after=price_snapshot(version))
        except AlreadyExists:  # the same model and date, taken meanwhile (another replica)
            raise _taken(price) from None
        self.catalog.add(price)
        self._merged.add(version.id)
        self.on_change(f"{price.provider}/{price.model}")
        return version


def price_snapshot(version: PriceVersion) -> dict[str, Any]:
    """The audited (and shown) form of a version."""
    return {"id": version.id, "added_by": version.added_by, **version.price.model_dump()}


def _same_model(a: Price, b: Price) -> bool:
    return (a.provider, a.model) == (b.provider, b.model)


def _taken(price: Price) -> Conflict:
    return Conflict(
        f"{price.provider}/{price.model} has a price from {price.effective_from} already; "
        "choose another effective_from."
    )


class _WithPrice:
    """The store as an `AuditStore` whose next commit also writes `version`."""

    def __init__(self, store: PriceVersionStore, version: PriceVersion) -> None:
        self._store, self._version = store, version

    async def commit(self, changes: Sequence[Change], draft: AuditDraft) -> AuditEvent:
        if changes:
            raise ValueError("a price version is written alone with its event")
        return await self._store.commit_price(self._version, draft)

    async def audit_events(self, query: AuditQuery) -> list[AuditEvent]:
        return await self._store.audit_events(query)

    async def audit_head(self) -> tuple[int, str] | None:
        return await self._store.audit_head()
