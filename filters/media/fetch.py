"""Remote media over http(s), fetched only when allowed, bounded, and never from inside the network.

Server-side request forgery is the risk: a client names `http://127.0.0.1:…` or a cloud metadata
address and the gateway fetches it from inside the network. So every hop (the first URL and each
redirect) is resolved here, and refused when any address it resolves to is private, loopback,
link-local, multicast, reserved or unspecified (unless the configuration allows private ones). The
connection then goes to exactly the addresses that were checked (a resolver that answers only
from them), so a DNS answer that changes between the check and the connect cannot slip through.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import anyio
from aiohttp.abc import AbstractResolver, ResolveResult

from filters.media.errors import MediaTooLarge, RemoteMediaFailed, RemoteMediaRefused

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    allow: bool
    allow_private: bool
    max_bytes: int
    timeout_seconds: float
    max_redirects: int
    # `host` or `host:port` whose addresses are not checked (that hop only: a redirect from it
    # is checked like any other URL).
    allow_hosts: frozenset[str] = frozenset()

    def allowed_host(self, host: str, port: int) -> bool:
        host = host.lower()
        return host in self.allow_hosts or f"{host}:{port}" in self.allow_hosts


@dataclass(frozen=True, slots=True)
class Fetched:
    url: str
    content_type: str
    data: bytes


def public_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether `ip` is a public unicast address (IPv4-mapped IPv6 judged as its IPv4)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


async def resolve_checked(host: str, port: int, allow_private: bool) -> list[str]:
    """The addresses of `host`, all of them allowed, or a refusal.

    Raises:
        RemoteMediaRefused: one of the addresses is not public (and private ones are not allowed).
        RemoteMediaFailed: the name does not resolve.
    """
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise RemoteMediaFailed(f"The media host '{host}' does not resolve.") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not allow_private and not public_address(ip):
            raise RemoteMediaRefused(
                "Remote media URLs may not point to private, loopback or link-local addresses."
            )
    return addresses


class _PinnedResolver(AbstractResolver):
    """Answers only with the addresses `resolve_checked` approved for this hop."""

    def __init__(self) -> None:
        self.pinned: dict[str, list[str]] = {}

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = self.pinned.get(host)
        if not addresses:
            raise OSError(f"{host} was not checked")
        return [
            {
                "hostname": host,
                "host": a,
                "port": port,
                "family": socket.AF_INET6 if ":" in a else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for a in addresses
        ]

    async def close(self) -> None:
        return None


async def fetch_media(url: str, policy: FetchPolicy) -> Fetched:
    """GET `url` under `policy`, following at most `max_redirects` checked redirects.

    Raises:
        RemoteMediaRefused: fetching is off, the scheme is not http(s), or an address is private.
        RemoteMediaFailed: an error status, a timeout, too many redirects or a broken connection.
        MediaTooLarge: the body is over `max_bytes`.
    """
    if not policy.allow:
        raise RemoteMediaRefused(
            "Remote media URLs are not fetched by this gateway; send the media inline as a "
            "base64 data: URL."
        )
    resolver = _PinnedResolver()
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False)
    timeout = aiohttp.ClientTimeout(total=policy.timeout_seconds)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            for _ in range(policy.max_redirects + 1):
                await _check_hop(url, resolver, policy)
                async with session.get(url, allow_redirects=False) as resp:
                    if resp.status in _REDIRECTS and "location" in resp.headers:
                        url = urljoin(url, resp.headers["location"])
                        continue
                    if resp.status >= 400:
                        raise RemoteMediaFailed(f"The media URL answered HTTP {resp.status}.")
                    data = await _bounded(resp, policy.max_bytes)
                    content_type = resp.headers.get("content-type", "").split(";")[0].strip()
                    return Fetched(url, content_type.lower(), data)
    except (TimeoutError, aiohttp.ClientError, OSError):
        raise RemoteMediaFailed("The media URL could not be fetched.") from None
    raise RemoteMediaFailed(f"The media URL redirected more than {policy.max_redirects} times.")


async def _check_hop(url: str, resolver: _PinnedResolver, policy: FetchPolicy) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RemoteMediaRefused("Remote media URLs must be http(s) URLs with a host.")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname
    allow_private = policy.allow_private or policy.allowed_host(host, port)
    resolver.pinned[host] = await resolve_checked(host, port, allow_private)


async def _bounded(resp: Any, max_bytes: int) -> bytes:
    declared = resp.content_length
    too_large = MediaTooLarge(f"The remote media is larger than the limit of {max_bytes} bytes.")
    if declared is not None and declared > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)
