"""Pattern mode's own engine answers exactly as Presidio's AnalyzerEngine does.

The oracle is `PIIAnalyzer.analyze_reference` (Presidio's full engine over the same recognizers);
the corpus is the position matrix plus a few hundred seeded random texts mixing every entity the
pattern mode finds, near-misses, context words near and far (with stop words, colons, blanks and
line breaks between), Unicode and CJK text, and long texts.
"""
# ruff: noqa: RUF001  (full-width characters are part of the corpus on purpose)

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import phonenumbers
import pytest
from presidio_analyzer import RecognizerResult
from presidio_analyzer.predefined_recognizers import PhoneRecognizer

from filters.pii import PIIAnalyzer
from filters.pii.context import ContextWindow, RunTokenizer
from filters.pii.engine import neutralize_cjk
from filters.pii.entities import DEFAULT_ENTITIES, PATTERN_ENTITIES
from filters.pii.patterns import _SCREENS, PatternEngine
from filters.pii.phones import (
    FastPhoneRecognizer,
    PhoneVerdicts,
    _fewest_digits,
    _refused,
    _refused_digits,
    _SharedMatcher,
)
from filters.pii.stream import _boundary

MATRIX = Path(__file__).resolve().parents[2] / "fixtures" / "pii" / "matrix.json"

VALUES = [
    # e-mail (valid and unknown top-level domains)
    "jane.roe@example.com", "j.o-e+tag@mail.example.co.uk", "someone@localhost", "a@b.zzzz",
    "x@@example.com", "mailto:jane@example.org",
    # phone numbers, many regions and shapes
    "+1 212-555-0147", "212-555-0147", "(212) 555-0147", "212.555.0147", "1-800-555-0199",
    "+44 20 7946 0958", "020 7946 0958", "030 1234567", "+49 30 1234567", "01 42 68 53 00",
    "+33 1 42 68 53 00", "03-123-4567", "098765 43210", "(11) 91234-5678", "416-555-0123",
    "0049 30 1234567", "011 44 20 7946 0958", "+1 212 555 0147 x 42", "+12125550147",
    "＋４４ ２０ 7946 0958", "٠٢٠ 7946 0958", "12-15", "2024-05-01", "555-0147", "17",
    # cards, IBANs, bank numbers
    "4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111", "4111 1111 1111 1112",
    "5500 0000 0000 0004", "3400 000000 00009", "DE89 3704 0044 0532 0130 00",
    "GB82WEST12345698765432", "GB82 WEST 1234 5698 7654 33", "FR14 2004 1010 0505 0001 3M02 606",
    "12345678", "123456789012", "00000000",
    # US identifiers
    "219-09-9999", "078-05-1120", "123-45-6789", "000-12-3456", "219 09 9999", "219099999",
    "912-70-1234", "912701234", "912803456", "A1234567", "D6101-40706-60905", "BB1388568",
    # UK NHS, crypto, IPs, MACs, URLs, UUIDs, dates
    "401 023 2137", "4010232137", "943 476 5919", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT",
    "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "1BoatSLRHtKNngkdXEeobR76b53LETtpyX",
    "192.168.0.1", "10.0.0.256", "2001:db8::ff00:42:8329", "::1", "fe80::1%eth0",
    "00:1A:2B:3C:4D:5E", "00-1a-2b-3c-4d-5e", "001a.2b3c.4d5e", "https://example.com/a?b=1",
    "www.example.org", "example.com", "http://10.0.0.1:8080/x", "ftp://files.example.net",
    "123e4567-e89b-12d3-a456-426614174000", "00000000-0000-0000-0000-000000000000",
    "2024-05-01", "01/05/2024", "May 1, 2024", "1 May 2024", "12:30", "10:30:15 PM",
    "Jan 3rd", "3rd of January 1999", "1999",
    # short and long numbers around each region's floor, with '+' and international prefixes
    "030 1234", "+49 30 123", "+49 89 1234", "0049 89 1234", "011 49 30 1234", "12345",
    "123456", "1234567", "+12345", "+123456", "0 800 123 4567", "+44 1234 5678", "0800 1234",
]  # fmt: skip

