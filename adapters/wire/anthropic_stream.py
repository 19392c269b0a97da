"""Anthropic's streamed Messages events, both ways: SSE events ↔ StreamChunks.

An Anthropic stream is `message_start`, then content blocks (`content_block_start`, deltas,
`content_block_stop`), then `message_delta` (stop reason and usage) and `message_stop`; `ping`
may come at any time and an `error` event ends the stream. A StreamChunk carries what a delta
carries, so both directions keep a little state:

- a tool call's `ToolCallDelta.index` is the order of its block among the tool blocks;
- thinking travels in `StreamChunk.extra` as `thinking`, `thinking_signature` and
  `redacted_thinking`. The `reasoning_content` of OpenAI-compatible reasoning servers is not
  turned into thinking blocks: clients send thinking blocks back in the next turn, and the
  OpenAI wire cannot carry them upstream yet;
- other deltas (such as `citations_delta`) travel in `extra` under their own type name;
- usage comes last, in a chunk of its own, as on the OpenAI wire. Cache writes are folded into
  `input_tokens` until `Usage` has a field for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from adapters.wire.anthropic import finish_reason, usage_from_wire
from adapters.wire.anthropic_encode import stop_reason, usage_to_wire
from core.envelope import StreamChunk, ToolCallDelta, Usage
from core.errors import UpstreamError

_THINKING_BLOCK = {"type": "thinking", "thinking": "", "signature": ""}


def sse_event(name: str, data: Mapping[str, Any]) -> bytes:
    """One server-sent event as Anthropic frames it: the event name, then its JSON."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


@dataclass(slots=True)
class _Block:
    kind: str
    tool_index: int | None = None
    has_arguments: bool = False


class StreamDecoder:
    """Turns the events of one upstream stream (parsed JSON) into StreamChunks."""

    def __init__(self) -> None:
        self.done = False
        self._blocks: dict[int, _Block] = {}
        self._tools = 0
        self._start_usage: Mapping[str, Any] = {}

    def feed(self, event: Mapping[str, Any]) -> list[StreamChunk]:
        """The chunks one event yields (often none); `done` turns true at `message_stop`.

        Error events are the caller's to map (they depend on the transport's error tree).

        Raises:
            UpstreamError: a content block the gateway cannot carry.
        """
        match event.get("type"):
            case "message_start":
                message = event.get("message") or {}
                self._start_usage = message.get("usage") or {}
                return [StreamChunk(role="assistant")]
            case "content_block_start":
                content_block = event.get("content_block") or {}
                return self._block_start(int(event.get("index", 0)), content_block)
            case "content_block_delta":
                return self._delta(int(event.get("index", 0)), event.get("delta") or {})
            case "content_block_stop":
                block = self._blocks.get(int(event.get("index", 0)))
                if block is None or block.tool_index is None or block.has_arguments:
                    return []
                # OpenAI clients parse the arguments: a tool without input still gets "{}".
                return [StreamChunk(tool_calls=[ToolCallDelta(block.tool_index, arguments="{}")])]
            case "message_delta":
                return self._message_delta(event)
            case "message_stop":
                self.done = True
                return []
            case _:
                return []  # ping, and event types added after this was written

    def _block_start(self, index: int, block: Mapping[str, Any]) -> list[StreamChunk]:
        kind = str(block.get("type"))
        match kind:
            case "text":
                self._blocks[index] = _Block(kind)
                text = block.get("text") or ""
                return [StreamChunk(text=text)] if text else []
            case "tool_use":
                start = block.get("input") or {}
                arguments = orjson.dumps(start).decode() if start else ""
                self._blocks[index] = _Block(kind, self._tools, has_arguments=bool(arguments))
                call = ToolCallDelta(self._tools, block.get("id"), block.get("name"), arguments)
                self._tools += 1
                return [StreamChunk(tool_calls=[call])]
            case "thinking":
                self._blocks[index] = _Block(kind)
                pairs = (("thinking", "thinking"), ("thinking_signature", "signature"))
                extra = {name: block[field] for name, field in pairs if block.get(field)}
                return [StreamChunk(extra=extra)] if extra else []
            case "redacted_thinking":
                self._blocks[index] = _Block(kind)
                return [StreamChunk(extra={"redacted_thinking": block.get("data", "")})]
            case _:
                raise UpstreamError(f"Upstream streamed a '{kind}' block the gateway can't carry.")

    def _delta(self, index: int, delta: Mapping[str, Any]) -> list[StreamChunk]:
        block = self._blocks.get(index)
        match delta.get("type"):
            case "text_delta":
                return [StreamChunk(text=str(delta.get("text", "")))]
            case "input_json_delta":
                piece = str(delta.get("partial_json", ""))
                if block is None or block.tool_index is None or not piece:
                    return []
                block.has_arguments = True
                return [StreamChunk(tool_calls=[ToolCallDelta(block.tool_index, arguments=piece)])]
            case "thinking_delta":
                return [StreamChunk(extra={"thinking": str(delta.get("thinking", ""))})]
            case "signature_delta":
                return [StreamChunk(extra={"thinking_signature": str(delta.get("signature", ""))})]
            case str(other):
                return [StreamChunk(extra={other: {k: v for k, v in delta.items() if k != "type"}})]
            case _:
                return []

    def _message_delta(self, event: Mapping[str, Any]) -> list[StreamChunk]:
        delta = event.get("delta") or {}
        sequence = delta.get("stop_sequence")
        finish = StreamChunk(
            finish_reason=finish_reason(delta.get("stop_reason")),
            extra={"stop_sequence": sequence} if sequence is not None else {},
        )
        # message_delta's counts are cumulative; those it leaves out stand as message_start said.
        later = {k: v for k, v in (event.get("usage") or {}).items() if v is not None}
        usage, _ = usage_from_wire({**self._start_usage, **later})
        return [finish, StreamChunk(usage=usage or Usage())]


