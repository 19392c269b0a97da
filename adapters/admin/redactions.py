"""`/admin/redactions`: the redaction log, filtered, as JSON or CSV (security and admin roles)."""

from __future__ import annotations

from collections.abc import Mapping

from adapters.admin.http import AdminCall, Endpoint, Listing, Query, query_instant, query_integer
from core.redaction import (
    MAX_QUERY_LIMIT,
    REDACTION_COLUMNS,
    RedactionQuery,
    RedactionStore,
    redaction_view,
)
from core.roles import Permission, require


def redaction_query(q: Mapping[str, str]) -> RedactionQuery:
    """A `RedactionQuery` from query parameters.

    Raises:
        ValidationFailed: a time or number that does not parse or is out of range.
    """
    return RedactionQuery(
        since=query_instant(q, "since"),
        until=query_instant(q, "until"),
        org_path=q.get("org_path") or q.get("team"),
        key_id=q.get("key_id"),
        entity_type=q.get("entity_type"),
        action=q.get("action"),
        scope=q.get("scope"),
        after_id=query_integer(q, "after_id", 0, 0, 2**62),
        limit=query_integer(q, "limit", 1000, 1, MAX_QUERY_LIMIT),
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
                     Query("scope", "Where it was found: system, message, tool_input, "
                           "tool_output, transcript, media_text, media."),
                     Query("after_id", "Only events after this id (paging).", "integer"),
                     Query("limit", f"At most this many (1-{MAX_QUERY_LIMIT}, default 1000).",
                           "integer"),
                 )),
    ]  # fmt: skip