FILLER = [
    "please", "call", "me", "at", "my", "the", "a", "an", "and", "or", "to", "of", "is", "be",
    "was", "number", "phone", "card", "Credit", "SSN", "ssn:", "Phone:", "tel.", "mobile",
    "e-mail", "email:", "IBAN", "bank", "account#", "lic#", "passport#", "US", "united",
    "states", "driver", "license", "date", "birthday", "ip", "mac", "address", "url", "link",
    "website", "uuid", "guid", "nhs", "health", "wallet", "btc", "bitcoin", "DEA", "medical",
    "itin", "tax", "payer", "social", "security", "smartphone", "cellphone", "telephone",
    "transaction", "visa", "amex", "cc", "check", "save", "debit", "travel", "document",
    "don't", "can't", "cannot", "gonna", "a.m.", "p.m.", ":)", "(:", ":-)", "<3", "etc.",
    "U.S.", "Mr.", "e.g.", "i.e.", "vs.", "—", "–", "-", "--", "...", "…", ",", ".", ";", ":",
    "!", "?", "(", ")", "[", "]", '"', "'", "“", "”", "’s", "'s", "#", "@", "$5", "5%",
    "10km", "3rd", "1st", "x", "ext.", "ticket", "order", "42", "2024", "v1.2.3", "café",
    "naïve", "Straße", "ΣΟΦΙΑ", "İstanbul", "日本語", "中文", "电话", "护照", "한국어",
    "😀", "👍🏽", "١٢٣", "①", "²",
]  # fmt: skip

SEPARATORS = [
    " ",
    " ",
    " ",
    " ",
    "  ",
    "\n",
    "\t",
    " \n ",
    "\n\n",
    "\xa0",
    ", ",
    ": ",
    "",
    "\u3000",
]


def _corpus() -> list[str]:
    rng = random.Random(20261123)
    texts: list[str] = []
    raw = json.loads(MATRIX.read_text(encoding="utf-8"))
    texts.extend(v["text"] for v in raw["values"])
    for value in VALUES:  # each value alone, and right after each entity's context word
        texts.append(value)
        texts.append(f"{rng.choice(FILLER)} {value}")
    for _ in range(420):
        words: list[str] = []
        for _ in range(rng.choice([3, 6, 12, 25, 60])):
            pick = rng.random()
            words.append(rng.choice(VALUES) if pick < 0.25 else rng.choice(FILLER))
            words.append(rng.choice(SEPARATORS))
        texts.append("".join(words))
    for _ in range(6):  # long texts, a few kilobytes each
        texts.append(" ".join(rng.choice(VALUES + FILLER * 3) for _ in range(700)))
    texts.extend(["", " ", "  ", "\n", "phone ", " 212-555-0147 ", "call\n\n\n212-555-0147\n"])
    return texts


CORPUS = _corpus()


def _key(results: list[RecognizerResult]) -> list[tuple[str, int, int, float]]:
    return [(r.entity_type, r.start, r.end, r.score) for r in results]


def _engines(analyzer: PIIAnalyzer) -> tuple[PatternEngine, object]:
    analyzer.load()
    patterns = analyzer._patterns
    engine = analyzer._engine
    assert patterns is not None and engine is not None
    return patterns, engine


@pytest.mark.parametrize(
    "entities",
    [sorted(PATTERN_ENTITIES), [e for e in DEFAULT_ENTITIES if e in PATTERN_ENTITIES]],
    ids=["every-pattern-entity", "default-entities"],
)
@pytest.mark.parametrize("threshold", [0.0, 0.3])
def test_the_pattern_engine_finds_what_presidio_finds_in_every_corpus_text(
    analyzer: PIIAnalyzer, entities: list[str], threshold: float
) -> None:
    patterns, engine = _engines(analyzer)
    mismatches = []
    for text in CORPUS:
        plain = neutralize_cjk(text)
        want = engine.analyze(plain, language="en", entities=entities, score_threshold=threshold)  # type: ignore[attr-defined]
        got = patterns.analyze(plain, entities, threshold)
        if _key(got) != _key(want):
            mismatches.append((text, _key(got), _key(want)))
    assert not mismatches, mismatches[:3]


def test_the_corpus_exercises_every_pattern_entity_and_the_context_boost(
    analyzer: PIIAnalyzer,
) -> None:
    # Guard against a corpus that would make the equality test above pass vacuously.
    patterns, _ = _engines(analyzer)
    found = [r for t in CORPUS for r in patterns.analyze(neutralize_cjk(t), PATTERN_ENTITIES, 0.0)]
    assert {r.entity_type for r in found} == PATTERN_ENTITIES
    boosted = {r.entity_type for r in found if r.score not in (0.0, 1.0) and r.score >= 0.4}
    assert {"PHONE_NUMBER", "US_SSN", "URL", "DATE_TIME"} <= boosted


def test_the_analyzer_gives_the_same_detections_either_way(analyzer: PIIAnalyzer) -> None:
    entities = [*sorted(PATTERN_ENTITIES), "CN_MOBILE", "BANK_CARD", "PASSPORT", "CN_RESIDENT_ID"]
    for text in CORPUS:
        assert analyzer.analyze(text, entities) == analyzer.analyze_reference(text, entities), text


