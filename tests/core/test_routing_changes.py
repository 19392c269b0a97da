"""Routing changes under traffic: a request in flight finishes on the routing it began with."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import anyio
import pytest

from core.envelope import Envelope, StreamChunk
from core.tracing import Attempt
from tests.core.routing_support import chat, model, router, sim

pytestmark = pytest.mark.anyio


class Gate:
    """A sim provider that holds each call until the test opens the gate."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.entered = anyio.Event()
        self.opened = anyio.Event()
        self._sim = sim(name)

    async def send(self, env: Envelope) -> Envelope:
        self.entered.set()
        await self.opened.wait()
        return await self._sim.send(env)

    def stream(self, env: Envelope) -> AsyncGenerator[StreamChunk, None]:
        return self._sim.stream(env)

    async def aclose(self) -> None:
        await self._sim.aclose()


async def test_a_request_started_before_a_change_completes_on_its_old_target() -> None:
    old, new = Gate("old"), sim("new")
    rt = router([model("m", [{"provider": "old", "model": "a"}])], {"old": old, "new": new})
    env = chat()
    attempts: list[Attempt] = []
    results: list[str] = []

    async def in_flight() -> None:
        targets = rt.candidates(rt.route("m"), env)
        _, target = await rt.send(env, targets, attempts)
        results.append(target.provider_name)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(in_flight)
            await old.entered.wait()
            rt.reconfigure([model("m", [{"provider": "new", "model": "b"}])])
            old.opened.set()
    assert results == ["old"]
    assert [(a.provider, a.status) for a in attempts] == [("old", "ok")]
    assert [t.provider_name for t in rt.candidates(rt.route("m"), chat())] == ["new"]
