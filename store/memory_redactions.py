"""The redaction log of `MemoryStore`: a list, with the SQLite backend's behaviour."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from core.redaction import RedactionEvent, RedactionQuery, events_of
from core.tracing import Span


class MemoryRedactions:
    """The redaction log of `MemoryStore`."""

    def __init__(self) -> None:
        self._events: list[RedactionEvent] = []
        self._next = 1

    def add(self, spans: Sequence[Span]) -> None:
        """Keep the events of `spans`, numbered in order."""
        for span in spans:
            for event in events_of(span):
                self._events.append(replace(event, id=self._next))
                self._next += 1

    def query(self, query: RedactionQuery) -> list[RedactionEvent]:
        """Events matching `query`, by id."""
        hits = (e for e in self._events if e.id > query.after_id and query.matches(e))
        return list(hits)[: query.limit]

    def delete_before(self, cutoff: float) -> int:
        """Drop events older than `cutoff`; the number dropped."""
        kept = [e for e in self._events if e.at >= cutoff]
        dropped = len(self._events) - len(kept)
        self._events = kept
        return dropped
