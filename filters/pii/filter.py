"""The PII filter: find personal data in every scope of an envelope and act on it.

Requests are analysed and rewritten (or refused); replies get their placeholders restored and,
for the redact / mask / hash / block actions, model output is analysed too, streamed or not.
Analysis runs off the event loop with a deadline (in worker processes with `workers:`, see
`filters.pii.workers`), through a per-filter cache; when it cannot finish, the filter fails
closed (503) unless configured to fail open.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import anyio
import anyio.to_thread

from core.access import Principal
from core.config import ConfigError
from core.config import PiiFilter as PiiFilterConfig
from core.envelope import Envelope, Finding, Scope, StreamChunk
from core.errors import ContentBlocked, FilterUnavailable, GatewayError
from core.filtering import Continue, Decision, FilterContext, Reject, Rewrite
from filters.pii.actions import ACTIONS, FILTER_NAME, Action, Pseudonyms, Redactor, canonical
from filters.pii.cache import AnalysisCache, cache_key, entity_key, text_digest
from filters.pii.engine import Analyzer, PIIAnalyzer, merge_overlaps
from filters.pii.entities import (
    DEFAULT_ENTITIES,
    DEFAULT_LANGUAGES,
    DEFAULT_NER_ENTITIES,
    LANGUAGE_OF,
    LANGUAGES,
    NER_ENTITIES,
    Detection,
    PreCheck,
)
from filters.pii.recognizers import DenyListRecognizer, ProbedRecognizer, RegexRecognizer
from filters.pii.stream import DEFAULT_MAX_HOLD, StreamRewriter
from filters.pii.workers import AnalysisPool

logger = logging.getLogger(__name__)

STATE_PSEUDONYMS = "pii.pseudonyms"
"""`FilterContext.state` key of the request's `Pseudonyms` (read back on the reply)."""
STATE_FINDINGS = "pii.stream_findings"
"""`FilterContext.state` key of the findings made on a streamed reply (no envelope to hold them)."""

Fail = Literal["closed", "open"]
_REPLY_ACTIONS = frozenset({"redact", "mask", "hash", "block"})


@dataclass(frozen=True, slots=True)
class Policy:
    """Actions for some callers: keys (by id or name) and org-path prefixes (a team …)."""

    keys: tuple[str, ...] = ()
    org_paths: tuple[str, ...] = ()
    action: Action | None = None
    actions: Mapping[str, Action] = field(default_factory=dict)

    def matches(self, principal: Principal) -> bool:
        if principal.key_id in self.keys or principal.key_name in self.keys:
            return True
        path = principal.org_path
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.org_paths)


@dataclass(frozen=True, slots=True)
class _Rules:
    """What one policy (or the default) does: its redactor and what it checks in replies."""

    redactor: Redactor
    reply_entities: tuple[str, ...]
    ner_on_replies: bool
    pseudonymizes: bool


