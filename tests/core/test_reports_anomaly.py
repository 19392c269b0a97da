"""Anomaly alerts: a spend spike of one key raises exactly one alert, through the span writer
and the gateway's alert feed; the baseline is robust to an earlier spike."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import anyio
import pytest

from core.alerting import AlertFeed
from core.ops.anomaly import AnomalyDetector
from core.tracing import Span, SpanWriter
from store import MemoryStore, SQLiteStore

BUCKET = 60
T0 = 1_767_225_600.0
TEAMMATES = ("key_b", "key_c")


def span(n: int, at: float, key: str, cost: float, **changes: object) -> Span:
    fields: dict[str, object] = {
        "key_id": key,
        "org_path": "research/agents/demo",
        "agent_id": f"agent-{key}",
        "upstream_model": "sim-large",
        "model_requested": "chat",
        "cost_usd": cost,
        "input_tokens": int(cost * 100_000),
        "output_tokens": 10,
        **changes,
    }
    return Span(f"req_{n:08d}", f"{n:016x}", f"{n:032x}", at, **fields)  # type: ignore[arg-type]


def baseline_traffic(buckets: int, rng: random.Random, first: int = 0) -> list[Span]:
    spans: list[Span] = []
    for b in range(buckets):
        for key in ("key_a", *TEAMMATES):
            for i in range(3):
                n = (first + b) * 100 + len(spans) % 100
                cost = rng.uniform(0.001, 0.003)
                at = T0 + (first + b) * BUCKET + i
                spans.append(span(n * 10 + i + 1_000_000 * ("abc".index(key[-1])), at, key, cost))
    return spans


async def run(spans: list[Span], detector_kwargs: dict[str, Any] | None = None) -> AlertFeed:
    feed = AlertFeed([], store=MemoryStore())
    detector = AnomalyDetector(
        feed, bucket_seconds=BUCKET, min_buckets=12, **(detector_kwargs or {})
    )
    writer = SpanWriter(MemoryStore(), batch_size=16, linger_seconds=0)
    writer.add_sink(detector)
    async with anyio.create_task_group() as tg:
        writer.start(tg)
        for s in spans:
            await writer.submit(s)
        await writer.aclose()
    return feed


@pytest.mark.anyio
async def test_spend_spike_of_one_key_raises_exactly_one_alert() -> None:
    rng = random.Random(3)
    spans = baseline_traffic(24, rng)
    spike_at = T0 + 24 * BUCKET
    spans += [span(9_000_000 + i, spike_at + i, "key_a", 0.05) for i in range(10)]
    spans += [span(9_100_000 + i, spike_at + i, "key_b", 0.002) for i in range(3)]
    feed = await run(spans)
    alerts = feed.listing()
    assert len(alerts) == 1, alerts
    [alert] = alerts
    assert (alert["level"], alert["target"], alert["kind"]) == ("key", "key_a", "anomaly_spend")
    details = alert["details"]
    assert details["observed"] > details["threshold"] > details["baseline"]


@pytest.mark.anyio
async def test_steady_traffic_raises_nothing() -> None:
    feed = await run(baseline_traffic(40, random.Random(5)))
    assert feed.listing() == []


@pytest.mark.anyio
async def test_an_earlier_spike_does_not_hide_the_next_one() -> None:
    rng = random.Random(11)
    spans = baseline_traffic(20, rng)
    first = T0 + 20 * BUCKET
    spans += [span(8_000_000 + i, first + i, "key_a", 0.05) for i in range(10)]
    spans += baseline_traffic(5, rng, first=21)
    second = T0 + 26 * BUCKET
    spans += [span(8_100_000 + i, second + i, "key_a", 0.05) for i in range(10)]
    feed = await run(spans)
    assert [(a["target"], a["details"]["bucket_start"]) for a in reversed(feed.listing())] == [
        ("key_a", first),
        ("key_a", second),
    ]


@pytest.mark.anyio
async def test_error_rate_spike_and_a_new_model_each_alert_once() -> None:
    rng = random.Random(2)
    spans = baseline_traffic(15, rng)
    at = T0 + 15 * BUCKET
    # As many calls as usual, at the usual cost: only the error rate is out of line.
    spans += [span(7_000_000 + i, at + i, "key_b", 0.002, status="error") for i in range(3)]
    spans.append(span(7_100_000, at + 30, "key_c", 0.002, upstream_model="sim-huge"))
    spans.append(span(7_100_001, at + 31, "key_c", 0.002, upstream_model="sim-huge"))
    feed = await run(spans, {"min_error_requests": 3})
    kinds = sorted((a["kind"], a["target"]) for a in feed.listing())
    assert kinds == [("anomaly_error_rate", "key_b"), ("anomaly_new_model", "key_c")]


@pytest.mark.anyio
async def test_a_restarted_detector_takes_its_baselines_from_the_aggregates() -> None:
    rng = random.Random(8)
    store = MemoryStore()
    history: list[Span] = []
    for h in range(30):  # hourly traffic before the restart
        for key in ("key_a", "key_b"):
            for i in range(3):
                n = len(history)
                history.append(span(n, T0 + h * 3600 + i, key, rng.uniform(0.001, 0.003)))
    history.append(span(99_999, T0 + 29 * 3600 + 50, "key_b", 0.002, upstream_model="sim-old"))
    await store.record_spans(history)
    feed = AlertFeed([], store=MemoryStore())
    detector = AnomalyDetector(feed, bucket_seconds=3600, min_buckets=24)
    await detector.seed(store, now=T0 + 30 * 3600 + 5)
    spike = T0 + 30 * 3600 + 10
    await detector.spans_written(
        [span(50_000 + i, spike + i, "key_a", 0.05) for i in range(10)]
        + [span(60_000, spike + 20, "key_b", 0.002, upstream_model="sim-old")]
    )
    assert [(a["kind"], a["target"]) for a in feed.listing()] == [("anomaly_spend", "key_a")]


async def restarted_alerts(store: Any, size: int, buckets: int) -> list[tuple[str, str]]:
    """History of `buckets` buckets of `size` s in `store`, a fresh detector seeded from it,
    then a spike of key_a in the current bucket: the alerts raised."""
    rng = random.Random(size)
    history: list[Span] = []
    for b in range(buckets):
        for key in ("key_a", "key_b"):
            for i in range(3):
                at = T0 + b * size + i * (size // 4)
                history.append(span(len(history), at, key, rng.uniform(0.001, 0.003)))
    await store.record_spans(history)
    feed = AlertFeed([], store=MemoryStore())
    detector = AnomalyDetector(feed, bucket_seconds=size, min_buckets=12)
    now = T0 + buckets * size + 1
    await detector.seed(store, now=now)
    await detector.spans_written(
        [span(50_000 + i, now + i, "key_a", 0.05) for i in range(10)]
        + [span(60_000, now + 20, "key_b", 0.002)]
    )
    return [(a["kind"], a["target"]) for a in feed.listing()]


@pytest.mark.anyio
@pytest.mark.parametrize("size", [60, 1800, 7200])
@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_baselines_survive_a_restart_for_any_bucket_size(
    size: int, backend: str, tmp_path: Path
) -> None:
    # 60 s and 30 min from the spans of the window, 2 h from the hourly aggregates.
    store: Any = MemoryStore() if backend == "memory" else SQLiteStore(str(tmp_path / "a.db"))
    await store.open()
    try:
        assert await restarted_alerts(store, size, 20) == [("anomaly_spend", "key_a")]
    finally:
        await store.aclose()


@pytest.mark.anyio
async def test_without_enough_history_a_restarted_detector_stays_quiet() -> None:
    # Too few buckets in the window: no baseline, so the same spike is not judged.
    assert await restarted_alerts(MemoryStore(), 60, 5) == []


@pytest.mark.anyio
async def test_the_baseline_follows_the_history_as_buckets_roll() -> None:
    # Spend steps up once and stays up: the first high buckets are spikes against the old
    # baseline, but once most of the history is high the new level is the baseline. A baseline
    # kept from an earlier bucket (not recomputed as buckets roll) would alert on every one.
    spans: list[Span] = []
    for b in range(40):
        cost = 0.001 if b < 14 else 0.01
        spans += [span(b * 10 + i, T0 + b * BUCKET + i, "key_a", cost) for i in range(3)]
    feed = await run(spans)  # min_buckets 12
    spend = [a for a in feed.listing() if a["kind"] == "anomaly_spend"]
    assert spend, "the step itself is a spike"
    late = [a for a in spend if a["details"]["bucket_start"] >= T0 + 32 * BUCKET]
    assert late == [], late
