"""Spans: one record per call, placed in the agent's call chain, written behind the request.

The trace id is the agent session: it comes from a W3C `traceparent`, else is derived from
`x-session-id`, else is new. `SpanWriter` is the bounded write-behind queue between the request
path and the `SpanStore`: a full queue makes callers wait (visible as queue depth), never drops,
and `aclose()` flushes everything still queued.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup

from core.envelope import Finding, TraceContext

logger = logging.getLogger("agentgw.spans")

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


def new_span_id() -> str:
    return secrets.token_hex(8)


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def trace_context(headers: Mapping[str, str]) -> TraceContext:
    """The call's place in its session, from `traceparent`, `x-session-id` and `x-agent-id`."""
    agent_id = _safe(headers.get("x-agent-id"))
    session_id = _safe(headers.get("x-session-id"))
    parent: str | None = None
    match = _TRACEPARENT.match(headers.get("traceparent", "").strip().lower())
    if match and set(match.group(1)) != {"0"} and set(match.group(2)) != {"0"}:
        trace_id, parent = match.group(1), match.group(2)
    elif session_id:
        trace_id = hashlib.sha256(session_id.encode()).hexdigest()[:32]
    else:
        trace_id = secrets.token_hex(16)
    return TraceContext(
        trace_id=trace_id,
        span_id=new_span_id(),
        parent_span_id=parent,
        agent_id=agent_id,
        session_id=session_id,
    )


def traceparent(trace: TraceContext) -> str:
    """The W3C header that makes `trace`'s span the upstream's parent."""
    return f"00-{trace.trace_id}-{trace.span_id}-01"


def _safe(value: str | None) -> str | None:
    # Identifiers from clients land in the store and in logs: keep them short and plain.
    if value is None:
        return None
    value = value.strip()
    return value if _SAFE_ID.match(value) else None


@dataclass(slots=True)
class Attempt:
    """One try at one target."""

    provider: str
    model: str
    status: str
    error_code: str | None = None
    latency_ms: float = 0.0


@dataclass(slots=True)
class Span:
    """One call, complete. Written once, when the call is over."""

    request_id: str
    span_id: str
    trace_id: str
    started_at: float
    parent_span_id: str | None = None
    agent_id: str | None = None
    session_id: str | None = None
    key_id: str | None = None
    org_path: str | None = None
    app: str | None = None
    customer: str | None = None
    modality: str = "chat"
    route: str = ""
    model_requested: str | None = None
    provider: str | None = None
    upstream_model: str | None = None
    stream: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    status: str = "ok"
    http_status: int = 200
    error_code: str | None = None
    flags: list[str] = field(default_factory=list)
    redactions: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    # The MCP tool a tool call ran (`<server>__<tool>`); None for model calls.
    tool: str | None = None
    cache_write_tokens: int = 0
    audio_seconds: float = 0.0
    images: int = 0
    video_seconds: float = 0.0
    # Time the upstream itself took (the served attempt), the base of GPU-time cost.
    upstream_ms: float | None = None
    # Not a column: written as the call's redaction-log events, in the span's transaction.
    findings: list[Finding] = field(default_factory=list, compare=False)


class SpanStore(Protocol):
    """Where spans are kept."""

    async def record_spans(self, spans: Sequence[Span]) -> None:
        """Store a batch of spans in one transaction.

        Raises:
            Exception: whatever the backend raises; the writer logs it and retries the batch.
        """
        ...


class SpanSink(Protocol):
    """Something told about every batch once it is stored (anomaly detection, OTLP export).

    A sink must return quickly (queue its own slow work): the writer awaits it between batches.
    """

    async def spans_written(self, spans: Sequence[Span]) -> None: ...


class SpanWriter:
    """The bounded write-behind queue in front of a `SpanStore`."""

    def __init__(
        self,
        store: SpanStore,
        *,
        max_queue: int = 10_000,
        batch_size: int = 256,
        linger_seconds: float = 0.02,
    ) -> None:
        self._store = store
        self._batch = batch_size
        self._linger = linger_seconds
        self._send, self._receive = anyio.create_memory_object_stream[Span](max_queue)
        self._done = anyio.Event()
        self.written = 0
        self.lost = 0
        self._sinks: list[SpanSink] = []

    def add_sink(self, sink: SpanSink) -> None:
        """Tell `sink` about every batch stored from now on."""
        self._sinks.append(sink)

    @property
    def depth(self) -> int:
        return self._send.statistics().current_buffer_used

    def start(self, tg: TaskGroup) -> None:
        tg.start_soon(self._run)

    async def submit(self, span: Span) -> None:
        """Queue a span; waits while the queue is full."""
        try:
            self._send.send_nowait(span)
        except anyio.WouldBlock:
            logger.warning("span queue full (%d): request path waits for the store", self.depth)
            await self._send.send(span)

    async def aclose(self) -> None:
        """Stop taking spans and wait until every queued one is stored."""
        await self._send.aclose()
        await self._done.wait()

    async def _run(self) -> None:
        try:
            async with self._receive:
                async for span in self._receive:
                    await self._write(await self._gather(span))
        finally:
            self._done.set()

    async def _gather(self, first: Span) -> list[Span]:
        """`first` and whatever else arrives within the linger window, up to a batch.

        A transaction per span was most of the store's cost at low load; waiting a few
        milliseconds lets spans share one, and no client waits on this.
        """
        batch = [first]
        with anyio.move_on_after(self._linger):
            while len(batch) < self._batch:
                try:
                    batch.append(await self._receive.receive())
                except anyio.EndOfStream:
                    break
        while len(batch) < self._batch:  # after the window: take what is already queued
            try:
                batch.append(self._receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
        return batch

    async def _write(self, batch: list[Span]) -> None:
        delay = 0.05
        for _ in range(8):
            try:
                with anyio.CancelScope(shield=True):
                    await self._store.record_spans(batch)
                self.written += len(batch)
                await self._tell_sinks(batch)
                return
            except Exception:  # the store's errors are unknown here; retry before giving up
                logger.exception("writing %d spans failed; retrying", len(batch))
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.lost += len(batch)
        logger.error("gave up writing %d spans after repeated store failures", len(batch))

    async def _tell_sinks(self, batch: list[Span]) -> None:
        for sink in self._sinks:
            try:
                await sink.spans_written(batch)
            except Exception:  # a sink's failure must not stop spans being stored
                logger.exception("span sink %s failed", type(sink).__name__)
