"""Streamed replies: restore placeholders and redact model output without leaking across chunks.

Each choice's text, and each of its tool calls' argument text, flows through its own `Lane`. A lane
holds back only the tail that could still be an incomplete entity or placeholder:

- a partial placeholder (`<EMAIL_ADD`) is held until it closes, so it can be restored whole;
- when output is analysed, text is released only up to a boundary no entity can cross: a newline,
  a quote, a CJK character or punctuation, or whitespace with no digit-like character on either
  side ("4111 1111" and "+1 212" stay together). With NER, a bare space between words is not a
  boundary (names span words), only one after sentence punctuation;
- nothing is held longer than `max_hold` characters past the last boundary (then the tail is
  released at its last space): entities longer than that are the price of bounded latency.

A choice's text is labelled with the scope of its first chunk (`StreamChunk.scope`: a realtime
voice transcript is `transcript`, function-call arguments relayed as text are `tool_input`; none is
`message`); tool-call deltas are always `tool_input`.

Released text is restored, then analysed with the preceding released text as context (so
"passport: " in one piece still vouches for "E12345678" in the next). Everything is flushed when the
choice finishes or the stream ends.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from core.envelope import Scope, StreamChunk, ToolCallDelta
from filters.pii.actions import Pseudonyms

DEFAULT_MAX_HOLD = 64
CONTEXT_CHARS = 64
_MAX_PLACEHOLDER = 64

_HARD_CHARS = (
    '\n\r"'
    "\u3000-\u303f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65"  # CJK punctuation
    "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"  # CJK letters
)
# The last hard boundary character (what follows it holds none), and any whitespace
# (`\s` on str patterns is exactly `str.isspace`).
_LAST_HARD = re.compile(f"[{_HARD_CHARS}][^{_HARD_CHARS}]*\\Z")
_SPACE = re.compile(r"\s")
_PARTIAL_PLACEHOLDER = re.compile(r"<[A-Z0-9_]*\Z")
_SENTENCE_END = ".!?;:,"

Scrub = Callable[[str, str, Scope], Awaitable[str]]
"""Rewrite a released segment; gets (segment, preceding context, scope). May raise GatewayError."""


def release_point(
    buf: str,
    *,
    analyzing: bool,
    restoring: bool,
    ner: bool = False,
    max_hold: int = DEFAULT_MAX_HOLD,
) -> int:
    """How much of `buf` may be released now: everything before the returned index."""
    cut = len(buf)
    if analyzing:
        cut = _boundary(buf, ner)
        if len(buf) - cut > max_hold:
            cut = _forced(buf, cut, max_hold)
    if restoring:
        start = buf.rfind("<", max(0, cut - _MAX_PLACEHOLDER), cut)
        if start >= 0 and _PARTIAL_PLACEHOLDER.match(buf, start, cut):
            cut = start
    return cut


def _boundary(buf: str, ner: bool) -> int:
    # The last index i (from the end) where buf[i - 1] is a hard boundary or a space that may
    # end a segment; scanning only the spaces after the last hard character finds the same i.
    last = _LAST_HARD.search(buf)
    hard = last.start() + 1 if last is not None else 0
    # A space is a boundary only once we can see what follows it: never the last character.
    spaces = [m.start() for m in _SPACE.finditer(buf, hard, len(buf) - 1)]
    for at in reversed(spaces):
        nxt = buf[at + 1]
        if nxt.isspace() or nxt.isdigit() or nxt in "+(":
            continue
        left = buf[: at + 1].rstrip()
        if left and (left[-1].isdigit() or left[-1] == ")"):
            continue
        if ner and not (left and left[-1] in _SENTENCE_END):
            continue
        return at + 1
    return hard


def _forced(buf: str, cut: int, max_hold: int) -> int:
    target = len(buf) - max_hold
    space = max(buf.rfind(" ", cut, target), buf.rfind("\t", cut, target))
    return space + 1 if space >= cut else target


@dataclass(slots=True)
class Lane:
    """One run of streamed text (a choice's content, or one tool call's arguments)."""

    scope: Scope
    json_escape: bool
    pseudonyms: Pseudonyms | None
    scrub: Scrub | None
    ner: bool = False
    max_hold: int = DEFAULT_MAX_HOLD
    pending: str = ""
    context: str = field(default="", repr=False)

    async def push(self, delta: str) -> str:
        """Take in `delta`; return what may be shown now."""
        self.pending += delta
        cut = release_point(
            self.pending,
            analyzing=self.scrub is not None,
            restoring=self.pseudonyms is not None,
            ner=self.ner,
            max_hold=self.max_hold,
        )
        segment, self.pending = self.pending[:cut], self.pending[cut:]
        return await self._release(segment)

    async def flush(self) -> str:
        """Release everything still held."""
        segment, self.pending = self.pending, ""
        return await self._release(segment)

    async def _release(self, segment: str) -> str:
        if not segment:
            return ""
        if self.pseudonyms is not None:
            segment = self.pseudonyms.restore(segment, json_escape=self.json_escape)
        if self.scrub is None:
            return segment
        out = await self.scrub(segment, self.context, self.scope)
        self.context = (self.context + segment)[-CONTEXT_CHARS:]
        return out


@dataclass(slots=True)
class _Choice:
    text: Lane
    tools: dict[int, Lane] = field(default_factory=dict)


class StreamRewriter:
    """Wraps a reply stream, rewriting text and tool-call arguments through per-choice lanes."""

    def __init__(
        self,
        *,
        pseudonyms: Pseudonyms | None,
        scrub: Scrub | None,
        ner: bool = False,
        max_hold: int = DEFAULT_MAX_HOLD,
    ) -> None:
        self._pseudonyms = pseudonyms
        self._scrub = scrub
        self._ner = ner
        self._max_hold = max_hold

    def _lane(self, scope: Scope, json_escape: bool) -> Lane:
        return Lane(scope, json_escape, self._pseudonyms, self._scrub, self._ner, self._max_hold)

    async def run(self, chunks: AsyncIterator[StreamChunk]) -> AsyncIterator[StreamChunk]:
        """Yield `chunks` rewritten; chunks left with nothing to say are dropped."""
        choices: dict[int, _Choice] = {}
        try:
            async for chunk in chunks:
                choice = choices.get(chunk.index)
                if choice is None:
                    # A chunk's scope (a voice transcript, arguments streamed as text) holds for
                    # its whole choice; streamed tool-call arguments are JSON text, escaped.
                    scope = chunk.scope or Scope.MESSAGE
                    text = self._lane(scope, scope is Scope.TOOL_INPUT)
                    choice = choices[chunk.index] = _Choice(text)
                if chunk.text:
                    chunk.text = await choice.text.push(chunk.text) or None
                kept: list[ToolCallDelta] = []
                for delta in chunk.tool_calls:
                    lane = choice.tools.get(delta.index)
                    if lane is None:
                        lane = choice.tools[delta.index] = self._lane(Scope.TOOL_INPUT, True)
                    if delta.arguments:
                        delta.arguments = await lane.push(delta.arguments)
                    if delta.arguments or delta.id or delta.name:
                        kept.append(delta)
                chunk.tool_calls = kept
                if chunk.finish_reason is not None:
                    await _flush_into(chunk, choices.pop(chunk.index))
                if _says_something(chunk):
                    yield chunk
            for index, choice in choices.items():
                tail = StreamChunk(index=index)
                await _flush_into(tail, choice)
                if _says_something(tail):
                    yield tail
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()


async def _flush_into(chunk: StreamChunk, choice: _Choice) -> None:
    rest = await choice.text.flush()
    if rest:
        chunk.text = (chunk.text or "") + rest
    for index, lane in choice.tools.items():
        rest = await lane.flush()
        if not rest:
            continue
        delta = next((d for d in chunk.tool_calls if d.index == index), None)
        if delta is None:
            chunk.tool_calls.append(ToolCallDelta(index=index, arguments=rest))
        else:
            delta.arguments += rest


def _says_something(chunk: StreamChunk) -> bool:
    return bool(
        chunk.text
        or chunk.tool_calls
        or chunk.role
        or chunk.finish_reason is not None
        or chunk.usage is not None
        or chunk.extra
    )
