"""A bounded LRU of analysis results, keyed by a digest of the text and the entity set.

Agents replay their whole history on every turn; with this cache only the new turn is analysed.
Keys are digests, not texts, so the cache keeps no raw value alive; entries hold offsets only.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Collection

from filters.pii.entities import Detection

CacheKey = tuple[bytes, tuple[str, ...]]


def cache_key(text: str, entities: Collection[str]) -> CacheKey:
    """The key of `text` analysed for `entities` (order of entities does not matter)."""
    return text_digest(text), entity_key(entities)


def text_digest(text: str) -> bytes:
    """The text's part of a `cache_key`."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def entity_key(entities: Collection[str]) -> tuple[str, ...]:
    """The entities' part of a `cache_key` (computed once for many texts)."""
    return tuple(sorted(entities))


class AnalysisCache:
    """Least-recently-used map from `cache_key` to detections, holding at most `maxsize`."""

    def __init__(self, maxsize: int = 4096) -> None:
        if maxsize < 0:
            raise ValueError("maxsize must be >= 0")
        self.maxsize = maxsize
        self._entries: OrderedDict[CacheKey, tuple[Detection, ...]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> tuple[Detection, ...] | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: CacheKey, detections: tuple[Detection, ...]) -> None:
        if self.maxsize == 0:
            return
        self._entries[key] = detections
        self._entries.move_to_end(key)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)
