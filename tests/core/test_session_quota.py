"""A long-lived call's quota (realtime voice): a slot held for the whole session, the budget part
renewed per response, audio reserved ahead in steps; on both counter stores."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core.access import Principal
from core.envelope import Envelope, Modality, Usage
from core.errors import RateLimited
from core.governance import GovernanceGate, Limit, Window
from tests.core.governance_support import Clock, counter_store, priced

pytestmark = pytest.mark.anyio

SESSION = frozenset({"concurrent", "audio_seconds"})
RESPONSE = frozenset({"requests", "total_tokens", "budget"})
CALLER = Principal(key_id="k1", key_name="k1", org_path="support/voice/web")


def voice(**params: object) -> Envelope:
    return Envelope(id="r", modality=Modality.VOICE, model="gpt", stream=True, params=params)


@pytest.fixture(params=["memory", "redis"])
async def gate(request: pytest.FixtureRequest, anyio_backend: str) -> AsyncIterator[GovernanceGate]:
    clock = Clock()
    async with counter_store(request.param, clock) as (counters, prefix):
        limits = [
            Limit("key", "k1", "concurrent", 1),
            Limit("key", "k1", "audio_seconds", 7, Window("minute")),
            Limit("key", "k1", "requests", 100, Window("minute")),
        ]
        yield GovernanceGate(counters, limits=limits, price_for=priced, clock=clock, prefix=prefix)


async def test_renewing_the_budget_part_never_gives_up_the_slot(gate: GovernanceGate) -> None:
    slot, part = gate.split(await gate.reserve(CALLER, voice(), "s1"), SESSION)
    for n in range(3):  # each response settles its part and renews it; the slot stays taken
        await gate.settle(part, Usage(input_tokens=5, output_tokens=5), None)
        with pytest.raises(RateLimited, match="concurrent"):
            await gate.reserve(CALLER, voice(), f"s2-{n}")
        part = await gate.reserve(CALLER, voice(), f"s1.r{n}", only=RESPONSE)
    await gate.settle(part, Usage(), None)
    await gate.settle(slot, Usage(), None)  # the session ends: now the next one fits
    await gate.reserve(CALLER, voice(), "s2")


async def test_audio_is_reserved_ahead_and_refused_past_the_limit(gate: GovernanceGate) -> None:
    steps = [await gate.reserve(CALLER, voice(audio_seconds=5), "s1", only={"audio_seconds"})]
    # An audio step holds no slot: a session still gets in (and gives its slot back).
    await gate.settle(await gate.reserve(CALLER, voice(), "s2"), Usage(), None)
    with pytest.raises(RateLimited, match="audio_seconds"):
        await gate.reserve(CALLER, voice(audio_seconds=5), "s1", only={"audio_seconds"})
    steps.append(await gate.reserve(CALLER, voice(audio_seconds=2), "s1", only={"audio_seconds"}))
    with pytest.raises(RateLimited, match="audio_seconds"):
        await gate.reserve(CALLER, voice(audio_seconds=1), "s1", only={"audio_seconds"})
    # The last step settles down to what was used: 1 of its 2 seconds, so one more fits.
    await gate.settle(steps[-1], Usage(audio_seconds=0.4), None)
    await gate.reserve(CALLER, voice(audio_seconds=1), "s1", only={"audio_seconds"})
    # The allowance is spent: a new session is refused at its handshake.
    with pytest.raises(RateLimited, match="audio_seconds"):
        await gate.reserve(CALLER, voice(), "s3")
