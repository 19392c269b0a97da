"""The response cache: an exact repeat of a request is answered without calling an upstream.

Opt-in per virtual model (`cache: {ttl_seconds: N}`), non-streaming replies only. The key is
the SHA-256 of the canonical JSON of the request after the request filters ran (so a redacted
prompt is what is hashed): virtual model, modality, messages, tools, params and passed-through
fields, plus the caller's org unit and egress class, so a reply is never shared across org units
and a private key never receives a reply a public provider produced.

A hit is metered as cached: the stored reply's input tokens are all counted as cached, output
tokens as they were, and the cost is zero because no upstream was paid. The span names the
provider `cache`, keeps the upstream model that produced the reply, and carries the flag
`cache_hit`.

`ResponseCache` is the seam (get/put); `MemoryResponseCache` is a bounded LRU with TTL for one
process, and a Redis cache shared by replicas implements the same protocol.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from core.envelope import Envelope, Usage

DEFAULT_MAX_ENTRIES = 1024


@dataclass(slots=True)
class CachedReply:
    """A stored reply and the upstream that produced it."""

    reply: Envelope
    provider: str
    model: str


class ResponseCache(Protocol):
    """Where cached replies live."""

    async def get(self, key: str) -> CachedReply | None:
        """The live entry for `key`, or None. The caller may change what it gets."""
        ...

    async def put(self, key: str, entry: CachedReply, ttl_seconds: float) -> None:
        """Store `entry` for `ttl_seconds`; later changes by the caller do not reach it."""
        ...


class MemoryResponseCache:
    """A bounded LRU with a TTL per entry, for one process."""

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, CachedReply]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> CachedReply | None:
        item = self._entries.get(key)
        if item is None:
            return None
        expires_at, entry = item
        if self._clock() >= expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return copy.deepcopy(entry)

    async def put(self, key: str, entry: CachedReply, ttl_seconds: float) -> None:
        self._entries[key] = (self._clock() + ttl_seconds, copy.deepcopy(entry))
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)


def cache_key(env: Envelope) -> str:
    """The hash of everything that shapes the reply to `env`, and who may share it."""
    principal = env.principal
    body = {
        "model": env.model,
        "modality": env.modality.value,
        "messages": [_plain(m) for m in env.messages],
        "tools": [_plain(t) for t in env.tools],
        "params": env.params,
        "extra": env.extra,
        "org": principal.org_path if principal is not None else "",
        "egress": principal.scopes.egress if principal is not None else "public",
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(value: Any) -> Any:
    # Tag each dataclass with its kind, so parts with the same fields never hash alike.
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"kind": type(value).__name__, **fields}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def served_from_cache(entry: CachedReply, request: Envelope) -> Envelope:
    """The stored reply, addressed to `request`, with its input tokens counted as cached."""
    reply = entry.reply
    reply.id = request.id
    reply.trace = request.trace
    reply.principal = request.principal
    reply.cost_usd = None
    if reply.usage is not None:
        u = reply.usage
        reply.usage = Usage(
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            cached_tokens=u.input_tokens,
            reasoning_tokens=u.reasoning_tokens,
            audio_seconds=u.audio_seconds,
            images=u.images,
            video_seconds=u.video_seconds,
        )
    return reply
