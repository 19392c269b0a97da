"""The circuit breaker's state machine, with time passed in by hand."""

from __future__ import annotations

import pytest

from core.circuit import CircuitState, MemoryCircuitStore, Phase, admit, record
from core.config import Circuit

POLICY = Circuit(failures=3, window_seconds=10, open_seconds=30)


def failed(times: list[float]) -> CircuitState:
    state = CircuitState()
    for t in times:
        state = record(state, False, POLICY, t)
    return state


def test_a_closed_circuit_opens_after_n_failures_within_the_window() -> None:
    assert failed([0, 1]).phase(POLICY, 2) is Phase.CLOSED
    state = failed([0, 1, 2])
    assert state.phase(POLICY, 2) is Phase.OPEN
    assert state.opened_at == 2


def test_failures_older_than_the_window_are_forgotten() -> None:
    state = failed([0, 1, 11.5])  # the first two left the 10 s window before the third
    assert state.phase(POLICY, 11.5) is Phase.CLOSED
    assert state.failures == (11.5,)


def test_successes_while_closed_do_not_reset_the_failure_count_in_the_window() -> None:
    state = record(failed([0, 1]), True, POLICY, 1.5)
    assert record(state, False, POLICY, 2).phase(POLICY, 2) is Phase.OPEN


def test_an_open_circuit_refuses_calls_until_open_seconds_have_passed() -> None:
    state = failed([0, 1, 2])
    allowed, state = admit(state, POLICY, 31.9)
    assert not allowed
    assert state.phase(POLICY, 32) is Phase.HALF_OPEN


def test_half_open_lets_exactly_one_probe_through() -> None:
    state = failed([0, 1, 2])
    first, state = admit(state, POLICY, 40)
    second, state = admit(state, POLICY, 40.5)
    assert (first, second) == (True, False)


def test_a_successful_probe_closes_the_circuit_and_a_failed_one_reopens_it() -> None:
    _, probing = admit(failed([0, 1, 2]), POLICY, 40)
    assert record(probing, True, POLICY, 41) == CircuitState()
    reopened = record(probing, False, POLICY, 41)
    assert reopened.phase(POLICY, 41) is Phase.OPEN
    assert reopened.phase(POLICY, 71) is Phase.HALF_OPEN


def test_a_lost_probe_is_given_up_after_open_seconds() -> None:
    _, probing = admit(failed([0, 1, 2]), POLICY, 40)
    assert not admit(probing, POLICY, 69)[0]
    assert admit(probing, POLICY, 70)[0]


def test_a_late_result_while_open_changes_nothing() -> None:
    state = failed([0, 1, 2])
    assert record(state, True, POLICY, 5) == state
    assert record(state, False, POLICY, 5) == state


@pytest.mark.anyio
async def test_the_memory_store_keeps_one_breaker_per_target() -> None:
    store = MemoryCircuitStore()
    for t in (0.0, 1.0, 2.0):
        assert await store.admit("a/x", POLICY, t)
        await store.record("a/x", False, POLICY, t)
    assert not await store.admit("a/x", POLICY, 3)
    assert await store.admit("b/x", POLICY, 3)
    assert (await store.get("a/x")).opened_at == 2
    assert await store.get("b/x") == CircuitState()
    assert await store.admit("a/x", POLICY, 32)  # the probe
    await store.record("a/x", True, POLICY, 33)
    assert await store.get("a/x") == CircuitState()
