"""Alerts: stored, listed and acknowledged through the admin API, delivered to the webhooks.

Anything may raise an alert with `AlertFeed.raise_alert` (budget thresholds come through the
gate's sink, `AlertFeed.__call__`). Raising writes the alert to the store (`core.alert_store`) and
wakes the delivery task; it never waits for a webhook, so a slow or dead webhook never holds a
request. Delivery is an outbox on the alert's own row: each attempt is claimed in the store
(so replicas sharing the store deliver each alert once), retried with exponential backoff, and
resumed after a restart. A `dedupe_key` makes raising the same alert twice store it once.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import anyio
import httpx
from anyio.abc import TaskGroup

from core.alert_store import AlertQuery, AlertRecord, AlertStore, Delivery, Severity
from core.audit import Actor, AuditLog
from core.circuit import CircuitState, CircuitStore
from core.config import Circuit
from core.errors import NotFound
from core.governance import Alert, CounterOutage, LimitAlert
from core.roles import Permission, require

logger = logging.getLogger("agentgw.alerts")

BUDGET_THRESHOLD = "budget_threshold"
SHADOW_LIMIT = "limit_exceeded_shadow"
CIRCUIT_OPEN = "circuit_open"
GOVERNANCE_UNAVAILABLE = "governance_unavailable"
ALERT_COLUMNS = (
    "id",
    "at",
    "kind",
    "level",
    "target",
    "severity",
    "message",
    "details",
    "delivery",
    "attempts",
    "acknowledged_at",
    "acknowledged_by",
)
_POLL_SECONDS = 60.0  # also picks up alerts raised by other replicas sharing the store
_BATCH = 100


def alert_view(alert: AlertRecord) -> dict[str, Any]:
    """An alert as the admin API and the CLI show it (never `delivered_to` or the error text,
    which may name a webhook)."""
    return {name: getattr(alert, name) for name in ALERT_COLUMNS}


def budget_severity(threshold: float) -> Severity:
    """Half-way is news, most of it is a warning, all of it is critical."""
    return "critical" if threshold >= 1.0 else "warning" if threshold >= 0.8 else "info"


class AlertFeed:
    """Raises, lists and acknowledges alerts, and delivers them to `webhooks`."""

    def __init__(
        self,
        webhooks: Sequence[str],
        *,
        store: AlertStore,
        audit: AuditLog | None = None,
        keep: int = 1000,
        attempts: int = 8,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 300.0,
        timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._hooks = [(_hook_id(url), url) for url in webhooks]
        self._store, self._audit, self._clock = store, audit, clock
        self._recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self._attempts, self._backoff, self._max_backoff = (
            attempts,
            backoff_seconds,
            max_backoff_seconds,
        )
        self._timeout, self._transport = timeout_seconds, transport
        self._wake = anyio.Event()
        self._raised: Callable[[str, str], None] = lambda kind, severity: None
        self._delivered: Callable[[str], None] = lambda outcome: None
        self.failed = 0
        """Alerts whose delivery used every attempt (this process's count)."""
        self.dropped = 0
        """Alerts that could not be stored (the store failed); they were logged."""

    def watch(self, raised: Callable[[str, str], None], delivered: Callable[[str], None]) -> None:
        """Count each alert stored (`raised(kind, severity)`) and each delivery attempt's
        outcome (`delivered("delivered" | "retry" | "failed")`), for the metrics."""
        self._raised, self._delivered = raised, delivered

    # -- raising ---------------------------------------------------------------------------

    async def raise_alert(
        self,
        kind: str,
        message: str,
        *,
        severity: Severity = "warning",
        level: str = "",
        target: str = "",
        details: dict[str, Any] | None = None,
        dedupe_key: str | None = None,
    ) -> AlertRecord | None:
        """Store an alert and queue it for the webhooks; None when `dedupe_key` was raised before.

        `details` must be JSON-serializable. Never waits for a webhook.

        Raises:
            TypeError: `details` is not JSON-serializable.
            Exception: whatever the store raises when it cannot write (the caller decides).
        """
        now = self._clock()
        record = AlertRecord(
            id="alt_" + secrets.token_hex(8),
            at=round(now, 6),
            kind=kind,
            level=level,
            target=target,
            severity=severity,
            message=message,
            details=dict(details or {}),
            dedupe_key=dedupe_key,
            delivery="pending" if self._hooks else "none",
            next_attempt_at=now if self._hooks else None,
        )
        if not await self._store.add_alert(record):
            return None
        self._recent.appendleft(alert_view(record))
        self._raised(kind, severity)
        logger.warning("alert %s (%s) %s: %s", record.id, severity, kind, message)
        self._wake.set()
        return record

    async def __call__(self, alert: Alert | LimitAlert | CounterOutage) -> None:
        """The gate's alert sink: a budget crossed a threshold, a shadow limit would have
        refused a call (each stored once per window), or the counter store is unreachable."""
        if isinstance(alert, LimitAlert):
            await self._shadow_limit(alert)
            return
        if isinstance(alert, CounterOutage):
            await self._outage(alert)
            return
        pct = round(alert.threshold * 100)
        spend = f"{_money(alert.spent_usd)} of {_money(alert.budget_usd)}"
        message = (
            f"budget of {alert.level} {alert.target} reached {pct}% ({spend} this {alert.period})"
        )
        amount = round(alert.budget_usd * 1_000_000)
        key = (
            f"budget:{alert.level}:{alert.target}:{alert.period}:{alert.window}:{amount}:"
            f"{alert.threshold}"
        )
        await self.raise_quietly(
            BUDGET_THRESHOLD,
            message,
            severity=budget_severity(alert.threshold),
            level=alert.level,
            target=alert.target,
            details=asdict(alert),
            dedupe_key=key,
        )

    async def _outage(self, alert: CounterOutage) -> None:
        did = (
            "governed calls are refused (fail: closed)"
            if alert.policy == "closed"
            else "calls are admitted unchecked (fail: open)"
        )
        message = f"limits and budgets cannot be checked: the counter store is unavailable; {did}"
        key = f"{GOVERNANCE_UNAVAILABLE}:{alert.minute}"
        await self.raise_quietly(
            GOVERNANCE_UNAVAILABLE,
            message,
            severity="critical",
            details=asdict(alert),
            dedupe_key=key,
        )

    async def _shadow_limit(self, alert: LimitAlert) -> None:
        on = f" on {alert.model or alert.tool}" if (alert.model or alert.tool) else ""
        per = "" if alert.kind == "concurrent" else f" per {alert.window}"
        message = (
            f"alert-only {alert.kind}{per} limit{on} of {alert.level} {alert.target} would have "
            f"refused a call ({alert.used} against {alert.amount}); the call went through"
        )
        scope = alert.model or alert.tool or "*"
        key = (
            f"limit:{alert.level}:{alert.target}:{alert.kind}:{scope}:{alert.window}:"
            f"{alert.bucket}:{alert.amount}"
        )
        await self.raise_quietly(
            SHADOW_LIMIT,
            message,
            level=alert.level,
            target=alert.target,
            details=asdict(alert),
            dedupe_key=key,
        )

    async def raise_quietly(
        self,
        kind: str,
        message: str,
        *,
        severity: Severity = "warning",
        level: str = "",
        target: str = "",
        details: dict[str, Any] | None = None,
        dedupe_key: str | None = None,
    ) -> None:
        """`raise_alert` for the request path: a store failure is logged and counted in
        `dropped`, never raised."""
        try:
            await self.raise_alert(
                kind,
                message,
                severity=severity,
                level=level,
                target=target,
                details=details,
                dedupe_key=dedupe_key,
            )
        except Exception:  # the request path's boundary: a store failure never fails the call
            self.dropped += 1
            logger.exception("alert could not be stored: %s", message)

    # -- reading and acknowledging ---------------------------------------------------------

    def listing(self) -> list[dict[str, Any]]:
        """The alerts this process raised, newest first (the store holds every replica's)."""
        return list(self._recent)

    async def alerts(self, query: AlertQuery) -> list[AlertRecord]:
        """Stored alerts matching `query`, newest first."""
        return await self._store.list_alerts(query)

    async def acknowledge(self, actor: Actor, alert_id: str) -> AlertRecord:
        """Acknowledge an alert (audited); acknowledging it again changes nothing.

        Raises:
            PermissionDenied: the actor may not change governance.
            NotFound: no alert has this id.
        """
        require(actor, Permission.GOVERNANCE_WRITE)
        now = self._clock()
        first = await self._store.acknowledge_alert(alert_id, actor.id, round(now, 6))
        found = await self._store.list_alerts(AlertQuery(alert_id=alert_id, limit=1))
        if not found:
            raise NotFound(f"No alert with id '{alert_id}'.")
        if first and self._audit is not None:
            after = {"acknowledged_at": found[0].acknowledged_at, "acknowledged_by": actor.id}
            await self._audit.record(
                actor,
                "alert.acknowledge",
                f"alert:{alert_id}",
                before={"acknowledged_at": None},
                after=after,
            )
        return found[0]

    # -- delivery --------------------------------------------------------------------------

    def start(self, tg: TaskGroup) -> None:
        """Run deliveries in `tg` (pending ones from before a restart go first)."""
        if self._hooks:
            tg.start_soon(self._run)

    async def deliver_due(self, client: httpx.AsyncClient | None = None) -> int:
        """Attempt every delivery due now, once; the number of alerts attempted."""
        if client is None:
            async with self._client() as own:
                return await self.deliver_due(own)
        done = 0
        for alert in await self._store.due_alerts(self._clock(), _BATCH):
            lease = self._clock() + self._timeout * (len(self._hooks) + 1) + 30.0
            if not await self._store.claim_alert(alert.id, alert.attempts, lease):
                continue  # another replica took this attempt
            await self._attempt(client, alert, alert.attempts + 1)
            done += 1
        return done

    async def _run(self) -> None:
        async with self._client() as client:
            while True:
                self._wake = anyio.Event()
                try:
                    await self.deliver_due(client)
                    wait = await self._next_wait()
                except Exception:  # a background task's boundary: log, keep delivering
                    logger.exception("alert delivery pass failed")
                    wait = _POLL_SECONDS
                with anyio.move_on_after(wait):  # woken early by a new alert
                    await self._wake.wait()

    async def _next_wait(self) -> float:
        now = self._clock()
        soon = await self._store.due_alerts(now + _POLL_SECONDS, 1)
        if not soon or soon[0].next_attempt_at is None:
            return _POLL_SECONDS
        return min(_POLL_SECONDS, max(0.0, soon[0].next_attempt_at - now))

    async def _attempt(self, client: httpx.AsyncClient, alert: AlertRecord, attempt: int) -> None:
        delivered = set(alert.delivered_to)
        error: str | None = None
        payload = {"type": _payload_type(alert.kind), "alert": _payload(alert)}
        for hook_id, url in self._hooks:
            if hook_id in delivered:
                continue
            problem = await _post(client, url, payload)
            if problem is None:
                delivered.add(hook_id)
            else:
                error = f"webhook {hook_id}: {problem}"
        now = self._clock()
        state: Delivery
        if all(h in delivered for h, _ in self._hooks):
            state, next_at = "delivered", None
        elif attempt >= self._attempts:
            state, next_at = "failed", None
            self.failed += 1
            logger.warning("alert %s: delivery failed after %d attempts", alert.id, attempt)
        else:
            state = "pending"
            next_at = now + min(self._max_backoff, self._backoff * 2 ** (attempt - 1))
        kept = tuple(sorted(delivered))
        self._delivered("retry" if state == "pending" else state)
        await self._store.record_delivery(alert.id, state, kept, next_at, error, now)

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self._timeout, transport=self._transport)


