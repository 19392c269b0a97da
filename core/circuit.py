"""Per-target circuit breakers: stop sending to an upstream that keeps failing, probe it later.

    closed ──N failures within window_seconds──▶ open
    open ──open_seconds pass──▶ half-open: one probe call is let through
    half-open ──probe succeeds──▶ closed      half-open ──probe fails──▶ open again

A failure is a retryable error (5xx, timeout, refused connection, upstream 429). An upstream 4xx
is the request's fault, not the upstream's: it counts as the upstream being alive.

The transitions are pure functions over `CircuitState`; a `CircuitStore` keeps one state per
target key and applies them atomically. `MemoryCircuitStore` serves one process; a Redis store
(shared across replicas) implements the same protocol. Time is passed in by the caller (the
router's injectable clock), so tests drive it without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from core.config import Circuit
from core.errors import UpstreamUnavailable


class CircuitOpen(UpstreamUnavailable):
    """A target was skipped because its circuit is open (503 when every target was skipped)."""

    code = "circuit_open"


class Phase(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class CircuitState:
    """One target's breaker.

    Attributes:
        failures: times of the recent failures while closed (only those inside the window count).
        opened_at: when the circuit last opened; None while closed.
        probe_at: when the half-open probe was let through; None if none is in flight.
    """

    failures: tuple[float, ...] = ()
    opened_at: float | None = None
    probe_at: float | None = None

    def phase(self, policy: Circuit, now: float) -> Phase:
        if self.opened_at is None:
            return Phase.CLOSED
        if now < self.opened_at + policy.open_seconds:
            return Phase.OPEN
        return Phase.HALF_OPEN


_CLOSED = CircuitState()


def admit(state: CircuitState, policy: Circuit, now: float) -> tuple[bool, CircuitState]:
    """Whether a call may go ahead now, and the state after the decision.

    In half-open, the first caller claims the single probe; the others are refused until it
    reports. A probe that never reports (its caller was cancelled) is given up after
    `open_seconds`, so a lost probe cannot hold the circuit half-open for ever.
    """
    match state.phase(policy, now):
        case Phase.CLOSED:
            return True, state
        case Phase.OPEN:
            return False, state
        case Phase.HALF_OPEN:
            if state.probe_at is not None and now < state.probe_at + policy.open_seconds:
                return False, state
            return True, CircuitState(opened_at=state.opened_at, probe_at=now)


def record(state: CircuitState, ok: bool, policy: Circuit, now: float) -> CircuitState:
    """The state after a call through this breaker succeeded (`ok`) or failed."""
    match state.phase(policy, now):
        case Phase.CLOSED:
            if ok:
                return state
            recent = tuple(t for t in state.failures if t > now - policy.window_seconds)
            failures = (*recent, now)
            if len(failures) >= policy.failures:
                return CircuitState(opened_at=now)
            return CircuitState(failures=failures)
        case Phase.OPEN:
            # A straggler admitted before the circuit opened proves nothing either way.
            return state
        case Phase.HALF_OPEN:
            return CircuitState() if ok else CircuitState(opened_at=now)


class CircuitStore(Protocol):
    """Where breaker states live, keyed by target (`provider/model`)."""

    async def admit(self, key: str, policy: Circuit, now: float) -> bool:
        """Whether a call to `key` may go ahead now (claims the probe when half-open)."""
        ...

    async def record(self, key: str, ok: bool, policy: Circuit, now: float) -> None:
        """Report how a call that `admit` let through ended."""
        ...

    async def get(self, key: str) -> CircuitState:
        """The current state of `key` (closed and empty when never seen)."""
        ...


class MemoryCircuitStore:
    """Breaker states of one process. Each operation is atomic: none of them awaits."""

    def __init__(self) -> None:
        self._states: dict[str, CircuitState] = {}

    async def admit(self, key: str, policy: Circuit, now: float) -> bool:
        state = self._states.get(key)
        if state is None:  # closed, no failures: `admit` lets it through and changes nothing
            return True
        allowed, state = admit(state, policy, now)
        self._put(key, state)
        return allowed

    async def record(self, key: str, ok: bool, policy: Circuit, now: float) -> None:
        state = self._states.get(key)
        if state is None:
            if ok:  # a success on a closed, clean breaker leaves it as it is
                return
            state = _CLOSED
        self._put(key, record(state, ok, policy, now))

    async def get(self, key: str) -> CircuitState:
        return self._states.get(key, _CLOSED)

    def _put(self, key: str, state: CircuitState) -> None:
        # A closed breaker with no failures is the default: keep the map to troubled targets.
        if state == _CLOSED:
            self._states.pop(key, None)
        else:
            self._states[key] = state
