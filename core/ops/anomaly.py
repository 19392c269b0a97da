"""Anomaly alerts: per key, team and agent, each bucket's spend and tokens against its own past.

The baseline of a subject is the median of its recent active buckets and their median absolute
deviation (MAD): one spike moves neither much, so it does not hide the next one. A bucket is
anomalous when it is above `median + z * 1.4826 * MAD` (with a floor on the spread, so a perfectly
flat history does not alert on noise) and at least `ratio` times the median. The check runs as spans
are written, so an alert goes out during the spike, once per subject and bucket; a spike seen at
several levels of one call (its key, its team, its agent) is one alert, on the narrowest level.
Also: error-rate spikes, and a key calling a model it never used before.
"""

from __future__ import annotations

import logging
import statistics
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from core.alerting import AlertFeed
from core.reports import HOUR, Dimension, UsageQuery, UsageStore, org_levels
from core.tracing import Span

logger = logging.getLogger("agentgw.anomaly")

MAD_SCALE = 1.4826
HISTORY = 168
MAX_SUBJECTS = 100_000
# Spans read at start to rebuild baselines of a bucket that is not a whole number of hours.
MAX_SEED_SPANS = 500_000


@dataclass(frozen=True, slots=True)
class AnomalyAlert:
    """One anomaly, in the alert feed's columns plus what was anomalous and why."""

    level: str  # key, team or agent
    target: str
    threshold: float  # the value above which the bucket counted as anomalous
    spent_usd: float  # the bucket's spend so far
    budget_usd: float  # the baseline (median) spend
    period: str
    action: str
    kind: str  # spend, tokens, error_rate, new_model
    observed: float
    baseline: float
    bucket_start: float
    detail: str


@dataclass(slots=True)
class _Bucket:
    start: int
    cost: float = 0.0
    tokens: int = 0
    requests: int = 0
    errors: int = 0

    def count(self, span: Span) -> None:
        """Add `span`'s cost, tokens, request and error (if it failed) to this bucket."""
        self.cost += span.cost_usd or 0.0
        self.tokens += span.input_tokens + span.output_tokens
        self.requests += 1
        self.errors += span.status != "ok"


@dataclass(slots=True)
class _Subject:
    current: _Bucket
    history: deque[_Bucket] = field(default_factory=lambda: deque(maxlen=HISTORY))
    alerted: set[str] = field(default_factory=set)
    # The baselines of `history` (spend, tokens, error rate), computed on the first span of a
    # bucket and kept until the bucket rolls: medians of up to HISTORY buckets for every span
    # would cost more than the rest of the request.
    baselines: tuple[Baseline, Baseline, Baseline] | None = None

    def judged_against(self) -> tuple[Baseline, Baseline, Baseline]:
        if self.baselines is None:
            past = self.history
            rates = [b.errors / b.requests for b in past if b.requests]
            self.baselines = (
                Baseline.of([b.cost for b in past]),
                Baseline.of([float(b.tokens) for b in past]),
                Baseline.of(rates or [0.0]),
            )
        return self.baselines


@dataclass(frozen=True, slots=True)
class Baseline:
    median: float
    mad: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Baseline:
        median = statistics.median(values)
        return cls(median, statistics.median(abs(v - median) for v in values))

    def limit(self, z: float, ratio: float, floor: float) -> float:
        spread = max(MAD_SCALE * self.mad, 0.1 * self.median, floor)
        return max(self.median + z * spread, ratio * self.median)