def test_context_words_are_those_presidio_reads_around_every_offset(
    analyzer: PIIAnalyzer,
) -> None:
    """The run-by-run tokenization gives the enhancer's very words, or its very error."""
    _, engine = _engines(analyzer)
    nlp_engine = engine.nlp_engine  # type: ignore[attr-defined]
    enhancer = engine.context_aware_enhancer  # type: ignore[attr-defined]
    tokenizer = RunTokenizer(nlp_engine.get_nlp("en"))
    for text in CORPUS[:300]:
        if not text:
            continue
        artifacts = nlp_engine.process_text(text, "en")
        window = ContextWindow(text, tokenizer)
        for start in range(len(text)):
            try:
                want: object = sorted(enhancer._extract_surrounding_words(artifacts, "w", start))
            except ValueError:
                want = "ValueError"
            try:
                got: object = sorted(window.surrounding_words(start, 5, 0))
            except ValueError:
                got = "ValueError"
            assert got == want, (text, start)


def test_a_run_is_tokenized_as_spacy_tokenizes_it_within_the_whole_text(
    analyzer: PIIAnalyzer,
) -> None:
    _, engine = _engines(analyzer)
    nlp = engine.nlp_engine.get_nlp("en")  # type: ignore[attr-defined]
    tokenizer = RunTokenizer(nlp)
    for text in CORPUS:
        want = [(t.idx, t.idx + len(t), t.lower_) for t in nlp(text)]
        window = ContextWindow(text, tokenizer)
        got: list[tuple[int, int, str]] = []
        pos = 0
        while pos < len(text):
            pos = window._append_run(pos, got)
        assert got == want, text


_HARD = re.compile(
    '[\n\r"'
    "\u3000-\u303f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65"
    "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]"
)


def _boundary_char_by_char(buf: str, ner: bool) -> int:
    """The stream's boundary rule as first written: one character at a time from the end."""
    for i in range(len(buf), 0, -1):
        prev = buf[i - 1]
        if _HARD.match(prev):
            return i
        if not prev.isspace() or i == len(buf):
            continue
        nxt = buf[i]
        if nxt.isspace() or nxt.isdigit() or nxt in "+(":
            continue
        left = buf[:i].rstrip()
        if left and (left[-1].isdigit() or left[-1] == ")"):
            continue
        if ner and not (left and left[-1] in ".!?;:,"):
            continue
        return i
    return 0


def test_the_stream_boundary_is_the_one_the_character_walk_finds() -> None:
    rng = random.Random(7)
    pieces = [" ", "  ", "\t", "\n", "\r", "\xa0", "\u3000", '"', "。", "，", "中", "a",
              "word", "4111", "1", "+", "(", ")", "212)", ".", "!", ",", ";", ":", "x", "é",
              "٣"]  # fmt: skip
    for _ in range(5000):
        buf = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        for ner in (False, True):
            assert _boundary(buf, ner) == _boundary_char_by_char(buf, ner), (buf, ner)


def _phone_like(rng: random.Random) -> str:
    """A string of 3 to 13 digits, grouped, sometimes after '+', an international prefix or a
    trunk prefix: every digit count around each region's floor in `_fewest_digits`."""
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(3, 13)))
    groups: list[str] = []
    while digits:
        cut = rng.randint(1, 4)
        groups.append(digits[:cut])
        digits = digits[cut:]
    body = rng.choice([" ", "-", ".", ""]).join(groups)
    lead = rng.choice(["", "", "", "+", "+1 ", "+49 ", "+44 ", "011 ", "00 ", "0", "(0)", "＋"])
    tail = rng.choice(["", "", " x12", " ext. 7", "/3"])
    return f"{lead}{body}{tail}"


def test_the_phone_recognizer_finds_what_presidios_finds_for_any_digit_count() -> None:
    fast, presidio = FastPhoneRecognizer(), PhoneRecognizer()
    rng = random.Random(11)
    for _ in range(600):
        text = " ".join(rng.choice([_phone_like(rng), rng.choice(FILLER)]) for _ in range(4))
        assert _phone_spans(fast, text) == _phone_spans(presidio, text), text


def _phone_spans(recognizer: PhoneRecognizer, text: str) -> list[tuple[int, int, float]]:
    return sorted((r.start, r.end, r.score) for r in recognizer.analyze(text, ["PHONE_NUMBER"]))


