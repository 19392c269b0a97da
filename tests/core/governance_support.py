"""Shared pieces for the governance tests: a settable clock, requests, and both counter stores.

It holds no tests; its name keeps it among the governance test files.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import BlockingConnectionPool, Redis

from core.access import Principal
from core.envelope import Envelope, Message, Modality, TextPart, TraceContext
from core.governance import CounterStore, MemoryCounters
from store.redis_counters import RedisCounters

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
START = 1_800_000_020.0  # a fixed instant, 20 s into a minute and an hour
PRICE = (1.0, 2.0)  # USD per million input / output tokens


class Clock:
    """A clock the test moves by hand, so windows roll over without sleeping."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def principal(key_id: str = "k1", org_path: str = "research/agents/triage") -> Principal:
    return Principal(key_id=key_id, key_name=key_id, org_path=org_path)


def request(
    model: str = "gpt", text: str = "hello", max_tokens: int | None = 100, agent: str | None = None
) -> Envelope:
    """A chat request; "hello" estimates at 6 prompt tokens."""
    params = {} if max_tokens is None else {"max_tokens": max_tokens}
    trace = TraceContext("t1", "s1", agent_id=agent) if agent else None
    return Envelope(
        id="r",
        modality=Modality.CHAT,
        model=model,
        messages=[Message("user", [TextPart(text)])],
        params=params,
        trace=trace,
    )


def priced(model: str) -> tuple[float, float] | None:
    return PRICE if model == "gpt" else None


def redis_client() -> Redis:
    """A client as the app should build one: a bounded pool that waits for a free connection
    (the default pool raises "Too many connections" under a burst of concurrent calls)."""
    pool = BlockingConnectionPool(host=REDIS_HOST, port=REDIS_PORT, max_connections=20, timeout=10)
    return Redis(connection_pool=pool)


@asynccontextmanager
async def redis_prefix() -> AsyncIterator[tuple[Redis, str]]:
    """A client and a key prefix unique to one test; every key under it is deleted afterwards."""
    client = redis_client()
    prefix = f"agwtest:{uuid.uuid4().hex}:"
    try:
        yield client, prefix
    finally:
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@asynccontextmanager
async def counter_store(kind: str, clock: Clock) -> AsyncIterator[tuple[CounterStore, str]]:
    """The store named `kind` ("memory" or "redis") and the key prefix to use with it."""
    if kind == "memory":
        yield MemoryCounters(clock), "agw:"
        return
    async with redis_prefix() as (client, prefix):
        yield RedisCounters(client), prefix