class CircuitAlerts:
    """A `core.circuit.CircuitStore` that raises an alert when a target's circuit opens.

    Only a closed circuit tripping alerts: a failed half-open probe re-opening it does not, so
    a target that stays down alerts once, not every `open_seconds`.
    """

    def __init__(self, inner: CircuitStore, feed: AlertFeed) -> None:
        self.inner, self._feed = inner, feed

    async def admit(self, key: str, policy: Circuit, now: float) -> bool:
        return await self.inner.admit(key, policy, now)

    async def get(self, key: str) -> CircuitState:
        return await self.inner.get(key)

    async def record(self, key: str, ok: bool, policy: Circuit, now: float) -> None:
        if ok:  # a success never opens a circuit: no extra reads on the common path
            await self.inner.record(key, ok, policy, now)
            return
        before = await self.inner.get(key)
        await self.inner.record(key, ok, policy, now)
        after = await self.inner.get(key)
        if before.opened_at is None and after.opened_at is not None:
            message = (
                f"circuit of {key} opened after {policy.failures} failures within "
                f"{policy.window_seconds:g}s; calls skip it for {policy.open_seconds:g}s"
            )
            details = {
                "failures": policy.failures,
                "window_seconds": policy.window_seconds,
                "open_seconds": policy.open_seconds,
            }
            await self._feed.raise_quietly(
                CIRCUIT_OPEN,
                message,
                level="target",
                target=key,
                details=details,
                dedupe_key=f"circuit:{key}:{after.opened_at}",
            )