def test_the_shared_matcher_spends_its_tries_as_phonenumbers_does() -> None:
    """Same matches as phonenumbers' own matcher per region, even when tries run out early."""
    rng = random.Random(13)
    verdicts = PhoneVerdicts()
    for _ in range(150):
        text = " ".join(_phone_like(rng) for _ in range(rng.randint(2, 8)))
        for region in ("US", "DE", "BR"):
            for tries in (1, 2, 3, 5, 8, 65535):
                theirs = phonenumbers.PhoneNumberMatcher(text, region, leniency=1)
                theirs._max_tries = tries
                ours = _SharedMatcher(text, region, 1, verdicts, {}, {}, _fewest_digits(region))
                ours._max_tries = tries
                want = [(m.start, m.end) for m in theirs]
                assert [(m.start, m.end) for m in ours] == want, (text, region, tries)
                again = _SharedMatcher(text, region, 1, verdicts, {}, {}, _fewest_digits(region))
                again._max_tries = tries
                assert [(m.start, m.end) for m in again.matches()] == want, (text, region, tries)


def _id_like(rng: random.Random) -> str:
    """Digits that phonenumbers turns away before parsing, or not: glued to letters (hex ids,
    tickets), next to '%' or a currency sign, in dates and times, or a plain number."""
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 12)))
    hexed = "".join(rng.choice("0123456789abcdef") for _ in range(rng.randint(4, 16)))
    return rng.choice(
        [
            hexed, f"ab{digits}", f"{digits}cd", f"user-{hexed}@example.com", f"#{digits}",
            f"{digits}%", f"${digits}", f"€{digits}", f"{digits}€", f"é{digits}", f"x{digits}",
            f"({digits}", f"{digits})", f"{digits[:3]}/{digits[3:]}", "12/05/2024",
            "10:30 am", "2024-05-01 10:30", f"{hexed}/{digits}", f"+{digits}", digits,
        ]
    )  # fmt: skip


def test_the_phone_recognizer_finds_what_presidios_finds_among_ids_and_glued_digits() -> None:
    fast, presidio = FastPhoneRecognizer(), PhoneRecognizer()
    rng = random.Random(17)
    for _ in range(600):
        words = [rng.choice([_id_like, _id_like, _phone_like])(rng) for _ in range(5)]
        text = rng.choice(["", " ", "-", "/", ", "]).join(words)
        assert _phone_spans(fast, text) == _phone_spans(presidio, text), text


def test_the_shared_matcher_spends_tries_on_candidates_it_passes_over_as_phonenumbers_does() -> (
    None
):
    rng = random.Random(19)
    verdicts = PhoneVerdicts()
    for _ in range(150):
        words = [rng.choice([_id_like, _id_like, _phone_like])(rng) for _ in range(6)]
        text = " ".join(words)
        for region in ("US", "DE", "BR"):
            for tries in (1, 2, 3, 4, 5, 8, 13, 65535):
                theirs = phonenumbers.PhoneNumberMatcher(text, region, leniency=1)
                theirs._max_tries = tries
                ours = _SharedMatcher(text, region, 1, verdicts, {}, {}, _fewest_digits(region))
                ours._max_tries = tries
                want = [(m.start, m.end) for m in theirs]
                assert [(m.start, m.end) for m in ours] == want, (text, region, tries)
                again = _SharedMatcher(text, region, 1, verdicts, {}, {}, _fewest_digits(region))
                again._max_tries = tries
                assert [(m.start, m.end) for m in again.matches()] == want, (text, region, tries)


def test_every_screen_is_in_use_and_finds_something_wherever_its_pattern_matches(
    analyzer: PIIAnalyzer,
) -> None:
    patterns, _ = _engines(analyzer)
    screened = [(p, s) for e in patterns._entries for p, _, s in e.patterns if s is not None]
    # A screen whose Presidio pattern changed would silently stop applying: say so here.
    assert len(screened) == len(_SCREENS)
    rng = random.Random(23)
    digits = "0123456789٣１"  # Unicode digits too: `\d` matches them
    extra = [
        "".join(rng.choice(digits + "- .") for _ in range(rng.randint(5, 40))) for _ in range(3000)
    ]
    checked = 0
    for text in [*CORPUS, *extra, *(_id_like(rng) for _ in range(500))]:
        for pattern, screen in screened:
            if pattern.search(text) is not None:
                checked += 1
                assert screen.search(text) is not None, (pattern.pattern, text)
    assert checked > 1000


def test_a_candidate_of_plain_digits_is_refused_as_phonenumbers_refuses_it() -> None:
    rng = random.Random(29)
    for _ in range(3000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 17)))
        text = f"{rng.choice(['', 'a', ' ', '$', '%', 'é', '(', '+', '-', '中'])}{digits}"
        text += rng.choice(["", "b", " ", "%", "€", ")", "."])
        offset = text.index(digits)
        for valid_only in (True, False):
            want = _refused(text, digits, offset, valid_only)
            assert _refused_digits(text, digits, offset, valid_only) == want, (text, valid_only)
