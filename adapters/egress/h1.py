"""A keep-alive HTTP/1.1 client for the calls every request makes: a JSON POST and its SSE stream.

aiohttp serves everything else (media, voice, fetches); it costs ~120 to 140 µs of CPU per small
request on this machine, most of it in building request and response objects the gateway never
reads (cookies, redirects, URL objects, multidicts, tracing signals). This client writes the
request head itself, parses the reply with `httptools` (llhttp, the parser uvicorn uses) in a
protocol callback, and keeps connections per origin: ~50 µs for the same request
(docs/performance.md, "Hot-path pass 5").

What it does, and nothing more: POST with a body of bytes; `content-length` and chunked
replies, and replies ended by the connection's close; gzip and deflate bodies; TLS with the
system's trust store; a total timeout for a whole reply, a per-read one for a stream, and a
connect timeout for both. A pooled connection the server closed while it was idle is detected
when it closes, or, if the close is still in flight, when a request on it gets no byte of
reply: that request is sent once more on a new connection (nothing of it was answered).

Failures raise `ConnectFailed` (no connection), `ReplyCut` (the connection ended mid-reply),
`BadReply` (not HTTP, or an encoding it was not offered) or `TimeoutError`; the provider maps
them into the gateway's error tree (`adapters.egress.upstream.transport_error`).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

DEFAULT_IDLE_SECONDS = 30.0  # as aiohttp's keep-alive timeout
DEFAULT_MAX_IDLE = 256  # idle connections kept per origin
_MAX_TARGETS = 1024  # URLs kept split
# A stream whose reader is slower than its upstream stops reading the socket past this much
# unread body, and starts again once the reader has caught up.
STREAM_HIGH_WATER = 256 * 1024
_ACCEPT_ENCODING = b"accept-encoding: gzip, deflate\r\n"
_OWN_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "host", "connection", "accept-encoding"}
)
_CODINGS = {
    b"gzip": 16 + zlib.MAX_WBITS,
    b"deflate": zlib.MAX_WBITS,
    b"x-gzip": 16 + zlib.MAX_WBITS,
}


class ConnectFailed(ConnectionError):
    """No connection to the upstream could be made (refused, unreachable, no such host, TLS)."""


class ReplyCut(ConnectionError):
    """The connection ended before the reply was complete."""


class BadReply(Exception):
    """The upstream's reply is not HTTP/1.x this client can read."""


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "https"


@dataclass(frozen=True, slots=True)
class _Target:
    """A URL split once: its origin and the request line and `host` header it needs."""

    origin: _Origin
    head: bytes  # "POST /path HTTP/1.1\r\nhost: …\r\n"


