"""The gate checks every level above a call, counts every modality's units, and runs limits in
shadow mode (`alert-only`) beside blocking ones."""

from __future__ import annotations

import dataclasses
from typing import get_args

import pytest

from core.access import Principal
from core.envelope import Envelope, Modality, Usage
from core.errors import QuotaExceeded, RateLimited
from core.governance import (
    Budget,
    GateAlert,
    GovernanceGate,
    Kind,
    Level,
    Limit,
    LimitAlert,
    MemoryCounters,
    Window,
)
from tests.core.governance_support import Clock, priced, request

pytestmark = pytest.mark.anyio
ESTIMATE_USD = (1 * 6 + 2 * 100) / 1_000_000  # 6 prompt tokens at $1/M, 100 max tokens at $2/M
CALLER = Principal("k1", "k1", "research/agents/triage", app="batch", customer="acme")
TARGETS: dict[Level, str] = {
    "key": "k1",
    "project": "research/agents/triage",
    "team": "research/agents",
    "department": "research",
    "organization": "*",
    "customer": "acme",
    "app": "batch",
    "agent": "indexer",
}


def gate(
    limits: list[Limit] = [],  # noqa: B006 (never mutated)
    budgets: list[Budget] = [],  # noqa: B006
    alerts: list[GateAlert] | None = None,
) -> GovernanceGate:
    sink = [] if alerts is None else alerts

    async def collect(alert: GateAlert) -> None:
        sink.append(alert)

    return GovernanceGate(MemoryCounters(Clock()), limits=limits, budgets=budgets,
                          price_for=priced, alert_sink=collect, clock=Clock())  # fmt: skip


def test_every_level_has_a_target_here() -> None:
    assert set(TARGETS) == set(get_args(Level))


@pytest.mark.parametrize("level", list(TARGETS))
async def test_the_tightest_budget_decides_at_every_level(level: Level) -> None:
    roomy = [Budget(lvl, tgt, 1.0) for lvl, tgt in TARGETS.items() if lvl != level]
    tight = Budget(level, TARGETS[level], ESTIMATE_USD)
    g = gate(budgets=[*roomy, tight])
    await g.reserve(CALLER, request(agent="indexer"), "r1")
    with pytest.raises(QuotaExceeded) as refused:
        await g.reserve(CALLER, request(agent="indexer"), "r2")
    assert refused.value.message.startswith(f"budget of {level} {TARGETS[level]} ")
    assert refused.value.code == "insufficient_quota"


@pytest.mark.parametrize("level", list(TARGETS))
async def test_the_tightest_limit_decides_at_every_level(level: Level) -> None:
    roomy = [Limit(lvl, tgt, "requests", 100) for lvl, tgt in TARGETS.items() if lvl != level]
    tight = Limit(level, TARGETS[level], "requests", 1, Window("hour"))
    g = gate(limits=[*roomy, tight])
    await g.reserve(CALLER, request(agent="indexer"), "r1")
    with pytest.raises(RateLimited) as refused:
        await g.reserve(CALLER, request(agent="indexer"), "r2")
    assert f"limit of {level} {TARGETS[level]}" in refused.value.message
    assert refused.value.retry_after == 3600 - 20  # the clock stands 20 s into the hour


async def test_a_rule_for_another_target_or_model_does_not_apply() -> None:
    others = [Limit("team", "research/other", "requests", 0), Limit("key", "k1", "requests", 0,
              model="other-model"), Budget("customer", "globex", 0.0)]  # fmt: skip
    g = gate(limits=[r for r in others if isinstance(r, Limit)],
             budgets=[r for r in others if isinstance(r, Budget)])  # fmt: skip
    for i in range(3):
        await g.reserve(CALLER, request(), f"r{i}")


async def test_a_shadow_limit_lets_calls_through_alerts_once_and_sends_no_headers() -> None:
    alerts: list[GateAlert] = []
    shadow = Limit("team", "research/agents", "requests", 1, action="alert-only")
    g = gate(limits=[shadow], alerts=alerts)
    held = [await g.reserve(CALLER, request(), f"r{i}") for i in range(4)]
    assert await g.used(shadow) == 4
    assert alerts == [LimitAlert("team", "research/agents", "requests", 1, 2, "minute",
                                 "1800000000")]  # fmt: skip
    assert g.headers(held[0]) == {}


async def test_a_shadow_limit_beside_a_blocking_one_of_the_same_shape_keeps_its_own_count() -> None:
    alerts: list[GateAlert] = []
    block = Limit("key", "k1", "requests", 3)
    shadow = dataclasses.replace(block, amount=1, action="alert-only")
    g = gate(limits=[block, shadow], alerts=alerts)
    for i in range(3):
        await g.reserve(CALLER, request(), f"r{i}")
    with pytest.raises(RateLimited):
        await g.reserve(CALLER, request(), "r4")
    assert (await g.used(block), await g.used(shadow)) == (3, 3)
    assert [a.amount for a in alerts if isinstance(a, LimitAlert)] == [1]


def media(modality: Modality, **params: object) -> Envelope:
    env = request(model="gpt", max_tokens=None)
    env.modality = modality
    env.params.update(params)
    return env


@pytest.mark.parametrize(
    ("kind", "modality", "usage"),
    [
        ("audio_seconds", Modality.VOICE, Usage(audio_seconds=7.2)),
        ("video_seconds", Modality.VIDEO, Usage(video_seconds=8.0)),
        ("images", Modality.IMAGE, Usage(images=8)),
    ],
)
async def test_media_units_are_counted_from_metered_usage_and_stop_the_next_call(
    kind: Kind, modality: Modality, usage: Usage
) -> None:
    limit = Limit("key", "k1", kind, 8)
    g = gate(limits=[limit])
    env = media(modality)
    first = await g.reserve(CALLER, env, "m1")
    await g.settle(first, usage, None)
    assert await g.used(limit) == 8  # 7.2 s counts as 8: seconds are rounded up
    with pytest.raises(RateLimited, match=f"{kind} per minute limit of key k1"):
        await g.reserve(CALLER, env, "m2")
    await g.reserve(CALLER, request(), "chat")  # another modality's allowance is untouched


async def test_an_image_request_reserves_the_images_it_asks_for() -> None:
    limit = Limit("key", "k1", "images", 4)
    g = gate(limits=[limit])
    await g.reserve(CALLER, media(Modality.IMAGE, n=3), "i1")
    with pytest.raises(RateLimited):
        await g.reserve(CALLER, media(Modality.IMAGE, n=2), "i2")
    assert await g.used(limit) == 3
