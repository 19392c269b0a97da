"""The moderation filter: category terms and patterns (and optionally a model) over every scope.

Requests and replies are checked text by text through `Envelope.visit_text`; streamed replies
through a sliding window (`filters.moderation.stream`). `block` refuses with `ContentBlocked`
naming the categories; `flag` lets the traffic through and records `Finding`s. Neither ever quotes
the text that matched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Literal

from core.config import ConfigError
from core.config import ModerationFilter as ModerationConfig
from core.envelope import Envelope, Finding, Modality, Scope, StreamChunk
from core.errors import ContentBlocked, FilterUnavailable, GatewayError
from core.filtering import Continue, Decision, FilterContext, Reject
from filters.moderation.classifier import Classifier, ClassifierFailed, Classify
from filters.moderation.lexicon import CategorySpec, Lexicon, merge
from filters.moderation.stream import DEFAULT_WINDOW, StreamScanner
from filters.moderation.terms import DEFAULT_CATEGORIES

FILTER_NAME = "moderation"
STATE_FINDINGS = "moderation.stream_findings"
"""`FilterContext.state` key of the findings made on a streamed reply (no envelope to hold them)."""

Action = Literal["block", "flag"]
Fail = Literal["closed", "open"]
ACTIONS: tuple[Action, ...] = ("block", "flag")

# Scores per scope and category: None for a lexicon hit, the model's score otherwise.
_Hits = dict[Scope, dict[str, float | None]]


class ModerationFilter:
    """Checks text for violence, self-harm, sexual content involving minors, hate and illegal
    activity (plus custom categories), in English and Chinese; blocks or flags.

    `categories` adds custom categories (or extends a default one of the same name); `enabled`
    restricts the checked categories (defaults and custom) to those named. `classify`, when given,
    is asked too; `thresholds` per category (default 0.5). A classifier that fails blocks with
    `FilterUnavailable` (503) unless `fail="open"`; one whose check cannot be paid for (a spent
    budget) blocks with that `QuotaExceeded` unless `fail="open"`.

    Raises:
        ConfigError: at construction, for an unknown action or category, a pattern that does not
            compile, or a threshold outside 0..1.
    """

    name = FILTER_NAME

    def __init__(
        self,
        *,
        action: Action = "block",
        categories: Mapping[str, CategorySpec] | None = None,
        enabled: Sequence[str] | None = None,
        classify: Classify | None = None,
        thresholds: Mapping[str, float] | None = None,
        fail: Fail = "closed",
        timeout_ms: int = 5000,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        if action not in ACTIONS:
            raise ConfigError(f"filters.moderation.action: '{action}' is not one of block, flag")
        for category, threshold in (thresholds or {}).items():
            if not 0.0 <= threshold <= 1.0:
                raise ConfigError(f"filters.moderation.thresholds.{category}: must be in 0..1")
        self.action: Action = action
        self.fail: Fail = fail
        self.window = window
        self.lexicon = Lexicon(merge(DEFAULT_CATEGORIES, categories or {}, enabled))
        self.classifier = (
            Classifier(
                classify,
                categories=self.lexicon.names,
                thresholds=thresholds,
                timeout_ms=timeout_ms,
            )
            if classify is not None
            else None
        )

    @property
    def categories(self) -> tuple[str, ...]:
        """The categories checked, in order."""
        return self.lexicon.names

    async def on_request(self, env: Envelope, ctx: FilterContext) -> Decision:
        """Check every text of the request; block or flag what is found."""
        return await self._check(env, "request", ctx)

    async def on_response(self, env: Envelope, ctx: FilterContext) -> Decision:
        """Check every text of the reply; block or flag what is found."""
        return await self._check(env, "reply", ctx)

    def on_stream(
        self, chunks: AsyncIterator[StreamChunk], ctx: FilterContext
    ) -> AsyncIterator[StreamChunk]:
        """Scan the streamed reply as it passes; findings go to `ctx.state[STATE_FINDINGS]`.

        Raises:
            ContentBlocked: from the iterator, before the chunk completing a blocked phrase.
            FilterUnavailable: from the iterator, when the classifier fails and fail is closed.
        """
        findings: list[Finding] = []
        ctx.state[STATE_FINDINGS] = findings

        def report(scope: Scope, found: dict[str, float | None]) -> None:
            findings.extend(self._findings({scope: found}))
            if self.action == "block":
                raise _blocked("reply", found)

        async def judge(text: str) -> dict[str, float]:
            try:
                return (await self._classify([text], ctx))[0]
            except ClassifierFailed as exc:
                if self.fail == "closed":
                    raise _unavailable(exc) from None
                findings.append(_fail_open_finding(exc, Scope.MESSAGE))
                return {}

        scanner = StreamScanner(
            self.lexicon, report, judge if self.classifier else None, self.window
        )
        return scanner.run(chunks)

    async def _check(self, env: Envelope, where: str, ctx: FilterContext) -> Decision:
        if env.modality is Modality.MODERATION:
            # A client asking for a classification is not itself saying what it asks about.
            return Continue()
        texts: list[tuple[Scope, str]] = []

        def collect(scope: Scope, text: str) -> None:
            if text.strip():
                texts.append((scope, text))

        env.visit_text(collect)
        hits: _Hits = {}
        for scope, text in texts:
            for category in self.lexicon.categories(text):
                hits.setdefault(scope, {})[category] = None
        if self.classifier is not None and not (self.action == "block" and hits):
            try:
                scored = await self._classify([t for _, t in texts], ctx)
            except ClassifierFailed as exc:
                if self.fail == "closed":
                    return Reject(_unavailable(exc))
                env.findings.append(_fail_open_finding(exc, Scope.MESSAGE))
                scored = []
            for (scope, _), found in zip(texts, scored, strict=False):
                for category, score in found.items():
                    known = hits.setdefault(scope, {}).get(category)
                    hits[scope][category] = max(score, known or 0.0)
        if not hits:
            return Continue()
        env.findings.extend(self._findings(hits))
        if self.action == "block":
            named = {c for per_scope in hits.values() for c in per_scope}
            return Reject(_blocked(where, named))
        return Continue()

    async def _classify(self, texts: list[str], ctx: FilterContext) -> list[dict[str, float]]:
        if self.classifier is None:
            return [{} for _ in texts]
        return await self.classifier.categories(texts, ctx)

    def _findings(self, hits: _Hits) -> list[Finding]:
        return [
            Finding(FILTER_NAME, category, scope, self.action, score=score)
            for scope, found in hits.items()
            for category, score in found.items()
        ]


def _blocked(where: str, found: Iterable[str]) -> GatewayError:
    names = ", ".join(sorted(found))
    return ContentBlocked(f"{where} flagged for {names} by the moderation filter")


def _unavailable(exc: ClassifierFailed) -> GatewayError:
    if exc.error is not None:
        return exc.error  # a check that cannot be paid for: the budget's own refusal
    what = "timed out" if exc.reason == "timeout" else "failed"
    return FilterUnavailable(f"moderation filter unavailable: classifier {what}")


def _fail_open_finding(exc: ClassifierFailed, scope: Scope) -> Finding:
    return Finding(FILTER_NAME, f"classifier_{exc.reason}", scope, "fail_open")


def build_moderation_filter(
    config: ModerationConfig, *, classify: Classify | None = None
) -> ModerationFilter:
    """The filter `filters.moderation` in the config describes.

    `classify` is the app's call to the virtual model `config.model` over the `/v1/moderations`
    wire; it is used only when the config names a model.

    Raises:
        ConfigError: the config names a model but no classifier was given to reach it.
    """
    if config.model is not None and classify is None:
        raise ConfigError(
            f"filters.moderation.model: '{config.model}' is set but no classifier reaches it"
        )
    return ModerationFilter(
        action=config.action,
        categories={
            name: CategorySpec(tuple(c.terms), tuple(c.patterns))
            for name, c in config.categories.items()
        },
        enabled=config.enabled,
        classify=classify if config.model is not None else None,
        thresholds=config.thresholds,
        fail=config.fail,
        timeout_ms=config.timeout_ms,
    )
