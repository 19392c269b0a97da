"""`RedisFailureLedger`: brute-force protection counted across every replica.

Without it each replica counts failed authentications on its own, and a guesser spreading
attempts over N replicas gets N times the tries. Here one address's failures and its wait live
in Redis (`<prefix>authfail:<address>`, a sorted set of failure times, and
`<prefix>authwait:<address>`, the moment it may try again), and one Lua script counts a failure
and sets the wait atomically, with the policy of `core.lockout.LockoutPolicy`.

Times are the authenticator's wall clock (epoch seconds), passed in. When Redis cannot be
reached, the ledger counts in this process (`MemoryFailureLedger`) until it is back: the
protection weakens to per-replica, it never stops authenticating.
"""

from __future__ import annotations

import hashlib
import secrets

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from core.lockout import FailureOutcome, LockoutPolicy, MemoryFailureLedger
from store.redis_outage import Outage
from store.redis_pool import blocking_client

# KEYS: failures zset, wait key. ARGV: now_ms, member, window_ms, free, base_ms, max_ms,
# lockout_after, lockout_ms. Returns {wait_ms, locked (0/1)}.
_RECORD = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
local count = redis.call('ZCARD', KEYS[1])
if count >= tonumber(ARGV[7]) then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], now + tonumber(ARGV[8]), 'PX', tonumber(ARGV[8]))
  return {tonumber(ARGV[8]), 1}
end
local delay = 0
local free = tonumber(ARGV[4])
if count > free then
  delay = math.min(tonumber(ARGV[6]), tonumber(ARGV[5]) * 2 ^ math.min(count - free - 1, 30))
end
local until_ms = tonumber(redis.call('GET', KEYS[2]) or '0')
if now + delay > until_ms then
  until_ms = now + delay
  if delay > 0 then
    redis.call('SET', KEYS[2], until_ms, 'PX', math.ceil(delay))
  end
end
return {math.max(0, until_ms - now), 0}
"""
_SHA = hashlib.sha1(_RECORD.encode()).hexdigest()


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


class RedisFailureLedger:
    """A `core.lockout.FailureLedger` shared by the replicas through Redis."""

    def __init__(self, client: Redis, prefix: str, policy: LockoutPolicy | None = None) -> None:
        self._client = client
        self._fails = prefix + "authfail:"
        self._waits = prefix + "authwait:"
        self.policy = policy or LockoutPolicy()
        self._local = MemoryFailureLedger(self.policy)
        self._outage = Outage("brute-force counts")

    @classmethod
    def from_url(
        cls, url: str, prefix: str, timeout_ms: int, max_connections: int = 64
    ) -> RedisFailureLedger:
        client = blocking_client(url, max_connections=max_connections, timeout_ms=timeout_ms)
        return cls(client, prefix)

    async def blocked_for(self, address: str, now: float) -> float:
        """Seconds until `address` may try again; 0 when it may try now."""
        if not self._outage.skip():
            try:
                until = await self._client.get(self._waits + address)
            except (RedisError, OSError) as exc:
                self._outage.lost(exc)
            else:
                self._outage.back()
                return 0.0 if until is None else max(0.0, float(until) / 1000 - now)
        return await self._local.blocked_for(address, now)

    async def record_failure(self, address: str, now: float) -> FailureOutcome:
        """Count one failure from `address` and return the wait it now has to observe."""
        if not self._outage.skip():
            try:
                wait_ms, locked = await self._record(address, now)
            except (RedisError, OSError) as exc:
                self._outage.lost(exc)
            else:
                self._outage.back()
                return FailureOutcome(wait_ms / 1000, locked_out=bool(locked))
        return await self._local.record_failure(address, now)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _record(self, address: str, now: float) -> tuple[float, int]:
        p = self.policy
        keys = [self._fails + address, self._waits + address]
        args: list[int | str] = [
            _ms(now),
            f"{_ms(now)}-{secrets.token_hex(4)}",  # two failures in one millisecond both count
            _ms(p.window_seconds),
            p.free_failures,
            _ms(p.base_delay_seconds),
            _ms(p.max_delay_seconds),
            p.lockout_after,
            _ms(p.lockout_seconds),
        ]
        try:
            reply = await self._client.evalsha(_SHA, len(keys), *keys, *args)
        except NoScriptError:
            await self._client.script_load(_RECORD)
            reply = await self._client.evalsha(_SHA, len(keys), *keys, *args)
        return float(reply[0]), int(reply[1])
