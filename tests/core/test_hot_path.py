"""The hot path's hand-written shortcuts agree with the general code they replace."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from core.envelope import Envelope, Message, Modality, TextPart, ToolSpec
from core.reports import MEASURES, Totals
from core.tracing import new_request_id, new_span_id, new_trace_id


def test_for_model_is_replace_with_another_model() -> None:
    env = Envelope(
        "req_1",
        Modality.CHAT,
        "virtual",
        messages=[Message("user", [TextPart("hi")])],
        tools=[ToolSpec("f", "d", {"type": "object"})],
        params={"max_tokens": 5},
        extra={"x": 1},
        stream=True,
        source="openai",
    )
    copy = env.for_model("upstream-1")
    assert copy == dataclasses.replace(env, model="upstream-1")
    assert copy is not env
    assert env.model == "virtual"
    assert copy.messages is env.messages  # shallow, as replace is


def test_totals_add_sums_every_measure() -> None:
    # Distinct values per field, so a field added twice or left out shows.
    one = Totals(**{name: i + 1 for i, name in enumerate(MEASURES)})
    two = Totals(**{name: 100 * (i + 1) for i, name in enumerate(MEASURES)})
    one.add(two)
    assert one.values() == tuple(101 * (i + 1) for i in range(len(MEASURES)))
    assert {f.name for f in dataclasses.fields(Totals)} == set(MEASURES)


def test_ids_have_their_shapes_and_do_not_repeat() -> None:
    ids = [new_request_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 28 and i.startswith("req_") for i in ids)
    assert all(len(s) == 16 and int(s, 16) >= 0 for s in (new_span_id() for _ in range(100)))
    assert all(len(t) == 32 and int(t, 16) >= 0 for t in (new_trace_id() for _ in range(100)))


def test_each_process_draws_its_own_ids() -> None:
    code = "from core.tracing import new_request_id; print(new_request_id())"
    outs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(3)
    }
    assert len(outs) == 3


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, then out without running pytest's teardown
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert child != new_request_id()
    assert child.startswith("req_")


def test_the_server_settles_the_garbage_collector_once_started() -> None:
    # In a child process: freezing is for the server's own process, never the test runner's.
    code = (
        "import gc\n"
        "from core.app import GC_YOUNG_THRESHOLD, settle_garbage_collector\n"
        "before = gc.get_threshold()\n"
        "settle_garbage_collector()\n"
        "print(before[0], gc.get_threshold()[0], GC_YOUNG_THRESHOLD, gc.get_freeze_count() > 0)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == "700"
    assert out[1] == out[2] == "10000"
    assert out[3] == "True"


def test_chat_decoding_takes_the_fields_model_dump_would_in_its_order() -> None:
    from adapters.wire.openai import ChatRequest, chat_request_to_envelope

    bodies = [
        {"model": "m", "messages": [{"role": "user", "content": "x"}]},
        {
            "zeta": 1,
            "model": "m",
            "top_p": 0.5,
            "messages": [{"role": "user", "content": "x"}],
            "metadata": {"a": [1, 2]},
            "temperature": 0.1,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": None,
            "user": "u",
            "alpha": {"nested": True},
            "_private": 1,
        },
    ]
    for body in bodies:
        req = ChatRequest.model_validate(body)
        dumped = req.model_dump(exclude_unset=True, exclude={"messages", "tools", "stream_options"})
        env = chat_request_to_envelope(req, "req_1")
        seen = {**env.params, **env.extra}
        seen.pop("include_usage", None)  # from stream_options, decoded on its own
        expected = {
            k: v
            for k, v in dumped.items()
            if k not in ("model", "stream") and not k.startswith("_")
        }
        assert seen == expected
        assert list(env.extra) == [k for k in expected if k in env.extra]
        assert list(env.params) == [k for k in expected if k in env.params] + (
            ["include_usage"] if "include_usage" in env.params else []
        )


def test_tallied_counters_reach_the_metrics_once_each() -> None:
    from core.metrics import Metrics

    metrics = Metrics()
    series = metrics.call_series("openai.chat", "chat", "ok")
    series.requests.inc()
    series.requests.inc()
    series.input_tokens.inc(7)
    metrics.attempt_series("sim", "ok").inc()
    first = metrics.render().decode()
    assert 'agentgw_requests_total{model="chat",route="openai.chat",status="ok"} 2.0' in first
    assert 'agentgw_tokens_total{kind="input",model="chat"} 7.0' in first
    assert 'agentgw_upstream_attempts_total{outcome="ok",provider="sim"} 1.0' in first
    series.requests.inc()
    second = metrics.render().decode()
    assert 'agentgw_requests_total{model="chat",route="openai.chat",status="ok"} 3.0' in second
    assert 'agentgw_tokens_total{kind="input",model="chat"} 7.0' in second  # not counted again


def test_a_direct_read_of_the_registry_sees_tallied_counts() -> None:
    from core.metrics import Metrics

    metrics = Metrics()
    metrics.call_series("openai.chat", "chat", "ok").requests.inc(3)
    labels = {"route": "openai.chat", "model": "chat", "status": "ok"}
    assert metrics.registry.get_sample_value("agentgw_requests_total", labels) == 3


def test_bucketed_observations_expose_what_histogram_observe_does() -> None:
    import random

    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from core.metrics import Metrics

    # Every bound itself, just either side of it, zero, and values past the last bound.
    bounds = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
    rng = random.Random(7)
    values = [0.0, 500.0, *bounds, *(b * (1 + d) for b in bounds for d in (-1e-9, 1e-9))]
    values += [rng.uniform(0, 150) for _ in range(300)]
    metrics = Metrics()
    registry = CollectorRegistry()
    reference = Histogram(
        "agentgw_request_duration_seconds", "Call latency.", ["route"], buckets=bounds,
        registry=registry,
    )  # fmt: skip
    series = metrics.call_series("openai.chat", "chat", "ok")
    for i, value in enumerate(values):
        series.duration.observe(value)
        reference.labels("openai.chat").observe(value)
        if i in (10, 200):  # a read midway hands over what came so far, once
            metrics.render()

    def lines(text: bytes) -> list[str]:
        return [
            line
            for line in text.decode().splitlines()
            if line.startswith("agentgw_request_duration_seconds_")
            and not line.startswith("agentgw_request_duration_seconds_created")
        ]

    ours, theirs = lines(metrics.render()), lines(generate_latest(registry))
    assert len(ours) == len(bounds) + 3  # each bucket, +Inf, count and sum
    # Buckets and count exactly; the sum up to float rounding (added in another order).
    assert ours[:-1] == theirs[:-1]
    (our_sum, their_sum) = (float(line.rsplit(" ", 1)[1]) for line in (ours[-1], theirs[-1]))
    assert our_sum == pytest.approx(their_sum, rel=1e-12) and our_sum > 0