async def _post(client: httpx.AsyncClient, url: str, payload: dict[str, Any]) -> str | None:
    """None when the webhook took the alert; otherwise why not (worth another attempt)."""
    try:
        reply = await client.post(url, json=payload)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    if reply.status_code < 300:
        return None
    if reply.status_code in (408, 429) or reply.status_code >= 500:
        return f"HTTP {reply.status_code}"
    # Any other 4xx refuses this payload for good: retrying cannot help; log it and move on.
    logger.warning("alert webhook answered %d; not retried", reply.status_code)
    return None


def _payload_type(kind: str) -> str:
    return "budget_alert" if kind == BUDGET_THRESHOLD else "alert"


def _payload(alert: AlertRecord) -> dict[str, Any]:
    body = {k: v for k, v in alert_view(alert).items() if k not in ("delivery", "attempts")}
    if alert.kind == BUDGET_THRESHOLD:
        body = {**alert.details, **body}  # budget fields at the top, as webhooks first saw them
    return body


def _money(usd: float) -> str:
    """Dollars to the cent, or to the micro-dollar when below a cent (small test budgets)."""
    if usd == 0 or abs(usd) >= 0.01:
        return f"${usd:,.2f}"
    return "$" + f"{usd:.6f}".rstrip("0")


def _hook_id(url: str) -> str:
    """A webhook's name in the store: a short hash, since a webhook URL often holds a token."""
    return hashlib.sha256(url.encode()).hexdigest()[:12]
