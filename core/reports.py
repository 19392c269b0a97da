"""Attribution reports: who spent what, grouped by any dimension, over hour, day or month buckets.

Every recorded span adds itself to an hourly aggregate row keyed by its dimensions (department,
team, project, customer, app, agent, key, virtual model, provider, upstream model, tool,
modality). The store keeps those rows up to date in the span's own transaction, so a report reads
aggregates, never the spans themselves: its cost grows with the number of distinct dimension
combinations per hour, not with traffic. Hourly rows make hour the finest bucket; `since` and
`until` are taken to whole hours.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol, get_args

from core.redaction import RedactionEvent
from core.tracing import Span

Dimension = Literal[
    "department",
    "team",
    "project",
    "customer",
    "app",
    "agent",
    "key",
    "model",
    "provider",
    "upstream_model",
    "tool",
    "modality",
]
DIMENSIONS: tuple[Dimension, ...] = get_args(Dimension)
# The aggregate table's column of each dimension.
DIMENSION_COLUMNS: Mapping[Dimension, str] = {
    **{d: d for d in DIMENSIONS},
    "key": "key_id",
}
Bucket = Literal["hour", "day", "month", "all"]
BUCKETS: tuple[Bucket, ...] = get_args(Bucket)
MEASURES = (
    "requests",
    "errors",
    "unpriced",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cache_write_tokens",
    "audio_seconds",
    "images",
    "video_seconds",
    "cost_usd",
    "latency_ms",
    "upstream_ms",
)
HOUR = 3600
DAY = 86400


@dataclass(frozen=True, slots=True)
class UsageKey:
    """The hour and dimension values one aggregate row is kept under ('' when absent)."""

    bucket: int
    dims: tuple[str, ...]  # in the order of DIMENSIONS


@dataclass(slots=True)
class Totals:
    """Sums of one group: calls, errors, tokens by kind, units, cost and time."""

    requests: int = 0
    errors: int = 0
    unpriced: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0
    audio_seconds: float = 0.0
    images: int = 0
    video_seconds: float = 0.0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    upstream_ms: float = 0.0

    def add(self, other: Totals) -> None:
        # Spelled out (one per MEASURES name, checked by a test): a getattr/setattr loop over
        # the names cost as much as the rest of the aggregation.
        self.requests += other.requests
        self.errors += other.errors
        self.unpriced += other.unpriced
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cached_tokens += other.cached_tokens
        self.reasoning_tokens += other.reasoning_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.audio_seconds += other.audio_seconds
        self.images += other.images
        self.video_seconds += other.video_seconds
        self.cost_usd += other.cost_usd
        self.latency_ms += other.latency_ms
        self.upstream_ms += other.upstream_ms

    def values(self) -> tuple[float | int, ...]:
        return tuple(getattr(self, name) for name in MEASURES)


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """A report: group by these dimensions and bucket, within [since, until), filtered."""

    group_by: tuple[Dimension, ...] = ()
    bucket: Bucket = "all"
    since: float | None = None
    until: float | None = None
    filters: Mapping[Dimension, str] = field(default_factory=dict)

    @property
    def first_hour(self) -> int | None:
        return None if self.since is None else int(self.since // HOUR) * HOUR

    @property
    def end_hour(self) -> int | None:
        # An hour is in the report when it starts before `until`.
        return None if self.until is None else -int(-self.until // HOUR) * HOUR


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One group of a report: its bucket start (None for `all`), dimension values and totals."""

    bucket: float | None
    dims: tuple[str, ...]  # in the order of the query's group_by
    totals: Totals


class UsageStore(Protocol):
    """Aggregates kept as spans are recorded, and the spans of one agent session."""

    async def usage(self, query: UsageQuery) -> list[UsageRow]:
        """The report's groups (hour or day buckets; `month` is rolled up by `report`)."""
        ...

    async def session_spans(self, session: str) -> list[Span]:
        """Spans whose session id or trace id is `session`, by start time."""
        ...

    async def span_findings(self, request_ids: Sequence[str]) -> list[RedactionEvent]:
        """Redaction-log events of these calls, by id."""
        ...

    async def spans_between(self, since: float, until: float, limit: int) -> list[Span]:
        """Spans started in [since, until), the newest `limit` of them, oldest first."""
        ...

    async def rebuild_usage(self, page: int = 5000) -> int:
        """Recompute the aggregates from the stored spans (spans recorded before the aggregates
        existed, or a repair); the number of spans counted."""
        ...


