"""`/admin/sessions/{id}`: an agent session's call chain (model and tool calls as a tree)."""

from __future__ import annotations

from adapters.admin.http import AdminCall, Endpoint, Reply
from core.audit import Actor
from core.errors import PermissionDenied
from core.ops.callchain import load_call_chain
from core.reports import UsageStore
from core.roles import Permission, require


def require_traces(actor: Actor) -> None:
    """Call chains are for whoever reads spend (finance) or audit data (security).

    Raises:
        PermissionDenied: the role grants neither.
    """
    try:
        require(actor, Permission.SPEND_READ)
    except PermissionDenied:
        require(actor, Permission.AUDIT_READ)


def session_endpoints(store: UsageStore) -> list[Endpoint]:
    """The call-chain endpoint."""

    async def show(call: AdminCall) -> Reply:
        require_traces(call.actor)
        return Reply(await load_call_chain(store, call.path["session_id"]))

    return [
        Endpoint("GET", "/admin/sessions/{session_id}", show, "The call chain of an agent "
                 "session (session id or trace id): tokens, cost, latency and findings per "
                 "call, totals per session and agent.", "admin, finance, security",
                 tags=("reports",)),
    ]  # fmt: skip
