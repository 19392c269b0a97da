"""Windows: the fixed time buckets a limit or budget counts in.

A window is `minute`, `hour`, `day` or `month` (calendar buckets in UTC), or a time of day such as
`"22:00-06:00"` (UTC): an allowance that exists only inside that span and starts afresh each time
the span opens, for a nightly batch budget. Buckets are named by their start, so every replica that
agrees on the clock agrees on the counter key without talking to the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_FIXED = {"minute": 60, "hour": 3600, "day": 86400}
_TIME_OF_DAY = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
_DAY = 86400


@dataclass(frozen=True, slots=True)
class Bucket:
    """One occurrence of a window: its name (for counter keys) and when it ends (epoch seconds)."""

    name: str
    start: float
    reset_at: float


@dataclass(frozen=True, slots=True)
class Window:
    """A counting window, parsed from its config spelling.

    Raises:
        ValueError: from `Window.parse` for anything but a known period or `HH:MM-HH:MM`.
    """

    spec: str

    @classmethod
    def parse(cls, spec: str) -> Window:
        """The window spelled `spec`.

        Raises:
            ValueError: `spec` is not minute, hour, day, month or `HH:MM-HH:MM` (distinct ends).
        """
        if spec in _FIXED or spec == "month":
            return cls(spec)
        match = _TIME_OF_DAY.match(spec)
        if match is None:
            raise ValueError(f"window {spec!r}: expected minute, hour, day, month or HH:MM-HH:MM")
        if match.group(1, 2) == match.group(3, 4):
            raise ValueError(f"window {spec!r}: a time-of-day window needs two distinct ends")
        return cls(spec)

    def bucket(self, now: float) -> Bucket | None:
        """The bucket `now` falls in, or None outside a time-of-day window (the limit is off)."""
        if self.spec in _FIXED:
            length = _FIXED[self.spec]
            start = now - now % length
            return Bucket(str(int(start)), start, start + length)
        if self.spec == "month":
            return _month_bucket(now)
        return self._time_of_day_bucket(now)

    def _time_of_day_bucket(self, now: float) -> Bucket | None:
        match = _TIME_OF_DAY.match(self.spec)
        assert match is not None  # parse() only admits valid spellings
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        opens, closes = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60
        length = (closes - opens) % _DAY
        midnight = now - now % _DAY
        # The span may have opened today or, crossing midnight, yesterday.
        for start in (midnight + opens, midnight + opens - _DAY):
            if start <= now < start + length:
                return Bucket(str(int(start)), start, start + length)
        return None


def _month_bucket(now: float) -> Bucket:
    # Every call in a month asks for the same bucket: the last one is kept (one reference,
    # replaced whole, so a reader in another thread sees the old bucket or the new one).
    last = _last_month[0]
    if last is not None and last.start <= now < last.reset_at:
        return last
    moment = datetime.fromtimestamp(now, UTC)
    start = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    end = (start + timedelta(days=32)).replace(day=1)
    bucket = Bucket(start.strftime("%Y%m"), start.timestamp(), end.timestamp())
    _last_month[0] = bucket
    return bucket


_last_month: list[Bucket | None] = [None]
