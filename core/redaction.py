"""The redaction log: one event per filter finding, for the security team to review.

Events come from the findings filters attach to a call (request, reply, refused request and the
stream state), travel on the call's `Span` through the write-behind queue, and are stored in the
same transaction as the span. An event names the entity type, scope, score, action, character
span and a keyed hash of the value: never the value itself.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from core.audit import AuditLog, Insert, Setting
from core.envelope import Finding
from core.keyring import SYSTEM_ACTOR
from core.state import AlreadyExists, Store
from core.timestamps import iso
from core.tracing import Span

logger = logging.getLogger("agentgw.redactions")

PII_SECRET_SETTING = "pii.secret"
MAX_QUERY_LIMIT = 10_000
REDACTION_COLUMNS = (
    "id",
    "at",
    "request_id",
    "span_id",
    "key_id",
    "org_path",
    "filter",
    "scope",
    "entity_type",
    "score",
    "action",
    "start",
    "end",
    "value_hash",
)


@dataclass(frozen=True, slots=True)
class RedactionEvent:
    """One finding of one call, as the redaction log keeps it (no raw value, ever)."""

    at: float
    request_id: str
    span_id: str | None
    key_id: str | None
    org_path: str | None
    filter: str
    scope: str
    entity_type: str
    action: str
    score: float | None = None
    start: int | None = None
    end: int | None = None
    value_hash: str | None = None
    id: int = 0


@dataclass(frozen=True, slots=True)
class RedactionQuery:
    """Filters of a redaction-log query; `org_path` matches a prefix (a team and below)."""

    since: float | None = None
    until: float | None = None
    org_path: str | None = None
    key_id: str | None = None
    entity_type: str | None = None
    action: str | None = None
    after_id: int = 0
    limit: int = 1000
    # Where the finding was (`core.envelope.Scope`: message, tool_input, transcript, media …).
    scope: str | None = None

    def matches(self, event: RedactionEvent) -> bool:
        """Whether `event` passes every filter but paging (backends without SQL use this)."""
        if self.since is not None and event.at < self.since:
            return False
        if self.until is not None and event.at >= self.until:
            return False
        if self.org_path is not None and not in_org(event.org_path, self.org_path):
            return False
        return all(
            want is None or want == got
            for want, got in (
                (self.key_id, event.key_id),
                (self.entity_type, event.entity_type),
                (self.action, event.action),
                (self.scope, event.scope),
            )
        )


class RedactionStore(Protocol):
    """Where redaction events are read and pruned (they are written with their span)."""

    async def redaction_events(self, query: RedactionQuery) -> list[RedactionEvent]:
        """Events matching `query`, by id."""
        ...

    async def delete_redactions_before(self, cutoff: float) -> int:
        """Delete events older than `cutoff` (epoch seconds); the number deleted."""
        ...


def in_org(org_path: str | None, prefix: str) -> bool:
    """Whether `org_path` is `prefix` or below it."""
    prefix = prefix.rstrip("/")
    return org_path is not None and (org_path == prefix or org_path.startswith(prefix + "/"))


def events_of(span: Span) -> list[RedactionEvent]:
    """The redaction events of one recorded call."""
    return [_event(span, f) for f in span.findings]


def _event(span: Span, finding: Finding) -> RedactionEvent:
    return RedactionEvent(
        at=span.started_at,
        request_id=span.request_id,
        span_id=span.span_id,
        key_id=span.key_id,
        org_path=span.org_path,
        filter=finding.filter,
        scope=str(finding.scope),
        entity_type=finding.kind,
        action=finding.action,
        score=finding.score,
        start=finding.start,
        end=finding.end,
        value_hash=finding.value_hash,
    )


def count_redactions(findings: Iterable[Finding]) -> int:
    """What `Span.redactions` counts: findings that located a value in the text."""
    return sum(1 for f in findings if f.start is not None)


def redaction_view(event: RedactionEvent) -> dict[str, Any]:
    """The JSON / CSV shape of an event."""
    return {
        "id": event.id,
        "at": iso(event.at),
        "request_id": event.request_id,
        "span_id": event.span_id,
        "key_id": event.key_id,
        "org_path": event.org_path,
        "filter": event.filter,
        "scope": event.scope,
        "entity_type": event.entity_type,
        "score": event.score,
        "action": event.action,
        "start": event.start,
        "end": event.end,
        "value_hash": event.value_hash,
    }


def query_of(q: Mapping[str, Any]) -> RedactionQuery:
    """A query from already-parsed values (None where absent)."""
    return RedactionQuery(
        since=q.get("since"),
        until=q.get("until"),
        org_path=q.get("org_path"),
        key_id=q.get("key_id"),
        entity_type=q.get("entity_type"),
        action=q.get("action"),
        after_id=int(q.get("after_id") or 0),
        limit=max(1, min(int(q.get("limit") or 1000), MAX_QUERY_LIMIT)),
    )


async def pii_secret(
    store: Store, audit: AuditLog, configured: str | None, *, clock: Callable[[], float]
) -> bytes:
    """The HMAC key of the PII filter's hash tokens and the log's value hashes.

    A configured secret wins; otherwise one is generated once and kept in the store's settings,
    so hashes stay comparable across restarts and replicas. The audit event names the setting,
    never its value.
    """
    if configured:
        return configured.encode()
    stored = await store.get_setting(PII_SECRET_SETTING)
    if stored is not None:
        return stored.encode()
    value = secrets.token_hex(32)
    now = clock()
    try:
        await audit.record(
            SYSTEM_ACTOR,
            "setting.generate",
            f"setting:{PII_SECRET_SETTING}",
            before=None,
            after={"name": PII_SECRET_SETTING, "created_at": iso(now)},
            changes=[Insert(Setting(PII_SECRET_SETTING, value, now))],
        )
    except AlreadyExists:
        # Another replica generated it first: take theirs.
        winner = await store.get_setting(PII_SECRET_SETTING)
        if winner is None:
            raise
        return winner.encode()
    return value.encode()


async def prune_redactions(
    store: RedactionStore,
    retention_days: float,
    *,
    clock: Callable[[], float],
    every_seconds: float = 3600.0,
) -> None:
    """Delete events past retention now and then every `every_seconds`, until cancelled."""
    while True:
        cutoff = clock() - retention_days * 86400
        try:
            deleted = await store.delete_redactions_before(cutoff)
        except Exception:  # a task of its own: the store's errors must not end the gateway
            logger.exception("pruning the redaction log failed")
        else:
            if deleted:
                logger.info("redaction log: %d events past retention deleted", deleted)
        await anyio.sleep(every_seconds)
