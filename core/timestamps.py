"""Instants as the admin surfaces show and accept them: ISO 8601 in UTC, stored as epoch seconds."""

from __future__ import annotations

import math
from datetime import UTC, datetime


def iso(ts: float | None) -> str | None:
    """`2030-01-01T00:00:00Z` for epoch seconds (None stays None)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def epoch(moment: datetime) -> float:
    """Epoch seconds of `moment`; a moment without a zone is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_instant(text: str) -> float:
    """Epoch seconds from ISO 8601 (`2030-01-01`, `2030-01-01T12:00:00Z`) or a plain number.

    Raises:
        ValueError: neither.
    """
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(number):
            raise ValueError(f"{text!r} is not a finite number of seconds")
        return number
    try:
        return epoch(datetime.fromisoformat(text))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time or epoch seconds") from None