@functools.lru_cache(maxsize=4096)
def org_levels(org_path: str | None) -> tuple[str, str, str]:
    """(department, team, project) spelled as budgets name them: `d`, `d/t`, `d/t/p`."""
    parts = [p for p in (org_path or "").split("/") if p]
    return (
        parts[0] if parts else "",
        "/".join(parts[:2]) if len(parts) >= 2 else "",
        "/".join(parts) if len(parts) >= 3 else "",
    )


def usage_key(span: Span) -> UsageKey:
    """Where `span` is counted."""
    department, team, project = org_levels(span.org_path)
    values = {
        "department": department,
        "team": team,
        "project": project,
        "customer": span.customer or "",
        "app": span.app or "",
        "agent": span.agent_id or "",
        "key": span.key_id or "",
        "model": span.model_requested or "",
        "provider": span.provider or "",
        "upstream_model": span.upstream_model or "",
        "tool": span.tool or "",
        "modality": span.modality or "",
    }
    return UsageKey(int(span.started_at // HOUR) * HOUR, _dims_of(values))


# The values of a dimension dict, in the order of DIMENSIONS, as a tuple (one C call).
_dims_of: Callable[[Mapping[str, str]], tuple[str, ...]] = operator.itemgetter(*DIMENSIONS)


def span_totals(span: Span) -> Totals:
    """One span's contribution to its group."""
    return Totals(
        requests=1,
        errors=0 if span.status == "ok" else 1,
        unpriced=1 if span.cost_usd is None else 0,
        input_tokens=span.input_tokens,
        output_tokens=span.output_tokens,
        cached_tokens=span.cached_tokens,
        reasoning_tokens=span.reasoning_tokens,
        cache_write_tokens=span.cache_write_tokens,
        audio_seconds=span.audio_seconds,
        images=span.images,
        video_seconds=span.video_seconds,
        cost_usd=span.cost_usd or 0.0,
        latency_ms=span.latency_ms,
        upstream_ms=span.upstream_ms or 0.0,
    )


def aggregate(spans: Iterable[Span]) -> dict[UsageKey, Totals]:
    """A batch of spans summed per aggregate row (one upsert per row, not per span)."""
    out: dict[UsageKey, Totals] = {}
    for span in spans:
        key = usage_key(span)
        known = out.get(key)
        if known is None:
            out[key] = span_totals(span)
        else:
            known.add(span_totals(span))
    return out


def bucket_start(hour: int, bucket: Bucket) -> float | None:
    """The start of the `bucket` an hour falls in (UTC), None for `all`."""
    match bucket:
        case "hour":
            return float(hour)
        case "day":
            return float(hour - hour % DAY)
        case "month":
            moment = datetime.fromtimestamp(hour, UTC)
            return datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp()
        case "all":
            return None


def group_rows(rows: Iterable[tuple[UsageKey, Totals]], query: UsageQuery) -> list[UsageRow]:
    """Aggregate rows grouped as `query` asks (what a backend without SQL does)."""
    index = [DIMENSIONS.index(d) for d in query.group_by]
    filters = [(DIMENSIONS.index(d), v) for d, v in query.filters.items()]
    first, end = query.first_hour, query.end_hour
    groups: dict[tuple[float | None, tuple[str, ...]], Totals] = {}
    for key, totals in rows:
        if first is not None and key.bucket < first:
            continue
        if end is not None and key.bucket >= end:
            continue
        if any(key.dims[i] != v for i, v in filters):
            continue
        group = (bucket_start(key.bucket, query.bucket), tuple(key.dims[i] for i in index))
        known = groups.get(group)
        if known is None:
            known = groups[group] = Totals()
        known.add(totals)
    return [UsageRow(b, dims, t) for (b, dims), t in groups.items()]


def roll_up(rows: Iterable[UsageRow], bucket: Bucket) -> list[UsageRow]:
    """Rows of finer buckets merged into `bucket` (day rows into months)."""
    groups: dict[tuple[float | None, tuple[str, ...]], Totals] = {}
    for row in rows:
        start = None if row.bucket is None else bucket_start(int(row.bucket), bucket)
        known = groups.get((start, row.dims))
        if known is None:
            known = groups[(start, row.dims)] = Totals()
        known.add(row.totals)
    return [UsageRow(b, dims, t) for (b, dims), t in groups.items()]


def sort_rows(rows: list[UsageRow]) -> list[UsageRow]:
    """By bucket, then by cost (highest first), then by dimension values."""
    return sorted(rows, key=lambda r: (r.bucket or 0.0, -r.totals.cost_usd, r.dims))
