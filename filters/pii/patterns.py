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
  so a pattern Presidio changes loses its screen rather than keeping a wrong one); a pattern whose
  matches never span a blank (URL's) runs only on the blank-free runs holding a hit of its screen
  (`_RUN_SCREENS`), not over the whole text;
- recognizers that run their own `analyze` (IBAN, phone numbers) are called as they are, but only
  when one of their patterns could match at all (IBAN), or their own pre-check says so (phone);
- the context step of `LemmaContextAwareEnhancer` (same window, keyword test, boost and cap),
  with the words read from the runs around each match (`filters.pii.context`) instead of a spaCy
  document of the whole text; a result already at the maximum score cannot change, so it skips it;
- the score threshold and the final `remove_duplicates`, as in `AnalyzerEngine.analyze`.

The full engine stays: it is the oracle in the equality test, and NER mode runs it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterator, Sequence
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
    # US_DRIVER_LICENSE (its other pattern: `_RUN_SCREENS`): six digits in a row.
    r"\b([0-9]{6,14}|[0-9]{16})\b": r"[0-9]{6}",
    # IP_ADDRESS: the IPv6 forms all hold a ':' (every alternative has "hex:" or "::"); IPv4 a
    # digit, a dot and a digit (an octet's last digit, its dot, the next octet's first).
    r"(?<![\w:])::(?:ffff(?::0{1,4})?:)?(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)(?:/(?:12[0-8]|1[01]\d|[1-9]?\d))?\b": r"::",
    r"(?<![\w:])(?:(?:[0-9A-Fa-f]{1,4}:){1,5}:(?:[0-9A-Fa-f]{1,4}:){0,4}|(?:[0-9A-Fa-f]{1,4}:){6})"
    r"(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)"
    r"(?:/(?:12[0-8]|1[01]\d|[1-9]?\d))?\b": r"[0-9A-Fa-f]:",
    r"\b(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\."
    r"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)"
    r"(?:/(?:[0-2]?\d|3[0-2]))?\b": r"[0-9]\.[0-9]",
    r"(?<![\w:])(?:(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}|(?:[0-9A-Fa-f]{1,4}:){1,7}:|"
    r":(?::[0-9A-Fa-f]{1,4}){1,7}|(?:[0-9A-Fa-f]{1,4}:){1,6}:[0-9A-Fa-f]{1,4}|"
    r"(?:[0-9A-Fa-f]{1,4}:){1,5}(?::[0-9A-Fa-f]{1,4}){1,2}|"
    r"(?:[0-9A-Fa-f]{1,4}:){1,4}(?::[0-9A-Fa-f]{1,4}){1,3}|"
    r"(?:[0-9A-Fa-f]{1,4}:){1,3}(?::[0-9A-Fa-f]{1,4}){1,4}|"
    r"(?:[0-9A-Fa-f]{1,4}:){1,2}(?::[0-9A-Fa-f]{1,4}){1,5}|[0-9A-Fa-f]{1,4}:(?::[0-9A-Fa-f]{1,4}){1,6}|"
    r":(?::[0-9A-Fa-f]{1,4}){1,6})(?:%[0-9a-zA-Z]+)?(?:/(?:12[0-8]|1[01]\d|[1-9]?\d))?"
    r"(?![\w:]|\.\d)": r":",
    r"(?<![\w:])::(?:/(?:12[0-8]|1[01]\d|[1-9]?\d))?(?![\w:])": r"::",
    # DATE_TIME: the separators between the numbers (or the month's name), with the digits
    # around them that every match of the pattern has.
    r"\b(?:(\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T[0-2]\d:[0-5]\d:[0-5]\d\.\d+"
    r"([+-][0-2]\d:[0-5]\d|Z))|(\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T[0-2]\d:[0-5]"
    r"\d:[0-5]\d([+-][0-2]\d:[0-5]\d|Z))|(\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T"
    r"[0-2]\d:[0-5]\d([+-][0-2]\d:[0-5]\d|Z)))\b": r"\d{4}-\d\d-\d\d",
    r"\b(([1-9]|0[1-9]|1[0-2])/([1-9]|0[1-9]|[1-2][0-9]|3[0-1])/(\d{4}|\d{2}))\b": r"\d/\d",
    r"\b(([1-9]|0[1-9]|[1-2][0-9]|3[0-1])/([1-9]|0[1-9]|1[0-2])/(\d{4}|\d{2}))\b": r"\d/\d",
    r"\b(\d{4}/([1-9]|0[1-9]|1[0-2])/([1-9]|0[1-9]|[1-2][0-9]|3[0-1]))\b": r"\d/\d",
    r"\b(([1-9]|0[1-9]|1[0-2])-([1-9]|0[1-9]|[1-2][0-9]|3[0-1])-\d{4})\b": r"\d-\d\d?-\d{4}",
    r"\b(([1-9]|0[1-9]|[1-2][0-9]|3[0-1])-([1-9]|0[1-9]|1[0-2])-\d{4})\b": r"\d-\d\d?-\d{4}",
    r"\b(\d{4}-([1-9]|0[1-9]|1[0-2])-([1-9]|0[1-9]|[1-2][0-9]|3[0-1]))\b": r"\d{4}-\d\d?-\d",
    r"\b(([1-9]|0[1-9]|[1-2][0-9]|3[0-1])\.([1-9]|0[1-9]|1[0-2])\.(\d{4}|\d{2}))\b": (
        r"\d\.\d\d?\.\d\d"
    ),
    r"\b(([1-9]|0[1-9]|[1-2][0-9]|3[0-1])-(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)-"
    r"(\d{4}|\d{2}))\b": r"\d-(?:JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)-\d\d",
    r"\b((JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)-(\d{4}|\d{2}))\b": (
        r"(?:JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)-\d\d"
    ),
    r"\b(([1-9]|0[1-9]|[1-2][0-9]|3[0-1])-(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC))\b": (
        r"\d-(?:JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)"
    ),
    r"\b(([1-9]|0[1-9]|1[0-2])/\d{4})\b": r"\d/\d{4}",
    r"\b(([1-9]|0[1-9]|1[0-2])/\d{2})\b": r"\d/\d\d",
    # MAC_ADDRESS, UUID: their first groups and separators.
    r"\b[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}\b": (
        r"[0-9A-Fa-f]{2}[:-][0-9A-Fa-f]{2}[:-]"
    ),
    r"\b[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\b": r"[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.",
    r"\b[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\b": (
        r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-"
    ),
    # US_ITIN (three patterns): '9', two digits, maybe a separator, two more.
    r"\b9\d{2}[- ](5\d|6[0-5]|7\d|8[0-8]|9([0-2]|[4-9]))\d{4}\b|\b9\d{2}(5\d|6[0-5]|7\d|8[0-8]|"
    r"9([0-2]|[4-9]))[- ]\d{4}\b": r"9\d\d[- ]?\d\d",
    r"\b9\d{2}(5\d|6[0-5]|7\d|8[0-8]|9([0-2]|[4-9]))\d{4}\b": r"9\d\d\d\d",
    r"\b9\d{2}[- ](5\d|6[0-5]|7\d|8[0-8]|9([0-2]|[4-9]))[- ]\d{4}\b": r"9\d\d[- ]\d\d",
    # US_PASSPORT (the lettered one), MEDICAL_LICENSE: a letter or '9' before the digits.
    r"(\b[A-Z][0-9]{8}\b)": r"[A-Z][0-9]{8}",
    r"[abcdefghjklmprstuxABCDEFGHJKLMPRSTUX]{1}[a-zA-Z]{1}\d{7}|"
    r"[abcdefghjklmprstuxABCDEFGHJKLMPRSTUX]{1}9\d{7}": r"[a-zA-Z9]\d{7}",
}
# Run screens: patterns every match of which lies inside one run of non-blank characters and is
# found there as in the whole text: nothing in them matches a blank (`\s`), and their only
# assertions are `\b` and one-character lookarounds for non-blank classes, which a blank next to a
# run answers as the run's edge does. Keyed by the SHA-256 (first 32 hex digits) of the pattern's
# source (the URL patterns are 6 KB each); a pattern Presidio changes loses its entry. The value is
# a screen every match contains: the pattern runs only on the runs holding a hit of it.
# tests/filters/test_pii_fast.py checks the screens and the same answers either way.
_RUN_SCREENS: dict[str, str] = {
    # URL: "https?://", a quote, and a '.' before the top-level domain, whose first character is
    # a letter (`[a-z]` with the pattern's flags matches exactly what its literal letters do: a
    # test checks every code point).
    "422b91a465b6177e83eb908ce308fbc3": r"https?://",  # "https?://" + domain
    "7405c3a8b8c39f4d0850f0598d9e19cd": r"[.][a-z]",  # bare domain
    "473c5e6b40a312726402cd1f58f430d5": r"[\"']https?://",  # quoted "https?://" + domain
    "58b5bbbc4796bab1808322896eb62264": r"[\"']\S*[.][a-z]",  # quoted bare domain
    # US_DRIVER_LICENSE, lettered: every alternative holds a letter next to a digit, but the one
    # Presidio mistyped ("A-Z]{2}[0-9]{2,5}": literally "A-Z]]" and digits).
    "ab1eb0b240f24580398c85e7215e1324": r"[A-Z][0-9]|[0-9][A-Z]|A-Z\]",
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
    # Per pattern: its run screen (`_RUN_SCREENS`) and the blank-free run expression, or None.
    runs: tuple[tuple[Any, Any] | None, ...] = ()


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
    runs = tuple(_run_screen(p.regex, flags) for p in patterns)
    plain = type(rec).analyze is PatternRecognizer.analyze
    return _Entry(rec, compiled, plain, context, probe, runs)


def remove_duplicates(results: list[RecognizerResult]) -> list[RecognizerResult]:
    """`EntityRecognizer.remove_duplicates`, answered at once for a single result."""
    if len(results) == 1:
        return results if results[0].score != 0 else []  # Presidio drops a zero score
    deduped: list[RecognizerResult] = EntityRecognizer.remove_duplicates(results)
    return deduped


def _screen(source: str, flags: int | None) -> Any:
    screen = _SCREENS.get(source)
    return None if screen is None else regex.compile(screen, flags=flags)


def _run_screen(source: str, flags: int | None) -> tuple[Any, Any] | None:
    screen = _RUN_SCREENS.get(hashlib.sha256(source.encode()).hexdigest()[:32])
    if screen is None:
        return None
    return regex.compile(screen, flags=flags), regex.compile(r"\S+", flags=flags)


def _serves(rec: EntityRecognizer, entities: Collection[str]) -> bool:
    return rec.supported_language == "en" and any(e in rec.supported_entities for e in entities)


def _matches(pattern: Any, text: str, runs: tuple[Any, Any] | None) -> Iterator[tuple[int, int]]:
    """The spans of `pattern.finditer(text)` (with Presidio's timeout); for a pattern with a run
    screen, found run by run, in the runs holding a hit of the screen (each with the timeout)."""
    if runs is None:
        for match in pattern.finditer(text, timeout=REGEX_TIMEOUT_SECONDS):
            yield match.span()
        return
    screen, blank_free = runs
    if screen.search(text) is None:
        return
    for run in blank_free.finditer(text):
        start, end = run.span()
        if screen.search(text, start, end) is None:
            continue
        for match in pattern.finditer(text[start:end], timeout=REGEX_TIMEOUT_SECONDS):
            yield start + match.start(), start + match.end()


def _run_patterns(entry: _Entry, text: str) -> list[RecognizerResult]:
    """`PatternRecognizer.analyze`, minus the explanation objects, timers and debug logging."""
    rec = entry.recognizer
    assert isinstance(rec, PatternRecognizer)
    entity = rec.supported_entities[0]
    name: str = rec.name  # type: ignore[has-type]
    metadata = {_NAME: name, _ID: rec.id}
    results: list[RecognizerResult] = []
    for i, (pattern, base, screen) in enumerate(entry.patterns):
        if screen is not None and screen.search(text) is None:
            continue  # no match possible, known without the timed (system-call) run
        try:
            for start, end in _matches(pattern, text, entry.runs[i]):
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
