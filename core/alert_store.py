"""Alerts as stored records, and the store seams that keep them and their webhook deliveries.

An alert is raised once (a `dedupe_key` makes a second raise of the same thing a no-op, across
restarts and replicas), listed and acknowledged through the admin API, and delivered to the
configured webhooks through an outbox: its delivery state, attempt count and next attempt time
live on the row, so a restart resumes what was still pending. Every backend (memory, SQLite,
PostgreSQL) implements `AlertStore` with the same behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Severity = Literal["info", "warning", "critical"]
Delivery = Literal["none", "pending", "delivered", "failed"]
"""`none`: no webhook was configured when it was raised; `failed`: every attempt was used."""

SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")
DELIVERIES: tuple[Delivery, ...] = ("none", "pending", "delivered", "failed")
MAX_ALERT_QUERY = 10_000


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One alert as stored.

    Attributes:
        kind: what raised it: `budget_threshold`, `circuit_open`, `anomaly`, `forecast`, ….
        level, target: what it is about (a governance level and its target, `model` and a
            virtual model name, …); empty strings when it is about nothing in particular.
        details: JSON-serializable facts for machines (a budget alert's threshold and spend).
        dedupe_key: raising another alert with the same key stores nothing.
        delivered_to: short hashes of the webhooks that accepted it (never the URLs: a webhook
            URL often carries a token).
    """

    id: str
    at: float
    kind: str
    level: str
    target: str
    severity: Severity
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    dedupe_key: str | None = None
    delivery: Delivery = "none"
    attempts: int = 0
    next_attempt_at: float | None = None
    delivered_to: tuple[str, ...] = ()
    delivered_at: float | None = None
    last_error: str | None = None
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None


@dataclass(frozen=True, slots=True)
class AlertQuery:
    """Filters of an alert listing, newest first; `acknowledged` None means either."""

    alert_id: str | None = None
    kind: str | None = None
    level: str | None = None
    target: str | None = None
    severity: Severity | None = None
    delivery: Delivery | None = None
    acknowledged: bool | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 1000

    def matches(self, alert: AlertRecord) -> bool:
        """Whether `alert` passes every filter (the memory store's WHERE clause)."""
        pairs = (
            (self.alert_id, alert.id),
            (self.kind, alert.kind),
            (self.level, alert.level),
            (self.target, alert.target),
            (self.severity, alert.severity),
            (self.delivery, alert.delivery),
        )
        if any(want is not None and want != have for want, have in pairs):
            return False
        if self.acknowledged is not None and self.acknowledged != (
            alert.acknowledged_at is not None
        ):
            return False
        if self.since is not None and alert.at < self.since:
            return False
        return self.until is None or alert.at < self.until


class AlertLog(Protocol):
    """Alerts as the admin API sees them."""

    async def add_alert(self, alert: AlertRecord) -> bool:
        """Store `alert`; False (and nothing stored) when its `dedupe_key` is stored already."""
        ...

    async def list_alerts(self, query: AlertQuery) -> list[AlertRecord]:
        """Alerts matching `query`, newest first, at most `query.limit`."""
        ...

    async def acknowledge_alert(self, alert_id: str, by: str, at: float) -> bool:
        """Mark an unacknowledged alert acknowledged; False when there is none with that id or
        it was acknowledged already (the first acknowledgement stands)."""
        ...


class AlertOutbox(Protocol):
    """Webhook deliveries still to make, shared by every replica on the same store."""

    async def due_alerts(self, now: float, limit: int) -> list[AlertRecord]:
        """Pending alerts whose next attempt is due at `now`, earliest first."""
        ...

    async def claim_alert(self, alert_id: str, attempts: int, lease_until: float) -> bool:
        """Take the next delivery attempt of a pending alert whose count is still `attempts`:
        the count goes up by one and the next attempt moves to `lease_until` (another replica,
        or this one after a crash, retries only then). False when someone else claimed it."""
        ...

    async def record_delivery(
        self,
        alert_id: str,
        delivery: Delivery,
        delivered_to: tuple[str, ...],
        next_attempt_at: float | None,
        last_error: str | None,
        at: float,
    ) -> None:
        """Store the outcome of an attempt (`delivered_at` is set when `delivery` is delivered)."""
        ...


class AlertStore(AlertLog, AlertOutbox, Protocol):
    """Everything alerts need from a store backend."""