class AnalysisFailed(Exception):
    """The analyzer could not answer in time or at all; `reason` names no value."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# Texts of a call up to this many characters in all are analysed on the event loop in pattern
# mode (~0.4 ms for 300 characters, ~1.5 ms at this size); longer ones go to a worker thread.
INLINE_CHARS = 1_000


class PIIFilter:
    """Finds personal data with Presidio and our recognizers; redacts, masks, hashes,
    pseudonymizes (restoring replies) or blocks, per entity type.

    `analyzer` may be shared by several filters (it loads once); the cache and the `analyses`
    count belong to this filter. `analyses` counts texts actually sent to the analyzer.
    With a `pool`, the analyzer's own analysis runs in the pool's worker processes (started with
    the analyzer's settings) and `analyzer` here only says what it supports: it is never loaded
    in this process. The config's recognizers, allow list and thresholds still apply here.

    Raises:
        ConfigError: at construction, for an unknown entity or action, an entity the mode
            cannot find (PERSON without NER), or NER without its model package installed.
    """

    name = FILTER_NAME

    def __init__(
        self,
        *,
        secret: bytes,
        action: Action = "redact",
        entities: Sequence[str] = (),
        actions: Mapping[str, Action] | None = None,
        ner: bool = False,
        timeout_ms: int = 2000,
        fail: Fail = "closed",
        analyzer: Analyzer | None = None,
        cache_size: int = 4096,
        max_hold: int = DEFAULT_MAX_HOLD,
        count: Callable[[int], None] | None = None,
        recognizers: Sequence[ProbedRecognizer] = (),
        allow_list: Sequence[str] = (),
        languages: Sequence[str] = DEFAULT_LANGUAGES,
        policies: Sequence[Policy] = (),
        thresholds: Mapping[str, float] | None = None,
        score_threshold: float = 0.0,
        pool: AnalysisPool | None = None,
    ) -> None:
        overrides = dict(actions or {})
        for act in (action, *overrides.values()):
            if act not in ACTIONS:
                raise ConfigError(f"filters.pii.action: '{act}' is not one of {', '.join(ACTIONS)}")
        for i, policy in enumerate(policies):
            for chosen in (policy.action, *policy.actions.values()):
                if chosen is not None and chosen not in ACTIONS:
                    raise ConfigError(f"filters.pii.policies[{i}]: '{chosen}' is not an action")
        self.languages = _check_languages(languages, ner=ner)
        self._analyzer: Analyzer = analyzer if analyzer is not None else PIIAnalyzer(ner=ner)
        self._recognizers = tuple(recognizers)
        self._allowed = frozenset(canonical(v) for v in allow_list if v.strip())
        own = tuple(dict.fromkeys(r.entity for r in self._recognizers))
        default = tuple(
            e for e in DEFAULT_ENTITIES if LANGUAGE_OF.get(e, "en") in self.languages
        ) + (DEFAULT_NER_ENTITIES if ner else ())
        self.entities: tuple[str, ...] = tuple(dict.fromkeys(entities or default))
        named = (*overrides, *own, *(e for p in policies for e in p.actions))
        self.entities += tuple(e for e in named if e not in self.entities)
        _check_entities(self.entities, self._analyzer.supported | frozenset(own), self.languages)
        # Minimum scores per entity (the analyzer already drops what is under its own minimum).
        self._thresholds = {e: score_threshold for e in self.entities} | dict(thresholds or {})
        unknown = sorted(set(thresholds or {}) - set(self.entities))
        if unknown:
            raise ConfigError(f"filters.pii.thresholds: {', '.join(unknown)} not checked")
        self.redactor = Redactor(action, overrides, secret)
        self._default = self._rules(self.redactor)
        # Per key or team: the first policy that matches the caller replaces the actions.
        self._policies = [
            (p, self._rules(Redactor(p.action or action, {**overrides, **p.actions}, secret)))
            for p in policies
        ]
        self.timeout = timeout_ms / 1000
        # Pattern mode with Presidio's own recognizers only runs short texts right here: handing
        # them to a worker thread cost more CPU than analysing them, and at 32 concurrent calls
        # up to 32 threads queued on the GIL. NER, custom regexes (an operator's pattern may
        # backtrack badly) and long texts still go to a thread, under `timeout`.
        inline = isinstance(self._analyzer, PIIAnalyzer) and not ner and not self._recognizers
        self._inline_chars = INLINE_CHARS if inline else 0
        self._pool = pool
        self.fail: Fail = fail
        self.analyses = 0
        self._count = count
        self.max_hold = max_hold
        self._cache = AnalysisCache(cache_size)
        self._loaded = False
        self._prechecks = {self.entities: self._precheck(self.entities)}
        for rules in (self._default, *(r for _, r in self._policies)):
            self._prechecks[rules.reply_entities] = self._precheck(rules.reply_entities)

    def _rules(self, redactor: Redactor) -> _Rules:
        reply = tuple(e for e in self.entities if redactor.action_for(e) in _REPLY_ACTIONS)
        return _Rules(
            redactor,
            reply,
            ner_on_replies=any(e in NER_ENTITIES for e in reply),
            pseudonymizes=any(redactor.action_for(e) == "pseudonymize" for e in self.entities),
        )

    def rules_for(self, principal: Principal) -> _Rules:
        """The actions that apply to this caller: its key's or team's policy, or the default."""
        for policy, rules in self._policies:
            if policy.matches(principal):
                return rules
        return self._default

    def _precheck(self, entities: tuple[str, ...]) -> PreCheck:
        # Entities found only by the config's own (cheap, regex) recognizers are not the
        # analyzer's: their own patterns say whether a text needs analysing.
        mine = {r.entity for r in self._recognizers} - self._analyzer.supported
        probes = [r.probe for r in self._recognizers if r.entity in entities]
        return PreCheck([e for e in entities if e not in mine], probes)

    async def warm(self) -> None:
        """Load the analyzer now (off the event loop), or start the workers and wait until
        each has loaded it, rather than on the first request.

        Raises:
            WorkerFailed: a worker exited before it was ready (its stderr says why).
        """
        if self._pool is not None:
            await self._pool.start()
        else:
            await anyio.to_thread.run_sync(self._analyzer.load)
            self._loaded = True

    async def aclose(self) -> None:
        """Stop the worker processes, if any (analyses still waiting fail)."""
        if self._pool is not None:
            await self._pool.aclose()

    # -- requests ------------------------------------------------------------------------

    async def on_request(self, env: Envelope, ctx: FilterContext) -> Decision:
        """Analyse every text in the request and apply each entity's action.

        Pseudonyms issued here are kept in `ctx.state[STATE_PSEUDONYMS]` for the reply.
        """
        texts = _texts(env)
        if not texts:
            return Continue()
        rules = self.rules_for(ctx.principal)
        found, failure = await self._detect_or_fail([t for _, t in texts], self.entities)
        if isinstance(failure, Reject):
            return failure
        if failure is None and not rules.pseudonymizes and not any(found.values()):
            return Continue()  # nothing found: nothing to block, rewrite or record
        blocked = _blocked(rules.redactor, texts, found)
        if blocked:
            env.findings.extend(self._block_findings(rules.redactor, texts, found))
            return Reject(ContentBlocked(f"request contains {', '.join(blocked)}"))
        pseudonyms = None
        if rules.pseudonymizes:
            pseudonyms = Pseudonyms(reserved=Pseudonyms.found_in(t for _, t in texts))
            ctx.state[STATE_PSEUDONYMS] = pseudonyms
        findings: list[Finding] = [failure] if failure is not None else []
        changed = self._rewrite(rules.redactor, env, found, pseudonyms, findings)
        env.findings.extend(findings)
        return Rewrite(env) if changed else Continue()

    # -- replies -------------------------------------------------------------------------

    async def on_response(self, env: Envelope, ctx: FilterContext) -> Decision:
        """Restore this request's placeholders, then redact what the model itself disclosed."""
        pseudonyms = _pseudonyms(ctx)
        changed = 0
        if pseudonyms is not None and len(pseudonyms):
            changed += env.visit_text(lambda _scope, text: pseudonyms.restore(text))
        rules = self.rules_for(ctx.principal)
        if not rules.reply_entities:
            return Rewrite(env) if changed else Continue()
        texts = _texts(env)
        found, failure = await self._detect_or_fail([t for _, t in texts], rules.reply_entities)
        if isinstance(failure, Reject):
            return failure
        if failure is None and not any(found.values()):
            return Rewrite(env) if changed else Continue()  # nothing found in the reply
        blocked = _blocked(rules.redactor, texts, found)
        if blocked:
            env.findings.extend(self._block_findings(rules.redactor, texts, found))
            return Reject(ContentBlocked(f"reply contains {', '.join(blocked)}"))
        findings: list[Finding] = [failure] if failure is not None else []
        changed += self._rewrite(rules.redactor, env, found, None, findings)
        env.findings.extend(findings)
        return Rewrite(env) if changed else Continue()

    def on_stream(
        self, chunks: AsyncIterator[StreamChunk], ctx: FilterContext
    ) -> AsyncIterator[StreamChunk]:
        """Restore placeholders and redact model output chunk by chunk (see `filters.pii.stream`).

        Findings go to `ctx.state[STATE_FINDINGS]` (a list), as a stream has no envelope.

        Raises:
            ContentBlocked: from the iterator, when output holds an entity whose action is block.
            FilterUnavailable: from the iterator, when analysis fails and the filter fails closed.
        """
        pseudonyms = _pseudonyms(ctx)
        if pseudonyms is not None and not len(pseudonyms):
            pseudonyms = None
        rules = self.rules_for(ctx.principal)
        if pseudonyms is None and not rules.reply_entities:
            return chunks
        findings: list[Finding] = []
        ctx.state[STATE_FINDINGS] = findings

        async def scrub(segment: str, context: str, scope: Scope) -> str:
            return await self._scrub(rules, segment, context, scope, findings)

        rewriter = StreamRewriter(
            pseudonyms=pseudonyms,
            scrub=scrub if rules.reply_entities else None,
            ner=rules.ner_on_replies,
            max_hold=self.max_hold,
        )
        return rewriter.run(chunks)

    async def _scrub(
        self, rules: _Rules, segment: str, context: str, scope: Scope, findings: list[Finding]
    ) -> str:
        text = context + segment
        if not self._precheck_for(rules.reply_entities)(text):
            return segment  # what `_detect` would conclude, without its bookkeeping per chunk
        try:
            found = await self._detect([text], rules.reply_entities, cache=False)
        except AnalysisFailed as exc:
            if self.fail == "closed":
                raise self._unavailable(exc) from None
            findings.append(_fail_open_finding(exc, scope))
            return segment
        # Only what reaches into the new segment; the context was released already.
        offset = len(context)
        detections = [
            Detection(d.entity, max(d.start - offset, 0), d.end - offset, d.score)
            for d in found[text]
            if d.end > offset
        ]
        blocked = sorted(
            {d.entity for d in detections if rules.redactor.action_for(d.entity) == "block"}
        )
        if blocked:
            raise ContentBlocked(f"reply contains {', '.join(blocked)}")
        new, made = rules.redactor.rewrite(segment, detections, scope, None)
        findings.extend(made)
        return new

    # -- analysis ------------------------------------------------------------------------

    async def _detect_or_fail(
        self, texts: Sequence[str], entities: tuple[str, ...]
    ) -> tuple[dict[str, tuple[Detection, ...]], Reject | Finding | None]:
        """Detections per text; on failure a Reject (fail closed) or a fail-open finding."""
        try:
            return await self._detect(texts, entities), None
        except AnalysisFailed as exc:
            if self.fail == "closed":
                return {}, Reject(self._unavailable(exc))
            # Fail open: what the cache already knows is still applied; the rest passes.
            known = {t: self._cache.get(cache_key(t, entities)) or () for t in texts}
            return known, _fail_open_finding(exc, Scope.MESSAGE)

    async def _detect(
        self, texts: Sequence[str], entities: tuple[str, ...], *, cache: bool = True
    ) -> dict[str, tuple[Detection, ...]]:
        """Detections for each text; each distinct text is analysed at most once (cache).

        Raises:
            AnalysisFailed: the analyzer raised, or did not finish within the timeout.
        """
        precheck = self._precheck_for(entities)
        names = entity_key(entities)
        found: dict[str, tuple[Detection, ...]] = {}
        pending: list[str] = []
        for text in texts:
            if text in found:
                continue
            # The pre-check first: the cache never holds a text it turns away, and it is cheaper
            # than the digest the cache is keyed by.
            if not text or not precheck(text):
                found[text] = ()
                continue
            hit = self._cache.get((text_digest(text), names)) if cache else None
            found[text] = () if hit is None else hit
            if hit is None:
                pending.append(text)
        if not pending:
            return found
        results = await self._analyze(pending, entities)
        for text, detections in zip(pending, results, strict=True):
            found[text] = detections
            if cache:
                self._cache.put((text_digest(text), names), detections)
        return found

    def _precheck_for(self, entities: tuple[str, ...]) -> PreCheck:
        return self._prechecks.get(entities) or self._precheck(entities)

    async def _analyze(
        self, texts: list[str], entities: Collection[str]
    ) -> list[tuple[Detection, ...]]:
        analyzer = self._analyzer
        builtin = tuple(e for e in entities if e in analyzer.supported)
        own = [r for r in self._recognizers if r.entity in entities]

        def finish(text: str, found: list[Detection]) -> tuple[Detection, ...]:
            for recognizer in own:
                found.extend(recognizer.find(text))
            found = [d for d in found if d.score >= self._thresholds.get(d.entity, 0.0)]
            if self._allowed:
                found = [d for d in found if canonical(text[d.start : d.end]) not in self._allowed]
            return merge_overlaps(found) if own else tuple(found)

        def work() -> list[tuple[Detection, ...]]:
            return [
                finish(text, list(analyzer.analyze(text, builtin)) if builtin else [])
                for text in texts
            ]

        self.analyses += len(texts)
        if self._count is not None:
            self._count(len(texts))
        try:
            if self._pool is not None:
                with anyio.fail_after(self.timeout):
                    return await self._in_workers(self._pool, texts, builtin, finish, bool(own))
            if not self._loaded:
                # Not under the deadline: loading happens once and is bounded (no downloads).
                await anyio.to_thread.run_sync(analyzer.load)
                self._loaded = True
            if sum(len(t) for t in texts) <= self._inline_chars:
                return work()
            with anyio.fail_after(self.timeout):
                # A timed-out analysis is abandoned, not killed: the thread finishes on its own.
                return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
        except TimeoutError:
            logger.warning("PII analysis timed out after %.0f ms", self.timeout * 1000)
            raise AnalysisFailed("timeout") from None
        except Exception as exc:
            # Whatever Presidio or spaCy raise must become a fail-closed answer, not a 500
            # that might be retried elsewhere; the message may quote the text, so only the
            # type is logged.
            logger.warning("PII analysis failed: %s", type(exc).__name__)
            raise AnalysisFailed("error") from None

    async def _in_workers(
        self,
        pool: AnalysisPool,
        texts: list[str],
        builtin: tuple[str, ...],
        finish: Callable[[str, list[Detection]], tuple[Detection, ...]],
        threaded: bool,
    ) -> list[tuple[Detection, ...]]:
        found = await pool.analyze(texts, builtin) if builtin else [() for _ in texts]

        def work() -> list[tuple[Detection, ...]]:
            return [finish(text, list(f)) for text, f in zip(texts, found, strict=True)]

        if not threaded:
            return work()  # thresholds and the allow list only: cheap
        # The config's own patterns run in a thread, as without workers (one may backtrack).
        return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)

    def _unavailable(self, exc: AnalysisFailed) -> GatewayError:
        what = "timed out" if exc.reason == "timeout" else "failed"
        return FilterUnavailable(f"PII filter unavailable: analysis {what}")

    def _block_findings(
        self,
        redactor: Redactor,
        texts: Sequence[tuple[Scope, str]],
        found: Mapping[str, tuple[Detection, ...]],
    ) -> list[Finding]:
        # Recorded on the refused envelope too, so the redaction log shows why it was refused.
        findings: list[Finding] = []
        for scope, text in texts:
            blocked = [d for d in found.get(text, ()) if redactor.action_for(d.entity) == "block"]
            findings.extend(redactor.rewrite(text, blocked, scope, None)[1])
        return findings

    def _rewrite(
        self,
        redactor: Redactor,
        env: Envelope,
        found: Mapping[str, tuple[Detection, ...]],
        pseudonyms: Pseudonyms | None,
        findings: list[Finding],
    ) -> int:
        # Visit order is the order texts were collected in, so placeholders number left to right.
        def visit(scope: Scope, text: str) -> str | None:
            detections = found.get(text)
            if not detections:
                return None
            new, made = redactor.rewrite(text, detections, scope, pseudonyms)
            findings.extend(made)
            return new

        return env.visit_text(visit)


