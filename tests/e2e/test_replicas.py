"""Two `agentgw serve` replicas on one PostgreSQL and one Redis, as behind a load balancer.

A change made through one replica (key revoked, routing replaced, budget created) reaches the
other through the Redis change feed: each test waits for the other replica's own log line
saying it applied the change (no sleeps), then checks the traffic it serves. Budgets hold
exactly across both, and the spans of both land in the one database.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
import pytest
from redis import Redis

from tests.e2e.procs import Proc, agentgw, create_key, start_gateway, start_sim
from tests.store.postgres_schema import PG_SERVER, drop_schema, schema_name, store_url

pytestmark = pytest.mark.anyio

ADMIN = "agw_admin-secret-for-replicas-e2e"
COST = 0.001  # 5 output tokens at $200/M: each estimate equals its settled cost
CONFIG = """\
listen: {{host: 127.0.0.1}}
store: "{store}"
# A long timeout: this machine is shared and slow at times; exactness is what is tested here.
redis: {{url: "redis://127.0.0.1:6379/0", timeout_ms: 10000}}
governance: {{prefix: "{prefix}"}}
providers:
  - {{name: one, type: openai, base_url: "{one}/v1"}}
  - {{name: two, type: openai, base_url: "{two}/v1"}}
  - {{name: sim, type: sim}}
models:
  - {{name: routed, targets: [{{provider: one, model: sim-large}}]}}
  - {{name: sim, targets: [{{provider: sim, model: sim-1}}]}}
  - {{name: cached, cache: {{ttl_seconds: 600}}, targets: [{{provider: two, model: sim-large}}]}}
