"""Virtual models and the send loop: pick ordered candidates, fail over on retryable errors.

Selection is pure (`Router.candidates`); the loop (`Router.send`, `Router.open_stream`) tries each
candidate in order and records every attempt. Only errors marked `retryable` move on to the next
target; an upstream 4xx or a filter rejection never does. A stream fails over only until its first
chunk has arrived: after that the client has bytes and the error is the client's to see.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass

from core.config import ConfigError, VirtualModel
from core.envelope import Envelope, StreamChunk
from core.errors import AllTargetsFailed, GatewayError, ModelNotFound
from core.provider import Provider
from core.tracing import Attempt

SUPPORTED_STRATEGIES = ("priority", "weighted")


@dataclass(frozen=True, slots=True)
class BoundTarget:
    """A target of a virtual model with its provider object resolved."""

    provider: Provider
    provider_name: str
    model: str
    network: str
    weight: float
    context_window: int | None


@dataclass(frozen=True, slots=True)
class Route:
    """A virtual model ready to serve: its targets and the models to fall back to."""

    name: str
    strategy: str
    targets: tuple[BoundTarget, ...]
    fallbacks: tuple[str, ...]
    default_max_tokens: int


class Router:
    """Maps virtual model names to routes and runs the failover loop over their targets."""

    def __init__(
        self,
        models: Sequence[VirtualModel],
        providers: Mapping[str, Provider],
        networks: Mapping[str, str],
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._rng = rng or random.Random()
        routes: dict[str, Route] = {}
        for vm in models:
            if vm.strategy not in SUPPORTED_STRATEGIES:
                raise ConfigError(
                    f"models.{vm.name}.strategy: '{vm.strategy}' is not available yet "
                    f"(expected one of {', '.join(SUPPORTED_STRATEGIES)})"
                )
            targets = tuple(
                BoundTarget(
                    provider=providers[t.provider],
                    provider_name=t.provider,
                    model=t.model,
                    network=networks[t.provider],
                    weight=t.weight,
                    context_window=t.context_window,
                )
                for t in vm.targets
            )
            routes[vm.name] = Route(
                vm.name, vm.strategy, targets, tuple(vm.fallbacks), vm.default_max_tokens
            )
        self._routes = routes

    @property
    def names(self) -> list[str]:
        return sorted(self._routes)

    def route(self, name: str) -> Route:
        """Raises:
        ModelNotFound: no virtual model has that name.
        """
        route = self._routes.get(name)
        if route is None:
            raise ModelNotFound(f"The model '{name}' does not exist.", param="model")
        return route

    def candidates(self, route: Route, egress: str = "public") -> list[BoundTarget]:
        """The targets to try, in order, for one request (fallback models' targets last)."""
        chain: list[BoundTarget] = []
        seen = {route.name}
        pending = [route]
        while pending:
            current = pending.pop(0)
            chain.extend(self._order(current))
            for name in current.fallbacks:
                if name not in seen and name in self._routes:
                    seen.add(name)
                    pending.append(self._routes[name])
        if egress == "private":
            chain = [t for t in chain if t.network == "private"]
        return chain

    def _order(self, route: Route) -> list[BoundTarget]:
        targets = [t for t in route.targets if t.weight > 0 or route.strategy == "priority"]
        if route.strategy == "weighted" and len(targets) > 1:
            # Weighted sampling without replacement: the first pick follows the weights, the rest
            # remain as failover candidates in weighted order.
            keyed = [(self._rng.random() ** (1.0 / t.weight), t) for t in targets]
            return [t for _, t in sorted(keyed, key=lambda kt: kt[0], reverse=True)]
        return targets

    async def send(
        self, env: Envelope, targets: Sequence[BoundTarget], attempts: list[Attempt]
    ) -> tuple[Envelope, BoundTarget]:
        """Send to each target in turn until one answers.

        Raises:
            GatewayError: a non-retryable error from a target, as it was raised.
            AllTargetsFailed: every target failed with a retryable error.
        """
        errors: list[GatewayError] = []
        for target in targets:
            started = time.perf_counter()
            try:
                reply = await target.provider.send(dataclasses.replace(env, model=target.model))
            except GatewayError as exc:
                attempts.append(_failed(target, exc, started))
                if not exc.retryable:
                    raise
                errors.append(exc)
                continue
            attempts.append(Attempt(target.provider_name, target.model, "ok", None, _ms(started)))
            return reply, target
        raise _exhausted(env.model, errors)

    async def open_stream(
        self, env: Envelope, targets: Sequence[BoundTarget], attempts: list[Attempt]
    ) -> tuple[StreamChunk | None, AsyncGenerator[StreamChunk, None], BoundTarget]:
        """Open a stream on the first target that yields a first chunk.

        Returns the first chunk (None for an empty stream), the rest of the stream, and the
        target serving it.

        Raises:
            GatewayError: a non-retryable error before the first chunk.
            AllTargetsFailed: every target failed before its first chunk.
        """
        errors: list[GatewayError] = []
        for target in targets:
            started = time.perf_counter()
            stream = target.provider.stream(dataclasses.replace(env, model=target.model))
            try:
                first: StreamChunk | None = await anext(stream)
            except StopAsyncIteration:
                first = None
            except GatewayError as exc:
                await stream.aclose()
                attempts.append(_failed(target, exc, started))
                if not exc.retryable:
                    raise
                errors.append(exc)
                continue
            attempts.append(Attempt(target.provider_name, target.model, "ok", None, _ms(started)))
            return first, stream, target
        raise _exhausted(env.model, errors)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _failed(target: BoundTarget, exc: GatewayError, started: float) -> Attempt:
    return Attempt(target.provider_name, target.model, "error", exc.code, _ms(started))


def _exhausted(model: str, errors: list[GatewayError]) -> AllTargetsFailed:
    if not errors:
        return AllTargetsFailed(f"No target of model '{model}' is available to this key.", [])
    codes = ", ".join(e.code for e in errors)
    return AllTargetsFailed(
        f"Every target of model '{model}' failed ({len(errors)} attempts: {codes}).", errors
    )
