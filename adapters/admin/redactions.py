"""`/admin/redactions`: the redaction log, filtered, as JSON or CSV (security and admin roles)."""

from __future__ import annotations

from collections.abc import Mapping

from adapters.admin.http import AdminCall, Endpoint, Listing, Query
from core.errors import ValidationFailed
from core.redaction import (
    MAX_QUERY_LIMIT,
    REDACTION_COLUMNS,
    RedactionQuery,
    RedactionStore,
    redaction_view,
)
from core.roles import Permission, require
from core.timestamps import parse_instant


def redaction_query(q: Mapping[str, str]) -> RedactionQuery:
    """A `RedactionQuery` from query parameters.

    Raises:
        ValidationFailed: a time or number that does not parse or is out of range.
    """
    return RedactionQuery(
        since=_instant(q, "since"),
        until=_instant(q, "until"),
        org_path=q.get("org_path") or q.get("team"),
        key_id=q.get("key_id"),
        entity_type=q.get("entity_type"),
        action=q.get("action"),
        after_id=_integer(q, "after_id", 0, 0, 2**62),
        limit=_integer(q, "limit", 1000, 1, MAX_QUERY_LIMIT),
    )


def redaction_endpoints(store: RedactionStore) -> list[Endpoint]:
    """The redaction-log endpoint, reading from `store`."""

    async def listing(call: AdminCall) -> Listing:
        require(call.actor, Permission.REDACTIONS_READ)
        events = await store.redaction_events(redaction_query(call.query))
        return Listing([redaction_view(e) for e in events], REDACTION_COLUMNS)

    return [
        Endpoint("GET", "/admin/redactions", listing, "Redaction-log events (never the values), "
                 "filtered.", "admin, security", exportable=True, tags=("redactions",), query=(
                     Query("since", "From this time on (ISO 8601 or epoch seconds)."),
                     Query("until", "Before this time (ISO 8601 or epoch seconds)."),
                     Query("org_path", "This org unit and everything below it."),
                     Query("team", "Same as org_path."),
                     Query("key_id", "Events of calls made with this key."),
                     Query("entity_type", "Such as EMAIL_ADDRESS or violence."),
                     Query("action", "redact, mask, hash, pseudonymize, block, flag, fail_open."),
                     Query("after_id", "Only events after this id (paging).", "integer"),
                     Query("limit", f"At most this many (1-{MAX_QUERY_LIMIT}, default 1000).",
                           "integer"),
                 )),
    ]  # fmt: skip


def _instant(q: Mapping[str, str], name: str) -> float | None:
    if name not in q:
        return None
    try:
        return parse_instant(q[name])
    except ValueError as exc:
        raise ValidationFailed(f"{name}: {exc}", param=name) from None


def _integer(q: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    if name not in q:
        return default
    text = q[name]
    if not text.isdigit() or not low <= int(text) <= high:
        raise ValidationFailed(f"{name}: expected an integer from {low} to {high}", param=name)
    return int(text)
