"""Prometheus metrics, one registry per app (never the library's global one)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


@dataclass(frozen=True, slots=True)
class CallSeries:
    """The labelled series one kind of call updates, looked up once and kept."""

    requests: Counter
    duration: Histogram
    ttft: Histogram
    input_tokens: Counter
    output_tokens: Counter
    cached_tokens: Counter
    reasoning_tokens: Counter
    cost: Counter
    cache_write_tokens: Counter


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
        self._attempt_series: dict[tuple[str, str], Counter] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
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
                requests=self.requests.labels(route, model, status),
                duration=self.duration.labels(route),
                ttft=self.ttft.labels(route),
                input_tokens=self.tokens.labels("input", model),
                output_tokens=self.tokens.labels("output", model),
                cached_tokens=self.tokens.labels("cached", model),
                reasoning_tokens=self.tokens.labels("reasoning", model),
                cost=self.cost.labels(model),
                cache_write_tokens=self.tokens.labels("cache_write", model),
            )
        return series

    def attempt_series(self, provider: str, outcome: str) -> Counter:
        key = (provider, outcome)
        series = self._attempt_series.get(key)
        if series is None:
            series = self._attempt_series[key] = self.attempts.labels(provider, outcome)
        return series

    def watch_queue(self, depth: Callable[[], int]) -> None:
        self.queue_depth.set_function(lambda: float(depth()))

    def render(self) -> bytes:
        return generate_latest(self.registry)
