"""Text inside realtime events, as the filters see it.

Two shapes: whole texts inside an event (a finished transcript, a created item, `response.done`),
reached by a walk over the keys that hold text (`text`, `transcript`, `arguments`), and deltas,
which flow through a `Lane` per text run: the pipeline's stream filters wrap each lane (as they
wrap a streamed chat reply), so an e-mail address split across deltas is still caught, and a
moderation block ends the lane.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from core.envelope import (
    AudioPart,
    Envelope,
    Message,
    Modality,
    Part,
    Scope,
    StreamChunk,
    TextPart,
    ToolCallPart,
)
from core.errors import GatewayError

TEXT_KEYS = ("text", "transcript", "arguments")

Slot = tuple[dict[str, Any], str]
"""A JSON object and the key of one of its text values."""


def delta_scope(kind: str) -> Scope:
    """The scope of the text in a delta event of type `kind`."""
    if "transcript" in kind:
        return Scope.TRANSCRIPT
    if "arguments" in kind:
        return Scope.TOOL_INPUT
    return Scope.MESSAGE


def text_slots(value: Any, out: list[Slot] | None = None) -> list[Slot]:
    """Every (object, key) under `value` whose key holds text a filter must see."""
    slots: list[Slot] = [] if out is None else out
    if isinstance(value, dict):
        for key, item in value.items():
            if key in TEXT_KEYS and isinstance(item, str) and item:
                slots.append((value, key))
            elif isinstance(item, dict | list):
                text_slots(item, slots)
    elif isinstance(value, list):
        for item in value:
            text_slots(item, slots)
    return slots


def slots_envelope(request_id: str, model: str, role: str, slots: list[Slot]) -> Envelope:
    """An envelope holding each slot's text as one part, in order (scope by key)."""
    parts: list[Part] = []
    for obj, key in slots:
        text = obj[key]
        if key == "transcript":
            parts.append(AudioPart(data="", format="pcm16", transcript=text))
        elif key == "arguments":
            parts.append(ToolCallPart(id="", name="", arguments=text))
        else:
            parts.append(TextPart(text))
    return Envelope(
        id=request_id,
        modality=Modality.VOICE,
        model=model,
        messages=[Message(role=role, parts=[p]) for p in parts],
    )


def write_back(env: Envelope, slots: list[Slot]) -> None:
    """Put the (possibly rewritten) texts of `env` back into their slots."""
    for message, (obj, key) in zip(env.messages, slots, strict=True):
        part = message.parts[0]
        match part:
            case AudioPart(transcript=transcript):
                obj[key] = transcript
            case ToolCallPart(arguments=arguments):
                obj[key] = arguments
            case TextPart(text=text):
                obj[key] = text
            case _:
                pass


Emit = Callable[[dict[str, Any], str], Awaitable[None]]
"""Sends `event` to the client with its `delta` replaced by the given text."""
Blocked = Callable[[GatewayError], Awaitable[None]]
Wrap = Callable[[AsyncIterator[StreamChunk]], AsyncIterator[StreamChunk]]


class Lane:
    """One run of streamed text (a transcript, a text reply, a call's arguments) through the
    stream filters. Deltas go in with `push`, as chunks labelled with the lane's `scope` (see
    `delta_scope`); a task emits what the filters release."""

    def __init__(
        self,
        tg: TaskGroup,
        wrap: Wrap,
        emit: Emit,
        blocked: Blocked,
        scope: Scope = Scope.MESSAGE,
    ) -> None:
        self.scope = scope  # what the filters label this lane's findings with
        pair = anyio.create_memory_object_stream[StreamChunk](64)
        self._send: MemoryObjectSendStream[StreamChunk] = pair[0]
        receive: MemoryObjectReceiveStream[StreamChunk] = pair[1]
        self._emit = emit
        self._blocked = blocked
        self.template: dict[str, Any] = {}
        self.released: list[str] = []
        self.error: GatewayError | None = None
        self.done = anyio.Event()
        tg.start_soon(self._run, wrap(_chunks(receive)))

    async def push(self, event: dict[str, Any], delta: str) -> None:
        self.template = event
        if self.error is None:
            await self._send.send(StreamChunk(text=delta, scope=self.scope))

    async def finish(self) -> str | None:
        """Flush the lane; the whole released text, or None when a filter blocked it."""
        await self._send.aclose()
        await self.done.wait()
        return None if self.error is not None else "".join(self.released)

    async def _run(self, chunks: AsyncIterator[StreamChunk]) -> None:
        try:
            async for chunk in chunks:
                if chunk.text:
                    self.released.append(chunk.text)
                    await self._emit(self.template, chunk.text)
        except GatewayError as exc:
            self.error = exc
            await self._blocked(exc)
        finally:
            self.done.set()


async def _chunks(receive: MemoryObjectReceiveStream[StreamChunk]) -> AsyncIterator[StreamChunk]:
    async with receive:
        async for chunk in receive:
            yield chunk
