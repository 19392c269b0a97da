"""Pattern mode's own engine answers exactly as Presidio's AnalyzerEngine does.

The oracle is `PIIAnalyzer.analyze_reference` (Presidio's full engine over the same recognizers);
the corpus is the position matrix plus a few hundred seeded random texts mixing every entity the
pattern mode finds, near-misses, context words near and far (with stop words, colons, blanks and
line breaks between), Unicode and CJK text, and long texts.
"""
# ruff: noqa: RUF001  (full-width characters are part of the corpus on purpose)

from __future__ import annotations

import itertools
import json
import random
import re
from pathlib import Path

import phonenumbers
import pytest
import regex  # type: ignore[import-untyped]
from presidio_analyzer import RecognizerResult
from presidio_analyzer.predefined_recognizers import PhoneRecognizer

from filters.pii import PIIAnalyzer
from filters.pii.context import ContextWindow, RunTokenizer
from filters.pii.engine import neutralize_cjk
from filters.pii.entities import DEFAULT_ENTITIES, PATTERN_ENTITIES
from filters.pii.patterns import _RUN_SCREENS, _SCREENS, PatternEngine, _matches
from filters.pii.phones import (
    FastPhoneRecognizer,
    PhoneVerdicts,
    _fewest_digits,
    _national_rule,
    _refused,
    _refused_digits,
    _SharedMatcher,
    _walk,
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


def _matcher(
    text: str,
    region: str,
    verdicts: PhoneVerdicts,
    shared: dict[str, dict[object, object]] | None = None,
) -> _SharedMatcher:
    """A matcher as `FastPhoneRecognizer` makes one (its region's rules; per-text memos shared
    through `shared`, if given)."""
    memo = shared if shared is not None else {}
    return _SharedMatcher(
        text,
        region,
        1,
        verdicts,
        memo.setdefault("candidates", {}),  # type: ignore[arg-type]
        memo.setdefault("plans", {}),  # type: ignore[arg-type]
        _fewest_digits(region),
        memo.setdefault("skips", {}),  # type: ignore[arg-type]
        _national_rule(region),
        memo.setdefault("checks", {}),  # type: ignore[arg-type]
    )


def _assert_tries_spent_alike(
    text: str, region: str, verdicts: PhoneVerdicts, limits: tuple[int, ...]
) -> None:
    """Our matcher finds what phonenumbers' own finds in `region` with each limit of tries, both
    iterated as upstream iterates and through `matches()`, the second time from the memo."""
    for tries in limits:
        theirs = phonenumbers.PhoneNumberMatcher(text, region, leniency=1)
        theirs._max_tries = tries
        ours = _matcher(text, region, verdicts)
        ours._max_tries = tries
        want = [(m.start, m.end) for m in theirs]
        assert [(m.start, m.end) for m in ours] == want, (text, region, tries)
        again = _matcher(text, region, verdicts)
        again._max_tries = tries
        assert [(m.start, m.end) for m in again.matches()] == want, (text, region, tries)


def test_the_shared_matcher_spends_its_tries_as_phonenumbers_does() -> None:
    """Same matches as phonenumbers' own matcher per region, even when tries run out early."""
    rng = random.Random(13)
    verdicts = PhoneVerdicts()
    for _ in range(150):
        text = " ".join(_phone_like(rng) for _ in range(rng.randint(2, 8)))
        for region in ("US", "DE", "BR"):
            _assert_tries_spent_alike(text, region, verdicts, (1, 2, 3, 5, 8, 65535))


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
            _assert_tries_spent_alike(text, region, verdicts, (1, 2, 3, 4, 5, 8, 13, 65535))


def _screen_texts(rng: random.Random) -> list[str]:
    """Texts for the screen tests: near-misses and hits of every screened pattern (dates in each
    format, IPv4 and IPv6 forms, MACs, UUIDs, licences, ITINs, URLs bare, with a scheme and
    quoted), and random strings of the characters those patterns and their screens read
    (Unicode digits, and letters that case-fold into ASCII: the long s and the Kelvin sign)."""
    hexd = "0123456789abcdefABCDEF"

    def h(n: int) -> str:
        return "".join(rng.choice(hexd) for _ in range(n))

    def d(n: int) -> str:
        return "".join(rng.choice("0123456789") for _ in range(n))

    def ipv4() -> str:
        return ".".join(str(rng.randint(0, 260)) for _ in range(4))

    def url() -> str:
        scheme = rng.choice(["http://", "https://", "", "", "www.", "www2."])
        return (
            scheme + h(rng.randint(1, 9)) + rng.choice([".com", ".co.uk", ".zz", ".", ".\u017fh"])
        )

    base58 = "abcHJKNPZ0123456789"
    months = ["JAN", "feb", "Mar", "APR", "may", "JUN", "jul", "AUG", "Sep", "OCT", "nov", "DEC"]
    templates = [
        lambda: f"{d(4)}-{rng.choice(['01', '12', '13'])}-{d(2)}T{d(2)}:{d(2)}:{d(2)}.{d(3)}Z",
        lambda: f"{d(4)}-{rng.choice(['01', '12'])}-{rng.choice(['01', '31'])}T{d(2)}:{d(2)}Z",
        lambda: f"{d(4)}-{rng.choice(['01', '12'])}-{rng.choice(['01', '31'])}T23:59+01:00",
        lambda: f"{d(rng.randint(1, 2))}/{d(rng.randint(1, 2))}/{d(rng.choice([2, 4]))}",
        lambda: f"{d(4)}/{d(rng.randint(1, 2))}/{d(rng.randint(1, 2))}",
        lambda: f"{d(rng.randint(1, 2))}-{d(rng.randint(1, 2))}-{d(4)}",
        lambda: f"{d(4)}-{d(rng.randint(1, 2))}-{d(rng.randint(1, 2))}",
        lambda: f"{d(rng.randint(1, 2))}.{d(rng.randint(1, 2))}.{d(rng.choice([2, 4]))}",
        lambda: f"{d(rng.randint(1, 2))}-{rng.choice(months)}-{d(rng.choice([2, 4]))}",
        lambda: f"{rng.choice(months)}-{d(rng.choice([2, 4]))}",
        lambda: f"{d(rng.randint(1, 2))}/{d(rng.choice([2, 4]))}",
        lambda: ".".join(str(rng.randint(0, 260)) for _ in range(4)),
        lambda: "::" + rng.choice(["", "ffff:", "ffff:0:"]) + ipv4(),
        lambda: ":".join(h(rng.randint(1, 4)) for _ in range(rng.randint(2, 6))) + "::" + ipv4(),
        lambda: ":".join(h(rng.randint(1, 4)) for _ in range(rng.randint(2, 8))),
        lambda: h(4) + "::" + h(rng.randint(1, 4)) + rng.choice(["", "%eth0", "/64"]),
        lambda: rng.choice(["::", "::/64", ":::", "a::"]),
        lambda: rng.choice([":", "-"]).join(h(2) for _ in range(6)),
        lambda: ".".join(h(4) for _ in range(3)),
        lambda: f"{h(8)}-{h(4)}-{h(4)}-{h(4)}-{h(12)}",
        lambda: rng.choice("ABCHVXRabhvxr") + d(rng.randint(1, 18)) + rng.choice(["", "R", "AB"]),
        lambda: d(rng.randint(2, 9)) + rng.choice(["A", "ab", "XYZ"]) + d(rng.randint(0, 6)),
        lambda: "A-Z]]" + d(rng.randint(2, 5)),
        lambda: "9" + d(2) + rng.choice(["", "-", " "]) + d(2) + rng.choice(["", "-", " "]) + d(4),
        lambda: rng.choice("abcdefghjklmprstuxBX") + rng.choice("abZ9") + d(7),
        lambda: rng.choice(["1", "3", "bc1"]) + "".join(rng.choice(base58) for _ in range(30)),
        lambda: url() + rng.choice(["", "/p?q=1", "/a b"]),
        lambda: rng.choice(["'", '"']) + url() + rng.choice(["'", '"', ""]),
        lambda: f"{h(6)}@{h(5)}.{rng.choice(['com', 'x', 'co.uk'])}",
    ]  # fmt: skip
    texts = []
    for _ in range(3000):
        words = [rng.choice(templates)() for _ in range(rng.randint(1, 4))]
        texts.append(rng.choice([" ", "", "/", ", ", "\n", "'"]).join(words))
    soup = "0123456789٣１abcdefxzHVXR:.-/@'\" ſ\u212a\u00a0"
    texts += ["".join(rng.choice(soup) for _ in range(rng.randint(3, 40))) for _ in range(2000)]
    return texts


SCREEN_TEXTS = _screen_texts(random.Random(23))


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
    hits = dict.fromkeys((p.pattern for p, _ in screened), 0)
    for text in [*CORPUS, *extra, *(_id_like(rng) for _ in range(500)), *SCREEN_TEXTS]:
        for pattern, screen in screened:
            if pattern.search(text) is not None:
                hits[pattern.pattern] += 1
                assert screen.search(text) is not None, (pattern.pattern, text)
    # Not vacuous: every screened pattern matched some of these texts.
    assert min(hits.values()) > 5, [p[:60] for p, n in hits.items() if n <= 5]


def test_a_pattern_with_a_run_screen_finds_in_its_runs_what_it_finds_in_the_whole_text(
    analyzer: PIIAnalyzer,
) -> None:
    patterns, _ = _engines(analyzer)
    split = [
        (p, r)
        for e in patterns._entries
        for (p, _, _), r in zip(e.patterns, e.runs, strict=True)
        if r
    ]
    assert len(split) == len(_RUN_SCREENS)  # a changed Presidio pattern loses its entry: say so
    hits = dict.fromkeys((p.pattern for p, _ in split), 0)
    for text in [*CORPUS, *SCREEN_TEXTS]:
        for pattern, runs in split:
            want = [m.span() for m in pattern.finditer(text)]
            hits[pattern.pattern] += bool(want)
            assert want == list(_matches(pattern, text, runs)), (pattern.pattern[:60], text)
            assert not want or runs[0].search(text) is not None
    assert min(hits.values()) > 5, [p[:60] for p, n in hits.items() if n <= 5]


def test_a_letter_class_matches_what_the_letters_match_under_the_patterns_flags(
    analyzer: PIIAnalyzer,
) -> None:
    """The screens stand `[a-z]` / `[A-Z]` for literal letters of the patterns (a top-level
    domain's first letter, a licence's "H"): with the patterns' case-insensitive flags both must
    match the same characters, over every code point."""
    patterns, _ = _engines(analyzer)
    screened = [
        p
        for e in patterns._entries
        for (p, _, s), r in zip(e.patterns, e.runs, strict=True)
        if s or r
    ]
    flags = {p.flags for p in screened}
    assert len(flags) == 1  # one set of flags to check (IGNORECASE among them)
    flag = flags.pop()
    for letters, cls in (
        ("abcdefghijklmnopqrstuvwxyz", "[a-z]"),
        ("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "[A-Z]"),
    ):
        literal = regex.compile("|".join(letters), flags=flag)
        ranged = regex.compile(cls, flags=flag)
        odd = [
            c for c in map(chr, range(0x110000)) if bool(literal.match(c)) != bool(ranged.match(c))
        ]
        assert not odd, (cls, odd[:5])
        assert ranged.match("\u212a") and ranged.match("ſ")  # folds into ASCII: covered too


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


REGIONS = PhoneRecognizer.DEFAULT_SUPPORTED_REGIONS


def _example_numbers() -> list[str]:
    """Every region's example numbers of every type, written nationally, internationally (with
    and without the '+'), as E.164 digits and as dialled from each recognizer region."""
    written: set[str] = set()
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in range(11):  # the PhoneNumberType values with example numbers
            number = phonenumbers.example_number_for_type(region, kind)
            if number is None:
                continue
            for style in (
                phonenumbers.PhoneNumberFormat.NATIONAL,
                phonenumbers.PhoneNumberFormat.INTERNATIONAL,
                phonenumbers.PhoneNumberFormat.E164,
            ):
                text = phonenumbers.format_number(number, style)
                written.update([text, text.lstrip("+")])
            written.update(
                phonenumbers.format_out_of_country_calling_number(number, r) for r in REGIONS
            )
    return sorted(written)


def _digit_runs(rng: random.Random) -> list[str]:
    """Digit strings of 1 to 20 digits, often after a country code, an international or a
    national prefix of one of the recognizer's regions, sometimes grouped with punctuation."""
    leads = ["", "", "", "0", "00", "011", "1", "44", "49", "33", "972", "91", "55", "0049",
             "0044", "01", "012", "015", "90", "9015", "0800", "1800", "0000"]  # fmt: skip
    runs = []
    for _ in range(1500):
        digits = rng.choice(leads) + "".join(
            rng.choice("0123456789") for _ in range(rng.randint(1, 17))
        )
        if rng.random() < 0.3:
            digits = "".join(
                c + (rng.choice(" -.()/") if rng.random() < 0.25 else "") for c in digits
            )
        runs.append(digits)
    return runs


def test_a_candidate_the_national_rule_rules_out_is_no_number_for_phonenumbers() -> None:
    """`_NationalRule` claims: no valid number in that region. phonenumbers must agree, at each
    leniency the rule is used for (all those at VALID or stricter), on exhaustive short digit
    strings, ids like the benchmark's ("0000" and four digits), random runs around every prefix,
    and real numbers of every region written every way."""
    rng = random.Random(31)
    short = ["".join(p) for n in range(1, 5) for p in itertools.product("0123456789", repeat=n)]
    ids = [f"0000{n:04d}" for n in range(0, 10000, 3)] + [
        f"{n:08d}" for n in rng.sample(range(10**8), 500)
    ]
    candidates = [*short, *ids, *_digit_runs(rng), *_example_numbers()]
    ruled = kept = 0
    for region in REGIONS:
        rule = _national_rule(region)
        assert rule is not None
        for candidate in candidates:
            if not rule.rules_out(candidate):
                kept += 1
                continue
            ruled += 1
            for leniency in (1, 2, 3):
                matcher = phonenumbers.PhoneNumberMatcher(candidate, region, leniency=leniency)
                assert matcher._parse_and_verify(candidate, 0) is None, (
                    candidate,
                    region,
                    leniency,
                )
    # Not vacuous: most candidates are ruled out, and some are not (valid ones among them).
    assert ruled > 5 * kept > 0


def test_the_national_rule_keeps_every_valid_number_of_its_region() -> None:
    for region in REGIONS:
        rule = _national_rule(region)
        assert rule is not None
        for candidate in _example_numbers():
            found = phonenumbers.PhoneNumberMatcher(candidate, region, leniency=1)
            if found._parse_and_verify(candidate, 0) is not None:
                assert not rule.rules_out(candidate), (candidate, region)


def _unique_prompts(rng: random.Random) -> list[str]:
    """The gateway benchmark's `--unique` prompt: counters around all-digit hex tokens, with the
    same phone number and a new one, and the same token glued to letters or free elsewhere."""
    prompts = []
    for n in [*range(0, 40), *rng.sample(range(2**32), 60), 0x12345678, 0x99999999]:
        token = f"{n:08x}"
        phone = rng.choice(["202-555-0147", f"202-555-{n % 10_000:04d}", "+1 202 555 0147"])
        prompts.append(f"Write to user-{token}@example.com or call {phone} about ticket {token}.")
    for digits in range(4, 18):
        token = "".join(rng.choice("0123456789") for _ in range(digits))
        prompts += [
            f"Write to user-{token}@example.com or call 202-555-0147 about ticket {token}.",
            f"{token} ab{token} {token}cd ({token}) -{token}- +{token} #{token} {token}",
            f"ticket {token}, order {token}. Call {token} or x{token}y",
        ]
    return prompts


def _region_numbers() -> list[str]:
    """A real number of each recognizer region, written nationally and with '+' (with and
    without its country code's digits grouped), in a sentence."""
    out = []
    for region in REGIONS:
        for kind in (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE):
            number = phonenumbers.example_number_for_type(region, kind)
            assert number is not None
            national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
            plus = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
            e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
            out.append(f"Call {national} or {plus} ({e164}); not {e164[1:]}x or {national}.")
    return out


def test_the_phone_recognizer_finds_what_presidios_finds_in_unique_prompts() -> None:
    fast, presidio = FastPhoneRecognizer(), PhoneRecognizer()
    for text in [*_unique_prompts(random.Random(37)), *_region_numbers()]:
        assert _phone_spans(fast, text) == _phone_spans(presidio, text), text


def test_the_pattern_engine_finds_what_presidio_finds_in_unique_prompts(
    analyzer: PIIAnalyzer,
) -> None:
    patterns, engine = _engines(analyzer)
    texts = [*_unique_prompts(random.Random(41)), *_region_numbers()]
    for entities in (
        sorted(PATTERN_ENTITIES),
        [e for e in DEFAULT_ENTITIES if e in PATTERN_ENTITIES],
    ):
        for text in texts:
            want = engine.analyze(text, language="en", entities=entities, score_threshold=0.0)  # type: ignore[attr-defined]
            assert _key(patterns.analyze(text, entities, 0.0)) == _key(want), text


def test_a_verdict_remembered_for_a_candidate_holds_wherever_it_recurs() -> None:
    """The memo is keyed on the candidate alone (and region): the same token glued to letters in
    one place or text, free in another, in either order, one recognizer across texts. Glued
    tokens are also tried as parts of a longer candidate ("x212-555-0147 212-555-0148": the head
    is turned away for its 'x', the second part is not), where only the check before the memo
    keeps a refusal from being remembered as the token's verdict."""
    fast, presidio = FastPhoneRecognizer(), PhoneRecognizer()
    tokens = ["2025550147", "02079460958", "4930123456", "0000001234", "12345678", "9876543210",
              "212-555-0147", "020 7946 0958", "(11) 91234-5678"]  # fmt: skip
    for token in tokens:
        texts = [f"a{token} {token}", f"{token} {token}b", f"x{token}y", token, f"id-{token}@h",
                 f"x{token} 212-555-0148", f"x{token}, 212-555-0148",
                 f"{token}z 416-555-0123"]  # fmt: skip
        for text in [*texts, *reversed(texts), *texts]:
            assert _phone_spans(fast, text) == _phone_spans(presidio, text), text


def test_the_regions_walked_together_match_as_each_walks_alone() -> None:
    """`_walk` gives each region's matches exactly as its own `matches()` does, tries included,
    also when a region finds part of a candidate (then it walks on alone)."""
    rng = random.Random(43)
    verdicts = PhoneVerdicts()
    inner = ["(212) 555-0147/8", "212-555-0147 2125550148", "030 1234567 / 030 7654321",
             "+1 212 555 0147 x 42", "0800 123 4567-0800 765 4321"]  # fmt: skip
    for _ in range(120):
        words = [rng.choice([_id_like, _phone_like])(rng) for _ in range(5)]
        words.insert(rng.randint(0, 5), rng.choice(inner))
        text = " ".join(words)
        for tries in (1, 2, 3, 5, 8, 65535):
            shared: dict[str, dict[object, object]] = {}
            together = [_matcher(text, region, verdicts, shared) for region in REGIONS]
            for matcher in together:
                matcher._max_tries = tries
            alone = [_matcher(text, region, verdicts) for region in REGIONS]
            for matcher in alone:
                matcher._max_tries = tries
            want = [[(m.start, m.end) for m in matcher.matches()] for matcher in alone]
            got = [[(m.start, m.end) for m in found] for found in _walk(together)]
            assert got == want, (text, tries)