prices: [{{provider: sim, model: sim-1, output_per_1m: 200.0}}]
"""
BODY = {"model": "sim", "max_tokens": 5, "messages": [{"role": "user", "content": "a b c d e f"}]}
LISTENING = "replica bus: listening"


@dataclass
class Cluster:
    a: Proc
    b: Proc
    one: Proc
    two: Proc
    schema: str
    config: Path
    key: str
    key_id: str


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("replicas")
    schema, prefix = schema_name("agw_e2e"), f"agwtest:{uuid.uuid4().hex}:"
    procs: list[Proc] = []
    try:
        one, two = started(procs, start_sim)
        config = workdir / "agentgw.yaml"
        text = CONFIG.format(store=store_url(schema), prefix=prefix, one=one.url, two=two.url)
        config.write_text(text)
        created = create_key(config, "replicated", "replicas/e2e/traffic")
        env = {"AGENTGW_ADMIN_KEY": ADMIN}
        # Both replicas start at once, as after a deploy: they share the migrations and the
        # bootstrap records without stepping on each other.
        a, b = started(procs, lambda: start_gateway(config, env=env))
        for replica in (a, b):
            replica.wait_for(LISTENING, since=0)
        yield Cluster(a, b, one, two, schema, config, created["key"], created["id"])
    finally:
        for proc in reversed(procs):
            proc.stop()
        anyio.run(drop_schema, schema)
        _drop_redis_keys(prefix)


def started(procs: list[Proc], start: Callable[[], Proc]) -> tuple[Proc, Proc]:
    """Two processes started at once, each added to `procs` (to be stopped) as it is up."""
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(start) for _ in range(2)]
    for future in futures:
        if future.exception() is None:
            procs.append(future.result())
    first, second = (f.result() for f in futures)  # raises the first failure, if any
    return first, second


def _drop_redis_keys(prefix: str) -> None:
    client = Redis(host="127.0.0.1", port=6379)
    try:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as http:
        yield http


async def admin(
    http: httpx.AsyncClient, proc: Proc, method: str, path: str, body: Any = None
) -> httpx.Response:
    headers = {"authorization": f"Bearer {ADMIN}"}
    return await http.request(method, proc.url + path, json=body, headers=headers)


async def chat(
    http: httpx.AsyncClient, proc: Proc, key: str, body: dict[str, Any] = BODY
) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"}
    return await http.post(proc.url + "/v1/chat/completions", json=body, headers=headers)


async def received(http: httpx.AsyncClient, sim: Proc) -> int:
    """How many requests `sim` received since it was last cleared."""
    return len((await http.get(sim.url + "/_sim/requests")).json())


async def test_a_key_revoked_through_one_replica_is_refused_by_the_other(
    cluster: Cluster, client: httpx.AsyncClient
) -> None:
    made = await admin(client, cluster.a, "POST", "/admin/keys",
                       {"name": "short-lived", "org_path": "replicas/e2e/revoke"})  # fmt: skip
    assert made.status_code == 201, made.text
    secret, key_id = made.json()["key"], made.json()["id"]
    assert (await chat(client, cluster.b, secret)).status_code == 200  # B has it cached now

    mark = len(cluster.b.lines)
    revoked = await admin(client, cluster.a, "DELETE", f"/admin/keys/{key_id}")
    assert revoked.status_code == 200, revoked.text
    cluster.b.wait_for("applied keys change", since=mark)

    refused = await chat(client, cluster.b, secret)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["error"]["message"]


async def test_a_key_revoked_with_the_cli_is_refused_by_both_replicas(
    cluster: Cluster, client: httpx.AsyncClient
) -> None:
    made = await admin(client, cluster.b, "POST", "/admin/keys",
                       {"name": "cli-revoked", "org_path": "replicas/e2e/revoke"})  # fmt: skip
    assert made.status_code == 201, made.text
    secret, key_id = made.json()["key"], made.json()["id"]
    for proc in (cluster.a, cluster.b):
        assert (await chat(client, proc, secret)).status_code == 200

    marks = [len(cluster.a.lines), len(cluster.b.lines)]
    revoke = agentgw("keys", "revoke", "--config", str(cluster.config), key_id)
    await anyio.run_process(revoke, check=True, cwd=cluster.config.parent)
    for proc, mark in zip((cluster.a, cluster.b), marks, strict=True):
        proc.wait_for("applied keys change", since=mark)
        assert (await chat(client, proc, secret)).status_code == 401


async def test_a_routing_change_through_one_replica_routes_the_other(
    cluster: Cluster, client: httpx.AsyncClient
) -> None:
    body = {"model": "routed", "messages": [{"role": "user", "content": "where to?"}]}
    mark = len(cluster.b.lines)
    routing = {"targets": [{"provider": "two", "model": "sim-large"}]}
    changed = await admin(client, cluster.a, "PUT", "/admin/models/routed", routing)
    assert changed.status_code == 200, changed.text
    cluster.b.wait_for("applied models change from another replica (routed)", since=mark)

    for sim in (cluster.one, cluster.two):
        (await client.delete(sim.url + "/_sim/requests")).raise_for_status()
    assert (await chat(client, cluster.b, cluster.key, body)).status_code == 200
    assert [await received(client, sim) for sim in (cluster.one, cluster.two)] == [0, 1]

    mark = len(cluster.a.lines)
    rolled = await admin(client, cluster.b, "POST", "/admin/models/routed/rollback", {"version": 1})
    assert rolled.status_code == 200, rolled.text
    cluster.a.wait_for("applied models change from another replica (routed)", since=mark)
    assert (await chat(client, cluster.a, cluster.key, body)).status_code == 200
    assert await received(client, cluster.one) == 1


async def test_a_reply_cached_by_one_replica_is_served_by_the_other(
    cluster: Cluster, client: httpx.AsyncClient
) -> None:
    body = {"model": "cached", "messages": [{"role": "user", "content": uuid.uuid4().hex}]}
    (await client.delete(cluster.two.url + "/_sim/requests")).raise_for_status()
    first = await chat(client, cluster.a, cluster.key, body)
    again = await chat(client, cluster.b, cluster.key, body)
    assert first.status_code == again.status_code == 200
    assert again.json()["choices"] == first.json()["choices"]
    assert await received(client, cluster.two) == 1  # the upstream answered only once


async def test_a_budget_set_on_one_replica_holds_exactly_across_both_and_spans_meet(
    cluster: Cluster, client: httpx.AsyncClient
) -> None:
    # Last in the module: it stops both replicas to read what they stored.
    admits = 7
    mark = len(cluster.b.lines)
    budget = {"level": "key", "target": cluster.key_id, "amount_usd": admits * COST,
              "period": "day"}  # fmt: skip
    created = await admin(client, cluster.a, "POST", "/admin/budgets", budget)
    assert created.status_code == 201, created.text
    cluster.b.wait_for("applied rules change", since=mark)

    seen: dict[int, list[str]] = {cluster.a.port: [], cluster.b.port: []}
    ok_ids: list[str] = []
    errors: list[str] = []

    async def one(proc: Proc) -> None:
        resp = await chat(client, proc, cluster.key)
        seen[proc.port].append(resp.headers["x-request-id"])
        if resp.status_code == 200:
            ok_ids.append(resp.headers["x-request-id"])
        else:
            errors.append(resp.json()["error"]["code"])

    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(one, cluster.a if i % 2 else cluster.b)
    assert len(ok_ids) == admits
    assert errors == ["insufficient_quota"] * (200 - admits)

    for proc in (cluster.a, cluster.b):
        proc.stop()  # SIGTERM: each flushes its span queue before it exits
        assert proc.stopped_cleanly(), proc.log()
    conn = await asyncpg.connect(PG_SERVER)
    try:
        await conn.execute(f'SET search_path TO "{cluster.schema}"')
        rows = await conn.fetch(
            "SELECT request_id, status, cost_usd FROM spans WHERE request_id = ANY($1::text[])",
            [*seen[cluster.a.port], *seen[cluster.b.port]],
        )
    finally:
        await conn.close()
    # Every call either replica answered is one span in the one database.
    assert {r["request_id"] for r in rows} == {*seen[cluster.a.port], *seen[cluster.b.port]}
    assert len(seen[cluster.a.port]) == len(seen[cluster.b.port]) == 100
    ok = [r for r in rows if r["status"] == "ok"]
    assert sorted(r["request_id"] for r in ok) == sorted(ok_ids)
    assert sum(r["cost_usd"] for r in ok) == pytest.approx(admits * COST)
