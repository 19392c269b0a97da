"""Brute-force protection: repeated failed authentication from one address is slowed, then refused.

The policy never sleeps on the server. After `free_failures` failures an address must wait before
its next attempt (1 s, 2 s, 4 s … up to `max_delay`); an attempt inside that wait is refused with a
429 and `Retry-After` before its key is even looked up. `lockout_after` failures inside the window
lock the address out for `lockout_seconds`. Every attempt inside a wait is refused, valid key or
not: letting valid keys through would tell a guesser which guess was right.

`FailureLedger` is the seam: `MemoryFailureLedger` counts in this process;
`store.redis_lockout.RedisFailureLedger` shares the counts across replicas. Time is passed in,
so tests drive it without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """How many failures are free, how the wait grows, and when an address is locked out."""

    free_failures: int = 5
    base_delay_seconds: float = 1.0
    max_delay_seconds: float = 60.0
    lockout_after: int = 20
    lockout_seconds: float = 900.0
    window_seconds: float = 900.0

    def delay_after(self, failures: int) -> float:
        """The wait imposed after the `failures`-th failure inside the window (0: none)."""
        if failures <= self.free_failures:
            return 0.0
        exponent = min(failures - self.free_failures - 1, 30)
        return float(min(self.max_delay_seconds, self.base_delay_seconds * 2**exponent))


@dataclass(frozen=True, slots=True)
class FailureOutcome:
    """What one more failure did: how long the address must now wait, and whether it is locked."""

    retry_after: float
    locked_out: bool


class FailureLedger(Protocol):
    """Counts failed authentications per client address."""

    async def blocked_for(self, address: str, now: float) -> float:
        """Seconds until `address` may try again; 0 when it may try now."""
        ...

    async def record_failure(self, address: str, now: float) -> FailureOutcome:
        """Count one failure from `address` and return the wait it now has to observe."""
        ...


@dataclass(slots=True)
class _AddressRecord:
    failures: list[float] = field(default_factory=list)
    blocked_until: float = 0.0


class MemoryFailureLedger:
    """A `FailureLedger` in this process's memory, bounded in the addresses it remembers."""

    def __init__(self, policy: LockoutPolicy | None = None, *, max_addresses: int = 100_000):
        self.policy = policy or LockoutPolicy()
        self._max = max_addresses
        self._records: dict[str, _AddressRecord] = {}

    async def blocked_for(self, address: str, now: float) -> float:
        """Seconds until `address` may try again; 0 when it may try now."""
        record = self._records.get(address)
        return 0.0 if record is None else max(0.0, record.blocked_until - now)

    async def record_failure(self, address: str, now: float) -> FailureOutcome:
        """Count one failure from `address` and return the wait it now has to observe."""
        policy = self.policy
        record = self._records.get(address)
        if record is None:
            self._forget_stale(now)
            record = self._records[address] = _AddressRecord()
        horizon = now - policy.window_seconds
        record.failures = [t for t in record.failures if t > horizon]
        record.failures.append(now)
        if len(record.failures) >= policy.lockout_after:
            # The count starts afresh after a lockout: the next round earns the next lockout.
            record.failures.clear()
            record.blocked_until = now + policy.lockout_seconds
            return FailureOutcome(policy.lockout_seconds, locked_out=True)
        delay = policy.delay_after(len(record.failures))
        record.blocked_until = max(record.blocked_until, now + delay)
        return FailureOutcome(max(0.0, record.blocked_until - now), locked_out=False)

    def _forget_stale(self, now: float) -> None:
        if len(self._records) < self._max:
            return
        horizon = now - self.policy.window_seconds
        for address in [
            a
            for a, r in self._records.items()
            if r.blocked_until <= now and all(t <= horizon for t in r.failures)
        ]:
            del self._records[address]
        # Still full of live records (an attack from very many addresses): drop the oldest
        # rather than grow without bound; each dropped address merely starts counting again.
        while len(self._records) >= self._max:
            del self._records[next(iter(self._records))]
