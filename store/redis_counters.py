"""Limit and budget counters in Redis, shared exactly by every gateway replica.

Each operation is one Lua script, so Redis runs the check and the increments over several keys as a
single step no other client can interleave with: N replicas reserving against one budget admit
exactly what one process would. Scripts are sent by SHA (EVALSHA) and loaded on a NOSCRIPT reply
(a restarted or flushed Redis forgets them).

Reserve contract (`_RESERVE`): KEYS = counters; ARGV = (amount, limit, ttl_ms) per key, limit -1
meaning "count only". If any key's value has reached its limit or value + amount would pass it,
nothing changes and the reply is `{0, i, values…}` (i: 1-based index of the first refusing key);
otherwise every key is INCRBY'd, its TTL set, and the reply is `{1, 0, new values…}`.

Settle contract (`_SETTLE`): KEYS = counters; ARGV = (delta, ttl_ms) per key. Each key is
incremented by delta and floored at zero; a key that had no TTL gets one. Reply: the new values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from core.governance.counters import Admission, CounterAdjustment, CounterItem, CounterUnavailable
from store.redis_pool import blocking_client

_RESERVE = """
local n = #KEYS
local values = {}
for i = 1, n do
  values[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
end
for i = 1, n do
  local amount = tonumber(ARGV[3 * i - 2])
  local limit = tonumber(ARGV[3 * i - 1])
  if limit >= 0 and (values[i] >= limit or values[i] + amount > limit) then
    return {0, i, unpack(values)}
  end
end
for i = 1, n do
  local v = redis.call('INCRBY', KEYS[i], ARGV[3 * i - 2])
  if v < 0 then
    redis.call('SET', KEYS[i], 0)
    v = 0
  end
  redis.call('PEXPIRE', KEYS[i], ARGV[3 * i])
  values[i] = v
end
return {1, 0, unpack(values)}
"""

_SETTLE = """
local values = {}
for i = 1, #KEYS do
  local v = redis.call('INCRBY', KEYS[i], ARGV[2 * i - 1])
  if v < 0 then
    redis.call('SET', KEYS[i], 0, 'KEEPTTL')
    v = 0
  end
  if redis.call('PTTL', KEYS[i]) < 0 then
    redis.call('PEXPIRE', KEYS[i], ARGV[2 * i])
  end
  values[i] = v
end
return values
"""


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisCounters:
    """A `core.governance.CounterStore` on Redis (`redis.asyncio`).

    The client is passed in so the app owns its lifecycle (and its timeouts: a short
    `socket_timeout` keeps a hung Redis from stalling requests before the fail policy applies).
    """

    def __init__(self, client: Redis) -> None:
        self._client = client

    @classmethod
    def from_url(cls, url: str, max_connections: int, timeout_ms: int) -> RedisCounters:
        """Counters on a bounded pool that waits for a free connection (a burst must queue, not
        fail with "too many connections"), with short timeouts and one retry, so an outage reaches
        the gate's fail policy quickly instead of stalling requests."""
        return cls(
            blocking_client(url, max_connections=max_connections, timeout_ms=timeout_ms, retries=1)
        )

    async def reserve(self, items: Sequence[CounterItem]) -> Admission:
        if not items:
            return Admission(True, ())
        args: list[int] = []
        for item in items:
            limit = -1 if item.limit is None else item.limit
            args += [item.amount, limit, _ms(item.ttl_seconds)]
        reply = await self._run(_RESERVE, [i.key for i in items], args)
        ok, refused, *values = (int(v) for v in reply)
        counts = tuple(values)
        return Admission(True, counts) if ok else Admission(False, counts, refused - 1)

    async def settle(self, adjustments: Sequence[CounterAdjustment]) -> tuple[int, ...]:
        if not adjustments:
            return ()
        args: list[int] = []
        for adj in adjustments:
            args += [adj.delta, _ms(adj.ttl_seconds)]
        reply = await self._run(_SETTLE, [a.key for a in adjustments], args)
        return tuple(int(v) for v in reply)

    async def get(self, keys: Sequence[str]) -> tuple[int, ...]:
        if not keys:
            return ()
        try:
            values: list[Any] = await self._client.mget(list(keys))
        except (RedisError, OSError) as exc:
            raise CounterUnavailable(f"redis: {exc}") from exc
        return tuple(0 if v is None else int(v) for v in values)

    async def mark(self, key: str, ttl_seconds: float) -> bool:
        try:
            created = await self._client.set(key, 1, nx=True, px=_ms(ttl_seconds))
        except (RedisError, OSError) as exc:
            raise CounterUnavailable(f"redis: {exc}") from exc
        return bool(created)

    async def _run(self, script: str, keys: list[str], args: list[int]) -> list[Any]:
        """Run `script` by SHA, loading it first if Redis does not know it.

        Raises:
            CounterUnavailable: Redis cannot be reached or failed the call.
        """
        sha = hashlib.sha1(script.encode()).hexdigest()
        try:
            try:
                reply = await self._client.evalsha(sha, len(keys), *keys, *args)
            except NoScriptError:
                await self._client.script_load(script)
                reply = await self._client.evalsha(sha, len(keys), *keys, *args)
        except (RedisError, OSError) as exc:
            raise CounterUnavailable(f"redis: {exc}") from exc
        return list(reply)
