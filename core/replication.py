"""Wiring the change feed to what it keeps in step across replicas.

`build_feed` and `shared_routing_state` name the Redis parts by registry string (loaded only
when `redis:` is set);
`follow_changes` connects the feed both ways: changes made here are announced, changes
announced by other replicas are applied here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, cast

from core.access import Authenticator
from core.bus import KEYS, MODELS, RULES, Bus, BusUnavailable, ChangeFeed, Notice
from core.config import Config
from core.lockout import FailureLedger
from core.model_registry import ModelRegistry
from core.rulebook import RuleBook

logger = logging.getLogger("agentgw.bus")

REDIS_BUS = "store.redis_bus:RedisBus"
REDIS_CIRCUITS = "store.redis_circuits:RedisCircuitStore"
REDIS_CACHE = "store.redis_cache:RedisResponseCache"
REDIS_LOCKOUT = "store.redis_lockout:RedisFailureLedger"
CHANNEL = "changes"


def build_feed(config: Config, load: Callable[[str], Any]) -> ChangeFeed:
    """The feed over Redis pub/sub when `redis:` is set, else a feed of this process alone.

    The channel is `<governance.prefix>changes`, so deployments sharing a Redis with
    different prefixes never hear each other.
    """
    if config.redis is None:
        return ChangeFeed(None)
    channel = config.governance.prefix + CHANNEL
    bus = cast(Bus, load(REDIS_BUS).from_url(config.redis.url, channel, config.redis.timeout_ms))
    return ChangeFeed(bus, poll_seconds=config.replicas.poll_seconds)


def shared_routing_state(config: Config, load: Callable[[str], Any]) -> dict[str, Any]:
    """The router's `circuits` and `cache` in Redis when `redis:` is set, so every replica
    sees one circuit per target and one response cache; empty (the router's in-process
    defaults) otherwise. Each value has `aclose()`."""
    if config.redis is None:
        return {}
    spec, prefix = config.redis, config.governance.prefix
    return {
        "circuits": load(REDIS_CIRCUITS).from_url(
            spec.url, prefix, spec.timeout_ms, spec.max_connections
        ),
        "cache": load(REDIS_CACHE).from_url(
            spec.url, prefix, spec.timeout_ms, spec.max_connections
        ),
    }


def shared_failure_ledger(config: Config, load: Callable[[str], Any]) -> FailureLedger | None:
    """Brute-force counts in Redis when `redis:` is set, so a guesser spreading attempts over
    the replicas meets one count; None (the authenticator's in-process ledger) otherwise."""
    if config.redis is None:
        return None
    spec = config.redis
    ledger = load(REDIS_LOCKOUT).from_url(
        spec.url, config.governance.prefix, spec.timeout_ms, spec.max_connections
    )
    return cast(FailureLedger, ledger)


def follow_changes(
    feed: ChangeFeed, authenticator: Authenticator, models: ModelRegistry, rules: RuleBook
) -> None:
    """Apply other replicas' key, routing and rule changes here; announce the rule changes
    made here (keys and models announce through their constructors' `on_change`)."""

    async def forget_keys(subject: str) -> None:
        authenticator.forget()

    async def reload_rules(subject: str) -> None:
        await rules.open()

    feed.on(KEYS, forget_keys)
    feed.on(MODELS, models.refresh)
    feed.on(RULES, reload_rules)
    rules.on_change = lambda: feed.changed(RULES)


async def announce(
    config: Config, load: Callable[[str], Any], topics: Sequence[str] = (KEYS, MODELS, RULES)
) -> None:
    """Tell the running replicas that `topics` changed outside them (a CLI command).

    Best effort: without `redis:` there is no bus, and when it is down the replicas still see
    the change within their key-cache TTL and polling period.
    """
    if config.redis is None:
        return
    channel = config.governance.prefix + CHANNEL
    bus = cast(Bus, load(REDIS_BUS).from_url(config.redis.url, channel, config.redis.timeout_ms))
    try:
        for topic in topics:
            await bus.publish(Notice(topic))
    except BusUnavailable as exc:
        logger.warning("replicas not told of the change (%s); they pick it up by polling", exc)
    finally:
        await bus.aclose()