class StreamEncoder:
    """Turns the StreamChunks of one reply into Anthropic's events.

    `input_tokens` is what `message_start` announces before the upstream has said (an estimate);
    `message_delta` carries the real usage, which clients take over the first figure.
    """

    def __init__(self, message_id: str, model: str, input_tokens: int) -> None:
        self._id = message_id
        self._model = model
        self._input_tokens = input_tokens
        self._started = False
        self._next = 0
        self._open: tuple[int, str] | None = None
        self._tool_blocks: dict[int, int] = {}
        self._finish: str | None = None
        self._stop_sequence: str | None = None
        self._usage: Usage | None = None

    def feed(self, chunk: StreamChunk) -> list[bytes]:
        """The events for one chunk, opening and closing content blocks as its content changes."""
        out = self._start()
        for key, value in chunk.extra.items():
            out.extend(self._extra(key, value))
        if chunk.text:
            out.extend(self._open_block("text", {"type": "text", "text": ""}))
            out.append(self._block_delta({"type": "text_delta", "text": chunk.text}))
        for call in chunk.tool_calls:
            if call.index not in self._tool_blocks:
                call_id = call.id or f"toolu_{self._id.removeprefix('msg_')}_{call.index}"
                block = {"type": "tool_use", "id": call_id, "name": call.name or "", "input": {}}
                out.extend(self._open_block("tool_use", block, force=True))
                self._tool_blocks[call.index] = self._next - 1
            if call.arguments:
                delta = {"type": "input_json_delta", "partial_json": call.arguments}
                out.append(self._block_delta(delta, self._tool_blocks[call.index]))
        if chunk.finish_reason is not None:
            self._finish = chunk.finish_reason
        if chunk.usage is not None:
            self._usage = chunk.usage
        return out

    def finish(self) -> list[bytes]:
        """The closing events: the last block's stop, `message_delta`, `message_stop`."""
        out = self._start()
        out.extend(self._close())
        usage = usage_to_wire(self._usage) if self._usage is not None else {"output_tokens": 0}
        delta = {
            "stop_reason": stop_reason(self._finish, self._stop_sequence),
            "stop_sequence": self._stop_sequence,
        }
        body = {"type": "message_delta", "delta": delta, "usage": usage}
        out.append(sse_event("message_delta", body))
        out.append(sse_event("message_stop", {"type": "message_stop"}))
        return out

    def _start(self) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self._input_tokens, "output_tokens": 0},
        }
        return [
            sse_event("message_start", {"type": "message_start", "message": message}),
            sse_event("ping", {"type": "ping"}),
        ]

    def _extra(self, key: str, value: Any) -> list[bytes]:
        match key:
            case "thinking" if isinstance(value, str) and value:
                out = self._open_block("thinking", _THINKING_BLOCK)
                out.append(self._block_delta({"type": "thinking_delta", "thinking": value}))
                return out
            case "thinking_signature" if isinstance(value, str) and value:
                out = self._open_block("thinking", _THINKING_BLOCK)
                out.append(self._block_delta({"type": "signature_delta", "signature": value}))
                # The signature seals its block: thinking after it is a block of its own.
                out.extend(self._close())
                return out
            case "redacted_thinking" if isinstance(value, str):
                block = {"type": "redacted_thinking", "data": value}
                out = self._open_block("redacted_thinking", block, force=True)
                out.extend(self._close())
                return out
            case "stop_sequence" if isinstance(value, str):
                self._stop_sequence = value
                return []
            case _ if key.endswith("_delta") and isinstance(value, Mapping) and self._open:
                return [self._block_delta({"type": key, **value})]
            case _:
                return []  # another wire's delta fields (`reasoning_content` …) have no block here

    def _open_block(
        self, kind: str, block: Mapping[str, Any], *, force: bool = False
    ) -> list[bytes]:
        if self._open is not None and self._open[1] == kind and not force:
            return []
        out = self._close()
        index = self._next
        self._next += 1
        self._open = (index, kind)
        start = {"type": "content_block_start", "index": index, "content_block": block}
        out.append(sse_event("content_block_start", start))
        return out

    def _close(self) -> list[bytes]:
        if self._open is None:
            return []
        index, _ = self._open
        self._open = None
        return [sse_event("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _block_delta(self, delta: Mapping[str, Any], index: int | None = None) -> bytes:
        if index is None:
            assert self._open is not None, "a delta needs an open block"
            index = self._open[0]
        body = {"type": "content_block_delta", "index": index, "delta": delta}
        return sse_event("content_block_delta", body)
