"""The response cache: exact repeats answered without an upstream, metered as cached."""

from __future__ import annotations

import anyio
import pytest

from adapters.egress.sim import SimProvider
from adapters.egress.sim_options import SimOptions
from core.access import Authenticator, KeyRecord, Scopes, hash_secret
from core.config import Price
from core.envelope import Envelope, Message, Modality, TextPart, Usage
from core.metering import PriceCatalog
from core.metrics import Metrics
from core.pipeline import CallInfo, Pipeline
from core.quota import Unlimited
from core.response_cache import CachedReply, MemoryResponseCache, cache_key
from core.tracing import Attempt, Span, SpanWriter
from store.memory import MemoryStore
from tests.core.routing_support import (
    FakeClock,
    Switchable,
    chat,
    model,
    principal,
    router,
    tried,
)

SECRET = "agw_cache-test-secret"


def reply(text: str) -> CachedReply:
    env = Envelope(
        id="r",
        modality=Modality.CHAT,
        model="x",
        messages=[Message("assistant", [TextPart(text)])],
        usage=Usage(input_tokens=10, output_tokens=3),
    )
    return CachedReply(env, "sim", "sim-1")


@pytest.mark.anyio
async def test_entries_expire_after_their_ttl() -> None:
    clock = FakeClock()
    cache = MemoryResponseCache(clock=clock)
    await cache.put("k", reply("hi"), ttl_seconds=60)
    clock.advance(59.9)
    assert await cache.get("k") is not None
    clock.advance(0.1)
    assert await cache.get("k") is None
    assert len(cache) == 0


@pytest.mark.anyio
async def test_the_least_recently_used_entry_is_evicted_past_the_bound() -> None:
    cache = MemoryResponseCache(max_entries=2)
    await cache.put("a", reply("a"), 60)
    await cache.put("b", reply("b"), 60)
    assert await cache.get("a") is not None  # "b" is now the least recently used
    await cache.put("c", reply("c"), 60)
    assert await cache.get("b") is None
    assert await cache.get("a") is not None and await cache.get("c") is not None


@pytest.mark.anyio
async def test_what_a_caller_does_to_a_hit_never_reaches_the_stored_entry() -> None:
    cache = MemoryResponseCache()
    await cache.put("k", reply("original"), 60)
    hit = await cache.get("k")
    assert hit is not None
    hit.reply.messages[0].parts = [TextPart("changed by a filter")]
    again = await cache.get("k")
    assert again is not None and again.reply.text() == "original"


def test_the_key_covers_the_request_and_who_may_share_it() -> None:
    base = cache_key(chat("hello", temperature=0))
    assert cache_key(chat("hello", temperature=0)) == base
    assert cache_key(chat("hello", temperature=1)) != base
    assert cache_key(chat("hello!", temperature=0)) != base
    assert cache_key(chat("hello", temperature=0, model="other")) != base
    assert cache_key(chat("hello", temperature=0, tools=True)) != base
    assert cache_key(chat("hello", temperature=0, egress="private")) != base
    other_team = chat("hello", temperature=0)
    other_team.principal = principal(org_path="sales/emea/crm")
    assert cache_key(other_team) != base


@pytest.mark.anyio
async def test_a_repeat_is_served_from_the_cache_with_its_input_counted_as_cached() -> None:
    upstream = Switchable("up")
    r = router(
        [model("m", [{"provider": "up", "model": "x"}], cache={"ttl_seconds": 60})],
        {"up": upstream},
    )
    route = r.route("m")
    first, _ = await r.send(chat(), r.candidates(route, chat()), [])
    attempts: list[Attempt] = []
    second, target = await r.send(chat(), r.candidates(route, chat()), attempts)
    assert upstream.calls == 1
    assert second.text() == first.text()
    assert target.cache_hit and (target.provider_name, target.model) == ("cache", "x")
    assert tried(attempts) == [("cache", "cache_hit", None)]
    assert first.usage is not None and second.usage is not None
    assert second.usage.cached_tokens == second.usage.input_tokens == first.usage.input_tokens
    assert second.usage.output_tokens == first.usage.output_tokens


@pytest.mark.anyio
async def test_streams_and_models_without_a_cache_always_reach_the_upstream() -> None:
    upstream = Switchable("up")
    r = router(
        [
            model("cached", [{"provider": "up", "model": "x"}], cache={"ttl_seconds": 60}),
            model("m", [{"provider": "up", "model": "x"}]),
        ],
        {"up": upstream},
    )
    for _ in range(2):
        env = chat(model="m")
        await r.send(env, r.candidates(r.route("m"), env), [])
        env = chat(model="cached", stream=True)
        _, rest, _ = await r.open_stream(env, r.candidates(r.route("cached"), env), [])
        await rest.aclose()
    assert upstream.calls == 4


def prices() -> PriceCatalog:
    return PriceCatalog([Price(provider="sim", model="sim-1", input_per_1m=1.0, output_per_1m=2.0)])


async def spans_of_two_identical_calls() -> list[Span]:
    store = MemoryStore()
    await store.open()
    await store.create_key(
        KeyRecord(
            id="k1",
            name="k",
            key_hash=hash_secret(SECRET),
            prefix="agw_",
            org_path="a/b/c",
            scopes=Scopes(),
        )
    )
    r = router(
        [model("m", [{"provider": "sim", "model": "sim-1"}], cache={"ttl_seconds": 60})],
        {"sim": SimProvider("sim", SimOptions())},
    )
    spans = SpanWriter(store)
    pipeline = Pipeline(
        authenticator=Authenticator(store),
        router=r,
        quota=Unlimited(),
        filters=[],
        prices=prices(),
        spans=spans,
        metrics=Metrics(),
    )
    async with anyio.create_task_group() as tg:
        spans.start(tg)
        for n in range(2):
            call = await pipeline.begin(
                CallInfo(f"req_{n}", "test", {"authorization": f"Bearer {SECRET}"})
            )
            message = Message("user", [TextPart("cache me")])
            env = Envelope(id="", modality=Modality.CHAT, model="m", messages=[message])
            await pipeline.complete(call, env)
        await spans.aclose()
    return sorted(await store.list_spans(), key=lambda s: s.request_id)


@pytest.mark.anyio
async def test_a_cache_hit_span_names_the_cache_costs_nothing_and_counts_input_as_cached() -> None:
    miss, hit = await spans_of_two_identical_calls()
    assert miss.provider == "sim" and miss.cost_usd is not None and miss.cost_usd > 0
    assert "cache_hit" not in miss.flags and miss.cached_tokens == 0
    assert (hit.provider, hit.upstream_model, hit.cost_usd) == ("cache", "sim-1", 0.0)
    assert "cache_hit" in hit.flags and "unpriced" not in hit.flags
    assert hit.cached_tokens == hit.input_tokens == miss.input_tokens
    assert hit.output_tokens == miss.output_tokens
    assert [(a.provider, a.status) for a in hit.attempts] == [("cache", "cache_hit")]
