"""Injection filter: instructions aimed at the agent hidden in tool outputs (English and Chinese),
scored by weighted signals; flags or blocks. It implements `core.filtering.Filter`.
"""

from __future__ import annotations

from filters.injection.filter import (
    ACTIONS,
    DEFAULT_THRESHOLD,
    FILTER_NAME,
    KIND,
    Action,
    InjectionFilter,
    Verdict,
    score,
)
from filters.injection.patterns import SIGNALS, Signal

__all__ = [
    "ACTIONS",
    "DEFAULT_THRESHOLD",
    "FILTER_NAME",
    "KIND",
    "SIGNALS",
    "Action",
    "InjectionFilter",
    "Signal",
    "Verdict",
    "score",
]
