"""Our own recognizers: Chinese resident IDs and mobiles, bank cards, passports.

They are plain regular expressions with a validator, run on the raw text beside Presidio rather
than inside it. Two reasons: Presidio's patterns use `\\b`, which never matches between a Chinese
character and a digit (both are word characters), so "身份证号11010519491231002X" would be silently
skipped; and context words such as "护照" must be read in the original text. Boundaries here are
explicit look-arounds on ASCII letters and digits only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date
from typing import Protocol

from filters.pii.entities import Detection

_NOT_AFTER_ALNUM = r"(?<![0-9A-Za-z])"
_NOT_BEFORE_ALNUM = r"(?![0-9A-Za-z])"

# ISO 7064 MOD 11-2 weights and check characters of GB 11643 resident identity numbers.
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


class Recognizer(Protocol):
    """Finds one entity type in a text."""

    entity: str

    def find(self, text: str) -> list[Detection]:
        """Every valid occurrence, with offsets into `text`."""
        ...


class ProbedRecognizer(Recognizer, Protocol):
    """A recognizer whose one regex also tells whether a text could hold its entity at all."""

    probe: re.Pattern[str]


def cn_id_checksum_ok(number: str) -> bool:
    """True if an 18-character resident ID carries a valid check character and birth date."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True))
    if _ID_CHECK[total % 11] != number[17].upper():
        return False
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    return date(1900, 1, 1) <= born <= date.today()


def luhn_ok(digits: str) -> bool:
    """The Luhn check every payment card number passes."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


class CnResidentIdRecognizer:
    """18-digit resident identity numbers (GB 11643), checksum and birth date validated."""

    entity = "CN_RESIDENT_ID"
    _pattern = re.compile(_NOT_AFTER_ALNUM + r"[1-9]\d{16}[0-9Xx]" + _NOT_BEFORE_ALNUM)

    def find(self, text: str) -> list[Detection]:
        return [
            Detection(self.entity, m.start(), m.end(), 1.0)
            for m in self._pattern.finditer(text)
            if cn_id_checksum_ok(m.group())
        ]


class CnMobileRecognizer:
    """Mainland mobile numbers: 1[3-9]x xxxx xxxx, optionally +86 / 0086, spaces or dashes."""

    entity = "CN_MOBILE"
    _pattern = re.compile(
        r"(?<![0-9A-Za-z+])(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}" + _NOT_BEFORE_ALNUM
    )

    def find(self, text: str) -> list[Detection]:
        return [
            Detection(self.entity, m.start(), m.end(), 0.6) for m in self._pattern.finditer(text)
        ]


class BankCardRecognizer:
    """Payment card numbers of 13-19 digits in any grouping (UnionPay included), Luhn-valid."""

    entity = "BANK_CARD"
    _pattern = re.compile(_NOT_AFTER_ALNUM + r"\d(?:[ -]?\d){12,18}" + _NOT_BEFORE_ALNUM)

    def find(self, text: str) -> list[Detection]:
        found: list[Detection] = []
        for m in self._pattern.finditer(text):
            digits = re.sub(r"[ -]", "", m.group())
            # A run of one repeated digit (0000 0000 …) passes Luhn but is never a card.
            if len(set(digits)) > 1 and luhn_ok(digits):
                found.append(Detection(self.entity, m.start(), m.end(), 0.5))
        return found


class PassportRecognizer:
    """Passport numbers ([A-Z]{1,2} + 6-9 digits), only where a context word precedes them.

    The pattern alone matches too many product codes and ticket numbers to be useful, so a match
    counts only with "passport" (or 护照, pasaporte …) within `window` characters before it.
    """

    entity = "PASSPORT"
    _pattern = re.compile(_NOT_AFTER_ALNUM + r"[A-Z]{1,2}\d{6,9}" + _NOT_BEFORE_ALNUM)
    context: Sequence[str] = (
        "passport",
        "护照",
        "護照",
        "pasaporte",
        "passeport",
        "reisepass",
        "passaporto",
    )

    def __init__(self, window: int = 48) -> None:
        self._window = window

    def find(self, text: str) -> list[Detection]:
        found: list[Detection] = []
        for m in self._pattern.finditer(text):
            before = text[max(0, m.start() - self._window) : m.start()].lower()
            if any(word in before for word in self.context):
                found.append(Detection(self.entity, m.start(), m.end(), 0.7))
        return found


def custom_recognizers() -> list[Recognizer]:
    """One fresh instance of each of our recognizers."""
    return [
        CnResidentIdRecognizer(),
        CnMobileRecognizer(),
        BankCardRecognizer(),
        PassportRecognizer(),
    ]


class RegexRecognizer:
    """A recognizer from the config: `entity` wherever `pattern` matches, with `score`.

    With `context` words, a match counts only when one of them (case-insensitive) occurs within
    `window` characters before or after it. `probe` is the compiled pattern (the pre-check uses it).
    """

    def __init__(
        self,
        entity: str,
        pattern: str,
        score: float,
        context: Sequence[str] = (),
        window: int = 48,
    ) -> None:
        self.entity = entity
        self.probe = re.compile(pattern)
        self._score = score
        self._context = tuple(w.casefold() for w in context if w.strip())
        self._window = window

    def find(self, text: str) -> list[Detection]:
        found: list[Detection] = []
        for m in self.probe.finditer(text):
            if m.end() == m.start():
                continue  # an empty match locates nothing
            if self._context:
                near = text[max(0, m.start() - self._window) : m.end() + self._window].casefold()
                if not any(word in near for word in self._context):
                    continue
            found.append(Detection(self.entity, m.start(), m.end(), self._score))
        return found


class DenyListRecognizer:
    """Literal values that are always `entity` (case-insensitive, not inside a longer word)."""

    def __init__(self, entity: str, values: Sequence[str]) -> None:
        self.entity = entity
        words = sorted({v.strip() for v in values if v.strip()}, key=len, reverse=True)
        if not words:
            raise ValueError("no values")
        alternatives = "|".join(re.escape(w) for w in words)
        self.probe = re.compile(
            f"{_NOT_AFTER_ALNUM}(?:{alternatives}){_NOT_BEFORE_ALNUM}", re.IGNORECASE
        )

    def find(self, text: str) -> list[Detection]:
        return [Detection(self.entity, m.start(), m.end(), 1.0) for m in self.probe.finditer(text)]
