"""Failover: retries with backoff, timeouts, circuit breakers and streams, through the router."""

from __future__ import annotations

import random

import pytest

from core.circuit import Phase
from core.errors import AllTargetsFailed, UpstreamError, UpstreamRejected
from core.routing import Router
from core.tracing import Attempt
from tests.core.routing_support import (
    FakeClock,
    Sleeps,
    Switchable,
    chat,
    model,
    router,
    sim,
    tried,
)

PAIR = [{"provider": "a", "model": "x"}, {"provider": "b", "model": "x"}]


@pytest.mark.anyio
async def test_a_non_retryable_error_is_raised_at_once_and_never_retried() -> None:
    sleeps = Sleeps()
    r = router(
        [model("m", PAIR, retries=3)],
        {"a": sim("a", fail_rate=1, fail_status=400), "b": sim("b")},
        sleep=sleeps,
    )
    attempts: list[Attempt] = []
    with pytest.raises(UpstreamRejected):
        await r.send(chat(), r.candidates(r.route("m"), chat()), attempts)
    assert tried(attempts) == [("a", "error", "upstream_rejected")]
    assert sleeps.delays == []


@pytest.mark.anyio
async def test_retryable_errors_fail_over_then_retry_rounds_after_a_growing_backoff() -> None:
    sleeps = Sleeps()
    r = router(
        [model("m", PAIR, retries=2, backoff={"base_ms": 100, "max_ms": 150})],
        {"a": sim("a", fail_rate=1, fail_status=500), "b": sim("b", fail_rate=1, fail_status=429)},
        sleep=sleeps,
    )
    attempts: list[Attempt] = []
    with pytest.raises(AllTargetsFailed) as caught:
        await r.send(chat(), r.candidates(r.route("m"), chat()), attempts)
    assert [a.provider for a in attempts] == ["a", "b"] * 3
    assert len(caught.value.attempts) == 6
    first, second = sleeps.delays
    assert 0.05 <= first <= 0.1  # round 1: step 100 ms, half of it fixed
    assert 0.075 <= second <= 0.15  # round 2: step 200 ms, capped at 150 ms


@pytest.mark.anyio
async def test_a_retry_round_succeeds_once_the_target_recovers() -> None:
    sleeps = Sleeps()
    flaky = Switchable("flaky", failing=True)

    async def recover(seconds: float) -> None:
        await sleeps(seconds)
        flaky.failing = False

    r = router(
        [model("m", [{"provider": "flaky", "model": "x"}], retries=1)],
        {"flaky": flaky},
        sleep=recover,
    )
    attempts: list[Attempt] = []
    reply, _ = await r.send(chat(), r.candidates(r.route("m"), chat()), attempts)
    assert reply.text()
    assert tried(attempts) == [("flaky", "error", "upstream_unavailable"), ("flaky", "ok", None)]
    assert len(sleeps.delays) == 1


def test_backoff_is_jittered_exponential_and_bounded_by_its_cap() -> None:
    r = router(
        [model("m", PAIR, backoff={"base_ms": 50, "max_ms": 1000})],
        {"a": sim("a"), "b": sim("b")},
        rng=random.Random(3),
    )
    route = r.route("m")
    for round_ in range(1, 12):
        step = min(1.0, 0.05 * 2 ** (round_ - 1))
        delays = [r.backoff(route, round_) for _ in range(200)]
        assert all(step / 2 <= d <= step for d in delays)
        assert len(set(delays)) > 150  # jittered, not a fixed schedule


@pytest.mark.anyio
async def test_a_slow_first_byte_fails_over_before_the_client_sees_anything() -> None:
    r = router(
        [
            model(
                "m",
                [
                    {"provider": "stalled", "model": "x", "first_byte_timeout_seconds": 0.05},
                    {"provider": "quick", "model": "x"},
                ],
            )
        ],
        {"stalled": sim("stalled", ttft_ms=60_000), "quick": sim("quick")},
    )
    env = chat(stream=True)
    attempts: list[Attempt] = []
    first, rest, target = await r.open_stream(env, r.candidates(r.route("m"), env), attempts)
    text = (first.text or "") if first else ""
    async for chunk in rest:
        text += chunk.text or ""
    await rest.aclose()
    assert target.provider_name == "quick" and "hello there" in text
    assert tried(attempts) == [("stalled", "error", "upstream_timeout"), ("quick", "ok", None)]
    assert r.load.in_flight("stalled/x") == 0 and r.load.in_flight("quick/x") == 0


@pytest.mark.anyio
async def test_a_total_timeout_fails_a_slow_reply_over() -> None:
    r = router(
        [
            model(
                "m",
                [
                    {"provider": "slow", "model": "x", "timeout_seconds": 0.05},
                    {"provider": "quick", "model": "x"},
                ],
            )
        ],
        {"slow": sim("slow", latency_ms=60_000), "quick": sim("quick")},
    )
    attempts: list[Attempt] = []
    _, target = await r.send(chat(), r.candidates(r.route("m"), chat()), attempts)
    assert target.provider_name == "quick"
    assert tried(attempts)[0] == ("slow", "error", "upstream_timeout")


