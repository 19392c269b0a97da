"""Shared pieces of the routing tests: a hand-driven clock, sim providers, routers, requests."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.egress.sim import SimProvider
from adapters.egress.sim_options import SimOptions
from core.access import Principal, Scopes
from core.config import Price, VirtualModel
from core.envelope import Envelope, Message, Modality, StreamChunk, TextPart, ToolSpec
from core.errors import UpstreamUnavailable
from core.metering import PriceCatalog
from core.provider import Provider
from core.routing import Router
from core.tracing import Attempt


class FakeClock:
    """A clock the test moves by hand: time passes only when the test says so."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Sleeps:
    """Records backoff waits instead of waiting."""

    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class Switchable:
    """A sim provider that fails with 503 while `failing` is set; counts the calls it gets."""

    def __init__(self, name: str, failing: bool = False) -> None:
        self.name = name
        self.failing = failing
        self.calls = 0
        self._sim = SimProvider(name, SimOptions())

    async def send(self, env: Envelope) -> Envelope:
        self.calls += 1
        if self.failing:
            raise UpstreamUnavailable(f"{self.name} is down")
        return await self._sim.send(env)

    async def stream(self, env: Envelope) -> AsyncGenerator[StreamChunk, None]:
        self.calls += 1
        if self.failing:
            raise UpstreamUnavailable(f"{self.name} is down")
        async for chunk in self._sim.stream(env):
            yield chunk

    async def aclose(self) -> None:
        await self._sim.aclose()


def sim(name: str, **options: Any) -> SimProvider:
    return SimProvider(name, SimOptions(**options))


def model(name: str, targets: list[dict[str, Any]], **settings: Any) -> VirtualModel:
    return VirtualModel.model_validate({"name": name, "targets": targets, **settings})


def router(
    models: list[VirtualModel],
    providers: Mapping[str, Provider],
    *,
    private: tuple[str, ...] = (),
    prices: list[Price] | None = None,
    **options: Any,
) -> Router:
    networks = {n: "private" if n in private else "public" for n in providers}
    return Router(models, providers, networks, prices=PriceCatalog(prices or []), **options)


def principal(egress: str = "public", org_path: str = "research/agents/demo") -> Principal:
    return Principal("k1", "key", org_path, scopes=Scopes(egress=egress))


def chat(
    text: str = "hello there",
    *,
    model: str = "m",
    system: str | None = None,
    egress: str = "public",
    stream: bool = False,
    tools: bool = False,
    **params: Any,
) -> Envelope:
    messages = [Message("system", [TextPart(system)])] if system is not None else []
    messages.append(Message("user", [TextPart(text)]))
    return Envelope(
        id="req_test",
        modality=Modality.CHAT,
        model=model,
        messages=messages,
        tools=[ToolSpec("lookup", "look something up", {"type": "object"})] if tools else [],
        params=dict(params),
        stream=stream,
        principal=principal(egress),
    )


def tried(attempts: list[Attempt]) -> list[tuple[str, str, str | None]]:
    return [(a.provider, a.status, a.error_code) for a in attempts]
