"""Virtual models and the send loop: narrow, order, and fail over across their targets.

`Router.candidates` is the selection: the virtual model's targets then its fallback models'
targets, narrowed by the rules of `core.eligibility`, each model's group ordered by its strategy
(`core.strategies`) with prefix affinity (`core.affinity`) picking the first where configured.
`Router.send` and `Router.open_stream` are the loop: a repeat of a cached request is answered
from the response cache; otherwise each candidate is tried in order, skipping targets whose
circuit is open, and only errors marked `retryable` move on. An upstream 4xx or a filter rejection
never does. With `retries: N`, N more rounds over the candidates follow a round in which every
try failed retryably, after a jittered exponential backoff. A stream fails over only until its
first chunk has arrived: after that the client has bytes and the error is the client's to see.

Every try is an `Attempt` on the span: `ok`, `error` (with the error's code), `skipped` with
`circuit_open` for a target whose breaker refused it, or `cache_hit` for provider `cache`.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from itertools import groupby
from typing import TypeVar

import anyio

from core.affinity import pin, prefix_key
from core.circuit import CircuitOpen, CircuitStore, MemoryCircuitStore
from core.config import VirtualModel
from core.eligibility import RequestProfile, eligible
from core.envelope import Envelope, StreamChunk
from core.errors import AllTargetsFailed, GatewayError, ModelNotFound, UpstreamTimeout
from core.live_stream import LiveStream
from core.metering import PriceCatalog
from core.provider import Provider
from core.response_cache import (
    CachedReply,
    MemoryResponseCache,
    ResponseCache,
    cache_key,
    served_from_cache,
)
from core.strategies import LIVE_STRATEGIES, STRATEGIES, Ranking, TargetLoad
from core.targets import BoundTarget, Route, bind_route
from core.tracing import Attempt

__all__ = ["STRATEGIES", "BoundTarget", "Route", "Router"]

CACHE_PROVIDER = "cache"
_T = TypeVar("_T")


class Router:
    """Maps virtual model names to routes and runs the failover loop over their targets.

    `dropped` names, per provider, the request fields its quirks remove (noted on spans).
    `clock` (monotonic seconds) drives circuit breakers, latencies and timeouts' deadlines;
    `wall_clock` (epoch seconds) drives `hours` windows, read in UTC; `sleep` waits out backoff.
    All three are injectable so tests control time.
    """

    def __init__(
        self,
        models: Sequence[VirtualModel],
        providers: Mapping[str, Provider],
        networks: Mapping[str, str],
        *,
        prices: PriceCatalog | None = None,
        rng: random.Random | None = None,
        circuits: CircuitStore | None = None,
        cache: ResponseCache | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        dropped: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        self._providers = dict(providers)
        self._networks = dict(networks)
        self._dropped = dict(dropped or {})
        self._rng = rng or random.Random()
        self.load = TargetLoad()
        self.circuits: CircuitStore = circuits or MemoryCircuitStore()
        self._cache: ResponseCache = cache or MemoryResponseCache(clock=clock)
        self._ranking = Ranking(self._rng, self.load, prices or PriceCatalog(()))
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._routes = self._bind(models)

    def reconfigure(self, models: Sequence[VirtualModel]) -> None:
        """Swap in new virtual models; load, latency and circuit state carry over.

        Raises:
            KeyError: a target names a provider this router was not given.
        """
        self._routes = self._bind(models)

    def _bind(self, models: Sequence[VirtualModel]) -> dict[str, Route]:
        return {
            vm.name: bind_route(vm, self._providers, self._networks, self._dropped) for vm in models
        }

    @property
    def names(self) -> list[str]:
        return sorted(self._routes)

    def knows(self, name: str) -> bool:
        """Whether a virtual model of that name exists (cheap: no list is built)."""
        return name in self._routes

    def route(self, name: str) -> Route:
        """Raises:
        ModelNotFound: no virtual model has that name.
        """
        route = self._routes.get(name)
        if route is None:
            raise ModelNotFound(f"The model '{name}' does not exist.", param="model")
        return route

    def candidates(
        self, route: Route, env: Envelope, *, prompt_tokens: int | None = None
    ) -> list[BoundTarget]:
        """The targets to try, in order, for `env` (fallback models' targets last).
        `prompt_tokens`: `estimate_prompt_tokens(env)`, when the caller has it already.

        Raises:
            PermissionDenied: a private key and only public targets.
            UnsupportedContent: no target accepts the request's modality, tools or images.
            ContextWindowExceeded: the prompt fits no target's context window.
            UpstreamUnavailable: every target is outside its `hours` now.
        """
        profile = RequestProfile.of(env, self._wall_clock(), prompt_tokens)
        chain = [t for r in self._chain(route) for t in r.targets]
        kept = eligible(route.name, chain, profile)
        keys: list[str | None] = []  # the prompt's hash, taken only if a route pins by it
        ordered: list[BoundTarget] = []
        for name, group in groupby(kept, key=lambda t: t.route):
            current = self._routes[name]
            output = profile.max_tokens or current.default_max_tokens
            ranked = self._ranking.rank(
                current.strategy,
                list(group),
                prompt_tokens=profile.prompt_tokens,
                output_tokens=output,
            )
            if current.affinity == "prefix":
                keys = keys or [prefix_key(env)]
                ranked = pin(keys[0], ranked)
            ordered.extend(ranked)
        return ordered

    def _chain(self, route: Route) -> list[Route]:
        chain = [route]
        seen = {route.name}
        for current in chain:  # grows while iterated: breadth-first over fallbacks
            for name in current.fallbacks:
                if name not in seen and name in self._routes:
                    seen.add(name)
                    chain.append(self._routes[name])
        return chain

    def backoff(self, route: Route, round_: int) -> float:
        """Seconds to wait before failover round `round_` (1, 2, …): equal jitter.

        Half of the exponential step is fixed and half random, so retries from many clients
        spread out while the wait still grows: it lies in [step/2, step] with
        step = min(max, base * 2^(round-1)).
        """
        step = min(route.backoff_max_seconds, route.backoff_base_seconds * 2.0 ** (round_ - 1))
        return step / 2 + self._rng.uniform(0, step / 2)

    def _live_order(self, targets: Sequence[BoundTarget]) -> list[BoundTarget]:
        # Load changes between selection and sending (filters ran in between): rank the
        # load-driven groups again now, so a burst does not herd onto one idle target.
        if len(targets) < 2:
            return list(targets)  # nothing to reorder (candidates already ranked it)
        ordered: list[BoundTarget] = []
        for name, grouped in groupby(targets, key=lambda t: t.route):
            group = list(grouped)
            route = self._routes.get(name)
            if route is not None and route.strategy in LIVE_STRATEGIES:
                head = group[:1] if route.affinity == "prefix" else []
                group = head + self._ranking.rank(route.strategy, group[len(head) :])
            ordered.extend(group)
        return ordered

    async def _admitted(
        self, target: BoundTarget, attempts: list[Attempt], errors: list[GatewayError]
    ) -> bool:
        if await self.circuits.admit(target.key, target.circuit, self._clock()):
            return True
        attempts.append(Attempt(target.provider_name, target.model, "skipped", CircuitOpen.code))
        errors.append(CircuitOpen(f"The circuit of '{target.key}' is open."))
        return False

    async def _report(self, target: BoundTarget, error: GatewayError | None) -> None:
        # Only a retryable error says the upstream is unwell; a 4xx means it answered.
        ok = error is None or not error.retryable
        await self.circuits.record(target.key, ok, target.circuit, self._clock())

    async def send(
        self, env: Envelope, targets: Sequence[BoundTarget], attempts: list[Attempt]
    ) -> tuple[Envelope, BoundTarget]:
        """Answer from the cache, or send to each target in turn until one answers.

        Raises:
            GatewayError: a non-retryable error from a target, as it was raised.
            AllTargetsFailed: every target failed with a retryable error or was skipped.
        """
        route = self._routes.get(env.model)
        hit = await self._from_cache(env, route, targets, attempts)
        if hit is not None:
            return hit

        async def attempt(target: BoundTarget, started: float) -> Envelope:
            return await self._call(target, env)

        reply, target = await self._failover(env.model, route, targets, attempts, attempt)
        await self._to_cache(env, route, reply, target)
        return reply, target

    async def _failover(
        self,
        model: str,
        route: Route | None,
        targets: Sequence[BoundTarget],
        attempts: list[Attempt],
        attempt: Callable[[BoundTarget, float], Awaitable[_T]],
    ) -> tuple[_T, BoundTarget]:
        errors: list[GatewayError] = []
        rounds = 1 + (route.retries if route is not None else 0)
        for round_ in range(rounds):
            if round_ and route is not None:
                await self._sleep(self.backoff(route, round_))
            tried = False
            for target in self._live_order(targets):
                if not await self._admitted(target, attempts, errors):
                    continue
                tried = True
                started = self._clock()
                try:
                    result = await attempt(target, started)
                except GatewayError as exc:
                    attempts.append(self._failed(target, exc, started))
                    if not exc.retryable:
                        raise
                    errors.append(exc)
                    continue
                attempts.append(self._ok(target, started))
                return result, target
            if not tried:
                break  # every circuit is open: another round now would only skip them again
        raise _exhausted(model, errors)

    async def _call(self, target: BoundTarget, env: Envelope) -> Envelope:
        self.load.started(target.key)
        started = self._clock()
        error: GatewayError | None = None
        upstream = env.for_model(target.model)
        try:
            if target.timeout_seconds is None:  # the provider's own total timeout applies
                reply = await target.provider.send(upstream)
            else:
                with anyio.fail_after(target.timeout_seconds):
                    reply = await target.provider.send(upstream)
        except TimeoutError as exc:
            error = UpstreamTimeout(
                f"'{target.key}' did not answer within {target.timeout_seconds}s."
            )
            raise error from exc
        except GatewayError as exc:
            error = exc
            raise
        finally:
            self.load.finished(target.key)
            if error is not None:
                await self._report(target, error)
        self.load.observe(target.key, (self._clock() - started) * 1000)
        await self._report(target, None)
        return reply

    async def open_stream(
        self, env: Envelope, targets: Sequence[BoundTarget], attempts: list[Attempt]
    ) -> tuple[StreamChunk | None, AsyncGenerator[StreamChunk, None], BoundTarget]:
        """Open a stream on the first target that yields a first chunk.

        Returns the first chunk (None for an empty stream), the rest of the stream (which keeps
        the target counted as busy until it ends or is closed), and the target serving it.

        Raises:
            GatewayError: a non-retryable error before the first chunk.
            AllTargetsFailed: every target failed before its first chunk or was skipped.
        """

        async def attempt(
            target: BoundTarget, started: float
        ) -> tuple[StreamChunk | None, LiveStream]:
            first, stream = await self._first_chunk(target, env)
            return first, self._live(target, stream, started)

        route = self._routes.get(env.model)
        (first, rest), target = await self._failover(env.model, route, targets, attempts, attempt)
        return first, rest, target

    async def _first_chunk(
        self, target: BoundTarget, env: Envelope
    ) -> tuple[StreamChunk | None, AsyncGenerator[StreamChunk, None]]:
        self.load.started(target.key)
        stream = target.provider.stream(env.for_model(target.model))
        limits = [s for s in (target.first_byte_timeout_seconds, target.timeout_seconds) if s]
        limit = min(limits) if limits else None
        error: GatewayError | None = None
        try:
            if limit is None:  # no cancel scope when there is nothing to time out
                first: StreamChunk | None = await anext(stream)
            else:
                with anyio.fail_after(limit):
                    first = await anext(stream)
        except StopAsyncIteration:
            first = None
        except TimeoutError as exc:
            error = UpstreamTimeout(f"'{target.key}' sent no first chunk within {limit}s.")
            raise error from exc
        except GatewayError as exc:
            error = exc
            raise
        except BaseException:
            self.load.finished(target.key)
            with anyio.CancelScope(shield=True):
                await stream.aclose()
            raise
        finally:
            if error is not None:
                self.load.finished(target.key)
                with anyio.CancelScope(shield=True):
                    await stream.aclose()
                    await self._report(target, error)
        await self._report(target, None)
        return first, stream

    def _live(
        self, target: BoundTarget, stream: AsyncGenerator[StreamChunk, None], started: float
    ) -> LiveStream:
        now = self._clock()
        self.load.observe(target.key, (now - started) * 1000)

        async def on_end(error: GatewayError | None) -> None:
            self.load.finished(target.key)
            if error is not None:
                await self._report(target, error)

        total = target.timeout_seconds
        return LiveStream(
            stream,
            target=target.key,
            deadline=started + total if total else None,
            clock=self._clock,
            on_end=on_end,
        )

    async def _from_cache(
        self,
        env: Envelope,
        route: Route | None,
        targets: Sequence[BoundTarget],
        attempts: list[Attempt],
    ) -> tuple[Envelope, BoundTarget] | None:
        if route is None or route.cache_ttl_seconds is None or env.stream or not targets:
            return None
        started = self._clock()
        entry = await self._cache.get(cache_key(env))
        if entry is None:
            return None
        ms = _ms(started, self._clock())
        attempts.append(Attempt(CACHE_PROVIDER, entry.model, "cache_hit", None, ms))
        served = dataclasses.replace(
            targets[0], provider_name=CACHE_PROVIDER, model=entry.model, cache_hit=True
        )
        return served_from_cache(entry, env), served

    async def _to_cache(
        self, env: Envelope, route: Route | None, reply: Envelope, target: BoundTarget
    ) -> None:
        if route is None or route.cache_ttl_seconds is None or env.stream:
            return
        # Stored without the caller's identity: a hit is re-addressed to its own request.
        stored = dataclasses.replace(reply, principal=None, trace=None)
        entry = CachedReply(stored, target.provider_name, target.model)
        await self._cache.put(cache_key(env), entry, route.cache_ttl_seconds)

    def _ok(self, target: BoundTarget, started: float) -> Attempt:
        ms = _ms(started, self._clock())
        return Attempt(target.provider_name, target.model, "ok", None, ms)

    def _failed(self, target: BoundTarget, exc: GatewayError, started: float) -> Attempt:
        ms = _ms(started, self._clock())
        return Attempt(target.provider_name, target.model, "error", exc.code, ms)


def _ms(started: float, now: float) -> float:
    return (now - started) * 1000


def _exhausted(model: str, errors: list[GatewayError]) -> AllTargetsFailed:
    if not errors:
        return AllTargetsFailed(f"No target of model '{model}' is available to this key.", [])
    codes = ", ".join(e.code for e in errors)
    return AllTargetsFailed(
        f"Every target of model '{model}' failed ({len(errors)} attempts: {codes}).", errors
    )
