"""Redis counters: one atomic Lua step per reserve, shared exactly by replicas."""

from __future__ import annotations

import socket

import anyio
import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from core.envelope import Usage
from core.errors import GovernanceUnavailable, QuotaExceeded
from core.governance import (
    Budget,
    CounterAdjustment,
    CounterItem,
    CounterUnavailable,
    GovernanceGate,
    Limit,
)
from core.quota import Reservation
from store.redis_counters import RedisCounters
from tests.core.governance_support import (
    REDIS_HOST,
    Clock,
    priced,
    principal,
    redis_client,
    redis_prefix,
    request,
)

pytestmark = pytest.mark.anyio

ESTIMATE_MICROS = 206  # "hello" with max_tokens 100 at $1/M in, $2/M out


def unreachable_client() -> Redis:
    """A client pointed at a local port nothing listens on, failing at once (no retries)."""
    with socket.socket() as probe:
        probe.bind((REDIS_HOST, 0))
        port: int = probe.getsockname()[1]
    return Redis(host=REDIS_HOST, port=port, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))


async def test_two_replicas_sharing_redis_admit_exactly_n_in_total() -> None:
    n = 23
    budget = Budget("department", "research", n * ESTIMATE_MICROS / 1_000_000, "day")
    async with redis_prefix() as (_, prefix):
        replicas = [redis_client(), redis_client()]
        gates = [
            GovernanceGate(RedisCounters(c), budgets=[budget], price_for=priced, prefix=prefix)
            for c in replicas
        ]
        admitted: list[tuple[GovernanceGate, Reservation]] = []
        refused = 0

        async def one(i: int) -> None:
            nonlocal refused
            gate = gates[i % 2]
            try:
                admitted.append((gate, await gate.reserve(principal(f"k{i}"), request(), f"{i}")))
            except QuotaExceeded:
                refused += 1

        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(one, i)
        assert (len(admitted), refused) == (n, 200 - n)
        assert {id(g) for g, _ in admitted} == {id(g) for g in gates}  # both replicas admitted
        for i, (gate, reservation) in enumerate(admitted):
            await gate.settle(reservation, Usage(input_tokens=6, output_tokens=i), (i + 1) / 1e6)
        assert await gates[0].used(budget) == sum(range(1, n + 1))
        for client in replicas:
            await client.aclose()


async def test_reserve_is_all_or_nothing_across_keys() -> None:
    async with redis_prefix() as (client, prefix):
        counters = RedisCounters(client)
        a, b = prefix + "a", prefix + "b"
        admission = await counters.reserve([CounterItem(a, 5, 10, 60), CounterItem(b, 5, 4, 60)])
        assert (admission.ok, admission.refused, admission.counts) == (False, 1, (0, 0))
        assert await counters.get([a, b]) == (0, 0)
        admission = await counters.reserve([CounterItem(a, 5, 10, 60), CounterItem(b, 4, 4, 60)])
        assert (admission.ok, admission.counts) == (True, (5, 4))
        assert 0 < await client.pttl(a) <= 60_000


async def test_settle_floors_at_zero_and_keeps_the_ttl() -> None:
    async with redis_prefix() as (client, prefix):
        counters = RedisCounters(client)
        key = prefix + "c"
        await counters.reserve([CounterItem(key, 3, None, 60)])
        assert await counters.settle([CounterAdjustment(key, -5, 60)]) == (0,)
        assert await client.pttl(key) > 0


async def test_scripts_are_reloaded_when_redis_forgot_them() -> None:
    async with redis_prefix() as (client, prefix):
        counters = RedisCounters(client)
        key = prefix + "s"
        await counters.reserve([CounterItem(key, 1, 5, 60)])
        await client.script_flush()
        admission = await counters.reserve([CounterItem(key, 1, 5, 60)])
        assert admission.counts == (2,)


async def test_alert_marker_is_set_once() -> None:
    async with redis_prefix() as (client, prefix):
        counters = RedisCounters(client)
        assert await counters.mark(prefix + "m", 60) is True
        assert await counters.mark(prefix + "m", 60) is False


async def test_unreachable_redis_is_reported_as_unavailable() -> None:
    client = unreachable_client()
    counters = RedisCounters(client)
    with pytest.raises(CounterUnavailable):
        await counters.reserve([CounterItem("agwtest:x", 1, 1, 60)])
    with pytest.raises(CounterUnavailable):
        await counters.get(["agwtest:x"])
    await client.aclose()


async def test_redis_down_fails_closed_by_default_and_open_when_configured() -> None:
    client = unreachable_client()
    limits, budgets = [Limit("key", "k1", "requests", 5)], [Budget("key", "k1", 1.0)]
    closed = GovernanceGate(RedisCounters(client), limits=limits, budgets=budgets, price_for=priced)
    with pytest.raises(GovernanceUnavailable) as refused:
        await closed.reserve(principal(), request(), "r1")
    assert refused.value.status == 503
    opened = GovernanceGate(
        RedisCounters(client),
        limits=limits,
        price_for=priced,
        fail="open",
        clock=Clock(),
    )
    reservation = await opened.reserve(principal(), request(), "r2")
    await opened.settle(reservation, Usage(input_tokens=6, output_tokens=1), 0.00001)
    assert opened.unenforced == 1
    assert opened.headers(reservation) == {}
    await client.aclose()
