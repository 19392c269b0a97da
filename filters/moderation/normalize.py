"""Text normalization shared by the moderation lexicon: full-width forms, case, light leetspeak.

Matching runs on the normalized text only, and nothing maps a match back to the original: the
filter reports categories and scopes, never positions or words, so lengths may change freely.
"""

from __future__ import annotations

import re
import unicodedata

_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u2060-\u2064\ufeff]")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201b": "'", "\u02bc": "'"})
_LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a", "$": "s"}
# A look-alike digit or sign is read as a letter only inside a word ("k1ll", "h@te", "5uicide"),
# so numbers, prices and versions ("10 people", "$5", "v1.3") stay what they are.
_LEET_IN_WORD = re.compile(r"(?<=[a-z])[0134578@$]|[0134578@$](?=[a-z])")
_SPACES = re.compile(r"\s+")

CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
"""Scripts written without spaces between words: matched as substrings."""


def normalize(text: str) -> str:
    """Fold `text` for matching: NFKC (full-width to ASCII), casefold, invisible characters
    dropped, typographic apostrophes straightened, leetspeak read inside words, spaces collapsed.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    folded = _INVISIBLE.sub("", folded).translate(_QUOTES)
    folded = _LEET_IN_WORD.sub(lambda m: _LEET[m.group()], folded)
    return _SPACES.sub(" ", folded)
