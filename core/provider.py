"""The egress seam: one small protocol every provider adapter implements."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from core.envelope import Envelope, StreamChunk


class Provider(Protocol):
    """A model provider. `env.model` is already the upstream model name."""

    name: str

    async def send(self, env: Envelope) -> Envelope:
        """Send a request envelope; return the reply envelope with `usage` set.

        Raises:
            UpstreamError: or a subclass; `retryable` says whether another target may help.
        """
        ...

    def stream(self, env: Envelope) -> AsyncGenerator[StreamChunk, None]:
        """Stream the reply chunk by chunk as it arrives; the last chunks carry usage.

        Raises:
            UpstreamError: before or during the stream.
        """
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
