"""The counter store: check-and-increment several counters as one atomic step.

Limits and budgets hold exactly only if checking a counter and adding to it cannot interleave with
another request doing the same. `CounterStore.reserve` therefore takes every counter a request
touches and either increments all of them or none. `MemoryCounters` does it in one step of the
event loop (nothing in it awaits, so no other request can run in between);
`store.redis_counters.RedisCounters` does it in one Lua script so replicas share counters.

Every counter is an integer (tokens, requests, seconds, micro-dollars) that lives until its TTL
runs out: window counters are keyed by their bucket, so an expired key is simply last window's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

_SWEEP_SECONDS = 60.0


class CounterUnavailable(Exception):
    """The counter store cannot be reached (Redis down); the gate applies its fail policy."""


@dataclass(frozen=True, slots=True)
class CounterItem:
    """Add `amount` to `key` unless that would take it past `limit` (None: count, never refuse)."""

    key: str
    amount: int
    limit: int | None
    ttl_seconds: float


@dataclass(frozen=True, slots=True)
class CounterAdjustment:
    """Add `delta` (may be negative; the counter never goes below zero) to `key`."""

    key: str
    delta: int
    ttl_seconds: float


@dataclass(frozen=True, slots=True)
class Admission:
    """What `reserve` decided.

    `counts` holds each counter's value after the step, in item order: incremented when `ok`,
    untouched when refused. `refused` is the index of the first item that would have overflowed.
    """

    ok: bool
    counts: tuple[int, ...]
    refused: int | None = None


class CounterStore(Protocol):
    """Shared integer counters for limits and budgets."""

    async def reserve(self, items: Sequence[CounterItem]) -> Admission:
        """Increment every item's counter, or none if any would pass its limit.

        An item refuses when its counter already reached its limit or `count + amount > limit`.

        Raises:
            CounterUnavailable: the store cannot be reached.
        """
        ...

    async def settle(self, adjustments: Sequence[CounterAdjustment]) -> tuple[int, ...]:
        """Apply each delta (a negative one releases, flooring at zero); return the new values.

        Raises:
            CounterUnavailable: the store cannot be reached.
        """
        ...

    async def get(self, keys: Sequence[str]) -> tuple[int, ...]:
        """The current value of each counter (0 when absent or expired).

        Raises:
            CounterUnavailable: the store cannot be reached.
        """
        ...

    async def mark(self, key: str, ttl_seconds: float) -> bool:
        """Set a marker if absent; True for the one caller that set it (dedupes alerts).

        Raises:
            CounterUnavailable: the store cannot be reached.
        """
        ...


@dataclass(slots=True)
class _Cell:
    value: int
    expires_at: float


class MemoryCounters:
    """Counters in this process, for the event loop that serves the calls.

    No method awaits anything, so each runs to its end before another task can start one: a
    check-and-increment cannot interleave with another, with no lock to take (an `anyio.Lock`
    would add two trips through the event loop to every call). Not for use from other threads.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._cells: dict[str, _Cell] = {}
        self._next_sweep = 0.0

    async def reserve(self, items: Sequence[CounterItem]) -> Admission:
        now = self._tick()
        cells = self._cells
        found = [cells.get(item.key) for item in items]
        current = tuple(0 if c is None or c.expires_at <= now else c.value for c in found)
        for index, (item, count) in enumerate(zip(items, current, strict=True)):
            if item.limit is not None and (count >= item.limit or count + item.amount > item.limit):
                return Admission(False, current, index)
        after = []
        for item, count, cell in zip(items, current, found, strict=True):
            value = max(0, count + item.amount)
            if cell is None:
                cells[item.key] = _Cell(value, now + item.ttl_seconds)
            else:  # the same cell, renewed (as a new one would be)
                cell.value, cell.expires_at = value, now + item.ttl_seconds
            after.append(value)
        return Admission(True, tuple(after))

    async def settle(self, adjustments: Sequence[CounterAdjustment]) -> tuple[int, ...]:
        now = self._tick()
        after = []
        for adj in adjustments:
            cell = self._cells.get(adj.key)
            if cell is None or cell.expires_at <= now:
                cell = self._cells[adj.key] = _Cell(0, now + adj.ttl_seconds)
            cell.value = max(0, cell.value + adj.delta)
            after.append(cell.value)
        return tuple(after)

    async def get(self, keys: Sequence[str]) -> tuple[int, ...]:
        now = self._tick()
        return tuple(self._value(key, now) for key in keys)

    async def mark(self, key: str, ttl_seconds: float) -> bool:
        now = self._tick()
        if self._value(key, now):
            return False
        self._cells[key] = _Cell(1, now + ttl_seconds)
        return True

    def _value(self, key: str, now: float) -> int:
        cell = self._cells.get(key)
        return 0 if cell is None or cell.expires_at <= now else cell.value

    def _tick(self) -> float:
        """The time now; drops expired counters once a minute so old buckets do not pile up."""
        now = self._clock()
        if now >= self._next_sweep:
            self._cells = {k: c for k, c in self._cells.items() if c.expires_at > now}
            self._next_sweep = now + _SWEEP_SECONDS
        return now
