"""The entity catalog: which names exist, which need NER, and a cheap test for "cannot contain".

Entity names are Presidio's (`EMAIL_ADDRESS`, `PHONE_NUMBER` …) plus the ones our own recognizers
add (`CN_RESIDENT_ID`, `CN_MOBILE`, `BANK_CARD`, `PASSPORT`). Configuration is checked against
this catalog at start, so a typo or an entity the chosen mode cannot find fails loudly instead of
silently finding nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

CUSTOM_ENTITIES = frozenset({"CN_RESIDENT_ID", "CN_MOBILE", "BANK_CARD", "PASSPORT"})

# What Presidio's predefined English pattern recognizers find without any model.
PATTERN_ENTITIES = frozenset(
    {
        "CREDIT_CARD",
        "CRYPTO",
        "DATE_TIME",
        "EMAIL_ADDRESS",
        "IBAN_CODE",
        "IP_ADDRESS",
        "MAC_ADDRESS",
        "MEDICAL_LICENSE",
        "PHONE_NUMBER",
        "UK_NHS",
        "URL",
        "US_BANK_NUMBER",
        "US_DRIVER_LICENSE",
        "US_ITIN",
        "US_PASSPORT",
        "US_SSN",
        "UUID",
    }
)

# Found only by a spaCy NER model (`ner: true`).
NER_ENTITIES = frozenset({"PERSON", "LOCATION", "ORGANIZATION", "NRP"})

# Identity and payment data. URLs, IPs and dates are left out of the default on purpose: agents
# pass them around as working data, and redacting them by default would break tool use.
DEFAULT_ENTITIES: tuple[str, ...] = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "US_SSN",
    "IBAN_CODE",
    "CN_RESIDENT_ID",
    "CN_MOBILE",
    "BANK_CARD",
    "PASSPORT",
)
DEFAULT_NER_ENTITIES: tuple[str, ...] = ("PERSON", "LOCATION")

# Languages `filters.pii.languages` may name. Pattern recognizers (e-mail, cards, IBAN …) read any
# language; these entities are specific to one: Chinese identity numbers and mobiles to zh, what
# the (English) NER model finds to en.
LANGUAGES: tuple[str, ...] = ("en", "zh")
DEFAULT_LANGUAGES: tuple[str, ...] = LANGUAGES
LANGUAGE_OF: dict[str, str] = {
    "CN_RESIDENT_ID": "zh",
    "CN_MOBILE": "zh",
    **dict.fromkeys(NER_ENTITIES, "en"),
}


@dataclass(frozen=True, slots=True)
class Detection:
    """One entity found in a text: where it is and how sure the recognizer is. No value."""

    entity: str
    start: int
    end: int
    score: float


# A character every match of the entity must contain. Only entities whose every pattern is known
# to need it are listed; anything else (PERSON, DATE_TIME, CRYPTO …) always goes to the analyzer.
_REQUIRED_CHARS: dict[str, str] = {
    "EMAIL_ADDRESS": "@",
    "URL": r".:",
    "IP_ADDRESS": r"\d:",
    "PHONE_NUMBER": r"\d",
    "CREDIT_CARD": r"\d",
    "US_SSN": r"\d",
    "US_ITIN": r"\d",
    "US_BANK_NUMBER": r"\d",
    "US_PASSPORT": r"\d",
    "IBAN_CODE": r"\d",
    "UK_NHS": r"\d",
    "CN_RESIDENT_ID": r"\d",
    "CN_MOBILE": r"\d",
    "BANK_CARD": r"\d",
    "PASSPORT": r"\d",
}


class PreCheck:
    """Says whether a text could contain any of the entities, without running the analyzer.

    Most chat text has no digit and no '@'; for pattern entities that is proof enough, and it
    saves the phone recognizer (the slowest part) on ordinary prose.
    """

    def __init__(self, entities: Iterable[str], probes: Iterable[re.Pattern[str]] = ()) -> None:
        classes: list[str] = []
        self._always = False
        for entity in entities:
            chars = _REQUIRED_CHARS.get(entity)
            if chars is None:
                self._always = True
                break
            classes.append(chars)
        self._pattern = re.compile(f"[{''.join(sorted(set(classes)))}]") if classes else None
        # Patterns of the config's own recognizers: a match of any means "analyse".
        self._probes = tuple(probes)

    def __call__(self, text: str) -> bool:
        if self._always:
            return True
        if self._pattern is not None and self._pattern.search(text) is not None:
            return True
        return any(p.search(text) is not None for p in self._probes)
