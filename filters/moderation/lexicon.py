"""Category term lists and patterns, compiled once per filter into one matcher per category.

A term is a literal phrase; a pattern is a regular expression. Both are matched against
`normalize`d text (case-folded, full-width folded, light leetspeak read). Latin-script entries get
word boundaries (so "skill" never matches "kill"); an entry with a CJK character in it is matched as
a substring, since those scripts put no spaces between words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from core.config import ConfigError
from filters.moderation.normalize import CJK, normalize

# Latin letters and digits: a term must not continue into one of these on either side.
_LATIN = "0-9a-z\u00c0-\u024f"
_BEFORE = f"(?<![{_LATIN}])"
_AFTER = f"(?![{_LATIN}])"


@dataclass(frozen=True, slots=True)
class CategorySpec:
    """What one category matches: literal `terms` and regex `patterns` (any language)."""

    terms: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()


def _term_regex(term: str) -> str:
    folded = normalize(term).strip()
    body = re.escape(folded).replace(r"\ ", " ")
    if CJK.search(folded):
        return body
    return f"{_BEFORE}{body}{_AFTER}"


def _pattern_regex(pattern: str) -> str:
    if CJK.search(pattern):
        return f"(?:{pattern})"
    return f"{_BEFORE}(?:{pattern}){_AFTER}"


class Lexicon:
    """One compiled matcher per category; `categories(text)` names those found in a text.

    Raises:
        ConfigError: at construction, for a pattern that does not compile or a category with
            nothing to match.
    """

    def __init__(self, specs: Mapping[str, CategorySpec]) -> None:
        self._matchers: dict[str, re.Pattern[str]] = {}
        for name, spec in specs.items():
            parts = [_term_regex(t) for t in spec.terms if t.strip()]
            parts += [_pattern_regex(p) for p in spec.patterns if p.strip()]
            if not parts:
                raise ConfigError(f"filters.moderation.categories.{name}: no terms or patterns")
            try:
                self._matchers[name] = re.compile("|".join(parts), re.IGNORECASE)
            except re.error as exc:
                raise ConfigError(
                    f"filters.moderation.categories.{name}: a pattern does not compile ({exc})"
                ) from None

    @property
    def names(self) -> tuple[str, ...]:
        """The categories this lexicon checks, in order."""
        return tuple(self._matchers)

    def categories(self, text: str, *, normalized: bool = False) -> list[str]:
        """The categories whose terms or patterns occur in `text`, in lexicon order."""
        folded = text if normalized else normalize(text)
        return [name for name, rx in self._matchers.items() if rx.search(folded)]


def merge(
    defaults: Mapping[str, CategorySpec],
    custom: Mapping[str, CategorySpec],
    enabled: Iterable[str] | None,
) -> dict[str, CategorySpec]:
    """Defaults (restricted to `enabled` when given) plus custom categories; a custom category
    named like a default one extends it.

    Raises:
        ConfigError: `enabled` names a category that is neither a default nor custom.
    """
    merged = dict(defaults)
    for name, spec in custom.items():
        base = merged.get(name, CategorySpec())
        merged[name] = CategorySpec(base.terms + spec.terms, base.patterns + spec.patterns)
    if enabled is None:
        return merged
    wanted = list(dict.fromkeys(enabled))
    unknown = [n for n in wanted if n not in merged]
    if unknown:
        raise ConfigError(
            f"filters.moderation.categories: unknown {', '.join(unknown)}; "
            f"known: {', '.join(merged)}"
        )
    return {n: merged[n] for n in wanted}
