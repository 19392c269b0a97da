"""Egress to an Anthropic Messages server (Anthropic's API, or anything speaking its wire).

`base_url` is the server root; requests go to `{base_url}/v1/messages` with the provider's key
as `x-api-key` and `anthropic-version: 2023-06-01`. Anthropic requires `max_tokens`: a request
without one (an OpenAI client's) gets `DEFAULT_MAX_TOKENS`. Streams are relayed as they
arrive: the events of one socket read leave together, their chunks merged where no client can
tell (`core.coalesce`). Transport failures, statuses and `error` events are mapped once, here:

    429 → UpstreamRateLimited        529 overloaded, 503 → UpstreamUnavailable (retryable)
    401 / 403 → UpstreamError         408, 504 → UpstreamTimeout
    other 4xx → UpstreamRejected      other 5xx → UpstreamError (retryable)
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any

import orjson

from adapters.egress.h1 import BadReply, check_url, header_block
from adapters.egress.http import SharedHTTP
from adapters.egress.upstream import (
    error_detail,
    json_object,
    sse_batches,
    status_error,
    timeouts,
    traced,
    transport_error,
)
from adapters.wire.anthropic import BETA_MARK, message_reply_from_wire
from adapters.wire.anthropic_encode import envelope_to_messages_request
from adapters.wire.anthropic_stream import StreamDecoder
from core.coalesce import coalesce
from core.config import ConfigError
from core.config import Provider as ProviderConfig
from core.envelope import Envelope, Modality, StreamChunk
from core.errors import (
    GatewayError,
    UnsupportedContent,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096


class AnthropicProvider:
    """An Anthropic-wire upstream at `base_url` (the server root, without `/v1`)."""

    def __init__(self, config: ProviderConfig, http: SharedHTTP) -> None:
        self.name = config.name
        self._http = http
        self._url = (config.base_url or "").rstrip("/") + "/v1/messages"
        self._headers = {
            "content-type": "application/json",
            "anthropic-version": ANTHROPIC_VERSION,
            **config.headers,
        }
        if config.api_key:
            self._headers["x-api-key"] = config.api_key
        self._timeout, self._stream_timeout = timeouts(config)
        try:
            check_url(self._url)
            self._head = header_block(self._headers)
        except ValueError as exc:
            raise ConfigError(f"providers.{self.name}: {exc}") from None

    async def send(self, env: Envelope) -> Envelope:
        """Raises:
        UnsupportedContent: not a chat envelope, or content Anthropic cannot take.
        UpstreamError: or a subclass, mapped from the upstream's answer.
        """
        body = self._body(env, stream=False)
        try:
            status, raw = await self._http.upstream.post(
                self._url,
                body,
                self._head_for(env),
                total=self._timeout.total,
                connect=self._timeout.sock_connect,
            )
        except (TimeoutError, OSError, BadReply) as exc:
            raise transport_error(self.name, exc) from exc
        if status >= 400:
            raise status_error(status, raw)
        return message_reply_from_wire(json_object(raw), env)

    async def stream(self, env: Envelope) -> AsyncGenerator[StreamChunk, None]:
        """Raises:
        UnsupportedContent: not a chat envelope, or content Anthropic cannot take.
        UpstreamError: or a subclass, before or during the stream.
        """
        body = self._body(env, stream=True)
        try:
            async with self._http.upstream.stream(
                self._url,
                body,
                self._head_for(env),
                read=self._stream_timeout.sock_read,
                connect=self._stream_timeout.sock_connect,
            ) as resp:
                if resp.status >= 400:
                    raise status_error(resp.status, await resp.read())
                decoder = StreamDecoder()
                # `event:` lines only repeat each data payload's `type`: the data is enough.
                async for batch in sse_batches(resp.blocks()):
                    chunks, failure = _decode(decoder, batch)
                    # What one read brought leaves together, merged; nothing waits for more.
                    for chunk in coalesce(chunks) if len(chunks) > 1 else chunks:
                        yield chunk
                    if failure is not None:
                        raise failure
                    if decoder.done:
                        break
                if not decoder.done:
                    raise UpstreamError(f"Upstream '{self.name}' ended the stream early.")
        except GatewayError:
            raise
        except (TimeoutError, OSError, BadReply) as exc:
            raise transport_error(self.name, exc) from exc

    async def aclose(self) -> None:
        return None  # The shared client is closed by its owner.

    def _body(self, env: Envelope, *, stream: bool) -> bytes:
        if env.modality is not Modality.CHAT:
            raise UnsupportedContent(f"Provider '{self.name}' does not serve {env.modality}.")
        body = envelope_to_messages_request(env, default_max_tokens=DEFAULT_MAX_TOKENS)
        if stream:
            body["stream"] = True
        else:
            body.pop("stream", None)
        return orjson.dumps(body)

    def _head_for(self, env: Envelope) -> bytes:
        """The request's header lines: the provider's own, the caller's betas, the trace context.

        Raises:
            UnsupportedContent: a beta name holds a line break (it would split the request).
        """
        beta = env.params.get(BETA_MARK)
        if not (isinstance(beta, str) and beta):
            return traced(self._head, env)
        configured = self._headers.get("anthropic-beta")
        betas = f"{configured},{beta}" if configured else beta
        try:
            head = header_block({**self._headers, "anthropic-beta": betas})
        except ValueError:
            raise UnsupportedContent("The anthropic-beta header holds a line break.") from None
        return traced(head, env)


def _decode(
    decoder: StreamDecoder, batch: list[bytes]
) -> tuple[list[StreamChunk], GatewayError | None]:
    """The chunks of one read's events up to `message_stop`, and the failure that ended them
    (an `error` event, a payload that is not JSON, a block the gateway can't carry): the chunks
    before it still go."""
    chunks: list[StreamChunk] = []
    for data in batch:
        try:
            event = json_object(data)
            if event.get("type") == "error":
                return chunks, _event_error(event)
            chunks.extend(decoder.feed(event))
        except GatewayError as exc:
            return chunks, exc
        if decoder.done:
            break
    return chunks, None


def _event_error(event: Mapping[str, Any]) -> GatewayError:
    kind, message = error_detail(event)
    match kind:
        case "overloaded_error":
            return UpstreamUnavailable(f"Upstream overloaded: {message}")
        case "rate_limit_error":
            return UpstreamRateLimited(f"Upstream rate limited the request: {message}")
        case "invalid_request_error" | "request_too_large":
            return UpstreamRejected(
                f"Upstream rejected the request: {message}", upstream_status=400
            )
        case _:
            return UpstreamError(f"Upstream stream error: {message}")
