"""Prometheus metrics, one registry per app (never the library's global one)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Tally:
    """A labelled counter's increments, summed here and handed to the counter when the metrics
    are read: on the request path a float addition, not a lock and a check per increment.

    Only the event loop touches a tally (calls and `/metrics` both run there).
    """

    __slots__ = ("_counter", "_pending")

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._pending = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self._pending += amount

    def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, 0.0
            self._counter.inc(pending)


class Observations:
    """A labelled histogram's observations, counted per bucket here and handed to the histogram
    when the metrics are read: on the request path a bisection and two additions, not a lock
    per bucket and sum plus a scan of the bounds (`Histogram.observe`).

    Reads the histogram's bounds, bucket values and sum (`_upper_bounds`, `_buckets`, `_sum`:
    prometheus_client internals; tests/core/test_hot_path.py compares the exposition with
    `observe`'s). Only the event loop touches it, as with `Tally`.
    """

    __slots__ = ("_counts", "_histogram", "_pending", "_sum", "_upper")

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        self._upper: tuple[float, ...] = tuple(histogram._upper_bounds)
        self._counts = [0] * len(self._upper)
        self._sum = 0.0
        self._pending = False

    def observe(self, amount: float) -> None:
        # The first bound not below `amount`, as `Histogram.observe` picks it (the last is +Inf).
        self._counts[bisect_left(self._upper, amount)] += 1
        self._sum += amount
        self._pending = True

    def flush(self) -> None:
        if not self._pending:
            return
        buckets = self._histogram._buckets
        for index, count in enumerate(self._counts):
            if count:
                buckets[index].inc(count)
                self._counts[index] = 0
        self._histogram._sum.inc(self._sum)
        self._sum = 0.0
        self._pending = False


@dataclass(frozen=True, slots=True)
class CallSeries:
    """The labelled series one kind of call updates, looked up once and kept."""

    requests: Tally
    duration: Observations
    ttft: Observations
    input_tokens: Tally
    output_tokens: Tally
    cached_tokens: Tally
    reasoning_tokens: Tally
    cost: Tally
    cache_write_tokens: Tally

    def tallies(self) -> tuple[Tally, ...]:
        return (
            self.requests,
            self.input_tokens,
            self.output_tokens,
            self.cached_tokens,
            self.reasoning_tokens,
            self.cost,
            self.cache_write_tokens,
        )


class MediaMetrics:
    """The media filter's series: images and videos checked, stripped, refused, OCR'd, bytes."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.processed = Counter(
            "agentgw_media_processed",
            "Images and videos checked by the media filter, by kind (image, video).",
            ["kind"],
            registry=r,
        )
        self.stripped = Counter(
            "agentgw_media_stripped", "Images re-encoded without the metadata they carried.",
            registry=r,
        )  # fmt: skip
        self.refused = Counter(
            "agentgw_media_refused",
            "Images and videos refused, by kind and reason (the error code).",
            ["kind", "reason"],
            registry=r,
        )
        self.ocr_runs = Counter("agentgw_media_ocr_runs", "OCR redaction runs.", registry=r)
        self.ocr_findings = Counter(
            "agentgw_media_ocr_findings", "Entities boxed out of images, by entity.", ["entity"],
            registry=r,
        )  # fmt: skip
        self.bytes = Counter(
            "agentgw_media_bytes",
            "Media bytes through the filter: in (as received) and out (as sent on).",
            ["direction"],
            registry=r,
        )


class Metrics:
    """Every metric the gateway exports."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, str, str], CallSeries] = {}
        self._attempt_series: dict[tuple[str, str], Tally] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # First in the registry: whoever reads it (`/metrics`, a test) reads tallies flushed.
        r.register(_Flush(self))
        self.requests = Counter(
            "agentgw_requests",
            "Calls by route, model and status.",
            ["route", "model", "status"],
            registry=r,
        )
        self.tokens = Counter(
            "agentgw_tokens", "Tokens by kind and model.", ["kind", "model"], registry=r
        )
        self.cost = Counter("agentgw_cost_usd", "Metered cost in USD.", ["model"], registry=r)
        self.duration = Histogram(
            "agentgw_request_duration_seconds",
            "Call latency.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "agentgw_ttft_seconds",
            "Time to the first streamed chunk.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "agentgw_errors", "Errors by code and provider.", ["code", "provider"], registry=r
        )
        self.auth_failures = Counter("agentgw_auth_failures", "Failed authentications.", registry=r)
        self.auth_lockouts = Counter(
            "agentgw_auth_lockouts",
            "Client addresses locked out after repeated failed authentication.",
            registry=r,
        )
        self.auth_throttled = Counter(
            "agentgw_auth_throttled",
            "Requests refused because their address failed authentication too often.",
            registry=r,
        )
        self.pii_analyses = Counter("agentgw_pii_analyses", "PII analyzer runs.", registry=r)
        self.queue_depth = Gauge(
            "agentgw_write_queue_depth", "Spans waiting to be stored.", registry=r
        )
        self.circuit_state = Gauge(
            "agentgw_circuit_state",
            "Circuit breaker per upstream target: 0 closed, 1 half-open, 2 open.",
            ["target"],
            registry=r,
        )
        self.attempts = Counter(
            "agentgw_upstream_attempts",
            "Upstream attempts by provider and outcome.",
            ["provider", "outcome"],
            registry=r,
        )
        self.alerts = Counter(
            "agentgw_alerts",
            "Alerts raised, by kind and severity.",
            ["kind", "severity"],
            registry=r,
        )
        self.alert_deliveries = Counter(
            "agentgw_alert_deliveries",
            "Alert webhook delivery attempts by outcome (delivered, retry, failed).",
            ["outcome"],
            registry=r,
        )
        self.media = MediaMetrics(r)

    def call_series(self, route: str, model: str, status: str) -> CallSeries:
        """The series for calls of this route, model and status (a dict hit after the first)."""
        key = (route, model, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = CallSeries(
                requests=Tally(self.requests.labels(route, model, status)),
                duration=Observations(self.duration.labels(route)),
                ttft=Observations(self.ttft.labels(route)),
                input_tokens=Tally(self.tokens.labels("input", model)),
                output_tokens=Tally(self.tokens.labels("output", model)),
                cached_tokens=Tally(self.tokens.labels("cached", model)),
                reasoning_tokens=Tally(self.tokens.labels("reasoning", model)),
                cost=Tally(self.cost.labels(model)),
                cache_write_tokens=Tally(self.tokens.labels("cache_write", model)),
            )
        return series

    def attempt_series(self, provider: str, outcome: str) -> Tally:
        key = (provider, outcome)
        series = self._attempt_series.get(key)
        if series is None:
            series = self._attempt_series[key] = Tally(self.attempts.labels(provider, outcome))
        return series

    def watch_queue(self, depth: Callable[[], int]) -> None:
        self.queue_depth.set_function(lambda: float(depth()))

    def flush(self) -> None:
        """Hand every tally's pending increments to its counter, every histogram its
        observations."""
        for series in self._series.values():
            for tally in series.tallies():
                tally.flush()
            series.duration.flush()
            series.ttft.flush()
        for tally in self._attempt_series.values():
            tally.flush()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Flush(Collector):
    """Collects nothing: flushes the tallies of `metrics` whenever the registry is read."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        self._metrics.flush()
        return ()