@pytest.mark.anyio
async def test_a_stream_that_breaks_after_its_first_chunk_does_not_fail_over() -> None:
    broken = sim("broken", drop_after_chunks=2)
    r = router([model("m", PAIR)], {"a": broken, "b": sim("b")})
    env = chat(stream=True)
    attempts: list[Attempt] = []
    _, rest, target = await r.open_stream(env, r.candidates(r.route("m"), env), attempts)
    assert target.provider_name == "a"
    with pytest.raises(UpstreamError):
        async for _ in rest:
            pass
    await rest.aclose()
    assert tried(attempts) == [("a", "ok", None)]
    assert r.load.in_flight("a/x") == 0
    assert (await r.circuits.get("a/x")).failures  # the break counts against the target


def breaker(clock: FakeClock, a: Switchable, b: Switchable) -> Router:
    circuit = {"failures": 2, "window_seconds": 30, "open_seconds": 10}
    return router([model("m", PAIR, circuit=circuit)], {"a": a, "b": b}, clock=clock)


async def serve(r: Router) -> list[tuple[str, str, str | None]]:
    attempts: list[Attempt] = []
    await r.send(chat(), r.candidates(r.route("m"), chat()), attempts)
    return tried(attempts)


@pytest.mark.anyio
async def test_the_circuit_opens_skips_probes_once_and_closes_on_success() -> None:
    clock = FakeClock()
    a, b = Switchable("a", failing=True), Switchable("b")
    r = breaker(clock, a, b)
    down = ("a", "error", "upstream_unavailable")
    assert await serve(r) == [down, ("b", "ok", None)]
    clock.advance(1)
    assert await serve(r) == [down, ("b", "ok", None)]  # the second failure opens it
    assert (await r.circuits.get("a/x")).phase(r.route("m").targets[0].circuit, clock()) is (
        Phase.OPEN
    )
    clock.advance(9.9)
    assert await serve(r) == [("a", "skipped", "circuit_open"), ("b", "ok", None)]
    assert a.calls == 2  # skipped targets are not called
    clock.advance(0.1)  # open_seconds have passed: half-open, one probe goes through
    assert await serve(r) == [down, ("b", "ok", None)]
    assert await serve(r) == [("a", "skipped", "circuit_open"), ("b", "ok", None)]
    clock.advance(10)
    a.failing = False
    assert await serve(r) == [("a", "ok", None)]  # the probe succeeds: closed again
    assert await serve(r) == [("a", "ok", None)]


@pytest.mark.anyio
async def test_failures_spread_wider_than_the_window_do_not_open_the_circuit() -> None:
    clock = FakeClock()
    a, b = Switchable("a", failing=True), Switchable("b")
    r = breaker(clock, a, b)
    for _ in range(4):
        assert (await serve(r))[0] == ("a", "error", "upstream_unavailable")
        clock.advance(31)


@pytest.mark.anyio
async def test_when_every_circuit_is_open_the_model_is_unavailable_without_calling_anyone() -> None:
    clock = FakeClock()
    a, b = Switchable("a", failing=True), Switchable("b", failing=True)
    r = breaker(clock, a, b)
    for _ in range(2):
        with pytest.raises(AllTargetsFailed):
            await serve(r)
    attempts: list[Attempt] = []
    with pytest.raises(AllTargetsFailed) as caught:
        await r.send(chat(), r.candidates(r.route("m"), chat()), attempts)
    assert caught.value.status == 503
    assert [a.status for a in attempts] == ["skipped", "skipped"]
    assert (a.calls, b.calls) == (2, 2)


@pytest.mark.anyio
async def test_an_upstream_4xx_does_not_count_against_the_circuit() -> None:
    clock = FakeClock()
    r = router(
        [model("m", [{"provider": "picky", "model": "x"}], circuit={"failures": 1})],
        {"picky": sim("picky", fail_rate=1, fail_status=422)},
        clock=clock,
    )
    for _ in range(3):
        with pytest.raises(UpstreamRejected):
            await r.send(chat(), r.candidates(r.route("m"), chat()), [])
    assert (await r.circuits.get("picky/x")).opened_at is None


@pytest.mark.anyio
async def test_a_stream_can_be_the_probe_that_closes_a_circuit() -> None:
    clock = FakeClock()
    a, b = Switchable("a", failing=True), Switchable("b")
    r = breaker(clock, a, b)
    for _ in range(2):
        await serve(r)
    clock.advance(10)
    a.failing = False
    env = chat(stream=True)
    attempts: list[Attempt] = []
    _, rest, target = await r.open_stream(env, r.candidates(r.route("m"), env), attempts)
    await rest.aclose()
    assert target.provider_name == "a" and tried(attempts) == [("a", "ok", None)]
    assert (await r.circuits.get("a/x")).opened_at is None
