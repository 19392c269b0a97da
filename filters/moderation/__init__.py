"""Moderation filter: category terms and patterns in English and Chinese, plus an optional model
over the `/v1/moderations` wire. Blocks or flags requests, replies and streams.

Build it with `build_moderation_filter(config, classify=...)`; it implements
`core.filtering.Filter`.
"""

from __future__ import annotations

from filters.moderation.classifier import WIRE_CATEGORIES, Classify
from filters.moderation.filter import (
    ACTIONS,
    FILTER_NAME,
    STATE_FINDINGS,
    Action,
    ModerationFilter,
    build_moderation_filter,
)
from filters.moderation.lexicon import CategorySpec, Lexicon
from filters.moderation.normalize import normalize
from filters.moderation.terms import (
    DEFAULT_CATEGORIES,
    HATE,
    ILLEGAL,
    SELF_HARM,
    SEXUAL_MINORS,
    VIOLENCE,
)

__all__ = [
    "ACTIONS",
    "DEFAULT_CATEGORIES",
    "FILTER_NAME",
    "HATE",
    "ILLEGAL",
    "SELF_HARM",
    "SEXUAL_MINORS",
    "STATE_FINDINGS",
    "VIOLENCE",
    "WIRE_CATEGORIES",
    "Action",
    "CategorySpec",
    "Classify",
    "Lexicon",
    "ModerationFilter",
    "build_moderation_filter",
    "normalize",
]
