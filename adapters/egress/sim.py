"""The simulated model as an in-process provider: no network, deterministic, with faults.

`SimProvider` answers exactly what the sim's HTTP face (`sim_server`) answers for the same
request: both reduce their input to the sim's plain data and call `sim_model.chat_reply`.
Injected faults and dropped streams raise the `core.errors` class a real upstream failure with the
same status would map to, so routing, failover and metering can be exercised without a server.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, assert_never

import anyio

from adapters.egress.sim_embeddings import (
    DEFAULT_DIMENSIONS,
    EmbeddingInput,
    embedding_vector,
    text_input,
    token_input,
)
from adapters.egress.sim_media import SimMediaProvider
from adapters.egress.sim_model import (
    SimChatReply,
    SimChatRequest,
    SimDelta,
    SimRequestError,
    SimTool,
    SimToolCall,
    SimToolResult,
    SimTurn,
    SimUsage,
    chat_reply,
    parse_max_tokens,
    parse_tool_choice,
    stream_deltas,
)
from adapters.egress.sim_moderation import moderation_body
from adapters.egress.sim_options import FaultInjector, SimOptions
from adapters.egress.sim_voice import SimVoice
from core.config import Provider as ProviderConfig
from core.envelope import (
    AudioPart,
    Envelope,
    ImagePart,
    Message,
    Modality,
    Part,
    StreamChunk,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolResultPart,
    Usage,
    VideoPart,
)
from core.errors import (
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)


def fault_error(status: int, message: str) -> UpstreamError:
    """The gateway error a real upstream answering `status` would be mapped to."""
    match status:
        case 429:
            return UpstreamRateLimited(message)
        case 503:
            return UpstreamUnavailable(message)
        case 504:
            return UpstreamTimeout(message)
        case _ if 400 <= status < 500:
            return UpstreamRejected(message, upstream_status=status)
        case _:
            return UpstreamError(message)


def _texts(parts: list[Part]) -> tuple[str, ...]:
    return tuple(p.text for p in parts if isinstance(p, TextPart))


def _turn(message: Message) -> SimTurn:
    texts: list[str] = []
    images = audios = videos = 0
    calls: list[SimToolCall] = []
    results: list[SimToolResult] = []
    for part in message.parts:
        match part:
            case TextPart():
                texts.append(part.text)
            case ImagePart():
                images += 1
            case AudioPart():
                audios += 1
            case VideoPart():
                videos += 1
            case ToolCallPart():
                calls.append(SimToolCall(part.id, part.name, part.arguments))
            case ToolResultPart():
                results.append(SimToolResult(part.tool_call_id, _texts(part.content)))
            case _:
                assert_never(part)
    return SimTurn(message.role, tuple(texts), images, audios, videos, tuple(calls), tuple(results))


def _param(env: Envelope, name: str) -> object:
    # Ingress adapters put fields they read in `params` and the rest in `extra`; accept both.
    return env.params.get(name, env.extra.get(name))


def chat_request(env: Envelope) -> SimChatRequest:
    """The sim's view of a chat envelope.

    Raises:
        SimRequestError: `max_tokens` or `tool_choice` is malformed.
    """
    limits = {k: _param(env, k) for k in ("max_completion_tokens", "max_tokens")}
    return SimChatRequest(
        turns=tuple(_turn(m) for m in env.messages),
        tools=tuple(SimTool(t.name, t.description, t.parameters) for t in env.tools),
        max_tokens=parse_max_tokens(limits),
        tool_choice=parse_tool_choice(_param(env, "tool_choice")),
    )


def _embedding_inputs(env: Envelope) -> list[EmbeddingInput]:
    """One input per message; pre-tokenized input travels in `params["input_tokens"]`.

    Raises:
        UpstreamRejected: no input, or token arrays that are not lists of integers.
    """
    if env.messages:
        return [text_input("".join(_texts(m.parts))) for m in env.messages]
    raw = env.params.get("input_tokens")
    arrays = raw if isinstance(raw, list) and raw and isinstance(raw[0], list) else [raw]
    inputs: list[EmbeddingInput] = []
    for array in arrays:
        if not isinstance(array, list) or not array or any(type(t) is not int for t in array):
            raise UpstreamRejected("input is required", upstream_status=400, param="input")
        inputs.append(token_input(array))
    return inputs


def _usage(usage: SimUsage) -> Usage:
    return Usage(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        cached_tokens=usage.cached_tokens,
    )


def _reply_message(reply: SimChatReply) -> Message:
    parts: list[Part] = [TextPart(reply.text)] if reply.text else []
    parts.extend(ToolCallPart(c.id, c.name, c.arguments) for c in reply.tool_calls)
    return Message(role="assistant", parts=parts, finish_reason=reply.finish_reason, index=0)


def _chunk(delta: SimDelta) -> StreamChunk:
    calls = []
    if delta.tool_call is not None:
        piece = delta.tool_call
        calls.append(ToolCallDelta(piece.index, piece.id, piece.name, piece.arguments))
    return StreamChunk(
        role=delta.role, text=delta.text, tool_calls=calls, finish_reason=delta.finish_reason
    )


class SimProvider:
    """The built-in simulated model, implementing `core.provider.Provider` in process.

    Chat and embedding envelopes are served; an embedding envelope carries one message per input.
    """

    def __init__(self, name: str, options: SimOptions) -> None:
        self.name = name
        self.options = options
        self._faults = FaultInjector(options)
        # Realtime sessions and the audio endpoints (`core.realtime.VoiceProvider`).
        self.voice = SimVoice(options)
        # Images and video jobs (`core.media.VideoUpstream`), as `agentgw sim` serves them.
        self.media = SimMediaProvider()

    async def _sleep(self, ms: float) -> None:
        if ms:
            await anyio.sleep(ms / 1000)

    async def _delay_or_fault(self) -> None:
        await self._sleep(self.options.latency_ms)
        if self._faults.should_fail():
            status = self.options.fail_status
            raise fault_error(status, f"sim: injected failure ({status})")

    def _chat(self, env: Envelope) -> SimChatReply:
        if env.modality is not Modality.CHAT:
            raise UpstreamRejected(
                f"sim '{self.name}' does not serve modality {env.modality}", upstream_status=400
            )
        try:
            return chat_reply(chat_request(env), self.options)
        except SimRequestError as exc:
            raise UpstreamRejected(exc.message, upstream_status=400, param=exc.param) from exc

    async def send(self, env: Envelope) -> Envelope:
        """Answer a chat or embedding envelope.

        Raises:
            UpstreamRejected: a modality the sim does not serve or a malformed parameter.
            UpstreamError: or a subclass, when a fault is injected.
        """
        if env.modality is Modality.EMBEDDING:
            return await self._embed(env)
        if env.modality is Modality.MODERATION:
            return await self._moderate(env)
        if env.modality in (Modality.IMAGE, Modality.VIDEO):
            await self._delay_or_fault()
            return self.media.send(env)
        reply = self._chat(env)
        await self._delay_or_fault()
        await self._sleep(self.options.ttft_ms)
        return Envelope(
            id=env.id,
            modality=env.modality,
            model=env.model,
            messages=[_reply_message(reply)],
            usage=_usage(reply.usage),
            trace=env.trace,
            principal=env.principal,
        )

    async def _embed(self, env: Envelope) -> Envelope:
        dimensions = _param(env, "dimensions")
        if dimensions is None:
            dimensions = DEFAULT_DIMENSIONS
        if not isinstance(dimensions, int) or isinstance(dimensions, bool):
            raise UpstreamRejected("dimensions must be an integer", upstream_status=400)
        inputs = _embedding_inputs(env)
        try:
            vectors = [embedding_vector(i.text, dimensions) for i in inputs]
        except ValueError as exc:
            raise UpstreamRejected(str(exc), upstream_status=400, param="dimensions") from exc
        await self._delay_or_fault()
        tokens = sum(i.tokens for i in inputs)
        return Envelope(
            id=env.id,
            modality=env.modality,
            model=env.model,
            usage=Usage(input_tokens=tokens),
            vectors=vectors,
            trace=env.trace,
            principal=env.principal,
        )

    async def _moderate(self, env: Envelope) -> Envelope:
        if not env.messages:
            raise UpstreamRejected("input is required", upstream_status=400, param="input")
        await self._delay_or_fault()
        texts = ["".join(_texts(m.parts)) for m in env.messages]
        body = moderation_body(env.model, f"modr-{env.id}", texts)
        return Envelope(
            id=env.id,
            modality=env.modality,
            model=env.model,
            usage=Usage(),
            extra={"results": body["results"]},
            trace=env.trace,
            principal=env.principal,
        )

    async def stream(self, env: Envelope) -> AsyncGenerator[StreamChunk, None]:
        """Stream a chat reply: role, words, tool-call pieces, finish reason, then usage.

        Raises:
            UpstreamRejected: a modality the sim does not stream or a malformed parameter.
            UpstreamError: or a subclass, before the first chunk when a fault is injected, or
                mid-stream when `drop_after_chunks` cuts the stream.
        """
        reply = self._chat(env)
        await self._delay_or_fault()
        chunks = [_chunk(d) for d in stream_deltas(reply)]
        chunks.append(StreamChunk(usage=_usage(reply.usage)))
        drop_after = self.options.drop_after_chunks
        for n, chunk in enumerate(chunks):
            if drop_after is not None and n >= drop_after:
                raise UpstreamError(f"sim: stream dropped after {n} chunks")
            await self._sleep(self.options.ttft_ms if n == 0 else self.options.chunk_delay_ms)
            yield chunk

    async def video_status(self, upstream_id: str, env: Envelope) -> dict[str, Any]:
        """A video job's status (`core.media.VideoUpstream`).

        Raises:
            UpstreamRejected: no such job.
        """
        return self.media.video_status(upstream_id)

    async def video_content(
        self, upstream_id: str, variant: str | None, env: Envelope
    ) -> AsyncGenerator[bytes, None]:
        """A video job's bytes, in one chunk (`core.media.VideoUpstream`).

        Raises:
            UpstreamRejected: no such job, or not ready yet.
        """
        yield self.media.video_content(upstream_id)

    async def aclose(self) -> None:
        """Nothing to release: the sim holds no connections."""


def create_sim_provider(config: ProviderConfig, http: object = None) -> SimProvider:
    """Build the provider for a `type: sim` config entry (the app's plugin factory).

    `http` is the app's shared HTTP client, which the sim, holding no connections, ignores.

    Raises:
        ValueError: an unknown or out-of-range option under `sim:`, named in the message.
    """
    return SimProvider(config.name, SimOptions.from_mapping(config.sim))
