"""PII filter: Presidio (offline) plus Chinese ID, mobile, bank card and passport recognizers.

Build it with `build_pii_filter(config, secret=...)`; it implements `core.filtering.Filter`.
"""

from __future__ import annotations

from filters.pii.actions import ACTIONS, Action, Pseudonyms
from filters.pii.engine import Analyzer, PIIAnalyzer
from filters.pii.entities import DEFAULT_ENTITIES, Detection
from filters.pii.filter import STATE_FINDINGS, STATE_PSEUDONYMS, PIIFilter, build_pii_filter

__all__ = [
    "ACTIONS",
    "DEFAULT_ENTITIES",
    "STATE_FINDINGS",
    "STATE_PSEUDONYMS",
    "Action",
    "Analyzer",
    "Detection",
    "PIIAnalyzer",
    "PIIFilter",
    "Pseudonyms",
    "build_pii_filter",
]
