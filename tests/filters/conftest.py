"""One pattern-mode analyzer for the whole session: loading it is the slow part (~0.3 s)."""

from __future__ import annotations

import pytest

from filters.pii import PIIAnalyzer


@pytest.fixture(scope="session")
def analyzer() -> PIIAnalyzer:
    shared = PIIAnalyzer()
    shared.load()
    return shared
