"""The in-flight count a graceful shutdown waits on."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from starlette.types import Message, Scope

from core.drain import InFlight, InFlightMiddleware

pytestmark = pytest.mark.anyio


async def nothing() -> Message:
    return {"type": "http.disconnect"}


async def drop(message: Message) -> None:
    pass


def http() -> Scope:
    return {"type": "http"}


async def test_waiting_for_idle_ends_when_the_last_request_leaves() -> None:
    inflight = InFlight()
    entered, release = anyio.Event(), anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        entered.set()
        await release.wait()

    counted = InFlightMiddleware(app, inflight)
    async with anyio.create_task_group() as tg:
        tg.start_soon(counted, http(), nothing, drop)
        await entered.wait()
        assert inflight.count == 1
        assert not await inflight.wait_idle(0)  # the deadline passes with one still running
        release.set()
        with anyio.fail_after(5):
            assert await inflight.wait_idle(5)
    assert inflight.count == 0


async def test_a_request_that_fails_still_leaves_and_lifespan_is_not_counted() -> None:
    inflight = InFlight()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            raise RuntimeError("boom")

    counted = InFlightMiddleware(app, inflight)
    with pytest.raises(RuntimeError, match="boom"):
        await counted(http(), nothing, drop)
    await counted({"type": "lifespan"}, nothing, drop)
    assert inflight.count == 0
    assert await inflight.wait_idle(0)
