"""The call chain of an agent session: model and tool calls as a tree, with totals.

A span's parent is the span whose id its `parent_span_id` names (from the caller's W3C
`traceparent`); a span whose parent is not in the session is a root. Findings are the
redaction-log events of each call: entity type, action and position, never a value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.errors import NotFound
from core.redaction import RedactionEvent
from core.reports import UsageStore
from core.timestamps import iso
from core.tracing import Span


def _node(span: Span, findings: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "request_id": span.request_id,
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id,
        "kind": "tool" if span.tool else "model",
        "name": span.tool or span.model_requested or span.route,
        "agent_id": span.agent_id,
        "key_id": span.key_id,
        "provider": span.provider,
        "upstream_model": span.upstream_model,
        "modality": span.modality,
        "started_at": iso(span.started_at),
        "status": span.status,
        "error_code": span.error_code,
        "input_tokens": span.input_tokens,
        "output_tokens": span.output_tokens,
        "cached_tokens": span.cached_tokens,
        "reasoning_tokens": span.reasoning_tokens,
        "cost_usd": span.cost_usd,
        "latency_ms": round(span.latency_ms, 3),
        "ttft_ms": None if span.ttft_ms is None else round(span.ttft_ms, 3),
        "flags": list(span.flags),
        "findings": findings,
        "children": [],
    }


def _finding(event: RedactionEvent) -> dict[str, Any]:
    return {
        "filter": event.filter,
        "entity_type": event.entity_type,
        "action": event.action,
        "scope": event.scope,
        "start": event.start,
        "end": event.end,
    }


def _totals(spans: Sequence[Span]) -> dict[str, Any]:
    return {
        "calls": len(spans),
        "model_calls": sum(1 for s in spans if not s.tool),
        "tool_calls": sum(1 for s in spans if s.tool),
        "errors": sum(1 for s in spans if s.status != "ok"),
        "input_tokens": sum(s.input_tokens for s in spans),
        "output_tokens": sum(s.output_tokens for s in spans),
        "cost_usd": round(sum(s.cost_usd or 0.0 for s in spans), 9),
        "latency_ms": round(sum(s.latency_ms for s in spans), 3),
    }


def call_chain(
    session: str, spans: Sequence[Span], events: Sequence[RedactionEvent]
) -> dict[str, Any]:
    """The session's tree with totals for the session and per agent."""
    by_request: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_request.setdefault(event.request_id, []).append(_finding(event))
    nodes = {s.span_id: _node(s, by_request.get(s.request_id, [])) for s in spans}
    roots: list[dict[str, Any]] = []
    for span in spans:
        parent = nodes.get(span.parent_span_id or "")
        if parent is not None and span.parent_span_id != span.span_id:
            parent["children"].append(nodes[span.span_id])
        else:
            roots.append(nodes[span.span_id])
    agents: dict[str, list[Span]] = {}
    for span in spans:
        agents.setdefault(span.agent_id or "", []).append(span)
    return {
        "session": session,
        "trace_ids": sorted({s.trace_id for s in spans}),
        "totals": _totals(spans),
        "agents": [{"agent_id": a or None, **_totals(ss)} for a, ss in sorted(agents.items())],
        "findings": len(events),
        "tree": roots,
    }


async def load_call_chain(store: UsageStore, session: str) -> dict[str, Any]:
    """The call chain of `session` (a session id or a trace id).

    Raises:
        NotFound: no span belongs to it.
    """
    spans = await store.session_spans(session)
    if not spans:
        raise NotFound(f"No calls recorded for session {session!r}.")
    events = await store.span_findings([s.request_id for s in spans])
    return call_chain(session, spans, events)
