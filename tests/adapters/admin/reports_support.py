"""What the report tests share: waiting until spans are stored, without sleeping."""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from core.tracing import Span


class Stored:
    """A span sink that lets a test wait until a number of spans is stored."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = anyio.Event()

    async def spans_written(self, spans: Sequence[Span]) -> None:
        self.count += len(spans)
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, n: int) -> None:
        with anyio.fail_after(10):
            while self.count < n:
                await self._changed.wait()
