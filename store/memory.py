"""`MemoryStore`: every table as a dict in this process, for unit tests and `memory://`.

It keeps the SQLite backend's semantics where a caller could tell the difference: a write is all or
nothing, duplicates are refused, `extra` must be JSON, and what comes back is a copy, so a span
mutated after it was recorded does not change what is stored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

from core.access import KeyRecord
from core.state import KeyAlreadyExists
from core.tracing import Span

MEMORY_URL = "memory://"


class MemoryStore:
    """A `core.state.Store` held in dicts; nothing survives the process."""

    def __init__(self) -> None:
        # Insertion order is creation order, which `list_keys` and `list_spans` rely on for ties.
        self._keys: dict[str, KeyRecord] = {}
        self._key_ids_by_hash: dict[str, str] = {}
        self._spans: dict[str, Span] = {}

    @classmethod
    def from_url(cls, url: str) -> MemoryStore:
        """The store for the `memory://` URL.

        Raises:
            ValueError: the URL is not `memory://`.
        """
        if url != MEMORY_URL:
            raise ValueError(f"expected {MEMORY_URL!r}, got {url!r}")
        return cls()

    async def open(self) -> None:
        """Nothing to connect to."""

    async def aclose(self) -> None:
        """Nothing to close; the data stays until the object is dropped."""

    async def find_key(self, key_hash: str) -> KeyRecord | None:
        """The key with this secret hash, whatever its status; None if there is none."""
        key_id = self._key_ids_by_hash.get(key_hash)
        return None if key_id is None else self._keys[key_id]

    async def create_key(self, record: KeyRecord) -> None:
        """Store a new key.

        Raises:
            KeyAlreadyExists: the id, the name or the hash is taken.
        """
        taken = (
            record.id in self._keys
            or record.key_hash in self._key_ids_by_hash
            or any(k.name == record.name for k in self._keys.values())
        )
        if taken:
            raise KeyAlreadyExists(f"a key with id {record.id!r} or name {record.name!r} exists")
        self._keys[record.id] = record
        self._key_ids_by_hash[record.key_hash] = record.id

    async def get_key(self, key_id: str) -> KeyRecord | None:
        """The key with that id, or None."""
        return self._keys.get(key_id)

    async def list_keys(self) -> list[KeyRecord]:
        """Every key, oldest first (by `created_at`, then by creation order)."""
        return sorted(self._keys.values(), key=lambda k: k.created_at)

    async def set_key_status(self, key_id: str, status: str) -> bool:
        """Change a key's status; False when there is no such key."""
        record = self._keys.get(key_id)
        if record is None:
            return False
        self._keys[key_id] = replace(record, status=status)
        return True

    async def record_spans(self, spans: Sequence[Span]) -> None:
        """Store a batch of spans: all of them or, on any error, none.

        Raises:
            ValueError: a `request_id` is stored already or appears twice in the batch.
            TypeError: a span's `extra` is not JSON-serializable.
        """
        copies = [_copy(span) for span in spans]
        seen: set[str] = set()
        for span in copies:
            if span.request_id in self._spans or span.request_id in seen:
                raise ValueError(f"a span with request_id {span.request_id!r} is recorded already")
            seen.add(span.request_id)
        for span in copies:
            self._spans[span.request_id] = span

    async def list_spans(self) -> list[Span]:
        """Every span, by `started_at`, then in the order they were recorded."""
        return sorted((_copy(s) for s in self._spans.values()), key=lambda s: s.started_at)


def _copy(span: Span) -> Span:
    # `extra` goes through JSON as it does in SQLite, so a value only memory could hold fails here.
    return replace(
        span,
        attempts=[replace(a) for a in span.attempts],
        flags=list(span.flags),
        extra=json.loads(json.dumps(span.extra)),
    )