def build_pii_filter(
    config: PiiFilterConfig, *, secret: bytes, count: Callable[[int], None] | None = None
) -> PIIFilter:
    """The filter `filters.pii` as configured (the app calls this by registry string).

    `count` is told how many texts each analysis sends to the analyzer (the app's metric).

    Raises:
        ConfigError: as `PIIFilter` does; also for a deny-list value that is allow-listed too.
    """
    recognizers: list[ProbedRecognizer] = [
        RegexRecognizer(r.name, r.pattern, r.score, r.context) for r in config.recognizers
    ]
    allowed = {canonical(v) for v in config.allow_list}
    for entity, values in config.deny_list.items():
        both = sorted(v for v in values if canonical(v) in allowed)
        if both:
            raise ConfigError(
                f"filters.pii.deny_list.{entity}: {len(both)} value(s) are in allow_list too"
            )
        try:
            recognizers.append(DenyListRecognizer(entity, values))
        except ValueError:
            raise ConfigError(f"filters.pii.deny_list.{entity}: no values") from None
    threshold = min([config.score_threshold, *config.thresholds.values()])
    pool = None
    if config.workers:
        pool = AnalysisPool(
            config.workers,
            ner=config.ner,
            score_threshold=threshold,
            stall_after=config.timeout_ms / 1000,
        )
    return PIIFilter(
        secret=secret,
        action=config.action,
        entities=config.entities,
        actions=config.actions,
        ner=config.ner,
        timeout_ms=config.timeout_ms,
        fail=config.fail,
        analyzer=PIIAnalyzer(ner=config.ner, score_threshold=threshold),
        pool=pool,
        count=count,
        recognizers=recognizers,
        allow_list=config.allow_list,
        languages=config.languages,
        thresholds=config.thresholds,
        score_threshold=config.score_threshold,
        policies=[
            Policy(tuple(p.match.keys), tuple(p.match.org_paths), p.action, dict(p.actions))
            for p in config.policies
        ],
    )


