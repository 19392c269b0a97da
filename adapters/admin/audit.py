"""`/admin/audit`: query the audit log, export it, and verify its hash chain."""

from __future__ import annotations

from collections.abc import Mapping

from adapters.admin.http import (
    AdminCall,
    Endpoint,
    Listing,
    Query,
    Reply,
    query_instant,
    query_integer,
)
from adapters.admin.schemas import AuditList, ChainReport
from core.audit import EVENT_COLUMNS, MAX_QUERY_LIMIT, AuditLog, AuditQuery, event_view
from core.roles import Permission, require

_READERS = "admin, security"


def audit_query(q: Mapping[str, str]) -> AuditQuery:
    """An `AuditQuery` from query parameters.

    Raises:
        ValidationFailed: a time, id or limit that does not parse or is out of range.
    """
    return AuditQuery(
        actor=q.get("actor"),
        object=q.get("object"),
        action=q.get("action"),
        since=query_instant(q, "since"),
        until=query_instant(q, "until"),
        after_id=query_integer(q, "after_id", 0, 0, 2**62),
        limit=query_integer(q, "limit", 1000, 1, MAX_QUERY_LIMIT),
    )


def audit_endpoints(audit: AuditLog) -> list[Endpoint]:
    """The audit endpoints, bound to `audit`."""

    async def listing(call: AdminCall) -> Listing:
        require(call.actor, Permission.AUDIT_READ)
        events = await audit.events(audit_query(call.query))
        return Listing([event_view(e) for e in events], EVENT_COLUMNS)

    async def verify(call: AdminCall) -> Reply:
        require(call.actor, Permission.AUDIT_READ)
        checked, brk = await audit.verify()
        return Reply(
            {
                "intact": brk is None,
                "events": checked,
                "first_bad_event": None if brk is None else brk.event_id,
                "reason": None if brk is None else brk.reason,
            }
        )

    tags = ("audit",)
    pattern = " A trailing * matches a prefix."
    return [
        Endpoint("GET", "/admin/audit", listing, "Audit events by id, filtered.", _READERS,
                 response=AuditList, exportable=True, tags=tags, query=(
                     Query("actor", "Who: a key id, cli:<os user> or system." + pattern),
                     Query("object", "What: such as key:key_0123abcd." + pattern),
                     Query("action", "Such as key.revoke." + pattern),
                     Query("since", "From this time on (ISO 8601 or epoch seconds)."),
                     Query("until", "Before this time (ISO 8601 or epoch seconds)."),
                     Query("after_id", "Only events after this id (paging).", "integer"),
                     Query("limit", f"At most this many (1-{MAX_QUERY_LIMIT}, default 1000).",
                           "integer"),
                 )),
        Endpoint("GET", "/admin/audit/verify", verify, "Walk the hash chain; name the first "
                 "event altered, deleted or reordered.", _READERS, response=ChainReport,
                 tags=tags),
    ]  # fmt: skip
