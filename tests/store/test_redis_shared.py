"""What replicas share through Redis: change notices, circuit states, the response cache.

Real Redis on 127.0.0.1:6379; every test uses its own channel or key prefix, removed afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import anyio
import pytest
from redis.asyncio import Redis

from core.bus import RULES, ChangeFeed, Notice
from core.circuit import Phase
from core.config import Circuit
from core.envelope import (
    Envelope,
    Finding,
    Message,
    Modality,
    Scope,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    Usage,
)
from core.lockout import LockoutPolicy, MemoryFailureLedger
from core.response_cache import CachedReply
from store.redis_bus import RedisBus
from store.redis_cache import RedisResponseCache, decode, encode
from store.redis_circuits import RedisCircuitStore
from store.redis_lockout import RedisFailureLedger

pytestmark = pytest.mark.anyio

REDIS = "redis://127.0.0.1:6379/0"
DOWN = "redis://127.0.0.1:1/0"  # nothing listens there


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"agwtest:{uuid.uuid4().hex}:"
    yield name
    client = Redis.from_url(REDIS)
    keys = [k async for k in client.scan_iter(match=name + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def bus(prefix: str, url: str = REDIS) -> RedisBus:
    return RedisBus.from_url(url, prefix + "changes", timeout_ms=2000)


async def test_a_notice_reaches_the_other_replica_and_not_its_sender(prefix: str) -> None:
    a, b = bus(prefix), bus(prefix)
    try:
        async with a.subscribe() as to_a, b.subscribe() as to_b:
            await a.publish(Notice("keys", "key_1"))
            await b.publish(Notice("models", "chat"))
            with anyio.fail_after(5):
                assert await anext(to_b) == Notice("keys", "key_1")
                assert await anext(to_a) == Notice("models", "chat")  # not its own "keys"
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_change_announced_by_one_feed_runs_the_others_handler(prefix: str) -> None:
    sender, receiver = ChangeFeed(bus(prefix)), ChangeFeed(bus(prefix))
    heard: list[str] = []
    done = anyio.Event()

    async def reload_rules(subject: str) -> None:
        heard.append(subject)  # "" (all) once on connecting, then each announced subject
        if subject:
            done.set()

    receiver.on(RULES, reload_rules)
    async with anyio.create_task_group() as tg:
        tg.start_soon(sender.run)
        tg.start_soon(receiver.run)
        with anyio.fail_after(5):
            await receiver.listening.wait()
            sender.changed(RULES, "bud_1")
            await done.wait()
        tg.cancel_scope.cancel()
    assert heard == ["", "bud_1"]
    assert receiver.state == "live"


async def test_without_redis_the_feed_polls_and_says_so() -> None:
    feed = ChangeFeed(bus("agwtest:down:", DOWN), poll_seconds=0.05, backoff_seconds=(0.01, 0.02))
    polled = anyio.Event()

    async def reload_rules(subject: str) -> None:
        assert subject == ""  # a poll re-reads everything
        polled.set()

    feed.on(RULES, reload_rules)
    feed.changed(RULES)  # not sent anywhere, and nothing breaks
    async with anyio.create_task_group() as tg:
        tg.start_soon(feed.run)
        with anyio.fail_after(10):
            await polled.wait()
        tg.cancel_scope.cancel()
    assert feed.state == "polling"
    assert not feed.listening.is_set()


def fake_clock(start: float = 1_000.0) -> tuple[list[float], Callable[[], float]]:
    now = [start]
    return now, lambda: now[0]


POLICY = Circuit(failures=2, window_seconds=30, open_seconds=10)


async def test_failures_seen_by_one_replica_open_the_circuit_for_the_other(prefix: str) -> None:
    now, clock = fake_clock()
    a = RedisCircuitStore(Redis.from_url(REDIS), prefix, clock=clock)
    b = RedisCircuitStore(Redis.from_url(REDIS), prefix, clock=clock)
    try:
        assert await b.admit("sim/m", POLICY, 0.0)
        await a.record("sim/m", False, POLICY, 0.0)
        await b.record("sim/m", False, POLICY, 0.0)  # the second failure, on the other replica
        assert (await a.get("sim/m")).phase(POLICY, now[0]) == Phase.OPEN
        assert not await a.admit("sim/m", POLICY, 0.0)
        assert not await b.admit("sim/m", POLICY, 0.0)

        now[0] += POLICY.open_seconds  # half-open: exactly one replica gets the probe
        results = []

        async def try_probe(store: RedisCircuitStore) -> None:
            results.append(await store.admit("sim/m", POLICY, 0.0))

        async with anyio.create_task_group() as tg:
            for store in (a, b, a, b):
                tg.start_soon(try_probe, store)
        assert sorted(results) == [False, False, False, True]

        await b.record("sim/m", True, POLICY, 0.0)  # the probe succeeded: closed for both
        assert await a.admit("sim/m", POLICY, 0.0)
        assert (await a.get("sim/m")).phase(POLICY, now[0]) == Phase.CLOSED
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_closed_circuit_is_trusted_briefly_and_a_remote_opening_seen_after(
    prefix: str,
) -> None:
    mono = [0.0]

    def store() -> RedisCircuitStore:
        return RedisCircuitStore(Redis.from_url(REDIS), prefix, closed_view_seconds=0.5,
                                 monotonic=lambda: mono[0])  # fmt: skip

    a, b = store(), store()
    try:
        assert await b.admit("sim/m", POLICY, 0.0)  # read from Redis: closed, trusted 0.5 s
        for _ in range(POLICY.failures):
            await a.record("sim/m", False, POLICY, 0.0)  # A's failures open it in Redis
        assert not await a.admit("sim/m", POLICY, 0.0)
        assert await b.admit("sim/m", POLICY, 0.0)  # B's view is not over yet
        mono[0] += 0.5
        assert not await b.admit("sim/m", POLICY, 0.0)  # …and now B sees it open
    finally:
        await a.aclose()
        await b.aclose()


async def test_circuits_keep_working_per_process_when_redis_is_down() -> None:
    store = RedisCircuitStore.from_url(DOWN, "agwtest:down:", timeout_ms=200)
    try:
        for _ in range(POLICY.failures):
            await store.record("sim/m", False, POLICY, 5.0)
        assert not await store.admit("sim/m", POLICY, 5.0)  # the local breaker opened
    finally:
        await store.aclose()


def reply() -> Envelope:
    return Envelope(
        id="req_1",
        modality=Modality.CHAT,
        model="chat",
        messages=[
            Message(
                "assistant",
                [
                    TextPart("hello", extra={"annotations": []}),
                    ToolCallPart("call_1", "search", '{"q": "x"}'),
                    ToolResultPart("call_0", [TextPart("done")], is_error=True),
                ],
                finish_reason="tool_calls",
            )
        ],
        params={"temperature": 0.2},
        extra={"system_fingerprint": "fp_1"},
        usage=Usage(input_tokens=10, output_tokens=3, cached_tokens=2),
        findings=[Finding("pii", "EMAIL_ADDRESS", Scope.MESSAGE, "redact", 0.9, 1, 5, "ab")],
    )


def test_a_cached_reply_round_trips_through_its_json_exactly() -> None:
    entry = CachedReply(reply(), "sim", "sim-large")
    assert decode(encode(entry)) == entry


def test_a_cache_entry_naming_a_foreign_type_is_refused() -> None:
    forged = '{"provider": "p", "model": "m", "reply": {"__type__": "Popen", "args": "sh"}}'
    with pytest.raises(ValueError, match="unknown type"):
        decode(forged)


async def test_a_reply_cached_by_one_replica_is_served_by_the_other(prefix: str) -> None:
    a = RedisResponseCache(Redis.from_url(REDIS), prefix)
    b = RedisResponseCache(Redis.from_url(REDIS), prefix)
    try:
        entry = CachedReply(reply(), "sim", "sim-large")
        assert await b.get("k1") is None
        await a.put("k1", entry, ttl_seconds=60)
        assert await b.get("k1") == entry
        client = Redis.from_url(REDIS)
        assert 0 < await client.pttl(prefix + "cache:k1") <= 60_000
        await client.aclose()
    finally:
        await a.aclose()
        await b.aclose()


async def test_the_cache_misses_and_skips_when_redis_is_down() -> None:
    cache = RedisResponseCache.from_url(DOWN, "agwtest:down:", timeout_ms=200)
    try:
        await cache.put("k1", CachedReply(reply(), "sim", "sim-large"), ttl_seconds=60)
        assert await cache.get("k1") is None
    finally:
        await cache.aclose()


LOCKOUT = LockoutPolicy(free_failures=2, lockout_after=6, lockout_seconds=900.0)


async def test_failures_counted_on_two_replicas_add_up_as_on_one(prefix: str) -> None:
    a = RedisFailureLedger(Redis.from_url(REDIS), prefix, LOCKOUT)
    b = RedisFailureLedger(Redis.from_url(REDIS), prefix, LOCKOUT)
    one = MemoryFailureLedger(LOCKOUT)  # the same policy in one process: the reference
    try:
        now = 1_700_000_000.0
        for n in range(LOCKOUT.lockout_after):
            shared = await (a if n % 2 else b).record_failure("10.0.0.7", now + n)
            alone = await one.record_failure("10.0.0.7", now + n)
            assert shared == alone
            assert await a.blocked_for("10.0.0.7", now + n) == await one.blocked_for(
                "10.0.0.7", now + n
            )
        assert shared.locked_out
        assert await b.blocked_for("10.0.0.7", now + 60) == pytest.approx(900.0 - 60 + 5)
        assert await b.blocked_for("10.0.0.8", now) == 0.0  # another address is untouched
    finally:
        await a.aclose()
        await b.aclose()


async def test_brute_force_counts_stay_per_process_when_redis_is_down() -> None:
    client = Redis.from_url(DOWN, socket_connect_timeout=0.2)
    ledger = RedisFailureLedger(client, "agwtest:down:", LOCKOUT)
    try:
        outcomes = [await ledger.record_failure("10.0.0.9", 100.0) for _ in range(3)]
        assert outcomes[-1].retry_after > 0  # still slowed, by this process's own count
        assert await ledger.blocked_for("10.0.0.9", 100.0) > 0
    finally:
        await ledger.aclose()
