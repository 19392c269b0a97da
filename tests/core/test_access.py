"""The Authenticator: key lifecycle, rotation grace, the key cache, IP allowlists and roles."""

from __future__ import annotations

import dataclasses
from typing import get_args

import anyio
import pytest

from core.access import (
    ROLES,
    ROOT_KEY_ID,
    Authenticator,
    KeyRecord,
    Principal,
    Scopes,
    authorize_data_plane,
    authorize_model,
    authorize_tool,
    bearer_secret,
    hash_secret,
)
from core.errors import AuthenticationFailed, PermissionDenied
from core.keyspec import Role
from store import MemoryStore

NOW = 1_800_000_000.0


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def key(secret: str = "agw_current", **changes: object) -> KeyRecord:
    record = KeyRecord(
        id="key_1",
        name="alice",
        key_hash=hash_secret(secret),
        prefix=secret[:12],
        org_path="research/agents/demo",
        created_at=NOW - 100,
        updated_at=NOW - 100,
    )
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


async def authenticator(*records: KeyRecord, clock: Clock | None = None) -> Authenticator:
    store = MemoryStore()
    for record in records:
        await store.create_key(record)
    return Authenticator(store, clock=clock or Clock())


@pytest.mark.anyio
async def test_a_valid_key_yields_its_principal() -> None:
    auth = await authenticator(key(app="helpdesk", tags={"cost-center": "42"}))
    principal = await auth.authenticate("agw_current", client="10.0.0.1")
    assert principal.key_id == "key_1"
    assert principal.org_path == "research/agents/demo"
    assert (principal.department, principal.team, principal.project) == (
        "research",
        "agents",
        "demo",
    )
    assert principal.app == "helpdesk"
    assert principal.tags == {"cost-center": "42"}


@pytest.mark.anyio
@pytest.mark.parametrize("secret", [None, "", "agw_unknown"])
async def test_a_missing_or_unknown_key_is_refused(secret: str | None) -> None:
    auth = await authenticator(key())
    with pytest.raises(AuthenticationFailed):
        await auth.authenticate(secret, client="10.0.0.1")


@pytest.mark.anyio
async def test_during_the_grace_period_both_secrets_work_and_after_it_only_the_new_one() -> None:
    clock = Clock()
    rotated = key(
        "agw_new",
        previous_hash=hash_secret("agw_old"),
        previous_prefix="agw_old",
        retires_at=NOW + 60,
        rotated_at=NOW,
    )
    auth = await authenticator(rotated, clock=clock)
    assert (await auth.authenticate("agw_old")).key_id == "key_1"
    assert (await auth.authenticate("agw_new")).key_id == "key_1"
    clock.advance(59.9)
    assert (await auth.authenticate("agw_old")).key_id == "key_1"
    clock.advance(0.1)
    with pytest.raises(AuthenticationFailed, match="agw_old… was rotated"):
        await auth.authenticate("agw_old")
    assert (await auth.authenticate("agw_new")).key_id == "key_1"


@pytest.mark.anyio
async def test_a_rotation_without_grace_stops_the_old_secret_at_once() -> None:
    rotated = key("agw_new", previous_hash=hash_secret("agw_old"), retires_at=NOW)
    auth = await authenticator(rotated)
    with pytest.raises(AuthenticationFailed, match="grace period is over"):
        await auth.authenticate("agw_old")
    assert (await auth.authenticate("agw_new")).key_id == "key_1"


@pytest.mark.anyio
async def test_a_revoked_key_stops_both_its_secrets() -> None:
    revoked = key("agw_new", previous_hash=hash_secret("agw_old"), retires_at=NOW + 60)
    auth = await authenticator(dataclasses.replace(revoked, status="revoked"))
    for secret in ("agw_new", "agw_old"):
        with pytest.raises(AuthenticationFailed, match="is revoked"):
            await auth.authenticate(secret)


@pytest.mark.anyio
async def test_a_key_works_until_its_expiry_and_not_from_then_on() -> None:
    clock = Clock()
    auth = await authenticator(key(expires_at=NOW + 10), clock=clock)
    assert await auth.authenticate("agw_current")
    clock.advance(10)
    with pytest.raises(AuthenticationFailed, match="has expired"):
        await auth.authenticate("agw_current")


@pytest.mark.anyio
async def test_a_change_in_the_store_shows_within_the_cache_ttl_and_forget_shows_it_at_once() -> (
    None
):
    clock = Clock()
    store = MemoryStore()
    await store.create_key(key())
    auth = Authenticator(store, clock=clock, ttl_seconds=1.0)
    await auth.authenticate("agw_current")  # cached now
    await store.set_key_status("key_1", "revoked")  # another process's CLI
    await auth.authenticate("agw_current")  # still within the second
    clock.advance(1.0)
    with pytest.raises(AuthenticationFailed):
        await auth.authenticate("agw_current")
    await store.set_key_status("key_1", "active")
    auth.forget()  # a change made in this process
    assert await auth.authenticate("agw_current")


