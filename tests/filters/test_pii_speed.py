"""The faster phone recognizer and context enhancer answer exactly as Presidio's own do."""

from __future__ import annotations

import pytest
import spacy
from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer
from presidio_analyzer.predefined_recognizers import PhoneRecognizer

from filters.pii.engine import _ContextEnhancer
from filters.pii.phones import FastPhoneRecognizer

TEXTS = [
    "Call +1 212-555-0147 or +44 20 7946 0958 today.",
    "+1 212 555 0147",
    "Ring 020 7946 0958 (London), 030 1234567 (Berlin) or 01 42 68 53 00 (Paris).",
    "US: (212) 555-0147, 212.555.0147, 1-800-555-0199; IL: 03-123-4567; IN: 098765 43210.",
    "BR: (11) 91234-5678; CA: 416-555-0123; international 0049 30 1234567, 011 44 20 7946 0958.",
    "Full-width \uff0b\uff14\uff14 \uff12\uff10 7946 0958.",
    "Arabic-Indic digits \u0660\u0662\u0660 7946 0958.",
    "abc+12125550147def and +12125550147, +1 212-555-0147/+1 212-555-0148.",
    "Order 12000, invoice 2024-05-01, ext. +1 212 555 0147 x 42, page 12-15.",
    "手机+86 139 1234 5678\uff0c座机010-6552-9988。",
    "No numbers here at all.",
    # The gateway benchmark's unique prompt: an all-digit id twice (in the e-mail, after "ticket"),
    # which every region must turn down without a number being found in it.
    "Write to user-00000123@example.com or call 202-555-0147 about ticket 00000123.",
    "Write to user-00491234@example.com or call 202-555-0199 about ticket 00491234.",
    "ids 2125550147x, x2125550147 and 2125550147; 0049 30 1234567 and 0030 1234567 (DE/FR).",
]


@pytest.mark.parametrize("text", TEXTS)
def test_the_fast_phone_recognizer_finds_what_presidios_finds(text: str) -> None:
    def spans(recognizer: PhoneRecognizer) -> list[tuple[int, int, float]]:
        return sorted((r.start, r.end, r.score) for r in recognizer.analyze(text, ["PHONE_NUMBER"]))

    assert spans(FastPhoneRecognizer()) == spans(PhoneRecognizer())


def test_the_context_enhancer_finds_the_same_token_for_every_offset() -> None:
    nlp = spacy.blank("en")
    for text in [*TEXTS, "  leading spaces,  double  spaces\tand\ttabs \n new lines.  "]:
        doc = nlp(text)
        indices = [t.idx for t in doc]
        for start in range(len(text) + 1):
            try:
                want: int | str = LemmaContextAwareEnhancer._find_index_of_match_token(
                    "w", start, doc, indices
                )
            except ValueError:
                want = "ValueError"
            try:
                got: int | str = _ContextEnhancer._find_index_of_match_token(
                    "w", start, doc, indices
                )
            except ValueError:
                got = "ValueError"
            assert got == want, (text, start)
