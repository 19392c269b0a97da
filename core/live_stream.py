"""A stream from the target that won, counted as in flight until it ends, however it ends.

The router hands the pipeline a `LiveStream` in place of the provider's generator. It keeps the
target's in-flight count up until the stream is exhausted, fails, or is closed, including when
it is closed before anyone asked for a second chunk (a plain async generator that never started
would run no `finally`), enforces what is left of the target's total timeout, and reports a
mid-stream failure to the target's circuit breaker.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import anyio

from core.envelope import StreamChunk
from core.errors import GatewayError, UpstreamTimeout

StreamEnd = Callable[[GatewayError | None], Awaitable[None]]
"""Called once when the stream ends, with the error that ended it (None: exhausted or closed)."""


class LiveStream(AsyncGenerator[StreamChunk, None]):
    """Wraps a provider's stream after its first chunk."""

    def __init__(
        self,
        inner: AsyncGenerator[StreamChunk, None],
        *,
        target: str,
        deadline: float | None,
        clock: Callable[[], float],
        on_end: StreamEnd,
    ) -> None:
        self._inner = inner
        self._target = target
        self._deadline = deadline
        self._clock = clock
        self._on_end = on_end
        self._ended = False

    async def asend(self, value: None) -> StreamChunk:
        """The next chunk.

        Raises:
            StopAsyncIteration: the stream is over.
            UpstreamTimeout: the target's total timeout ran out mid-stream.
            GatewayError: the upstream failed mid-stream.
        """
        if self._ended:
            raise StopAsyncIteration
        try:
            if self._deadline is None:
                # No total timeout: a cancel scope per chunk would cost more than the relay.
                return await self._inner.asend(value)
            with anyio.fail_after(max(0.0, self._deadline - self._clock())):
                return await self._inner.asend(value)
        except StopAsyncIteration:
            await self._end(None)
            raise
        except TimeoutError as exc:
            error = UpstreamTimeout(f"'{self._target}' did not finish its stream in time.")
            await self._end(error)
            raise error from exc
        except GatewayError as exc:
            await self._end(exc)
            raise

    async def athrow(self, typ: Any, val: Any = None, tb: Any = None) -> StreamChunk:
        """Throw into the provider's stream; whatever escapes ends this one."""
        try:
            return await self._inner.athrow(typ, val, tb)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._end(None)
            raise

    async def aclose(self) -> None:
        """Close the provider's stream and release the target (idempotent)."""
        try:
            await self._inner.aclose()
        finally:
            if not self._ended:  # ended already (the usual case): nothing left to shield
                with anyio.CancelScope(shield=True):
                    await self._end(None)

    async def _end(self, error: GatewayError | None) -> None:
        if self._ended:
            return
        self._ended = True
        await self._on_end(error)
