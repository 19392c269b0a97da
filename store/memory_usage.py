"""Usage aggregates of `MemoryStore` (the same hourly rows as SQL keeps, in a dict), its
reconciliation imports, price versions and console sessions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

from core.audit import AuditDraft, AuditEvent, Change
from core.ops.prices import PriceVersion
from core.ops.reconciliation import Reconciliation
from core.ops.sessions import StoredSession
from core.reports import Totals, UsageKey, UsageQuery, UsageRow, aggregate, group_rows
from core.state import AlreadyExists
from core.tracing import Span


class MemoryUsage:
    """Hourly aggregate rows, updated with each span batch."""

    def __init__(self) -> None:
        self._rows: dict[UsageKey, Totals] = {}

    def add(self, spans: Sequence[Span]) -> None:
        for key, totals in aggregate(spans).items():
            known = self._rows.get(key)
            if known is None:
                self._rows[key] = totals
            else:
                known.add(totals)

    def query(self, query: UsageQuery) -> list[UsageRow]:
        return group_rows(self._rows.items(), query)


class MemoryReconciliations:
    """Reconciliation imports of `MemoryStore` (copied through JSON, as SQL stores them)."""

    def __init__(self) -> None:
        self._records: dict[str, Reconciliation] = {}

    def add(self, record: Reconciliation) -> None:
        self._records[record.id] = replace(record, result=json.loads(json.dumps(record.result)))

    def latest(self, limit: int) -> list[Reconciliation]:
        return sorted(self._records.values(), key=lambda r: (r.at, r.id), reverse=True)[:limit]

    def get(self, reconciliation_id: str) -> Reconciliation | None:
        return self._records.get(reconciliation_id)


class MemoryOps:
    """Price versions and console sessions of `MemoryStore` (mixed in; needs its `commit`)."""

    _prices: dict[str, PriceVersion]
    _spans: dict[str, Span]
    _console: dict[str, StoredSession]

    async def commit(self, changes: Sequence[Change], draft: AuditDraft) -> AuditEvent:
        raise NotImplementedError

    def _ops_tables(self) -> None:
        """Called by `MemoryStore.__init__`."""
        self._prices, self._console = {}, {}

    async def price_versions(self) -> list[PriceVersion]:
        """Every stored version, oldest effective date first."""
        return sorted(self._prices.values(), key=lambda v: (v.since, v.id))

    async def commit_price(self, version: PriceVersion, draft: AuditDraft) -> AuditEvent:
        """Store `version` and append `draft` as the next audit event: both or none.

        Raises:
            AlreadyExists: that model has a version with that effective date.
        """
        p = version.price
        for known in self._prices.values():
            same = (known.price.provider, known.price.model) == (p.provider, p.model)
            if same and known.since == version.since:
                raise AlreadyExists(f"price version {p.model} exists")
        event = await self.commit((), draft)  # never suspends: nothing can run in between
        self._prices[version.id] = version
        return event

    async def spans_between(self, since: float, until: float, limit: int) -> list[Span]:
        """Spans started in [since, until), the newest `limit` of them, oldest first."""
        inside = [s for s in self._spans.values() if since <= s.started_at < until]
        return sorted(inside, key=lambda s: s.started_at)[-limit:] if limit > 0 else []

    async def save_console_session(self, session: StoredSession) -> None:
        """Store a new session."""
        self._console[session.token_hash] = session

    async def console_session(self, token_hash: str) -> StoredSession | None:
        """The session with that token hash, or None."""
        return self._console.get(token_hash)

    async def touch_console_session(self, token_hash: str, last_used: float) -> None:
        """Note a use of the session."""
        known = self._console.get(token_hash)
        if known is not None:
            self._console[token_hash] = replace(known, last_used=last_used)

    async def delete_console_session(self, token_hash: str) -> None:
        """End one session."""
        self._console.pop(token_hash, None)

    async def delete_console_sessions_before(self, created: float, last_used: float) -> int:
        """End every session made before `created` or unused since `last_used`; how many."""
        sessions = self._console
        gone = [h for h, s in sessions.items() if s.created < created or s.last_used < last_used]
        for token_hash in gone:
            del sessions[token_hash]
        return len(gone)
