"""Tool calls under budgets and limits: reserved at their per-call price, counted as tool calls.

The governance gate is driven with a tool call's envelope as `Pipeline.call_tool` builds it (the
tool's name in `model`); the path end-to-end is in `tests/e2e/test_mcp_bridge.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest

from core.envelope import Envelope, Message, Modality, ToolCallPart, Usage
from core.errors import QuotaExceeded, RateLimited
from core.governance import Budget, CounterStore, GovernanceGate, Limit, Window
from tests.core.governance_support import Clock, counter_store, priced, principal

pytestmark = pytest.mark.anyio

TEAM = "research/agents"
PRICE = 0.002


@dataclass
class Gates:
    counters: CounterStore
    prefix: str
    clock: Clock

    def gate(self, limits: Sequence[Limit] = (), budgets: Sequence[Budget] = ()) -> GovernanceGate:
        return GovernanceGate(
            self.counters,
            limits=limits,
            budgets=budgets,
            price_for=priced,
            clock=self.clock,
            prefix=self.prefix,
        )


@pytest.fixture(params=["memory", "redis"])
async def gates(request: pytest.FixtureRequest) -> AsyncIterator[Gates]:
    clock = Clock()
    async with counter_store(request.param, clock) as (counters, prefix):
        yield Gates(counters, prefix, clock)


def tool_call(name: str = "calc__add") -> Envelope:
    call = Message("assistant", [ToolCallPart(name, name, '{"a": 1, "b": 2}')])
    return Envelope("r", Modality.TOOL, name, messages=[call])


async def test_a_priced_tool_passes_a_budget_until_it_is_spent(gates: Gates) -> None:
    gate = gates.gate(budgets=[Budget("team", TEAM, 0.005, "day")])
    for n in range(2):
        held = await gate.reserve(principal(), tool_call(), f"r{n}", cost_usd=PRICE)
        assert held.estimated_cost_usd == pytest.approx(PRICE)
        await gate.settle(held, Usage(), PRICE)
    with pytest.raises(QuotaExceeded, match="budget of team research/agents is spent"):
        await gate.reserve(principal(), tool_call(), "r2", cost_usd=PRICE)
    # A cheaper tool still fits the 0.001 left.
    await gate.reserve(principal(), tool_call("calc__cheap"), "r3", cost_usd=0.001)


async def test_an_unpriced_tool_is_refused_by_a_block_budget_never_counted_as_free(
    gates: Gates,
) -> None:
    gate = gates.gate(budgets=[Budget("team", TEAM, 5.0, "day")])
    with pytest.raises(QuotaExceeded, match="no price"):
        await gate.reserve(principal(), tool_call(), "r0")
    # A free tool (price 0) is priced: it passes.
    await gate.reserve(principal(), tool_call(), "r1", cost_usd=0.0)


async def test_tool_calls_count_against_tool_call_limits_and_reserve_no_model_tokens(
    gates: Gates,
) -> None:
    day = Window("day")
    limits = [
        Limit("team", TEAM, "tool_calls", 2, day),
        Limit("team", TEAM, "tool_calls", 1, day, tool="calc__multiply"),
        # A tool call produces no model tokens: a token limit never refuses it.
        Limit("team", TEAM, "total_tokens", 100, day),
    ]
    gate = gates.gate(limits)
    await gate.reserve(principal(), tool_call("calc__multiply"), "r0", cost_usd=PRICE)
    with pytest.raises(RateLimited, match="limit on calc__multiply of team"):
        await gate.reserve(principal(), tool_call("calc__multiply"), "r1", cost_usd=PRICE)
    await gate.reserve(principal(), tool_call("calc__add"), "r2", cost_usd=PRICE)
    with pytest.raises(RateLimited, match="tool_calls per day limit of team"):
        await gate.reserve(principal(), tool_call("calc__add"), "r3", cost_usd=PRICE)
