"""The governance gate over both counter stores: limits and budgets hold exactly."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import anyio
import pytest

from core.access import Principal
from core.envelope import Modality, Usage
from core.errors import QuotaExceeded, RateLimited
from core.governance import (
    Alert,
    Budget,
    CounterStore,
    GateAlert,
    GovernanceGate,
    Limit,
    Window,
    to_micros,
)
from core.quota import Reservation
from tests.core.governance_support import Clock, counter_store, priced, principal, request

pytestmark = pytest.mark.anyio


@dataclass
class Backend:
    counters: CounterStore
    prefix: str
    clock: Clock

    def gate(
        self,
        limits: Sequence[Limit] = (),
        budgets: Sequence[Budget] = (),
        alerts: list[GateAlert] | None = None,
    ) -> GovernanceGate:
        sink = alerts if alerts is not None else []

        async def collect(alert: GateAlert) -> None:
            sink.append(alert)

        return GovernanceGate(
            self.counters,
            limits=limits,
            budgets=budgets,
            price_for=priced,
            alert_sink=collect,
            clock=self.clock,
            prefix=self.prefix,
        )


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest, anyio_backend: str) -> AsyncIterator[Backend]:
    clock = Clock()
    async with counter_store(request.param, clock) as (counters, prefix):
        yield Backend(counters, prefix, clock)


ESTIMATE_MICROS = 1 * 6 + 2 * 100  # 6 prompt tokens at $1/M, 100 max tokens at $2/M


async def test_exactly_n_of_200_concurrent_reservations_pass_a_budget_and_spend_is_exact(
    backend: Backend,
) -> None:
    n = 37
    budget = Budget("team", "research/agents", n * ESTIMATE_MICROS / 1_000_000, "day")
    gate = backend.gate(budgets=[budget])
    admitted: list[Reservation] = []
    refused: list[QuotaExceeded] = []

    async def one(i: int) -> None:
        try:
            admitted.append(await gate.reserve(principal(f"k{i}"), request(), f"r{i}"))
        except QuotaExceeded as exc:
            refused.append(exc)

    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(one, i)
    assert (len(admitted), len(refused)) == (n, 200 - n)
    costs = [(11 + 7 * i) / 1_000_000 + 0.0000004 for i in range(n)]
    for i, (reservation, cost) in enumerate(zip(admitted, costs, strict=True)):
        await gate.settle(reservation, Usage(input_tokens=6, output_tokens=5 + i), cost)
    assert await gate.used(budget) == sum(to_micros(c) for c in costs)


async def test_token_per_minute_limit_counts_settled_usage_not_the_estimate(
    backend: Backend,
) -> None:
    per_minute = Limit("key", "k1", "total_tokens", 150)
    gate = backend.gate(limits=[per_minute])
    first = await gate.reserve(principal(), request(max_tokens=100), "r1")
    with pytest.raises(RateLimited) as refused:
        await gate.reserve(principal(), request(max_tokens=100), "r2")
    assert "total_tokens per minute limit of key k1" in refused.value.message
    assert refused.value.retry_after == 40.0  # the clock sits 20 s into its minute
    await gate.settle(first, Usage(input_tokens=6, output_tokens=14), 0.00004)
    await gate.reserve(principal(), request(max_tokens=100), "r2")
    assert await gate.used(per_minute) == 20 + 106


async def test_tighter_team_budget_stops_a_key_whose_own_budget_is_unspent(
    backend: Backend,
) -> None:
    key_budget = Budget("key", "k1", 1.0, "month")
    team_budget = Budget("team", "research/agents", 2 * ESTIMATE_MICROS / 1_000_000, "month")
    gate = backend.gate(budgets=[key_budget, team_budget])
    await gate.reserve(principal("k1"), request(), "r1")
    await gate.reserve(principal("k2"), request(), "r2")
    with pytest.raises(QuotaExceeded) as refused:
        await gate.reserve(principal("k1"), request(), "r3")
    assert refused.value.message == "budget of team research/agents is spent"
    assert refused.value.code == "insufficient_quota"
    assert await gate.used(key_budget) == ESTIMATE_MICROS


async def test_shadow_budget_admits_everything_and_alerts_once_per_threshold(
    backend: Backend,
) -> None:
    alerts: list[GateAlert] = []
    budget = Budget("department", "research", 4 * ESTIMATE_MICROS / 1_000_000, action="alert-only")
    gate = backend.gate(budgets=[budget], alerts=alerts)
    for i in range(10):
        await gate.reserve(principal(), request(), f"r{i}")
    crossed = [a for a in alerts if isinstance(a, Alert)]
    assert [a.threshold for a in crossed] == [0.5, 0.8, 1.0] and crossed == alerts
    assert crossed[-1].target == "research"
    assert crossed[-1].spent_usd == 4 * ESTIMATE_MICROS / 1_000_000
    assert await gate.used(budget) == 10 * ESTIMATE_MICROS


async def test_alerts_are_deduplicated_across_gates_sharing_the_counters(
    backend: Backend,
) -> None:
    alerts: list[GateAlert] = []
    budget = Budget("key", "k1", 2 * ESTIMATE_MICROS / 1_000_000, thresholds=(0.5,))
    first, second = backend.gate(budgets=[budget], alerts=alerts), backend.gate(budgets=[budget])
    await first.reserve(principal(), request(), "r1")
    release = await first.reserve(principal(), request(), "r2")
    await first.settle(release, Usage(), None)  # back under 50 %: the crossing is not repeated
    await second.reserve(principal(), request(), "r3")
    assert [a.threshold for a in alerts if isinstance(a, Alert)] == [0.5] and len(alerts) == 1


async def test_concurrency_slot_is_released_on_settle(backend: Backend) -> None:
    gate = backend.gate(limits=[Limit("app", "batch", "concurrent", 2)])
    caller = Principal(key_id="k1", key_name="k1", org_path="", app="batch")
    one = await gate.reserve(caller, request(), "r1")
    await gate.reserve(caller, request(), "r2")
    with pytest.raises(RateLimited, match="concurrent limit of app batch is reached"):
        await gate.reserve(caller, request(), "r3")
    await gate.settle(one, Usage(input_tokens=6, output_tokens=1), 0.00001)
    await gate.reserve(caller, request(), "r3")


async def test_request_window_rolls_over_with_the_clock(backend: Backend) -> None:
    gate = backend.gate(limits=[Limit("key", "k1", "requests", 1, Window("minute"))])
    await gate.reserve(principal(), request(), "r1")
    with pytest.raises(RateLimited) as refused:
        await gate.reserve(principal(), request(), "r2")
    backend.clock.now += refused.value.retry_after
    await gate.reserve(principal(), request(), "r2")


async def test_model_without_price_is_refused_by_an_applicable_budget(backend: Backend) -> None:
    gate = backend.gate(budgets=[Budget("department", "research", 100.0)])
    with pytest.raises(QuotaExceeded, match="model mystery: it has no price"):
        await gate.reserve(principal(), request(model="mystery"), "r1")
    other = principal("k9", org_path="sales")
    await gate.reserve(other, request(model="mystery"), "r2")  # no budget applies to sales


async def test_settling_twice_changes_nothing(backend: Backend) -> None:
    budget = Budget("key", "k1", 1.0)
    gate = backend.gate(budgets=[budget])
    reservation = await gate.reserve(principal(), request(), "r1")
    await gate.settle(reservation, Usage(input_tokens=6, output_tokens=10), 0.000026)
    await gate.settle(reservation, Usage(), None)
    assert await gate.used(budget) == 26


async def test_unpriced_fallback_keeps_the_estimate_and_failure_returns_it(
    backend: Backend,
) -> None:
    budget = Budget("key", "k1", 1.0)
    gate = backend.gate(budgets=[budget])
    served = await gate.reserve(principal(), request(), "r1")
    failed = await gate.reserve(principal(), request(), "r2")
    await gate.settle(served, Usage(input_tokens=6, output_tokens=3), None)
    await gate.settle(failed, Usage(), None)
    assert await gate.used(budget) == ESTIMATE_MICROS


async def test_rate_limit_headers_report_the_tightest_limits(backend: Backend) -> None:
    limits = [
        Limit("key", "k1", "requests", 10),
        Limit("team", "research/agents", "requests", 3, Window("hour")),
        Limit("key", "k1", "total_tokens", 1000),
    ]
    gate = backend.gate(limits=limits)
    reservation = await gate.reserve(principal(), request(), "r1")
    assert gate.headers(reservation) == {
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "2",
        "x-ratelimit-reset-requests": "59m40s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "894",
        "x-ratelimit-reset-tokens": "40s",
    }


async def test_nightly_allowance_applies_only_inside_its_window(backend: Backend) -> None:
    nightly = Limit("agent", "indexer", "requests", 1, Window("22:00-06:00"))
    gate = backend.gate(limits=[nightly])
    midnight = backend.clock.now - backend.clock.now % 86400
    backend.clock.now = midnight + 12 * 3600  # noon: the nightly limit is off
    for i in range(3):
        await gate.reserve(principal(), request(agent="indexer"), f"day{i}")
    backend.clock.now = midnight + 23 * 3600
    await gate.reserve(principal(), request(agent="indexer"), "n1")
    backend.clock.now += 4 * 3600  # 03:00, same night
    with pytest.raises(RateLimited) as refused:
        await gate.reserve(principal(), request(agent="indexer"), "n2")
    assert refused.value.retry_after == 3 * 3600
    backend.clock.now += 20 * 3600  # 23:00 the next night: a fresh allowance
    await gate.reserve(principal(), request(agent="indexer"), "n3")


async def test_spent_tool_call_allowance_does_not_stop_chat(backend: Backend) -> None:
    gate = backend.gate(limits=[Limit("key", "k1", "tool_calls", 1)])
    tool_call = request(model="search")
    tool_call.modality = Modality.TOOL
    await gate.reserve(principal(), tool_call, "t1")
    with pytest.raises(RateLimited, match="tool_calls per minute limit of key k1"):
        await gate.reserve(principal(), tool_call, "t2")
    await gate.reserve(principal(), request(), "c1")


async def test_a_reset_zeroes_the_window_and_rearms_its_alerts(backend: Backend) -> None:
    alerts: list[GateAlert] = []
    budget = Budget("key", "k1", 2 * ESTIMATE_MICROS / 1_000_000, thresholds=(0.5,))
    shadow = Limit("key", "k1", "requests", 0, action="alert-only")
    gate = backend.gate(limits=[shadow], budgets=[budget], alerts=alerts)
    await gate.reserve(principal(), request(), "r1")  # crosses 50 %; the shadow limit would refuse
    await gate.reserve(principal(), request(), "r2")  # nothing new: each alert once per window
    assert await gate.reset(budget) == 2 * ESTIMATE_MICROS
    assert await gate.reset(shadow) == 2
    assert (await gate.used(budget), await gate.used(shadow)) == (0, 0)
    await gate.reserve(principal(), request(), "r3")  # both alert again after the reset
    windows = [(type(a).__name__, getattr(a, "window", None), getattr(a, "bucket", None))
               for a in alerts]  # fmt: skip
    assert [w[0] for w in windows] == ["Alert", "LimitAlert", "Alert", "LimitAlert"]
    assert windows[2][1] == f"{windows[0][1]}:r1" and windows[3][2] == f"{windows[1][2]}:r1"
