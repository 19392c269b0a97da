"""Spans: one record per call, placed in the agent's call chain, written behind the request.

The trace id is the agent session: it comes from a W3C `traceparent`, else is derived from
`x-session-id`, else is new. `SpanWriter` is the bounded write-behind queue between the request
path and the `SpanStore`: a full queue makes callers wait (visible as queue depth), never drops,
and `aclose()` flushes everything still queued.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import secrets
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup

from core.envelope import Finding, TraceContext

logger = logging.getLogger("agentgw.spans")

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


# Request, span and trace ids only need to be unique, not unguessable (nothing is authorized by
# knowing one): a PRNG seeded from the OS once is enough, and costs no system call per request
# (three `os.urandom` calls were ~4 % of a request's CPU). Every process (and forked
# child) seeds its own.
_ids = random.Random(secrets.randbits(128))
os.register_at_fork(after_in_child=lambda: _ids.seed(secrets.randbits(128)))


def new_span_id() -> str:
    return f"{_ids.getrandbits(64):016x}"


def new_request_id() -> str:
    return f"req_{_ids.getrandbits(96):024x}"


def new_trace_id() -> str:
    return f"{_ids.getrandbits(128):032x}"


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
        trace_id = new_trace_id()
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
    """The bounded write-behind queue in front of a `SpanStore`.

    A plain deque and two events rather than a memory object stream: a span is queued with an
    append, and the writer wakes once per batch, not once per span (a stream's `receive`
    passed through the event loop for every span).
    """

    def __init__(
        self,
        store: SpanStore,
        *,
        max_queue: int = 10_000,
        batch_size: int = 256,
        linger_seconds: float = 0.02,
    ) -> None:
        self._store = store
        self._max = max_queue
        self._batch = batch_size
        self._linger = linger_seconds
        self._queue: deque[Span] = deque()
        # Set when the writer should look at the queue again: the first span of a batch arrived
        # (`_wake`), a batch is full or the writer is closing (`_full`), room was made (`_room`).
        self._wake = anyio.Event()
        self._full = anyio.Event()
        self._room = anyio.Event()
        self._closed = False
        self._done = anyio.Event()
        self.written = 0
        self.lost = 0
        self._sinks: list[SpanSink] = []

    def add_sink(self, sink: SpanSink) -> None:
        """Tell `sink` about every batch stored from now on."""
        self._sinks.append(sink)

    @property
    def depth(self) -> int:
        return len(self._queue)

    def start(self, tg: TaskGroup) -> None:
        tg.start_soon(self._run)

    async def submit(self, span: Span) -> None:
        """Queue a span; waits while the queue is full.

        Raises:
            anyio.ClosedResourceError: the writer is closed.
        """
        while len(self._queue) >= self._max and not self._closed:
            logger.warning("span queue full (%d): request path waits for the store", self.depth)
            if self._room.is_set():
                self._room = anyio.Event()
            await self._room.wait()
        if self._closed:
            raise anyio.ClosedResourceError
        queue = self._queue
        queue.append(span)
        if len(queue) == 1:
            self._wake.set()
        if len(queue) >= self._batch:
            self._full.set()

    async def aclose(self) -> None:
        """Stop taking spans and wait until every queued one is stored."""
        self._closed = True
        self._wake.set()
        self._full.set()
        self._room.set()
        await self._done.wait()

    async def _run(self) -> None:
        try:
            while True:
                if not self._queue:
                    if self._closed:
                        return
                    self._wake = anyio.Event()
                    if not self._queue and not self._closed:
                        await self._wake.wait()
                    continue
                await self._linger_for_batch()
                await self._write(self._take())
        finally:
            self._done.set()

    async def _linger_for_batch(self) -> None:
        """Wait up to the linger window for the batch to fill (or the writer to close).

        A transaction per span was most of the store's cost at low load; waiting a few
        milliseconds lets spans share one, and no client waits on this.
        """
        if len(self._queue) >= self._batch or self._closed:
            return
        self._full = anyio.Event()
        with anyio.move_on_after(self._linger):
            await self._full.wait()

    def _take(self) -> list[Span]:
        queue = self._queue
        batch = [queue.popleft() for _ in range(min(self._batch, len(queue)))]
        self._room.set()
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
