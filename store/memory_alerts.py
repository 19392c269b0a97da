"""The alerts of `MemoryStore`: a dict, with the SQLite backend's behaviour."""

from __future__ import annotations

import json
from dataclasses import replace

from core.alert_store import AlertQuery, AlertRecord, Delivery


class MemoryAlerts:
    """A `core.alert_store.AlertStore` in this process."""

    def __init__(self) -> None:
        self._alerts: dict[str, AlertRecord] = {}

    async def add_alert(self, alert: AlertRecord) -> bool:
        if alert.id in self._alerts:
            raise ValueError(f"an alert with id {alert.id!r} is stored already")
        if alert.dedupe_key is not None and any(
            a.dedupe_key == alert.dedupe_key for a in self._alerts.values()
        ):
            return False
        # Through JSON as in SQLite: a detail only memory could hold fails here too.
        self._alerts[alert.id] = replace(alert, details=json.loads(json.dumps(alert.details)))
        return True

    async def list_alerts(self, query: AlertQuery) -> list[AlertRecord]:
        hits = [a for a in self._alerts.values() if query.matches(a)]
        hits.sort(key=lambda a: (a.at, a.id), reverse=True)
        return hits[: query.limit]

    async def acknowledge_alert(self, alert_id: str, by: str, at: float) -> bool:
        alert = self._alerts.get(alert_id)
        if alert is None or alert.acknowledged_at is not None:
            return False
        self._alerts[alert_id] = replace(alert, acknowledged_at=at, acknowledged_by=by)
        return True

    async def due_alerts(self, now: float, limit: int) -> list[AlertRecord]:
        due = [
            a
            for a in self._alerts.values()
            if a.delivery == "pending"
            and a.next_attempt_at is not None
            and a.next_attempt_at <= now
        ]
        due.sort(key=lambda a: (a.next_attempt_at or 0.0, a.id))
        return due[:limit]

    async def claim_alert(self, alert_id: str, attempts: int, lease_until: float) -> bool:
        alert = self._alerts.get(alert_id)
        if alert is None or alert.delivery != "pending" or alert.attempts != attempts:
            return False
        self._alerts[alert_id] = replace(alert, attempts=attempts + 1, next_attempt_at=lease_until)
        return True

    async def record_delivery(
        self,
        alert_id: str,
        delivery: Delivery,
        delivered_to: tuple[str, ...],
        next_attempt_at: float | None,
        last_error: str | None,
        at: float,
    ) -> None:
        alert = self._alerts.get(alert_id)
        if alert is None:
            return
        self._alerts[alert_id] = replace(
            alert,
            delivery=delivery,
            delivered_to=delivered_to,
            next_attempt_at=next_attempt_at,
            last_error=last_error,
            delivered_at=at if delivery == "delivered" else alert.delivered_at,
        )
