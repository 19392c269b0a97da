"""The hot-path upstream client (`adapters.egress.h1`) against a real socket server that answers
byte for byte what each test scripts: framing, keep-alive, encodings, cut and stale connections,
timeouts, TLS.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import trustme

from adapters.egress.h1 import (
    STREAM_HIGH_WATER,
    BadReply,
    ConnectFailed,
    ReplyCut,
    UpstreamHTTP,
    check_url,
    header_block,
)
from adapters.egress.upstream import transport_error
from core.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable

pytestmark = pytest.mark.anyio

JSON = b'{"ok": true}'


@dataclass
class Request:
    head: bytes
    body: bytes
    connection: int  # which accepted connection it came on (0, 1, …)


@dataclass
class Upstream:
    """What the server saw; `reply(request, writer)` answers each request."""

    url: str
    requests: list[Request] = field(default_factory=list)


Reply = Callable[[Request, asyncio.StreamWriter], Awaitable[bool]]  # False: stop reading


async def _read_request(reader: asyncio.StreamReader, connection: int) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return Request(head, await reader.readexactly(length), connection)


@asynccontextmanager
async def upstream(reply: Reply, *, tls: ssl.SSLContext | None = None) -> AsyncIterator[Upstream]:
    seen: list[Request] = []
    accepted = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        connection = accepted
        accepted += 1
        try:
            while (request := await _read_request(reader, connection)) is not None:
                seen.append(request)
                if not await reply(request, writer):
                    break
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if tls is not None else "http"
    try:
        yield Upstream(f"{scheme}://localhost:{port}/v1/chat/completions", seen)
    finally:
        server.close()


def ok(body: bytes = JSON, *extra: bytes) -> Reply:
    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        writer.write(head + b"".join(extra) + b"content-length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        return True

    return answer


HEADERS = header_block({"content-type": "application/json", "authorization": "Bearer t"})


async def post(client: UpstreamHTTP, url: str, body: bytes = b"{}") -> tuple[int, bytes]:
    return await client.post(url, body, HEADERS, total=5, connect=5)


async def test_a_post_sends_a_well_formed_request_and_reads_the_reply() -> None:
    client = UpstreamHTTP()
    async with upstream(ok()) as up:
        status, body = await post(client, up.url, b'{"model": "m"}')
    await client.aclose()
    assert (status, body) == (200, JSON)
    (request,) = up.requests
    lines = request.head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat/completions HTTP/1.1"
    assert b"host: localhost:" + up.url.split(":")[2].split("/")[0].encode() in lines
    assert b"authorization: Bearer t" in lines
    assert b"content-length: 14" in lines
    assert request.body == b'{"model": "m"}'


async def test_connections_are_kept_and_reused() -> None:
    client = UpstreamHTTP()
    async with upstream(ok()) as up:
        for _ in range(3):
            assert await post(client, up.url) == (200, JSON)
    await client.aclose()
    assert client.opened == 1
    assert [r.connection for r in up.requests] == [0, 0, 0]


async def test_concurrent_calls_each_get_their_own_reply() -> None:
    async def echo(request: Request, writer: asyncio.StreamWriter) -> bool:
        return await ok(request.body)(request, writer)

    client = UpstreamHTTP()
    async with upstream(echo) as up:
        bodies = [b'{"n": %d}' % n for n in range(20)]
        replies = await asyncio.gather(*(post(client, up.url, b) for b in bodies))
    await client.aclose()
    assert [body for _, body in replies] == bodies


async def test_a_chunked_stream_arrives_block_by_block_and_whole() -> None:
    events = [b'data: {"n": %d}\n\n' % n for n in range(5)]

    async def chunked(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for event in events:
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        return True

    client = UpstreamHTTP()
    async with upstream(chunked) as up:
        async with client.stream(up.url, b"{}", HEADERS, read=5, connect=5) as reply:
            assert reply.status == 200
            got = [block async for block in reply.blocks()]
        assert await post(client, up.url) == (200, b"".join(events))
    await client.aclose()
    assert b"".join(got) == b"".join(events)
    assert client.opened == 1  # read to its end, the stream's connection served the next call


async def test_a_reply_without_a_length_ends_with_its_connection() -> None:
    async def close_delimited(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n" + JSON)
        return False

    client = UpstreamHTTP()
    async with upstream(close_delimited) as up:
        assert await post(client, up.url) == (200, JSON)
        assert await post(client, up.url) == (200, JSON)
    await client.aclose()
    assert client.opened == 2


@pytest.mark.parametrize(
    ("coding", "encode"),
    [(b"gzip", gzip.compress), (b"deflate", zlib.compress)],
)
async def test_compressed_replies_are_decoded(
    coding: bytes, encode: Callable[[bytes], bytes]
) -> None:
    client = UpstreamHTTP()
    async with upstream(ok(encode(JSON), b"content-encoding: " + coding + b"\r\n")) as up:
        assert await post(client, up.url) == (200, JSON)
    await client.aclose()
    assert b"accept-encoding: gzip, deflate" in up.requests[0].head.split(b"\r\n")


async def test_an_encoding_it_did_not_offer_is_a_bad_reply() -> None:
    client = UpstreamHTTP()
    async with upstream(ok(b"\x00\x01", b"content-encoding: br\r\n")) as up:
        with pytest.raises(BadReply, match="encoding"):
            await post(client, up.url)
    await client.aclose()


async def test_a_reply_that_is_not_http_is_a_bad_reply() -> None:
    async def garbage(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        return True

    client = UpstreamHTTP()
    async with upstream(garbage) as up:
        with pytest.raises(BadReply):
            await post(client, up.url)
    await client.aclose()
    error = transport_error("sim", BadReply("not HTTP/1.x"))
    assert isinstance(error, UpstreamError)


async def test_a_reply_cut_mid_body_fails_and_maps_to_an_upstream_error() -> None:
    async def cut(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + JSON)
        return False

    client = UpstreamHTTP()
    async with upstream(cut) as up:
        with pytest.raises(ReplyCut) as caught:
            await post(client, up.url)
    await client.aclose()
    error = transport_error("sim", caught.value)
    assert isinstance(error, UpstreamError) and "mid-reply" in str(error)


async def test_a_kept_connection_the_server_dropped_unanswered_is_retried_once() -> None:
    """The server reads the second request on its kept connection and closes it unanswered
    (as when its idle timeout and our request cross): it goes out again on a new connection."""
    answered: set[int] = set()

    async def first_only(request: Request, writer: asyncio.StreamWriter) -> bool:
        if request.connection in answered:
            return False  # close without a byte of reply
        answered.add(request.connection)
        return await ok()(request, writer)

    client = UpstreamHTTP()
    async with upstream(first_only) as up:
        assert await post(client, up.url) == (200, JSON)
        assert await post(client, up.url) == (200, JSON)
    await client.aclose()
    assert [r.connection for r in up.requests] == [0, 0, 1]
    assert client.opened == 2


async def test_a_new_connection_dropped_unanswered_is_not_retried() -> None:
    async def never(request: Request, writer: asyncio.StreamWriter) -> bool:
        return False

    client = UpstreamHTTP()
    async with upstream(never) as up:
        with pytest.raises(ReplyCut):
            await post(client, up.url)
    await client.aclose()
    assert len(up.requests) == 1


async def test_no_answer_in_time_is_a_timeout_and_the_connection_is_not_kept() -> None:
    stalled = asyncio.Event()

    async def stall(request: Request, writer: asyncio.StreamWriter) -> bool:
        if request.connection == 0:
            stalled.set()
            await asyncio.Event().wait()  # until the server is closed
        return await ok()(request, writer)

    client = UpstreamHTTP()
    async with upstream(stall) as up:
        with pytest.raises(TimeoutError):
            await client.post(up.url, b"{}", HEADERS, total=0.2, connect=5)
        assert stalled.is_set()
        assert await post(client, up.url) == (200, JSON)
    await client.aclose()
    assert client.opened == 2
    assert isinstance(transport_error("sim", TimeoutError()), UpstreamTimeout)


async def test_a_stream_that_goes_silent_times_out_per_read() -> None:
    async def silent(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await asyncio.Event().wait()
        return False

    client = UpstreamHTTP()
    got: list[bytes] = []

    async def read_all() -> None:
        async with client.stream(up.url, b"{}", HEADERS, read=0.2, connect=5) as reply:
            async for block in reply.blocks():
                got.append(block)

    async with upstream(silent) as up:
        with pytest.raises(TimeoutError):
            await read_all()
    await client.aclose()
    assert got == [b"first"]


async def test_a_stream_left_half_read_closes_its_connection() -> None:
    async def long_stream(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        if request.connection == 0:
            await asyncio.Event().wait()
        writer.write(b"0\r\n\r\n")
        return True

    client = UpstreamHTTP()
    async with upstream(long_stream) as up:
        async with client.stream(up.url, b"{}", HEADERS, read=5, connect=5) as reply:
            async for block in reply.blocks():
                assert block == b"first"
                break
        assert await post(client, up.url) == (200, b"first")
    await client.aclose()
    assert client.opened == 2


async def test_an_informational_head_is_skipped() -> None:
    async def early_hints(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n")
        return await ok()(request, writer)

    client = UpstreamHTTP()
    async with upstream(early_hints) as up:
        assert await post(client, up.url) == (200, JSON)
    await client.aclose()


async def test_a_refused_connection_is_connect_failed_and_maps_to_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = UpstreamHTTP()
    with pytest.raises(ConnectFailed) as caught:
        await post(client, f"http://127.0.0.1:{port}/v1/chat/completions")
    assert isinstance(transport_error("sim", caught.value), UpstreamUnavailable)


async def test_tls_with_a_trusted_authority_and_refused_without() -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)
    async with upstream(ok(), tls=server_context) as up:
        client = UpstreamHTTP(ssl_context=trusting)
        assert await post(client, up.url) == (200, JSON)
        await client.aclose()
        default = UpstreamHTTP()  # the system's trust store: the test authority is not in it
        with pytest.raises(ConnectFailed):
            await post(default, up.url)


def test_line_breaks_in_headers_or_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="line break"):
        header_block({"x-team": "a\r\nx-injected: 1"})
    with pytest.raises(ValueError, match="blanks"):
        check_url("http://upstream/v1/chat completions")
    with pytest.raises(ValueError, match="http"):
        check_url("ftp://upstream/v1")
    # The client writes framing headers itself: a configured one is left out, not doubled.
    assert header_block({"Content-Length": "3", "x-a": "b"}) == b"x-a: b\r\n"


async def test_a_url_with_credentials_never_sends_them_as_the_host() -> None:
    client = UpstreamHTTP()
    async with upstream(ok()) as up:
        url = up.url.replace("://", "://user:secret@")
        assert await post(client, url) == (200, JSON)
    await client.aclose()
    assert b"secret" not in up.requests[0].head


async def test_a_reply_larger_than_the_stream_buffer_is_read_whole() -> None:
    """A stream's reader pauses the socket past `STREAM_HIGH_WATER` unread bytes; a whole reply
    must still be read to its end (it is taken as it arrives)."""
    big = b"x" * (4 * STREAM_HIGH_WATER)
    client = UpstreamHTTP()
    async with upstream(ok(big)) as up:
        assert await post(client, up.url) == (200, big)
        async with client.stream(up.url, b"{}", HEADERS, read=5, connect=5) as reply:
            assert await reply.read() == big
    await client.aclose()


async def test_bytes_after_a_complete_reply_close_the_connection() -> None:
    async def trailing(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n" + JSON + b"HTTP/1.1 500")
        return True

    client = UpstreamHTTP()
    async with upstream(trailing) as up:
        assert await post(client, up.url) == (200, JSON)
        assert await post(client, up.url) == (200, JSON)
    await client.aclose()
    assert client.opened == 2  # the first connection was not trusted with the second call


async def test_the_one_retry_takes_a_new_connection_not_another_kept_one() -> None:
    answered: set[int] = set()

    async def first_only(request: Request, writer: asyncio.StreamWriter) -> bool:
        if request.connection in answered:
            return False
        answered.add(request.connection)
        return await ok()(request, writer)

    client = UpstreamHTTP()
    async with upstream(first_only) as up:
        first = await asyncio.gather(post(client, up.url), post(client, up.url))
        assert list(first) == [(200, JSON), (200, JSON)]
        assert await post(client, up.url) == (200, JSON)
    await client.aclose()
    # Two kept connections, both stale: one is tried, then a new one (not the other kept one).
    assert [r.connection for r in up.requests[2:]] in ([1, 2], [0, 2])
    assert client.opened == 3
