"""The write-behind span queue: batches, never drops, flushes on close."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import anyio
import pytest

from core.tracing import Span, SpanWriter
from store.memory import MemoryStore


class BatchCountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    async def record_spans(self, spans: Sequence[Span]) -> None:
        self.batches.append(len(spans))
        await super().record_spans(spans)


def span(i: int) -> Span:
    return Span(request_id=f"req_{i}", span_id=f"{i:016x}", trace_id="0" * 31 + "1", started_at=i)


@pytest.mark.anyio
async def test_spans_submitted_together_share_one_store_call() -> None:
    store = BatchCountingStore()
    writer = SpanWriter(store, linger_seconds=60)  # only the batch size ends this window
    async with anyio.create_task_group() as tg:
        writer.start(tg)
        for i in range(10):
            await writer.submit(span(i))
        await writer.aclose()
    assert store.batches == [10]
    assert [s.request_id for s in await store.list_spans()] == [f"req_{i}" for i in range(10)]


@pytest.mark.anyio
async def test_a_full_batch_is_written_without_waiting_for_the_window() -> None:
    store = BatchCountingStore()
    writer = SpanWriter(store, batch_size=4, linger_seconds=60)
    async with anyio.create_task_group() as tg:
        writer.start(tg)
        for i in range(8):
            await writer.submit(span(i))
        with anyio.fail_after(5):
            while writer.written < 8:  # two full batches need no window to end
                await anyio.wait_all_tasks_blocked()
        await writer.aclose()
    assert store.batches == [4, 4]


@pytest.mark.anyio
async def test_a_full_queue_makes_the_caller_wait_and_loses_nothing() -> None:
    store = BatchCountingStore()
    writer = SpanWriter(store, max_queue=2, batch_size=2, linger_seconds=0)
    async with anyio.create_task_group() as tg:
        for i in range(5):  # the writer is not running yet: the third submit must wait
            if i == 2:
                assert writer.depth == 2
                writer.start(tg)
            await writer.submit(span(i))
        await writer.aclose()
    assert len(await store.list_spans()) == 5
    assert writer.lost == 0


@pytest.mark.anyio
async def test_many_producers_on_a_small_queue_lose_nothing_and_keep_their_order() -> None:
    store = BatchCountingStore()
    writer = SpanWriter(store, max_queue=3, batch_size=2, linger_seconds=0.001)

    async def produce(p: int) -> None:
        for i in range(50):
            # One start time for all: the store lists them in the order they were recorded.
            same_time = dataclasses.replace(span(p * 1000 + i), started_at=0.0)
            await writer.submit(same_time)

    async with anyio.create_task_group() as tg:
        writer.start(tg)
        async with anyio.create_task_group() as producers:
            for p in range(8):
                producers.start_soon(produce, p)
        await writer.aclose()
    ids = [s.request_id for s in await store.list_spans()]
    assert len(ids) == 400 == writer.written
    for p in range(8):
        mine = [i for i in ids if int(i.removeprefix("req_")) // 1000 == p]
        assert mine == [f"req_{p * 1000 + i}" for i in range(50)]
    assert max(store.batches) <= 2
    with pytest.raises(anyio.ClosedResourceError):
        await writer.submit(span(9999))
