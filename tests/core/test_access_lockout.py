"""Brute force: failures from one address are slowed, then locked out; counted in metrics."""

from __future__ import annotations

import pytest

from core.access import Authenticator, KeyRecord, hash_secret
from core.errors import AuthenticationFailed, AuthThrottled, RateLimited
from core.lockout import LockoutPolicy, MemoryFailureLedger
from core.metrics import Metrics
from store import MemoryStore
from tests.core.test_access import NOW, Clock

ATTACKER = "203.0.113.9"
BYSTANDER = "198.51.100.7"


async def setup(policy: LockoutPolicy | None = None) -> tuple[Authenticator, Clock, Metrics]:
    store = MemoryStore()
    await store.create_key(
        KeyRecord("key_1", "alice", hash_secret("agw_good"), "agw_good", "a/b/c")
    )
    await store.create_key(
        KeyRecord("key_2", "gone", hash_secret("agw_gone"), "agw_gone", "a/b/c", status="revoked")
    )
    clock, metrics = Clock(), Metrics()
    auth = Authenticator(store, clock=clock, failures=MemoryFailureLedger(policy), metrics=metrics)
    return auth, clock, metrics


async def fail(auth: Authenticator, address: str = ATTACKER) -> None:
    with pytest.raises(AuthenticationFailed):
        await auth.authenticate("agw_guess", client=address)


def counter(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    return 0.0 if value is None else value


def test_the_wait_doubles_after_the_free_failures_up_to_the_cap() -> None:
    policy = LockoutPolicy(free_failures=5, base_delay_seconds=1, max_delay_seconds=8)
    assert [policy.delay_after(n) for n in range(1, 11)] == [0, 0, 0, 0, 0, 1, 2, 4, 8, 8]


@pytest.mark.anyio
async def test_failures_past_the_free_ones_make_the_address_wait_even_with_a_valid_key() -> None:
    auth, clock, metrics = await setup()
    for _ in range(5):
        await fail(auth)
    assert await auth.authenticate("agw_good", client=ATTACKER)  # five failures are free
    await fail(auth)  # the sixth asks for a one-second wait
    with pytest.raises(AuthThrottled) as refused:
        await auth.authenticate("agw_good", client=ATTACKER)
    assert refused.value.status == 429
    assert refused.value.headers() == {"Retry-After": "1"}
    assert await auth.authenticate("agw_good", client=BYSTANDER)  # other addresses unaffected
    clock.advance(1.0)
    assert await auth.authenticate("agw_good", client=ATTACKER)
    assert counter(metrics, "agentgw_auth_failures_total") == 6
    assert counter(metrics, "agentgw_auth_throttled_total") == 1


@pytest.mark.anyio
async def test_enough_failures_lock_the_address_out_for_the_lockout_period() -> None:
    policy = LockoutPolicy(lockout_after=20, lockout_seconds=900)
    auth, clock, metrics = await setup(policy)
    for n in range(1, 20):
        await fail(auth)
        clock.advance(policy.delay_after(n))  # the attacker waits out every wait
    assert counter(metrics, "agentgw_auth_lockouts_total") == 0
    await fail(auth)
    with pytest.raises(AuthThrottled) as refused:
        await auth.authenticate("agw_good", client=ATTACKER)
    assert isinstance(refused.value, RateLimited)
    assert refused.value.headers() == {"Retry-After": "900"}
    assert counter(metrics, "agentgw_auth_lockouts_total") == 1
    clock.advance(899)
    with pytest.raises(AuthThrottled):
        await auth.authenticate("agw_good", client=ATTACKER)
    clock.advance(1)
    assert await auth.authenticate("agw_good", client=ATTACKER)


@pytest.mark.anyio
async def test_failures_older_than_the_window_are_forgotten() -> None:
    policy = LockoutPolicy(free_failures=3, window_seconds=60)
    auth, clock, _ = await setup(policy)
    for _ in range(3):
        await fail(auth)
    clock.advance(61)
    for _ in range(3):
        await fail(auth)
    assert await auth.authenticate("agw_good", client=ATTACKER)


@pytest.mark.anyio
async def test_a_revoked_key_is_refused_but_not_counted_as_guessing() -> None:
    auth, _, metrics = await setup(LockoutPolicy(free_failures=1))
    for _ in range(5):
        with pytest.raises(AuthenticationFailed, match="revoked"):
            await auth.authenticate("agw_gone", client=ATTACKER)
    assert await auth.authenticate("agw_good", client=ATTACKER)
    assert counter(metrics, "agentgw_auth_failures_total") == 5


@pytest.mark.anyio
async def test_the_ledger_stays_bounded_under_many_addresses() -> None:
    ledger = MemoryFailureLedger(LockoutPolicy(free_failures=0), max_addresses=100)
    for i in range(1000):
        await ledger.record_failure(f"10.0.{i // 256}.{i % 256}", NOW)
    assert len(ledger._records) <= 100
    assert await ledger.blocked_for("10.0.3.231", NOW) > 0  # the newest are remembered
