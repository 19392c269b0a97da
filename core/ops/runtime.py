"""The operations side of a running gateway: anomaly detection and OTLP export as span sinks.

Built by `core.app` (which passes its plugin loader, so the OTLP adapter is imported only when an
endpoint is configured) and fed by the span writer after each stored batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from anyio.abc import TaskGroup

from core.alerting import AlertFeed
from core.bus import ChangeFeed
from core.config import Config
from core.metering import PriceCatalog
from core.ops.anomaly import AnomalyDetector
from core.ops.forecast import ForecastWatch
from core.ops.prices import PRICES, PriceBook, PriceVersionStore
from core.reports import UsageStore
from core.rulebook import RuleBook
from core.tracing import SpanSink, SpanWriter

OTLP_EXPORTER = "adapters.egress.otlp:OTLPExporter"


class Exporter(SpanSink, Protocol):
    """A span sink with a background task of its own."""

    def start(self, tg: TaskGroup) -> None: ...

    async def aclose(self) -> None: ...


@dataclass
class Operations:
    """Anomaly detection and (optional) trace export."""

    anomalies: AnomalyDetector
    exporter: Exporter | None = None
    forecasts: ForecastWatch | None = None
    usage: UsageStore | None = None
    clock: Callable[[], float] = time.time
    prices: PriceBook | None = None

    async def open(self) -> None:
        """Merge the stored price versions into the catalog and seed the anomaly baselines from
        the stored aggregates (the store is open)."""
        if self.prices is not None:
            await self.prices.open()
        if self.usage is not None:
            await self.anomalies.seed(self.usage, self.clock())

    def attach(self, spans: SpanWriter) -> None:
        spans.add_sink(self.anomalies)
        if self.exporter is not None:
            spans.add_sink(self.exporter)

    def start(self, tg: TaskGroup) -> None:
        if self.exporter is not None:
            self.exporter.start(tg)
        if self.forecasts is not None:
            tg.start_soon(self.forecasts.run)
        if self.prices is not None:
            tg.start_soon(self.prices.poll)

    async def aclose(self) -> None:
        if self.exporter is not None:
            await self.exporter.aclose()


def build_operations(
    config: Config,
    alerts: AlertFeed,
    load: Callable[[str], Any],
    *,
    usage: UsageStore | None = None,
    rules: RuleBook | None = None,
    clock: Callable[[], float] = time.time,
    prices: PriceCatalog | None = None,
    feed: ChangeFeed | None = None,
) -> Operations:
    """Anomaly detection over the configured buckets; budget forecasts when the store keeps
    usage; price versions added at run time into `prices` (the gateway's one catalog); OTLP
    export when an endpoint is set."""
    anomaly = config.alerts.anomaly
    detector = AnomalyDetector(
        alerts, bucket_seconds=anomaly.bucket_seconds, min_buckets=anomaly.min_buckets
    )
    exporter = None
    if config.tracing.otlp_endpoint:
        factory = load(OTLP_EXPORTER)
        exporter = cast(
            Exporter, factory(config.tracing.otlp_endpoint, config.tracing.otlp_headers)
        )
    watch = None
    if usage is not None and rules is not None:
        budgets = rules
        watch = ForecastWatch(usage, lambda: budgets.rules("budgets"), alerts, clock=clock)
    book = None
    if usage is not None and prices is not None:
        # Every store backend keeps price versions next to the usage aggregates.
        book = PriceBook(prices, cast(PriceVersionStore, usage), clock=clock)
        if feed is not None:
            book.on_change = feed.announcer(PRICES)
            feed.on(PRICES, book.refresh)
    return Operations(detector, exporter, watch, usage, clock, book)
