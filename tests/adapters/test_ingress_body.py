"""Reading a request body: `read_body` on a direct endpoint's `Incoming` and on Starlette's
`Request` gives the same bytes and the same refusals, whatever the chunking."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import pytest
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message, Scope

from adapters.ingress.http import Inbound, Incoming, read_body
from core.errors import PayloadTooLarge

pytestmark = pytest.mark.anyio


def _scope(headers: Sequence[tuple[bytes, bytes]] = ()) -> Scope:
    return {"type": "http", "method": "POST", "path": "/", "headers": list(headers)}


def _receiver(messages: Sequence[Message]) -> Callable[[], Awaitable[Message]]:
    pending = list(messages)

    async def receive() -> Message:
        return pending.pop(0)

    return receive


def _both(
    messages: Sequence[Message], headers: Sequence[tuple[bytes, bytes]] = ()
) -> list[Inbound]:
    return [
        Incoming(_scope(headers), _receiver(messages)),
        Request(_scope(headers), _receiver(messages)),
    ]


def _chunks(*parts: bytes) -> list[Message]:
    return [
        {"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
        for i, p in enumerate(parts)
    ]


@pytest.mark.parametrize(
    "parts", [(b'{"a": 1}',), (b'{"a"', b"", b": 1}"), (b"",), (b"", b"x" * 10, b"")]
)
async def test_the_body_is_every_chunk_joined(parts: tuple[bytes, ...]) -> None:
    for request in _both(_chunks(*parts)):
        assert await read_body(request, 100) == b"".join(parts)


async def test_a_body_over_the_limit_is_refused_without_a_declared_length() -> None:
    for request in _both(_chunks(b"x" * 60, b"x" * 41)):
        with pytest.raises(PayloadTooLarge, match="limit of 100 bytes"):
            await read_body(request, 100)
    for request in _both(_chunks(b"x" * 60, b"x" * 40)):
        assert len(await read_body(request, 100)) == 100


async def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    for request in _both([], headers=[(b"content-length", b"101")]):
        with pytest.raises(PayloadTooLarge):
            await read_body(request, 100)  # nothing to receive: reading would fail otherwise


async def test_a_client_gone_midway_is_a_disconnect() -> None:
    messages = [{"type": "http.request", "body": b"{", "more_body": True}]
    for request in _both([*messages, {"type": "http.disconnect"}]):
        with pytest.raises(ClientDisconnect):
            await read_body(request, 100)
