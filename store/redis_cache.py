"""`RedisResponseCache`: the response cache shared by every replica.

An entry is the reply envelope as JSON under `<prefix>cache:<request hash>` with Redis's own
expiry (the TTL). The codec writes each dataclass of the envelope with its type name and reads
back only the envelope's own types, so what Redis holds is data, never code. The principal and
trace are not stored: a hit is re-addressed to the request it answers
(`core.response_cache.served_from_cache`).

A cache is an optimization: when Redis cannot be reached, a lookup is a miss and a store is
skipped (logged once), and traffic goes on to the upstreams.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from enum import Enum
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.envelope import (
    AudioPart,
    Envelope,
    Finding,
    ImagePart,
    Message,
    Modality,
    Scope,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
    Usage,
    VideoPart,
)
from core.response_cache import CachedReply
from store.redis_outage import Outage
from store.redis_pool import blocking_client

logger = logging.getLogger("agentgw.cache")

_TYPES: dict[str, type[Any]] = {
    t.__name__: t
    for t in (
        AudioPart,
        Envelope,
        Finding,
        ImagePart,
        Message,
        TextPart,
        ToolCallPart,
        ToolResultPart,
        ToolSpec,
        Usage,
        VideoPart,
    )
}
_ENUMS: dict[str, type[Enum]] = {"Modality": Modality, "Scope": Scope}
_NOT_STORED = frozenset({"principal", "trace"})


def encode(entry: CachedReply) -> str:
    """The entry as JSON (the reply's principal and trace left out)."""
    return json.dumps(
        {"provider": entry.provider, "model": entry.model, "reply": _plain(entry.reply)}
    )


def decode(text: str | bytes) -> CachedReply:
    """Raises: ValueError: not an entry this codec wrote."""
    body = json.loads(text)
    reply = _typed(body["reply"])
    if not isinstance(reply, Envelope):
        raise ValueError("a cache entry must hold an Envelope")
    return CachedReply(reply, str(body["provider"]), str(body["model"]))


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return {"__enum__": type(value).__name__, "value": value.value}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name not in _NOT_STORED
        }
        return {"__type__": type(value).__name__, **fields}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _typed(value: Any) -> Any:
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__enum__" in value:
        return _ENUMS[value["__enum__"]](value["value"])
    if "__type__" in value:
        kind = _TYPES.get(value["__type__"])
        if kind is None:
            raise ValueError(f"unknown type in a cache entry: {value['__type__']!r}")
        return kind(**{k: _typed(v) for k, v in value.items() if k != "__type__"})
    return {k: _typed(v) for k, v in value.items()}


class RedisResponseCache:
    """A `core.response_cache.ResponseCache` on Redis."""

    def __init__(self, client: Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix + "cache:"
        self._outage = Outage("response cache")

    @classmethod
    def from_url(
        cls, url: str, prefix: str, timeout_ms: int, max_connections: int = 64
    ) -> RedisResponseCache:
        client = blocking_client(url, max_connections=max_connections, timeout_ms=timeout_ms)
        return cls(client, prefix)

    async def get(self, key: str) -> CachedReply | None:
        if self._outage.skip():
            return None
        try:
            raw = await self._client.get(self._prefix + key)
        except (RedisError, OSError) as exc:
            self._outage.lost(exc)
            return None
        self._outage.back()
        if raw is None:
            return None
        try:
            return decode(raw)
        except (ValueError, KeyError, TypeError):
            logger.warning("response cache: unreadable entry %s ignored", key[:12])
            return None

    async def put(self, key: str, entry: CachedReply, ttl_seconds: float) -> None:
        if self._outage.skip():
            return
        try:
            await self._client.set(self._prefix + key, encode(entry), px=int(ttl_seconds * 1000))
        except (RedisError, OSError) as exc:
            self._outage.lost(exc)

    async def aclose(self) -> None:
        await self._client.aclose()
