"""Pattern mode's analyzer: Presidio's own recognizers, run without Presidio's per-call framework.

`AnalyzerEngine.analyze` tokenizes the whole text with spaCy, builds an explanation object for
every regex hit, deep-copies every result for the context step, and runs every pattern through a
timing and logging wrapper. In pattern mode none of that changes an answer, and it costs most of
the time. `PatternEngine` keeps what decides the answer, taken from the very recognizer objects
Presidio loaded:

- each recognizer's patterns (same `regex` module, same flags, same scores), its
  `validate_result` / `invalidate_result`, and Presidio's `remove_duplicates` per recognizer;
- before a pattern runs (with Presidio's timeout, which makes `regex` read the process CPU clock,
  a system call, on every call), a screen may rule it out: a simpler expression every match of
  that very pattern contains, run without a timeout (`_SCREENS`, keyed by the pattern's source,
  so a pattern Presidio changes loses its screen rather than keeping a wrong one);
- recognizers that run their own `analyze` (IBAN, phone numbers) are called as they are, but only
  when one of their patterns could match at all (IBAN), or their own pre-check says so (phone);
- the context step of `LemmaContextAwareEnhancer` (same window, keyword test, boost and cap),
  with the words read from the runs around each match (`filters.pii.context`) instead of a spaCy
  document of the whole text; a result already at the maximum score cannot change, so it skips it;
- the score threshold and the final `remove_duplicates`, as in `AnalyzerEngine.analyze`.

The full engine stays: it is the oracle in the equality test, and NER mode runs it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import regex  # type: ignore[import-untyped]  # Presidio's regex engine; no stubs
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.context_aware_enhancers import (
    ContextAwareEnhancer,
    LemmaContextAwareEnhancer,
)
from presidio_analyzer.pattern_recognizer import REGEX_TIMEOUT_SECONDS
from spacy.language import Language

from filters.pii.context import SIGMAS, ContextWindow, RunTokenizer

_MAX_ENTITY_SETS = 64

# Screens: Presidio's pattern source -> an expression (bounded repeats, no nesting, so it cannot
# backtrack badly) that every match of the pattern contains; no match of it, no match of the
# pattern. Each is the pattern without its anchors and lookarounds, or a prefix of it; compiled
# with the pattern's own flags and module (same Unicode tables). tests/filters/test_pii_fast.py
# checks that a screen finds something wherever its pattern does.
_SCREENS: dict[str, str] = {
    # CREDIT_CARD: four digits (the issuer group), an optional separator, three more.
    r"\b(?!1\d{12}(?!\d))((4\d{3})|(5[0-5]\d{2})|(6\d{3})|(1\d{3})|(3\d{3}))[- ]?(\d{3,4})[- ]?"
    r"(\d{3,4})[- ]?(\d{3,5})\b": r"\d{4}[- ]?\d{3}",
    # US_SSN, its five patterns.
    r"\b([0-9]{5})-([0-9]{4})\b": r"[0-9]{5}-[0-9]{4}",
    r"\b([0-9]{3})-([0-9]{6})\b": r"[0-9]{3}-[0-9]{6}",
    r"\b(([0-9]{3})-([0-9]{2})-([0-9]{4}))\b": r"[0-9]{3}-[0-9]{2}-[0-9]{4}",
    r"\b[0-9]{9}\b": r"[0-9]{9}",
    r"\b([0-9]{3})[- .]([0-9]{2})[- .]([0-9]{4})\b": r"[0-9]{3}[- .][0-9]{2}[- .][0-9]{4}",
    # US_BANK_NUMBER, US_PASSPORT, UK_NHS (not checked by default, as cheap to screen).
    r"\b[0-9]{8,17}\b": r"[0-9]{8}",
    r"(\b[0-9]{9}\b)": r"[0-9]{9}",
    r"\b([0-9]{3})[- ]?([0-9]{3})[- ]?([0-9]{4})\b": r"[0-9]{3}[- ]?[0-9]{3}[- ]?[0-9]{4}",
}
_ID = RecognizerResult.RECOGNIZER_IDENTIFIER_KEY
_NAME = RecognizerResult.RECOGNIZER_NAME_KEY


@dataclass(frozen=True, slots=True)
class _Entry:
    """One recognizer, with its patterns compiled the way its own `analyze` compiles them."""

    recognizer: EntityRecognizer
    # (compiled `regex` pattern, Presidio's score, its screen or None)
    patterns: tuple[tuple[Any, float, Any], ...]
    # True: a plain PatternRecognizer, whose loop `_run_patterns` reproduces; False: call its
    # own `analyze` (only when a pattern matches, if it has patterns).
    plain: bool
    context: tuple[str, ...]
    # The context words lower-cased, for `ContextWindow.could_support`; None if it cannot say
    # (a word with a sigma, whose lower-casing depends on its neighbours).
    probe: tuple[str, ...] | None


class PatternEngine:
    """Presidio's pattern-mode answer for a text, from the recognizers Presidio loaded.

    Raises:
        ValueError: at construction, for a recognizer or enhancer this engine cannot reproduce
            exactly (one with its own context step, or another enhancer class).
    """

    def __init__(
        self,
        recognizers: Sequence[EntityRecognizer],
        nlp: Language,
        enhancer: LemmaContextAwareEnhancer,
    ) -> None:
        lemma_step = LemmaContextAwareEnhancer.enhance_using_context
        if type(enhancer).enhance_using_context is not lemma_step:
            raise ValueError("the context enhancer is not Presidio's lemma enhancer")
        self._entries: list[_Entry] = []
        for rec in recognizers:
            if type(rec).enhance_using_context is not EntityRecognizer.enhance_using_context:
                raise ValueError(f"{type(rec).__name__} has its own context step")
            self._entries.append(_entry(rec))
        self._enhancer = enhancer
        self._tokenizer = RunTokenizer(nlp)
        # Recognizers per requested entity list (a filter asks with a handful of lists).
        self._chosen: dict[tuple[str, ...], list[_Entry]] = {}

    def analyze(
        self, text: str, entities: Collection[str], threshold: float
    ) -> list[RecognizerResult]:
        """`AnalyzerEngine.analyze(text, "en", entities, score_threshold=threshold)`, in short.

        Raises:
            ValueError: if no recognizer serves `entities`, as Presidio's registry does.
        """
        wanted = tuple(entities)
        chosen = self._chosen.get(wanted)
        if chosen is None:
            chosen = [e for e in self._entries if _serves(e.recognizer, wanted)]
            if len(self._chosen) < _MAX_ENTITY_SETS:
                self._chosen[wanted] = chosen
        if not chosen:
            raise ValueError("No matching recognizers were found to serve the request.")
        results: list[tuple[RecognizerResult, _Entry]] = []
        for entry in chosen:
            if entry.plain:
                found = _run_patterns(entry, text)
            elif entry.patterns and not any(p.search(text) for p, _, _ in entry.patterns):
                continue  # its `analyze` reports regex hits only, and there is none
            else:
                # No NLP artifacts: the recognizers that come here (IBAN, phone) never read them.
                found = entry.recognizer.analyze(text, list(entities), None)  # type: ignore[arg-type]
            results.extend((r, entry) for r in found)
        if not results:
            return []
        self._enhance(text, results)
        kept = [r for r, _ in results if r.score >= threshold]
        return remove_duplicates(kept)

    def _enhance(self, text: str, results: list[tuple[RecognizerResult, _Entry]]) -> None:
        """`LemmaContextAwareEnhancer.enhance_using_context`, on the words near each result."""
        enh = self._enhancer
        window: ContextWindow | None = None
        for result, entry in results:
            if not entry.context:
                continue
            # Presidio looks for the match's token even when nothing can come of it, and raises
            # if there is none, which only a match in trailing blanks can meet: let it, there.
            trailing = text[result.start :].isspace()
            if result.score >= ContextAwareEnhancer.MAX_SCORE and not trailing:
                continue  # at the maximum the boost changes nothing
            if window is None:
                window = ContextWindow(text, self._tokenizer)
            if entry.probe is not None and not trailing and not window.could_support(entry.probe):
                continue  # no token anywhere could be a context word
            words = window.surrounding_words(
                result.start, enh.context_prefix_count, enh.context_suffix_count
            )
            supportive = LemmaContextAwareEnhancer._find_supportive_word_in_context(
                words, list(entry.context), enh.context_matching_mode
            )
            if supportive != "":
                score = result.score + enh.context_similarity_factor
                score = max(score, enh.min_score_with_context_similarity)
                result.score = min(score, ContextAwareEnhancer.MAX_SCORE)


def _entry(rec: EntityRecognizer) -> _Entry:
    context = tuple(rec.context or ())
    lowered = tuple(w.lower() for w in context)
    probe = None if any(c in w for w in lowered for c in SIGMAS) else lowered
    if not isinstance(rec, PatternRecognizer):
        return _Entry(rec, (), False, context, probe)
    flags = rec.global_regex_flags
    patterns: list[Pattern] = rec.patterns  # type: ignore[has-type]
    compiled = tuple(
        (regex.compile(p.regex, flags=flags), p.score, _screen(p.regex, flags)) for p in patterns
    )
    plain = type(rec).analyze is PatternRecognizer.analyze
    return _Entry(rec, compiled, plain, context, probe)


def remove_duplicates(results: list[RecognizerResult]) -> list[RecognizerResult]:
    """`EntityRecognizer.remove_duplicates`, answered at once for a single result."""
    if len(results) == 1:
        return results if results[0].score != 0 else []  # Presidio drops a zero score
    deduped: list[RecognizerResult] = EntityRecognizer.remove_duplicates(results)
    return deduped


def _screen(source: str, flags: int | None) -> Any:
    screen = _SCREENS.get(source)
    return None if screen is None else regex.compile(screen, flags=flags)


def _serves(rec: EntityRecognizer, entities: Collection[str]) -> bool:
    return rec.supported_language == "en" and any(e in rec.supported_entities for e in entities)


def _run_patterns(entry: _Entry, text: str) -> list[RecognizerResult]:
    """`PatternRecognizer.analyze`, minus the explanation objects, timers and debug logging."""
    rec = entry.recognizer
    assert isinstance(rec, PatternRecognizer)
    entity = rec.supported_entities[0]
    name: str = rec.name  # type: ignore[has-type]
    metadata = {_NAME: name, _ID: rec.id}
    results: list[RecognizerResult] = []
    for pattern, base, screen in entry.patterns:
        if screen is not None and screen.search(text) is None:
            continue  # no match possible, known without the timed (system-call) run
        try:
            for match in pattern.finditer(text, timeout=REGEX_TIMEOUT_SECONDS):
                start, end = match.span()
                current = text[start:end]
                if current == "":
                    continue
                score = base
                valid = rec.validate_result(current)
                if valid is not None:
                    score = EntityRecognizer.MAX_SCORE if valid else EntityRecognizer.MIN_SCORE
                invalid = rec.invalidate_result(current)
                if invalid is not None and invalid:
                    score = EntityRecognizer.MIN_SCORE
                if score > EntityRecognizer.MIN_SCORE:
                    results.append(
                        RecognizerResult(
                            entity, start, end, score, recognition_metadata=dict(metadata)
                        )
                    )
        except TimeoutError:
            continue  # Presidio skips a pattern that times out (keeping what it found so far)
    if not results:
        return results
    return remove_duplicates(results)