def _target(url: str) -> _Target:
    """Raises:
    ValueError: not an absolute http(s) URL.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # The URL itself is never quoted: a base URL may carry credentials.
        raise ValueError("the URL is not an absolute http(s) URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    host = parts.netloc.rpartition("@")[2]  # credentials in a URL are never sent as a header
    if any(c.isspace() or c == "\0" for c in path + host):
        raise ValueError("the URL holds blanks or control characters")
    line = f"POST {path} HTTP/1.1\r\nhost: {host}\r\n"
    return _Target(_Origin(parts.scheme, parts.hostname, port), line.encode("latin-1"))


def check_url(url: str) -> None:
    """Raises:
    ValueError: `url` is not an absolute http(s) URL this client can send a request line for.
    """
    _target(url)


def _check_header_text(text: str) -> None:
    if "\r" in text or "\n" in text or "\0" in text:
        raise ValueError("a header name or value holds a line break")


def header_block(headers: Mapping[str, str]) -> bytes:
    """`headers` as request-head lines, checked once (a provider's headers are fixed).

    Raises:
        ValueError: a name or value holds a line break (it would split the request).
    """
    lines = []
    for name, value in headers.items():
        _check_header_text(name)
        _check_header_text(value)
        if name.lower() in _OWN_HEADERS:
            continue  # this client writes these itself
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1")


class _Reply:
    """One response as it is parsed: status and headers, then body blocks as they arrive."""

    __slots__ = (
        "_blocks",
        "_buffered",
        "_close_delimited",
        "_decoder",
        "_headers",
        "_informational",
        "_waiter",
        "complete",
        "error",
        "keep_alive",
        "started",
        "status",
    )

    def __init__(self) -> None:
        self.status = 0
        self._headers: dict[bytes, bytes] = {}
        self._blocks: list[bytes] = []
        self._buffered = 0
        self.complete = False
        self.keep_alive = False  # read off the head: llhttp forgets it once the message ends
        self.started = False  # any byte of the reply seen
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._decoder: Any = None
        self._close_delimited = False
        self._informational = False


class _Connection(asyncio.Protocol):
    """One keep-alive connection; a request at a time."""

    def __init__(self, origin: _Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._reply: _Reply | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._paused = False

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio's, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reply, parser = self._reply, self._parser
        if reply is None or parser is None or reply.complete:
            self._abort()  # bytes nobody asked for: the connection cannot be trusted again
            return
        reply.started = True
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            # A callback's own failure comes wrapped in the parser's error.
            cause = exc.__context__
            self._fail(cause if isinstance(cause, BadReply) else BadReply("not HTTP/1.x"))
            self._abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        reply = self._reply
        if reply is None or reply.complete:
            return
        if reply._close_delimited and reply.status:
            self._finish(reply)  # a body without a length ends with the connection
        else:
            self._fail(ReplyCut("the upstream closed the connection mid-reply"))

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        reply = self._reply
        if reply is not None and reply.complete:
            # A second reply to one request: whatever the server meant, the connection is done.
            raise BadReply("upstream sent more than one reply")

    def on_header(self, name: bytes, value: bytes) -> None:
        reply = self._reply
        assert reply is not None
        reply._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        reply, parser = self._reply, self._parser
        assert reply is not None and parser is not None
        status = parser.get_status_code()
        if status < 200:
            reply._informational = True  # 1xx: another head follows
            reply._headers.clear()
            return
        reply.status = status
        reply.keep_alive = parser.should_keep_alive()
        headers = reply._headers
        coding = headers.get(b"content-encoding", b"identity").strip().lower()
        if coding not in (b"identity", b""):
            wbits = _CODINGS.get(coding)
            if wbits is None:
                raise BadReply("upstream used a content encoding it was not offered")
            reply._decoder = zlib.decompressobj(wbits)
        reply._close_delimited = (
            b"content-length" not in headers and b"transfer-encoding" not in headers
        )
        self._wake(reply)

    def on_body(self, body: bytes) -> None:
        reply = self._reply
        assert reply is not None
        if reply._decoder is not None:
            try:
                body = reply._decoder.decompress(body)
            except zlib.error:
                raise BadReply("upstream body does not decode") from None
            if not body:
                return
        reply._blocks.append(body)
        reply._buffered += len(body)
        if reply._buffered > STREAM_HIGH_WATER and not self._paused and self.transport:
            self.transport.pause_reading()
            self._paused = True
        self._wake(reply)

    def on_message_complete(self) -> None:
        reply = self._reply
        assert reply is not None
        if reply._informational:
            reply._informational = False
            return
        self._finish(reply)

    # -- the request's side -----------------------------------------------------------------

    def send(self, head: bytes, body: bytes) -> _Reply:
        reply = _Reply()
        self._reply = reply
        self._parser = httptools.HttpResponseParser(self)
        assert self.transport is not None
        self.transport.write(head + body)
        return reply

    async def wait(self, reply: _Reply) -> None:
        """Until `reply` has news (its head, body, its end or a failure)."""
        if reply.error is not None:
            raise reply.error
        waiter = asyncio.get_running_loop().create_future()
        reply._waiter = waiter
        try:
            await waiter
        finally:
            reply._waiter = None
        if reply.error is not None:
            raise reply.error

    def take(self, reply: _Reply) -> list[bytes]:
        """The body blocks that arrived since the last call."""
        blocks = reply._blocks
        reply._blocks = []
        reply._buffered = 0
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()
        return blocks

    def reusable(self) -> bool:
        reply = self._reply
        return (
            not self.closed
            and reply is not None
            and reply.complete
            and reply.keep_alive
            and not reply._close_delimited
        )

    def done(self) -> None:
        self._reply = None
        self._parser = None

    def _finish(self, reply: _Reply) -> None:
        if reply._decoder is not None:
            tail = reply._decoder.flush()
            if tail:
                reply._blocks.append(tail)
        reply.complete = True
        self._wake(reply)

    def _fail(self, exc: BaseException) -> None:
        reply = self._reply
        if reply is not None and reply.error is None and not reply.complete:
            reply.error = exc
            self._wake(reply)

    @staticmethod
    def _wake(reply: _Reply) -> None:
        waiter = reply._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class Response:
    """A reply being read: its status, its headers, then its body as blocks arrive."""

    def __init__(self, conn: _Connection, reply: _Reply, read_timeout: float | None) -> None:
        self._conn = conn
        self._reply = reply
        self._read_timeout = read_timeout
        self.status = reply.status

    def header(self, name: str) -> str | None:
        value = self._reply._headers.get(name.lower().encode("latin-1"))
        return None if value is None else value.decode("latin-1")

    async def blocks(self) -> AsyncIterator[bytes]:
        """The body as the socket delivers it: all that arrived since the last block, in one
        (a chunked reply's chunks that came in one read are joined; none is empty)."""
        conn, reply = self._conn, self._reply
        while True:
            if reply._blocks:
                blocks = conn.take(reply)
                yield blocks[0] if len(blocks) == 1 else b"".join(blocks)
                continue
            if reply.complete:
                return
            if self._read_timeout is None:
                await conn.wait(reply)
            else:
                async with asyncio.timeout(self._read_timeout):
                    await conn.wait(reply)

    async def read(self) -> bytes:
        """The rest of the body."""
        return b"".join([block async for block in self.blocks()])


class UpstreamHTTP:
    """Pooled keep-alive connections per origin, for POSTs of ready-made bodies.

    One instance serves every provider; it holds no cookies and no credentials of its own.
    """

    def __init__(
        self,
        *,
        max_connections: int = 1000,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        max_idle: int = DEFAULT_MAX_IDLE,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._targets: dict[str, _Target] = {}
        self._slots = asyncio.Semaphore(max_connections)
        self._idle_seconds = idle_seconds
        self._max_idle = max_idle
        self._ssl = ssl_context
        self.opened = 0  # connections made, ever (tests read it to see reuse)

    async def post(
        self,
        url: str,
        body: bytes,
        headers: bytes,
        *,
        total: float | None,
        connect: float | None,
    ) -> tuple[int, bytes]:
        """POST `body` (with `headers`, from `header_block`) and read the whole reply.

        Raises:
            ConnectFailed, ReplyCut, BadReply, TimeoutError: see the module's docstring.
            ValueError: `url` is not an http(s) URL.
        """
        origin, head = self._head(url, headers, body)
        async with self._slots, asyncio.timeout(total):
            conn, reply = await self._send(origin, head, body, connect)
            try:
                parts: list[bytes] = []
                while True:
                    if reply._blocks:
                        parts += conn.take(reply)  # taking them lets a paused socket read on
                    if reply.complete:
                        return reply.status, b"".join(parts)
                    await conn.wait(reply)
            finally:
                self._release(conn)

    @asynccontextmanager
    async def stream(
        self,
        url: str,
        body: bytes,
        headers: bytes,
        *,
        read: float | None,
        connect: float | None,
    ) -> AsyncIterator[Response]:
        """POST `body`, and yield the reply once its head is in; its body is read from it.

        The connection goes back to the pool only if the body was read to its end.

        Raises:
            ConnectFailed, ReplyCut, BadReply, TimeoutError: see the module's docstring.
            ValueError: `url` is not an http(s) URL.
        """
        origin, head = self._head(url, headers, body)
        async with self._slots:
            conn, reply = await self._send(origin, head, body, connect)
            try:
                yield Response(conn, reply, read)
            finally:
                self._release(conn)  # a reply left half read closes its connection

    def _head(self, url: str, headers: bytes, body: bytes) -> tuple[_Origin, bytes]:
        target = self._targets.get(url)
        if target is None:
            target = _target(url)
            if len(self._targets) < _MAX_TARGETS:
                self._targets[url] = target
        length = b"content-length: %d\r\n\r\n" % len(body)
        return target.origin, b"".join((target.head, headers, _ACCEPT_ENCODING, length))

    async def _send(
        self, origin: _Origin, head: bytes, body: bytes, connect: float | None
    ) -> tuple[_Connection, _Reply]:
        """The connection the request went out on, once the reply's head is in."""
        reuse = True
        while True:
            conn = self._idle_connection(origin) if reuse else None
            fresh = conn is None
            if conn is None:
                conn = await self._connect(origin, connect)
            reply = conn.send(head, body)
            try:
                while not reply.status:
                    await conn.wait(reply)
            except ReplyCut:
                if fresh or reply.started:
                    raise
                # The server closed this idle connection as we reused it: nothing of the
                # request was answered, so it goes out once more, on a new connection (the
                # router would fail over on the cut anyway, and count it against the upstream).
                conn.done()
                reuse = False
                continue
            except BaseException:
                conn._abort()
                conn.done()
                raise
            return conn, reply

    def _idle_connection(self, origin: _Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self._idle_seconds:
                return conn
            conn._abort()
        return None

    async def _connect(self, origin: _Origin, within: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        context = None
        if origin.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            async with asyncio.timeout(within):
                _, conn = await loop.create_connection(
                    lambda: _Connection(origin),
                    origin.host,
                    origin.port,
                    ssl=context,
                    server_hostname=origin.host if context is not None else None,
                )
        except TimeoutError:
            raise
        except OSError as exc:  # refused, unreachable, no such host, a certificate refused
            raise ConnectFailed(f"cannot connect: {type(exc).__name__}") from exc
        self.opened += 1
        return conn

    def _release(self, conn: _Connection) -> None:
        if not conn.reusable():
            conn._abort()
            conn.done()
            return
        conn.done()
        idle = self._idle.setdefault(conn.origin, [])
        if len(idle) >= self._max_idle:
            conn._abort()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn._abort()
        self._idle.clear()
