"""Moderation of the simulated model: the OpenAI `/v1/moderations` answer, deterministically.

Each input is scored per OpenAI category from term lists (English and Chinese phrases, matched
case-insensitively as substrings): a category with a hit scores `HIT_SCORE`, one without
`BASE_SCORE`. A test can also set a score exactly with a marker in the text,
`[sim-score:violence=0.42]`. The term lists are deliberately different from agentgw's own
moderation lexicon, so tests can show what a model catches beyond the lexicon.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

HIT_SCORE = 0.93
BASE_SCORE = 0.0004
FLAG_AT = 0.5

CATEGORIES: tuple[str, ...] = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)

DEFAULT_TERMS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "harassment/threatening": (
            "find where you live",
            "know where you live",
            "you will regret this",
            "我知道你住在哪",
        ),
        "violence": (
            "find where you live",
            "hurt your family",
            "make you bleed",
            "让你流血",
            "弄死你",
        ),
        "self-harm/intent": ("end it all tonight", "no reason to keep living", "不想活了"),
        "illicit": ("launder the money", "cook meth", "洗钱的办法"),
        "hate": ("are subhuman", "are vermin", "都是劣等人"),
        "sexual/minors": ("sexual content involving a minor",),
    }
)

_MARKER = re.compile(r"\[sim-score:([a-z/-]+)=(0(?:\.\d+)?|1(?:\.0+)?)\]")


def moderation_result(
    text: str, terms: Mapping[str, Iterable[str]] = DEFAULT_TERMS
) -> dict[str, Any]:
    """One input's result in the wire's shape: `flagged`, `categories`, `category_scores`."""
    folded = text.casefold()
    scores = dict.fromkeys(CATEGORIES, BASE_SCORE)
    for category, phrases in terms.items():
        if any(p.casefold() in folded for p in phrases):
            scores[category] = HIT_SCORE
    for category, score in _MARKER.findall(folded):
        if category in scores:
            scores[category] = float(score)
    flags = {c: s >= FLAG_AT for c, s in scores.items()}
    return {
        "flagged": any(flags.values()),
        "categories": flags,
        "category_scores": scores,
        "category_applied_input_types": {c: ["text"] for c in CATEGORIES},
    }


def moderation_body(model: str, moderation_id: str, texts: Iterable[str]) -> dict[str, Any]:
    """The whole `/v1/moderations` answer for `texts` (one result per input, in order)."""
    return {
        "id": moderation_id,
        "model": model,
        "results": [moderation_result(t) for t in texts],
    }


def moderation_texts(body: Mapping[str, Any]) -> list[str]:
    """The inputs of a `/v1/moderations` request body: strings, or the text of a part list.

    Raises:
        ValueError: `input` is missing or of the wrong shape (the message names it).
    """
    raw = body.get("input")
    if isinstance(raw, str):
        return [raw]
    if not isinstance(raw, list) or not raw:
        raise ValueError("input must be a string or a non-empty list")
    if all(isinstance(x, str) for x in raw):
        return [str(x) for x in raw]
    if all(isinstance(x, dict) for x in raw):
        # A list of parts is one input; images carry no text the sim could score.
        return ["".join(str(p.get("text", "")) for p in raw if p.get("type") == "text")]
    raise ValueError("input must be strings or content parts, not a mix")
