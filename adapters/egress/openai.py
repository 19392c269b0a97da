"""Egress to any OpenAI-compatible server: vLLM, SGLang, MindIE, Ollama, OpenAI, Qwen, Kimi,
DeepSeek …

Streams are relayed as they arrive: the events of one socket read leave together, their chunks
merged where no client can tell (`core.coalesce`). Usage is always requested on streams and read
from whichever chunk carries it (some servers put it on the last content chunk). Transport
failures and upstream statuses are mapped once, here, into the error tree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator
from typing import Any

import orjson

from adapters.egress.h1 import BadReply, check_url, header_block
from adapters.egress.http import SharedHTTP
from adapters.egress.openai_media import OpenAIMedia
from adapters.egress.realtime import OpenAIVoice
from adapters.egress.upstream import (
    error_detail,
    json_object,
    sse_batches,
    status_error,
    timeouts,
    traced,
    transport_error,
)
from adapters.wire.openai import (
    chat_reply_from_wire,
    chunk_from_wire,
    embedding_reply_from_wire,
    envelope_to_chat_request,
    envelope_to_embedding_request,
    envelope_to_moderation_request,
    moderation_reply_from_wire,
)
from core.coalesce import coalesce
from core.config import ConfigError
from core.config import Provider as ProviderConfig
from core.envelope import Envelope, Modality, StreamChunk
from core.errors import (
    GatewayError,
    UnsupportedContent,
    UpstreamError,
)
from core.tracing import traceparent


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
        self._timeout, self._stream_timeout = timeouts(config)
        try:
            check_url(self._base + "/chat/completions")
            self._head = header_block(self._headers)
        except ValueError as exc:
            raise ConfigError(f"providers.{self.name}: {exc}") from None
        self._media = OpenAIMedia(
            self.name, http, self._base, self._headers, (self._timeout, self._stream_timeout)
        )
        # Realtime sessions and the audio endpoints (`core.realtime.VoiceProvider`).
        self.voice = OpenAIVoice(config, http)

    async def send(self, env: Envelope) -> Envelope:
        if env.modality is Modality.EMBEDDING:
            body = await self._post("/embeddings", envelope_to_embedding_request(env), env)
            return embedding_reply_from_wire(body, env)
        if env.modality is Modality.MODERATION:
            body = await self._post("/moderations", envelope_to_moderation_request(env), env)
            return moderation_reply_from_wire(body, env)
        if env.modality in (Modality.IMAGE, Modality.VIDEO):
            return await self._media.send(env, _trace_header(env))
        if env.modality is not Modality.CHAT:
            raise UnsupportedContent(f"Provider '{self.name}' does not serve {env.modality}.")
        body = await self._post("/chat/completions", self._quirked(env), env)
        return chat_reply_from_wire(body, env)

    async def stream(self, env: Envelope) -> AsyncGenerator[StreamChunk, None]:
        # This path always streams upstream, whatever the envelope says.
        payload = orjson.dumps(self._quirked(dataclasses.replace(env, stream=True)))
        try:
            async with self._http.upstream.stream(
                self._base + "/chat/completions",
                payload,
                traced(self._head, env),
                read=self._stream_timeout.sock_read,
                connect=self._stream_timeout.sock_connect,
            ) as resp:
                if resp.status >= 400:
                    raise status_error(resp.status, await resp.read())
                done = False
                async for batch in sse_batches(resp.blocks()):
                    chunks, done, failure = _decode(batch)
                    # What one read brought leaves together, merged; nothing waits for more.
                    for chunk in coalesce(chunks) if len(chunks) > 1 else chunks:
                        yield chunk
                    if failure is not None:
                        raise failure
                    if done:
                        break
                if not done:
                    raise UpstreamError(f"Upstream '{self.name}' ended the stream early.")
        except GatewayError:
            raise
        except (TimeoutError, OSError, BadReply) as exc:
            raise transport_error(self.name, exc) from exc

    async def aclose(self) -> None:
        return None  # The shared client is closed by its owner.

    async def video_status(self, upstream_id: str, env: Envelope) -> dict[str, Any]:
        """A video job's status (`core.media.VideoUpstream`)."""
        return await self._media.video_status(upstream_id, _trace_header(env))

    def video_content(
        self, upstream_id: str, variant: str | None, env: Envelope
    ) -> AsyncGenerator[bytes, None]:
        """A video job's bytes, relayed as they arrive (`core.media.VideoUpstream`)."""
        return self._media.video_content(upstream_id, variant, _trace_header(env))

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
            status, raw = await self._http.upstream.post(
                self._base + path,
                orjson.dumps(body),
                traced(self._head, env),
                total=self._timeout.total,
                connect=self._timeout.sock_connect,
            )
        except (TimeoutError, OSError, BadReply) as exc:
            raise transport_error(self.name, exc) from exc
        if status >= 400:
            raise status_error(status, raw)
        return json_object(raw)


def _decode(batch: list[bytes]) -> tuple[list[StreamChunk], bool, GatewayError | None]:
    """The chunks of one read's events, whether `[DONE]` was among them, and the failure that
    ended them (an `error` event, a payload that is not JSON): the chunks before it still go."""
    chunks: list[StreamChunk] = []
    for data in batch:
        if data == b"[DONE]":
            return chunks, True, None
        try:
            event = json_object(data)
        except UpstreamError as exc:
            return chunks, False, exc
        if "error" in event:
            return chunks, False, UpstreamError(f"Upstream stream error: {error_detail(event)[1]}")
        text = _plain_text(event)
        if text is not None and chunks and _takes_text(chunks[-1]):
            # Most events are a bare text delta: appended here, as `coalesce` would merge it,
            # without decoding it into a chunk of its own first.
            last = chunks[-1]
            last.text = text if last.text is None else last.text + text
            continue
        chunks.extend(chunk_from_wire(event))
    return chunks, False, None


_PLAIN_CHOICE_KEYS = frozenset({"index", "delta", "finish_reason", "logprobs"})


def _plain_text(event: dict[str, Any]) -> str | None:
    """The text of an event that is one bare, non-empty text delta of the first choice (nothing
    else: no role, finish, usage, logprobs, tool calls or other fields), else None."""
    choices = event.get("choices")
    if not isinstance(choices, list) or len(choices) != 1 or event.get("usage") is not None:
        return None
    choice = choices[0]
    if (
        not isinstance(choice, dict)
        or choice.get("index", 0) != 0
        or choice.get("finish_reason") is not None
        or choice.get("logprobs") is not None
        or not choice.keys() <= _PLAIN_CHOICE_KEYS
    ):
        return None
    delta = choice.get("delta")
    if not isinstance(delta, dict) or delta.keys() != {"content"}:
        return None
    text = delta["content"]
    return text if isinstance(text, str) and text else None


def _takes_text(c: StreamChunk) -> bool:
    """Whether `coalesce` would merge a bare text delta of choice 0 into `c`."""
    return (
        c.index == 0
        and c.scope is None
        and c.finish_reason is None
        and c.usage is None
        and not c.tool_calls
        and not c.extra
        # A role opens a message (so `c` joined nothing before it); non-empty text means `c`
        # could only have joined a run without tool calls. An empty text may have joined a
        # tool call's run: left to `coalesce`, as is everything else.
        and (c.role is not None or bool(c.text))
    )


def _trace_header(env: Envelope) -> dict[str, str]:
    return {} if env.trace is None else {"traceparent": traceparent(env.trace)}
