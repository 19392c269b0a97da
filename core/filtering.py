"""The filter seam: filters return a decision, and the pipeline acts on it.

Request filters run in order, response filters in reverse (as Envoy's filter chain does). A filter
that needs to see a streamed reply wraps the stream; one that does not returns it unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from core.access import Principal
from core.envelope import Envelope, StreamChunk, TraceContext
from core.errors import GatewayError


@dataclass(frozen=True, slots=True)
class Continue:
    """Pass the envelope on unchanged."""


@dataclass(frozen=True, slots=True)
class Rewrite:
    """Pass this envelope on instead."""

    envelope: Envelope


@dataclass(frozen=True, slots=True)
class Reject:
    """Stop here and answer the client with `error`."""

    error: GatewayError


Decision: TypeAlias = Continue | Rewrite | Reject


@dataclass(slots=True)
class FilterContext:
    """What a filter may know of the call besides the envelope, and where it leaves notes.

    Findings on a streamed reply (which has no envelope) go in a `list` of `Finding` under a key
    of the filter's own in `state`: the pipeline writes every such list to the redaction log.
    """

    request_id: str
    principal: Principal
    span_id: str
    state: dict[str, object]
    # The call's place in its trace: a filter's own upstream call (the moderation model) is
    # recorded as a child span of the call it checks. None outside a pipeline call.
    trace: TraceContext | None = None


class Filter(Protocol):
    """One content filter."""

    name: str

    async def on_request(self, env: Envelope, ctx: FilterContext) -> Decision:
        """Inspect or rewrite a request before it is routed."""
        ...

    async def on_response(self, env: Envelope, ctx: FilterContext) -> Decision:
        """Inspect or rewrite a whole reply."""
        ...

    def on_stream(
        self, chunks: AsyncIterator[StreamChunk], ctx: FilterContext
    ) -> AsyncIterator[StreamChunk]:
        """Wrap a streamed reply; yield what the client may see.

        A chunk's `scope` (None: `MESSAGE`) says where its text sits when the caller knows it is
        not a reply message (a realtime voice transcript, function-call arguments relayed as
        text); findings on that text are labelled with it.

        Raises:
            GatewayError: to end the stream with an error.
        """
        ...
