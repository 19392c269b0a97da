"""OpenTelemetry trace export over OTLP/HTTP (JSON encoding), with GenAI semantic conventions.

A span sink (`core.tracing.SpanSink`): stored batches are queued without waiting and sent by a
background task, so a slow or absent collector never holds the span writer. A full queue drops
the batch and counts it. Off unless `tracing.otlp_endpoint` (or `OTEL_EXPORTER_OTLP_ENDPOINT` /
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import httpx
from anyio.abc import TaskGroup

from core.tracing import Span

logger = logging.getLogger("agentgw.otlp")

_OPERATIONS = {"chat": "chat", "embedding": "embeddings", "tool": "execute_tool"}
_CLIENT_KIND = 3
_STATUS_OK, _STATUS_ERROR = 1, 2


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL: a base endpoint gets `/v1/traces` appended, as the spec says."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def _value(value: object) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def attributes(span: Span) -> dict[str, object]:
    """The span's attributes: `gen_ai.*` where the semantic conventions name them."""
    operation = _OPERATIONS.get(span.modality, span.modality)
    if span.tool:
        operation = "execute_tool"
    attrs: dict[str, object | None] = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": span.provider,
        "gen_ai.system": span.provider,
        "gen_ai.request.model": span.model_requested,
        "gen_ai.response.model": span.upstream_model,
        "gen_ai.usage.input_tokens": span.input_tokens,
        "gen_ai.usage.output_tokens": span.output_tokens,
        "gen_ai.conversation.id": span.session_id,
        "gen_ai.agent.id": span.agent_id,
        "gen_ai.tool.name": span.tool,
        "error.type": span.error_code,
        "http.response.status_code": span.http_status,
        "agentgw.request_id": span.request_id,
        "agentgw.key_id": span.key_id,
        "agentgw.org_path": span.org_path,
        "agentgw.cost_usd": span.cost_usd,
        "agentgw.cached_tokens": span.cached_tokens,
        "agentgw.attempts": len(span.attempts),
    }
    return {k: v for k, v in attrs.items() if v is not None}


def otlp_span(span: Span) -> dict[str, Any]:
    """One span in the OTLP JSON encoding."""
    start = int(span.started_at * 1e9)
    attrs = attributes(span)
    target = span.tool or span.model_requested or ""
    out: dict[str, Any] = {
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "name": f"{attrs['gen_ai.operation.name']} {target}".rstrip(),
        "kind": _CLIENT_KIND,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + int(span.latency_ms * 1e6)),
        "attributes": [{"key": k, "value": _value(v)} for k, v in attrs.items()],
        "status": {"code": _STATUS_OK if span.status == "ok" else _STATUS_ERROR},
    }
    if span.parent_span_id:
        out["parentSpanId"] = span.parent_span_id
    return out


def export_request(spans: Sequence[Span], service: str = "agentgw") -> dict[str, Any]:
    """An `ExportTraceServiceRequest` in JSON."""
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
    scope = {"scope": {"name": "agentgw"}, "spans": [otlp_span(s) for s in spans]}
    return {"resourceSpans": [{"resource": resource, "scopeSpans": [scope]}]}


class OTLPExporter:
    """Sends stored spans to an OTLP/HTTP collector."""

    def __init__(
        self,
        endpoint: str,
        headers: Mapping[str, str] | None = None,
        *,
        queue_batches: int = 256,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.url = traces_url(endpoint)
        self._headers = dict(headers or {})
        self._timeout = timeout_seconds
        self._send, self._receive = anyio.create_memory_object_stream[list[Span]](queue_batches)
        self.exported = 0
        self.dropped = 0
        self.failed = 0

    async def spans_written(self, spans: Sequence[Span]) -> None:
        try:
            self._send.send_nowait(list(spans))
        except anyio.WouldBlock:
            self.dropped += len(spans)

    def start(self, tg: TaskGroup) -> None:
        tg.start_soon(self._run)

    async def aclose(self) -> None:
        await self._send.aclose()

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=self._timeout, headers=self._headers) as client:
            async for batch in self._receive:
                await self._post(client, batch)

    async def _post(self, client: httpx.AsyncClient, batch: list[Span]) -> None:
        try:
            reply = await client.post(self.url, json=export_request(batch))
        except httpx.HTTPError as exc:
            self.failed += len(batch)
            logger.warning("OTLP export to %s failed: %s", self.url, type(exc).__name__)
            return
        if reply.status_code >= 300:
            self.failed += len(batch)
            logger.warning("OTLP export to %s answered %d", self.url, reply.status_code)
        else:
            self.exported += len(batch)
