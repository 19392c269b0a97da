"""What every HTTP provider adapter shares: reading upstream replies and mapping their failures.

Upstream statuses and transport failures are mapped into the error tree here, once, so every
provider fails over on the same conditions (retryable: connect failures, timeouts, 429, 5xx;
never another 4xx).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, AsyncIterable, Mapping
from typing import Any

import aiohttp
import orjson

from adapters.egress.h1 import BadReply, ReplyCut
from core.config import Provider as ProviderConfig
from core.envelope import Envelope
from core.errors import (
    GatewayError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from core.tracing import traceparent

_SECRETISH = re.compile(r"(sk|agw|key|pk)[-_][A-Za-z0-9_\-]{6,}", re.IGNORECASE)


def json_object(raw: bytes) -> dict[str, Any]:
    """An upstream reply body as a JSON object.

    Raises:
        UpstreamError: it is not JSON, or not an object.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("Upstream sent a reply that is not JSON.") from exc
    if not isinstance(value, dict):
        raise UpstreamError("Upstream sent JSON that is not an object.")
    return value


def error_detail(body: Mapping[str, Any]) -> tuple[str, str]:
    """The `error`'s type and message, with anything that looks like a credential removed."""
    err = body.get("error")
    kind = str(err.get("type", "")) if isinstance(err, Mapping) else ""
    text = err.get("message") if isinstance(err, Mapping) else err
    # Upstream messages can echo credentials ("Incorrect API key: sk-…"); never pass those on.
    return kind, _SECRETISH.sub("[redacted]", str(text or "no message"))[:500]


def status_error(status: int, raw: bytes) -> GatewayError:
    """The error for an upstream HTTP status (4xx other than 429 is never retryable)."""
    try:
        parsed = orjson.loads(raw)
        detail = error_detail(parsed)[1] if isinstance(parsed, dict) else f"status {status}"
    except orjson.JSONDecodeError:
        detail = f"status {status}"
    if status == 429:
        return UpstreamRateLimited(f"Upstream rate limited the request: {detail}")
    if status in (401, 403):
        # The upstream refused *our* credentials: a gateway misconfiguration, not the client's.
        return UpstreamError(f"Upstream refused the gateway's credentials (status {status}).")
    if status in (408, 504):
        return UpstreamTimeout(f"Upstream timed out: {detail}")
    if 400 <= status < 500:
        return UpstreamRejected(f"Upstream rejected the request: {detail}", upstream_status=status)
    if status in (503, 529):  # 529: Anthropic's "overloaded"
        return UpstreamUnavailable(f"Upstream overloaded or unavailable: {detail}")
    return UpstreamError(f"Upstream failed with status {status}: {detail}")


def transport_error(name: str, exc: BaseException) -> GatewayError:
    """The error for a failure below HTTP: timeouts, refused or dropped connections."""
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamTimeout(f"Upstream '{name}' did not answer in time.")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | ReplyCut):
        return UpstreamError(f"Upstream '{name}' closed the connection mid-reply.")
    if isinstance(exc, aiohttp.ClientConnectorError | ConnectionError):
        return UpstreamUnavailable(f"Upstream '{name}' refused or dropped the connection.")
    if isinstance(exc, BadReply):
        return UpstreamError(f"Upstream '{name}' sent a reply that is not HTTP: {exc}.")
    return UpstreamError(f"Upstream '{name}' failed: {type(exc).__name__}.")


async def sse_batches(content: AsyncIterable[bytes]) -> AsyncGenerator[list[bytes], None]:
    """The `data:` payloads of an SSE body, one list per socket read that completed any.

    Reads whatever the socket has in one go and splits it here: awaiting the reader once per
    line cost more than the rest of the relay. The events of one read are handed on together
    (and never held back for the next read), so the caller can merge what arrived together.
    """
    pending = b""
    async for block in content:
        lines = (pending + block).split(b"\n") if pending else block.split(b"\n")
        pending = lines.pop()
        batch = [line[5:].strip() for line in lines if line.startswith(b"data:")]
        if batch:
            yield batch
    if pending.startswith(b"data:"):
        yield [pending[5:].strip()]


def traced(head: bytes, env: Envelope) -> bytes:
    """Request header lines (`adapters.egress.h1.header_block`), with the call's trace context."""
    if env.trace is None:
        return head
    return b"%straceparent: %s\r\n" % (head, traceparent(env.trace).encode())


def timeouts(config: ProviderConfig) -> tuple[aiohttp.ClientTimeout, aiohttp.ClientTimeout]:
    """The timeouts for a whole reply and for a stream.

    A stream may run long; what must not happen is a long silence between its events, so it has
    no total but a read timeout.
    """
    whole = aiohttp.ClientTimeout(
        total=config.timeout_seconds, sock_connect=config.connect_timeout_seconds
    )
    stream = aiohttp.ClientTimeout(
        total=None,
        sock_connect=config.connect_timeout_seconds,
        sock_read=config.timeout_seconds,
    )
    return whole, stream
