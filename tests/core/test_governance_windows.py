"""Windows, levels and headers: the pure parts of governance."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.governance import CounterItem, MemoryCounters, Window
from core.governance.headers import duration
from core.governance.model import levels_of
from tests.core.governance_support import Clock, principal, request


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_fixed_windows_bucket_by_their_start() -> None:
    bucket = Window.parse("hour").bucket(at("2027-01-15T10:42:07"))
    assert bucket is not None
    assert (bucket.start, bucket.reset_at) == (at("2027-01-15T10:00:00"), at("2027-01-15T11:00:00"))


def test_month_window_ends_on_the_first_of_the_next_month() -> None:
    bucket = Window.parse("month").bucket(at("2027-12-31T23:59:00"))
    assert bucket is not None
    assert (bucket.name, bucket.reset_at) == ("202712", at("2028-01-01T00:00:00"))


def test_month_buckets_follow_the_clock_across_month_ends_both_ways() -> None:
    # The last month's bucket is kept: it must never answer for a moment outside it, forwards
    # or (a test clock, a corrected system clock) backwards.
    month = Window.parse("month")
    moments = ["2027-01-31T23:59:59", "2027-02-01T00:00:00", "2027-01-31T23:59:59",
               "2027-02-28T12:00:00", "2027-03-01T00:00:00", "2026-12-31T23:00:00"]  # fmt: skip
    names = []
    for moment in moments:
        bucket = month.bucket(at(moment))
        assert bucket is not None and bucket.start <= at(moment) < bucket.reset_at
        names.append(bucket.name)
    assert names == ["202701", "202702", "202701", "202702", "202703", "202612"]


def test_overnight_window_is_one_bucket_across_midnight_and_off_by_day() -> None:
    nightly = Window.parse("22:00-06:00")
    evening, morning = (
        nightly.bucket(at("2027-03-01T23:00")),
        nightly.bucket(at("2027-03-02T05:59")),
    )
    assert evening is not None and evening == morning
    assert evening.reset_at == at("2027-03-02T06:00")
    assert nightly.bucket(at("2027-03-02T06:00")) is None
    assert nightly.bucket(at("2027-03-02T12:00")) is None


@pytest.mark.parametrize("spec", ["week", "25:00-01:00", "10:00-10:00", "9:00-10:00"])
def test_unknown_window_spellings_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="window"):
        Window.parse(spec)


def test_a_request_sits_under_every_level_its_principal_and_trace_name() -> None:
    caller = principal("k7", "research/agents/triage")
    assert levels_of(caller, request(agent="bot")) == {
        "key": "k7",
        "organization": "*",
        "department": "research",
        "team": "research/agents",
        "project": "research/agents/triage",
        "agent": "bot",
    }


def test_durations_are_spelled_like_openai() -> None:
    assert [duration(s) for s in (0.4, 59, 360, 3723)] == ["0s", "59s", "6m0s", "1h2m3s"]


@pytest.mark.anyio
async def test_memory_counters_forget_expired_buckets() -> None:
    clock = Clock()
    counters = MemoryCounters(clock)
    await counters.reserve([CounterItem("a", 3, None, 10)])
    clock.now += 11
    assert await counters.get(["a"]) == (0,)