class AnomalyDetector:
    """Fed with every written span batch (a `core.tracing` span sink); alerts through `sink`."""

    def __init__(
        self,
        sink: AlertFeed,
        *,
        bucket_seconds: int = 3600,
        min_buckets: int = 24,
        z: float = 6.0,
        ratio: float = 2.0,
        min_error_requests: int = 10,
    ) -> None:
        self._sink = sink
        self._size = bucket_seconds
        self._min = min_buckets
        self._z, self._ratio, self._min_error_requests = z, ratio, min_error_requests
        # Least recently seen first: past `MAX_SUBJECTS` the quietest subject is forgotten, so
        # a flood of made-up agent ids cannot grow this without bound.
        self._subjects: OrderedDict[tuple[str, str], _Subject] = OrderedDict()
        self._models: dict[str, set[str]] = {}
        self.raised = 0

    async def seed(self, store: UsageStore, now: float) -> None:
        """Take baselines and each key's models from the store, so a restart does not forget
        them: from the hourly aggregates when the bucket is a whole number of hours, else from
        the spans of the baseline window (at most `MAX_SEED_SPANS`, the newest)."""
        for row in await store.usage(UsageQuery(("key", "upstream_model", "model"))):
            key, upstream, model = row.dims
            if key and (upstream or model):
                self._models.setdefault(key, set()).add(upstream or model)
        since = (int(now // self._size) - HISTORY) * self._size
        if self._size % HOUR == 0:
            found = await self._buckets_from_aggregates(store, since, now)
        else:
            found = await self._buckets_from_spans(store, since, now)
        current = int(now // self._size) * self._size
        for subject_key, by_start in found.items():
            seen = [by_start[start] for start in sorted(by_start)]
            past = [b for b in seen if b.start < current]
            now_bucket = by_start.get(current, _Bucket(current))
            history = deque(past[-HISTORY:], maxlen=HISTORY)
            self._subjects[subject_key] = _Subject(now_bucket, history)
        logger.info("anomaly baselines seeded for %d subjects", len(found))

    async def _buckets_from_aggregates(
        self, store: UsageStore, since: float, now: float
    ) -> dict[tuple[str, str], dict[int, _Bucket]]:
        levels: tuple[tuple[str, Dimension], ...] = (("key", "key"), ("agent", "agent"),
                                                     ("team", "team"))  # fmt: skip
        found: dict[tuple[str, str], dict[int, _Bucket]] = {}
        for level, dim in levels:
            for row in await store.usage(UsageQuery((dim,), "hour", since, now + 1)):
                if not row.dims[0]:
                    continue
                t = row.totals
                start = int((row.bucket or 0.0) // self._size) * self._size
                bucket = _bucket_of(found.setdefault((level, row.dims[0]), {}), start)
                bucket.cost += t.cost_usd
                bucket.tokens += t.input_tokens + t.output_tokens
                bucket.requests += t.requests
                bucket.errors += t.errors
        return found

    async def _buckets_from_spans(
        self, store: UsageStore, since: float, now: float
    ) -> dict[tuple[str, str], dict[int, _Bucket]]:
        spans = await store.spans_between(since, now + 1, MAX_SEED_SPANS)
        if len(spans) >= MAX_SEED_SPANS:
            logger.warning("anomaly baselines: only the newest %d spans were read", len(spans))
        found: dict[tuple[str, str], dict[int, _Bucket]] = {}
        for span in spans:
            start = int(span.started_at // self._size) * self._size
            for subject_key in _subjects_of(span):
                _bucket_of(found.setdefault(subject_key, {}), start).count(span)
        return found

    async def spans_written(self, spans: Sequence[Span]) -> None:
        """Count each span in its subjects' buckets and alert on what became anomalous."""
        for span in sorted(spans, key=lambda s: s.started_at):
            for alert in self._observe(span):
                self.raised += 1
                await self._sink.raise_alert(
                    f"anomaly_{alert.kind}",
                    alert.detail,
                    severity="warning",
                    level=alert.level,
                    target=alert.target,
                    details=asdict(alert),
                    # Once per subject, kind and bucket, even across restarts and replicas.
                    dedupe_key=f"anomaly:{alert.level}:{alert.target}:{alert.kind}:"
                    f"{alert.bucket_start:.0f}",
                )

    def _observe(self, span: Span) -> list[AnomalyAlert]:
        start = int(span.started_at // self._size) * self._size
        found: list[AnomalyAlert] = []
        new_model = self._new_model(span, start)
        if new_model is not None:
            found.append(new_model)
        subjects = []
        for level, target in _subjects_of(span):
            subject = self._bucket(level, target, start)
            if subject is None:
                continue  # a span older than the subject's current bucket: too late to judge
            subjects.append(subject)
            subject.current.count(span)
            alert = self._judge(level, target, subject)
            # One incident, one alert: the first (narrowest) level speaks for the call.
            if alert is not None and not any(a.kind == alert.kind for a in found):
                found.append(alert)
        for alert in found:
            if alert.kind == "new_model":
                continue
            # The call's other levels share this incident for the rest of the bucket.
            same = {"error_rate"} if alert.kind == "error_rate" else {"spend", "tokens"}
            for subject in subjects:
                subject.alerted.update(same)
        return found

    def _bucket(self, level: str, target: str, start: int) -> _Subject | None:
        subject = self._subjects.get((level, target))
        if subject is None:
            subject = self._subjects[(level, target)] = _Subject(_Bucket(start))
            if len(self._subjects) > MAX_SUBJECTS:
                self._subjects.popitem(last=False)
        else:
            self._subjects.move_to_end((level, target))
        if start > subject.current.start:
            subject.history.append(subject.current)
            subject.baselines = None
            subject.current = _Bucket(start)
            subject.alerted = set()
        elif start < subject.current.start:
            return None
        return subject

    def _judge(self, level: str, target: str, subject: _Subject) -> AnomalyAlert | None:
        if len(subject.history) < self._min:
            return None
        now = subject.current
        spend, tokens, error_rate = subject.judged_against()
        checks = (
            ("spend", now.cost, spend, 1e-6),
            ("tokens", float(now.tokens), tokens, 10.0),
        )
        for kind, observed, baseline, floor in checks:
            limit = baseline.limit(self._z, self._ratio, floor)
            if observed > limit and kind not in subject.alerted:
                subject.alerted.update({"spend", "tokens"})  # the same spike, seen twice
                return self._alert(level, target, kind, observed, baseline.median, limit, now)
        if now.requests >= self._min_error_requests and "error_rate" not in subject.alerted:
            baseline = error_rate
            limit = max(
                baseline.median + self._z * MAD_SCALE * baseline.mad, baseline.median + 0.25
            )
            rate = now.errors / now.requests
            if rate > limit:
                subject.alerted.add("error_rate")
                return self._alert(level, target, "error_rate", rate, baseline.median, limit, now)
        return None

    def _new_model(self, span: Span, start: int) -> AnomalyAlert | None:
        model = span.upstream_model or span.model_requested
        if not span.key_id or not model:
            return None
        known = self._models.setdefault(span.key_id, set())
        if model in known:
            return None
        known.add(model)
        subject = self._subjects.get(("key", span.key_id))
        # A key with no history yet is new itself: its first models are not news.
        if subject is None or len(subject.history) < self._min:
            return None
        return AnomalyAlert(
            "key",
            span.key_id,
            0.0,
            span.cost_usd or 0.0,
            0.0,
            f"{self._size}s",
            "alert",
            "new_model",
            1.0,
            0.0,
            float(start),
            f"key {span.key_id} called model {model!r} for the first time",
        )

    def _alert(
        self,
        level: str,
        target: str,
        kind: str,
        observed: float,
        baseline: float,
        limit: float,
        bucket: _Bucket,
    ) -> AnomalyAlert:
        detail = (
            f"{level} {target}: {kind} {observed:.6g} in the {self._size}s bucket is above "
            f"{limit:.6g} (baseline median {baseline:.6g})"
        )
        logger.warning("anomaly: %s", detail)
        return AnomalyAlert(
            level,
            target,
            round(limit, 9),
            round(bucket.cost, 9),
            round(baseline, 9),
            f"{self._size}s",
            "alert",
            kind,
            round(observed, 9),
            round(baseline, 9),
            float(bucket.start),
            detail,
        )


def _bucket_of(buckets: dict[int, _Bucket], start: int) -> _Bucket:
    known = buckets.get(start)
    if known is None:
        known = buckets[start] = _Bucket(start)
    return known


def _subjects_of(span: Span) -> list[tuple[str, str]]:
    _, team, _ = org_levels(span.org_path)
    out = []
    if span.key_id:
        out.append(("key", span.key_id))
    if span.agent_id:
        out.append(("agent", span.agent_id))
    if team:
        out.append(("team", team))
    return out
