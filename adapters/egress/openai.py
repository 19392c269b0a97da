"""Egress to any OpenAI-compatible server: vLLM, SGLang, MindIE, Ollama, OpenAI, Qwen, Kimi,
DeepSeek …

Streams are relayed chunk by chunk as they arrive. Usage is always requested on streams and read
from whichever chunk carries it (some servers put it on the last content chunk). Transport
failures and upstream statuses are mapped once, here, into the error tree.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp
import orjson

from adapters.egress.http import SharedHTTP
from adapters.wire.openai import (
    chat_reply_from_wire,
    chunk_from_wire,
    embedding_reply_from_wire,
    envelope_to_chat_request,
    envelope_to_embedding_request,
)
from core.config import Provider as ProviderConfig
from core.envelope import Envelope, Modality, StreamChunk
from core.errors import (
    GatewayError,
    UnsupportedContent,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from core.tracing import traceparent

_SECRETISH = re.compile(r"(sk|agw|key|pk)[-_][A-Za-z0-9_\-]{6,}", re.IGNORECASE)


class OpenAIProvider:
    """An OpenAI-wire upstream at `base_url` (which ends in `/v1`)."""

    def __init__(self, config: ProviderConfig, http: SharedHTTP) -> None:
        self.name = config.name
        self._http = http
        self._base = (config.base_url or "").rstrip("/")
        self._quirks = config.quirks
        self._headers = {"content-type": "application/json", **config.headers}
        if config.api_key:
            self._headers["authorization"] = f"Bearer {config.api_key}"
        self._timeout = aiohttp.ClientTimeout(
            total=config.timeout_seconds, sock_connect=config.connect_timeout_seconds
        )
        # A stream may run long; what must not happen is a long silence between chunks.
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=config.connect_timeout_seconds,
            sock_read=config.timeout_seconds,
        )

    async def send(self, env: Envelope) -> Envelope:
        if env.modality is Modality.EMBEDDING:
            body = await self._post("/embeddings", envelope_to_embedding_request(env), env)
            return embedding_reply_from_wire(body, env)
        if env.modality is not Modality.CHAT:
            raise UnsupportedContent(f"Provider '{self.name}' does not serve {env.modality}.")
        body = await self._post("/chat/completions", self._quirked(env), env)
        return chat_reply_from_wire(body, env)

    async def stream(self, env: Envelope) -> AsyncGenerator[StreamChunk, None]:
        # This path always streams upstream, whatever the envelope says.
        payload = orjson.dumps(self._quirked(dataclasses.replace(env, stream=True)))
        try:
            async with self._http.session.post(
                self._base + "/chat/completions",
                data=payload,
                headers=self._headers_for(env),
                timeout=self._stream_timeout,
            ) as resp:
                if resp.status >= 400:
                    raise _status_error(resp.status, await resp.read())
                done = False
                async for data in _sse_data(resp.content):
                    if data == b"[DONE]":
                        done = True
                        break
                    event = _json(data)
                    if "error" in event:
                        raise UpstreamError(f"Upstream stream error: {_message(event)}")
                    for chunk in chunk_from_wire(event):
                        yield chunk
                if not done:
                    raise UpstreamError(f"Upstream '{self.name}' ended the stream early.")
        except GatewayError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _transport_error(self.name, exc) from exc

    async def aclose(self) -> None:
        return None  # The shared client is closed by its owner.

    def _quirked(self, env: Envelope) -> dict[str, Any]:
        """The chat request as this upstream wants it: token-limit name, refused fields dropped."""
        body = envelope_to_chat_request(env)
        wanted = self._quirks.max_tokens_param
        if wanted is not None:
            other = "max_tokens" if wanted == "max_completion_tokens" else "max_completion_tokens"
            if other in body:
                limit = body.pop(other)
                body.setdefault(wanted, limit)
        for name in self._quirks.drop_params:
            body.pop(name, None)
        return body

    async def _post(self, path: str, body: dict[str, Any], env: Envelope) -> dict[str, Any]:
        try:
            async with self._http.session.post(
                self._base + path,
                data=orjson.dumps(body),
                headers=self._headers_for(env),
                timeout=self._timeout,
            ) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise _status_error(resp.status, raw)
        except GatewayError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _transport_error(self.name, exc) from exc
        return _json(raw)

    def _headers_for(self, env: Envelope) -> dict[str, str]:
        if env.trace is None:
            return self._headers
        return {**self._headers, "traceparent": traceparent(env.trace)}


async def _sse_data(content: aiohttp.StreamReader) -> AsyncGenerator[bytes, None]:
    """The `data:` payloads of an SSE body, as they arrive.

    Reads whatever the socket has in one go and splits it here: awaiting the reader once per
    line cost more than the rest of the relay.
    """
    pending = b""
    async for block in content.iter_any():
        lines = (pending + block).split(b"\n")
        pending = lines.pop()
        for line in lines:
            if line.startswith(b"data:"):
                yield line[5:].strip()
    if pending.startswith(b"data:"):
        yield pending[5:].strip()


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("Upstream sent a reply that is not JSON.") from exc
    if not isinstance(value, dict):
        raise UpstreamError("Upstream sent JSON that is not an object.")
    return value


def _message(body: dict[str, Any]) -> str:
    err = body.get("error")
    text = err.get("message") if isinstance(err, dict) else err
    # Upstream messages can echo credentials ("Incorrect API key: sk-…"); never pass those on.
    return _SECRETISH.sub("[redacted]", str(text or "no message"))[:500]


def _status_error(status: int, raw: bytes) -> GatewayError:
    try:
        parsed = orjson.loads(raw)
        detail = _message(parsed) if isinstance(parsed, dict) else f"status {status}"
    except orjson.JSONDecodeError:
        detail = f"status {status}"
    if status == 429:
        return UpstreamRateLimited(f"Upstream rate limited the request: {detail}")
    if status in (401, 403):
        # The upstream refused *our* credentials: a gateway misconfiguration, not the client's.
        return UpstreamError(f"Upstream refused the gateway's credentials (status {status}).")
    if status in (408,):
        return UpstreamTimeout(f"Upstream timed out: {detail}")
    if 400 <= status < 500:
        return UpstreamRejected(f"Upstream rejected the request: {detail}", upstream_status=status)
    if status == 503:
        return UpstreamUnavailable(f"Upstream unavailable: {detail}")
    if status == 504:
        return UpstreamTimeout(f"Upstream timed out: {detail}")
    return UpstreamError(f"Upstream failed with status {status}: {detail}")


def _transport_error(name: str, exc: BaseException) -> GatewayError:
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamTimeout(f"Upstream '{name}' did not answer in time.")
    if isinstance(exc, aiohttp.ClientConnectorError | ConnectionError):
        return UpstreamUnavailable(f"Upstream '{name}' refused or dropped the connection.")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return UpstreamError(f"Upstream '{name}' closed the connection mid-reply.")
    return UpstreamError(f"Upstream '{name}' failed: {type(exc).__name__}.")