@pytest.mark.anyio
async def test_the_cache_spares_the_store_a_lookup_per_call() -> None:
    class CountingStore(MemoryStore):
        lookups = 0

        async def find_key(self, key_hash: str) -> KeyRecord | None:
            CountingStore.lookups += 1
            return await super().find_key(key_hash)

    store = CountingStore()
    await store.create_key(key())
    auth = Authenticator(store, clock=Clock())
    for _ in range(100):
        await auth.authenticate("agw_current")
    assert CountingStore.lookups == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("client", "allowed"),
    [
        ("10.1.2.3", True),
        ("192.168.0.9", True),
        ("::ffff:10.9.9.9", True),
        ("2001:db8::1", True),
        ("11.0.0.1", False),
        ("192.168.1.1", False),
        ("2001:db9::1", False),
        (None, False),
        ("not-an-address", False),
    ],
)
async def test_the_ip_allowlist_admits_only_its_networks(client: str | None, allowed: bool) -> None:
    scopes = Scopes(ip_allowlist=("10.0.0.0/8", "192.168.0.9/32", "2001:db8::/32"))
    auth = await authenticator(key(scopes=scopes))
    if allowed:
        assert await auth.authenticate("agw_current", client=client)
    else:
        with pytest.raises(PermissionDenied, match="ip_allowlist"):
            await auth.authenticate("agw_current", client=client)


@pytest.mark.anyio
async def test_the_bootstrap_admin_secret_is_trusted_and_is_no_data_plane_key() -> None:
    auth = await authenticator()
    with pytest.raises(AuthenticationFailed):
        await auth.authenticate("root-secret")
    auth.trust_root(hash_secret("root-secret"))
    principal = await auth.authenticate("root-secret")
    assert (principal.key_id, principal.role) == (ROOT_KEY_ID, "admin")
    with pytest.raises(PermissionDenied, match="admin API only"):
        authorize_data_plane(principal)


@pytest.mark.parametrize("role", [r for r in ROLES if r != "user"])
def test_only_user_keys_may_call_models(role: str) -> None:
    authorize_data_plane(Principal("k", "n", "a/b/c"))
    with pytest.raises(PermissionDenied, match=f"role '{role}'"):
        authorize_data_plane(Principal("k", "n", "a/b/c", role=role))


def test_model_and_tool_scopes_match_globs_and_name_the_scope() -> None:
    p = Principal("k", "n", "a", scopes=Scopes(models=("gpt-*", "sim"), tools=("fs.read*",)))
    authorize_model(p, "gpt-4o")
    authorize_model(p, "sim")
    with pytest.raises(PermissionDenied, match="scope 'models'"):
        authorize_model(p, "claude")
    authorize_tool(p, "fs.read_file")
    with pytest.raises(PermissionDenied, match="scope 'tools'"):
        authorize_tool(p, "fs.write")


def test_key_states_follow_status_expiry_and_rotation_grace() -> None:
    day = 86400.0
    assert key().state(NOW) == "active"
    assert key(status="revoked").state(NOW) == "revoked"
    assert key(expires_at=NOW).state(NOW) == "retired"
    assert key(expires_at=NOW + 6 * day).state(NOW) == "expiring"
    assert key(expires_at=NOW + 30 * day).state(NOW) == "active"
    in_grace = key(previous_hash="0" * 64, retires_at=NOW + 60)
    assert in_grace.state(NOW) == "expiring"
    assert in_grace.state(NOW + 60) == "active"


def test_bearer_and_x_api_key_headers_carry_the_secret() -> None:
    assert bearer_secret({"authorization": "Bearer agw_x"}) == "agw_x"
    assert bearer_secret({"x-api-key": "agw_y"}) == "agw_y"
    assert bearer_secret({"authorization": "Basic abc"}) is None
    assert bearer_secret({}) is None


def test_the_role_lists_agree() -> None:
    assert set(ROLES) == set(get_args(Role))


class GatedStore(MemoryStore):
    """A store whose key lookups read at once, then hold the answer until the gate opens."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0
        self.gate = anyio.Event()

    async def find_key(self, key_hash: str) -> KeyRecord | None:
        self.lookups += 1
        record = await super().find_key(key_hash)
        await self.gate.wait()
        return record


@pytest.mark.anyio
async def test_concurrent_callers_share_one_lookup_when_a_key_is_first_seen() -> None:
    store = GatedStore()
    await store.create_key(key())
    auth = Authenticator(store, clock=Clock())
    results: list[Principal] = []

    async def call() -> None:
        results.append(await auth.authenticate("agw_current"))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(call)
        await anyio.wait_all_tasks_blocked()
        store.gate.set()
    assert store.lookups == 1
    assert len(results) == 20


@pytest.mark.anyio
async def test_an_expired_entry_is_refreshed_once_while_other_callers_keep_the_last_answer() -> (
    None
):
    clock = Clock()
    store = GatedStore()
    store.gate.set()
    await store.create_key(key())
    auth = Authenticator(store, clock=clock)
    await auth.authenticate("agw_current")
    store.gate = anyio.Event()  # the next lookup hangs until released
    clock.advance(5)
    served: list[Principal] = []

    async def call() -> None:
        served.append(await auth.authenticate("agw_current"))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(call)
        await anyio.wait_all_tasks_blocked()
        assert len(served) == 19  # nobody but the refresher waited on the store
        store.gate.set()
    assert store.lookups == 2
    assert len(served) == 20


@pytest.mark.anyio
async def test_a_refresh_that_started_before_a_change_is_not_cached() -> None:
    clock = Clock()
    store = GatedStore()
    await store.create_key(key())
    auth = Authenticator(store, clock=clock)
    async with anyio.create_task_group() as tg:
        tg.start_soon(auth.authenticate, "agw_current")
        await anyio.wait_all_tasks_blocked()
        await store.set_key_status("key_1", "revoked")  # the lookup already read "active"…
        auth.forget()  # …and the revoking process says so
        store.gate.set()
    with pytest.raises(AuthenticationFailed):
        await auth.authenticate("agw_current")
