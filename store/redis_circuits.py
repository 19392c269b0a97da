"""`RedisCircuitStore`: circuit breakers shared by every replica.

Each target's `core.circuit.CircuitState` is one small JSON value under `<prefix>circuit:<target>`.
A transition reads it, applies the same pure functions the in-process store uses
(`core.circuit.admit` / `record`) and writes it back only if nobody changed it meanwhile
(WATCH … MULTI/EXEC, retried on a clash): one replica's failures open the circuit for all, and
only one replica's call is the half-open probe. A healthy target costs no round trip at all:
a circuit seen closed without failures is trusted for `closed_view_seconds` (0.5 s), so
another replica's opening of it is seen here at most that late.

Times in Redis are this store's wall clock (epoch seconds): the router's monotonic clock means
nothing on another machine. Circuits protect upstreams, not data, so when Redis cannot be
reached the store decides with an in-process store, trying Redis again after a cooldown
(`store.redis_outage`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, WatchError

from core.circuit import CircuitState, MemoryCircuitStore, admit, record
from core.config import Circuit
from store.redis_outage import Outage
from store.redis_pool import blocking_client

_CLASHES = 16  # a transition retried this often lost every race: decide locally this once
# How long a target seen closed and without failures is taken to still be so: meanwhile its
# calls cost no Redis round trip. Another replica opening it is seen at most this late here;
# this replica's own failures always go to Redis at once.
DEFAULT_CLOSED_VIEW_SECONDS = 0.5


def _encode(state: CircuitState) -> str:
    return json.dumps({"f": state.failures, "o": state.opened_at, "p": state.probe_at})


def _decode(raw: Any) -> CircuitState:
    if raw is None:
        return CircuitState()
    try:
        body = json.loads(raw)
        return CircuitState(tuple(body.get("f", ())), body.get("o"), body.get("p"))
    except (ValueError, TypeError, AttributeError):
        return CircuitState()  # not a state this store wrote: start the circuit afresh


class RedisCircuitStore:
    """A `core.circuit.CircuitStore` on Redis, falling back to this process when it is down."""

    def __init__(
        self,
        client: Redis,
        prefix: str,
        *,
        clock: Callable[[], float] = time.time,
        closed_view_seconds: float = DEFAULT_CLOSED_VIEW_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._prefix = prefix + "circuit:"
        self._clock = clock
        self._local = MemoryCircuitStore()
        self._outage = Outage("circuit states")
        self._view = closed_view_seconds
        self._monotonic = monotonic
        # Targets last seen closed with no failures, until when that view is trusted.
        self._closed_until: dict[str, float] = {}

    @classmethod
    def from_url(
        cls, url: str, prefix: str, timeout_ms: int, max_connections: int = 64
    ) -> RedisCircuitStore:
        client = blocking_client(url, max_connections=max_connections, timeout_ms=timeout_ms)
        return cls(client, prefix)

    async def admit(self, key: str, policy: Circuit, now: float) -> bool:
        def step(state: CircuitState, at: float) -> tuple[bool, CircuitState]:
            return admit(state, policy, at)

        if self._seen_closed(key):
            return True  # a closed circuit admits every call
        if not self._outage.skip():
            try:
                return await self._transition(key, policy, step)
            except (RedisError, OSError) as exc:
                self._outage.lost(exc)
        return await self._local.admit(key, policy, now)

    async def record(self, key: str, ok: bool, policy: Circuit, now: float) -> None:
        def step(state: CircuitState, at: float) -> tuple[bool, CircuitState]:
            return True, record(state, ok, policy, at)

        if ok and self._seen_closed(key):
            return  # a success changes nothing on a closed circuit
        self._closed_until.pop(key, None)
        if not self._outage.skip():
            try:
                await self._transition(key, policy, step)
                return
            except (RedisError, OSError) as exc:
                self._outage.lost(exc)
        await self._local.record(key, ok, policy, now)

    async def get(self, key: str) -> CircuitState:
        if not self._outage.skip():
            try:
                state = _decode(await self._client.get(self._prefix + key))
            except (RedisError, OSError) as exc:
                self._outage.lost(exc)
            else:
                self._outage.back()
                return state
        return await self._local.get(key)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _transition(
        self,
        key: str,
        policy: Circuit,
        step: Callable[[CircuitState, float], tuple[bool, CircuitState]],
    ) -> bool:
        name = self._prefix + key
        # Most calls change nothing (a closed circuit admitting, a success while closed): one
        # GET decides them. Only a change takes the optimistic transaction below.
        state = _decode(await self._client.get(name))
        verdict, after = step(state, self._clock())
        if after == state:
            self._outage.back()
            self._note(key, after)
            return verdict
        # Long enough to outlive the failure window and an open period with its probe.
        ttl_ms = int((policy.window_seconds + 2 * policy.open_seconds) * 1000) + 1000
        async with self._client.pipeline(transaction=True) as pipe:
            for _ in range(_CLASHES):
                try:
                    await pipe.watch(name)
                    state = _decode(await pipe.get(name))
                    verdict, after = step(state, self._clock())
                    if after == state:
                        await pipe.unwatch()  # type: ignore[no-untyped-call]
                        self._outage.back()
                        return verdict
                    pipe.multi()  # type: ignore[no-untyped-call]
                    if after == CircuitState():
                        pipe.delete(name)
                    else:
                        pipe.set(name, _encode(after), px=ttl_ms)
                    await pipe.execute()
                    self._outage.back()
                    self._note(key, after)
                    return verdict
                except WatchError:
                    continue  # another replica moved this circuit meanwhile: decide again
        verdict, _ = step(await self.get(key), self._clock())
        return verdict

    def _seen_closed(self, key: str) -> bool:
        return self._monotonic() < self._closed_until.get(key, 0.0)

    def _note(self, key: str, state: CircuitState) -> None:
        if state == CircuitState() and self._view > 0:
            if len(self._closed_until) > 10_000:
                self._closed_until.clear()
            self._closed_until[key] = self._monotonic() + self._view
        else:
            self._closed_until.pop(key, None)
