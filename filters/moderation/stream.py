"""Streamed replies: a sliding window per choice (and per tool call) so a phrase split across chunks
is still caught, without holding any text back from the client.

Each lane keeps the tail of what it has seen (`window` characters, cut at a word start) and scans
tail + new delta; a category is reported once per lane. A block raises before the chunk that
completes the phrase is yielded. With a classifier, every `window` characters of a lane the last two
windows are classified before the chunk completing them is released (so at most about one window
of text the model would flag reaches the client), and each choice's whole text is classified when
the choice finishes, before its finishing chunk is released.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from core.envelope import Scope, StreamChunk
from filters.moderation.lexicon import Lexicon
from filters.moderation.normalize import CJK

DEFAULT_WINDOW = 256

Report = Callable[[Scope, dict[str, float | None]], None]
"""Told of new categories in a scope (score None for lexicon hits). May raise GatewayError."""
Judge = Callable[[str], Awaitable[dict[str, float]]]
"""Classifies a finished choice's whole text: categories over threshold. May raise GatewayError."""


def trim(buf: str, window: int) -> str:
    """The last `window` characters of `buf`, starting at a word start (no "kill" from "skill")."""
    if len(buf) <= window:
        return buf
    start = len(buf) - window
    if buf[start - 1].isalnum() and buf[start].isalnum() and not CJK.match(buf[start]):
        nxt = next((i for i in range(start, len(buf)) if not buf[i].isalnum()), len(buf))
        start = nxt
    return buf[start:]


@dataclass(slots=True)
class Lane:
    """One run of streamed text: a choice's content or one tool call's arguments."""

    scope: Scope
    lexicon: Lexicon
    window: int
    keep_all: bool
    tail: str = ""
    whole: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    # Characters taken in since the classifier last looked at this lane.
    unjudged: int = 0

    def push(self, delta: str) -> dict[str, float | None]:
        """Take in `delta`; return the categories first seen now."""
        if self.keep_all:
            self.whole.append(delta)
            self.unjudged += len(delta)
        buf = self.tail + delta
        self.tail = trim(buf, self.window)
        new = [c for c in self.lexicon.categories(buf) if c not in self.seen]
        self.seen.update(new)
        return dict.fromkeys(new)


@dataclass(slots=True)
class _Choice:
    text: Lane
    tools: dict[int, Lane] = field(default_factory=dict)


class StreamScanner:
    """Wraps a reply stream and scans it; yields every chunk unchanged unless a report raises."""

    def __init__(
        self, lexicon: Lexicon, report: Report, judge: Judge | None, window: int = DEFAULT_WINDOW
    ) -> None:
        self._lexicon = lexicon
        self._report = report
        self._judge = judge
        self._window = window

    def _lane(self, scope: Scope) -> Lane:
        return Lane(scope, self._lexicon, self._window, keep_all=self._judge is not None)

    async def run(self, chunks: AsyncIterator[StreamChunk]) -> AsyncIterator[StreamChunk]:
        """Yield `chunks` as they come, scanning each before it is released.

        Raises:
            GatewayError: whatever `report` or `judge` raise (a block, a failed classifier).
        """
        choices: dict[int, _Choice] = {}
        try:
            async for chunk in chunks:
                choice = choices.get(chunk.index)
                if choice is None:
                    # The first chunk's scope (a voice transcript, arguments relayed as text)
                    # labels the choice's text; tool-call deltas are always tool input.
                    scope = chunk.scope or Scope.MESSAGE
                    choice = choices[chunk.index] = _Choice(self._lane(scope))
                if chunk.text:
                    await self._tell(choice.text, chunk.text)
                for delta in chunk.tool_calls:
                    lane = choice.tools.get(delta.index)
                    if lane is None:
                        lane = choice.tools[delta.index] = self._lane(Scope.TOOL_INPUT)
                    if delta.arguments:
                        await self._tell(lane, delta.arguments)
                if chunk.finish_reason is not None:
                    await self._finish(choices.pop(chunk.index))
                yield chunk
            for choice in choices.values():
                await self._finish(choice)
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _tell(self, lane: Lane, delta: str) -> None:
        found = lane.push(delta)
        if found:
            self._report(lane.scope, found)
        if self._judge is not None and lane.unjudged >= self._window:
            # Every `window` characters the model sees the last two windows (so a phrase across
            # a window edge is whole once), before the chunk completing them is released.
            await self._ask(lane, "".join(lane.whole)[-2 * self._window :])

    async def _ask(self, lane: Lane, text: str) -> None:
        assert self._judge is not None
        lane.unjudged = 0
        found = await self._judge(text)
        new: dict[str, float | None] = {c: s for c, s in found.items() if c not in lane.seen}
        lane.seen.update(new)
        if new:
            self._report(lane.scope, new)

    async def _finish(self, choice: _Choice) -> None:
        if self._judge is None:
            return
        for lane in (choice.text, *choice.tools.values()):
            if lane.whole:
                await self._ask(lane, "".join(lane.whole))
