"""The one way agentgw opens a Redis client: a bounded pool that waits for a free connection.

redis-py's default pool refuses a request outright ("Too many connections") once its limit is
reached, so a burst of concurrent requests turned into failures (503 under a fail-closed policy
at 128 concurrent clients, `tests/perf/replicas.py`). A blocking pool makes the burst queue for
up to the timeout instead; socket timeouts stay short so an outage still reaches each caller's
fallback quickly.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


def blocking_client(url: str, *, max_connections: int, timeout_ms: int, retries: int = 0) -> Redis:
    """A client on a pool of at most `max_connections` that waits up to `timeout_ms` for one."""
    seconds = timeout_ms / 1000
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=seconds,
        socket_timeout=seconds,
        socket_connect_timeout=seconds,
    )
    if retries:
        return Redis(connection_pool=pool, retry=Retry(NoBackoff(), retries))
    return Redis(connection_pool=pool)