def _texts(env: Envelope) -> list[tuple[Scope, str]]:
    texts: list[tuple[Scope, str]] = []

    def collect(scope: Scope, text: str) -> None:
        texts.append((scope, text))

    env.visit_text(collect)
    return texts


def _blocked(
    redactor: Redactor,
    texts: Sequence[tuple[Scope, str]],
    found: Mapping[str, tuple[Detection, ...]],
) -> list[str]:
    kinds = {d.entity for _, t in texts for d in found.get(t, ())}
    return sorted(k for k in kinds if redactor.action_for(k) == "block")


def _pseudonyms(ctx: FilterContext) -> Pseudonyms | None:
    value = ctx.state.get(STATE_PSEUDONYMS)
    return value if isinstance(value, Pseudonyms) else None


def _fail_open_finding(exc: AnalysisFailed, scope: Scope) -> Finding:
    return Finding(FILTER_NAME, f"analysis_{exc.reason}", scope, "fail_open")


def _check_languages(languages: Sequence[str], *, ner: bool) -> tuple[str, ...]:
    wanted = tuple(dict.fromkeys(languages))
    unknown = [lang for lang in wanted if lang not in LANGUAGES]
    if unknown or not wanted:
        raise ConfigError(
            f"filters.pii.languages: {', '.join(unknown) or 'empty'} not supported; "
            f"supported: {', '.join(LANGUAGES)} (pattern recognizers are language-independent)"
        )
    if ner and "en" not in wanted:
        raise ConfigError("filters.pii.languages: ner: true needs en (the NER model is English)")
    return wanted


def _check_entities(
    entities: Sequence[str], supported: frozenset[str], languages: Sequence[str]
) -> None:
    for entity in entities:
        language = LANGUAGE_OF.get(entity)
        if language is not None and language not in languages:
            raise ConfigError(
                f"filters.pii.entities: {entity} needs '{language}' in filters.pii.languages"
            )
        if entity in supported:
            continue
        if entity in NER_ENTITIES:
            raise ConfigError(
                f"filters.pii.entities: {entity} is found only by NER; set ner: true "
                f"(pattern mode cannot find it)"
            )
        known = ", ".join(sorted(supported))
        raise ConfigError(f"filters.pii.entities: unknown entity '{entity}'; known: {known}")
