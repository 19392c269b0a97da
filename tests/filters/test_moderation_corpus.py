"""The labelled corpus: exact categories per item, per-category recall floors, no false flags."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from filters.moderation import ModerationFilter

CORPUS_FILE = Path(__file__).resolve().parents[2] / "fixtures" / "moderation" / "corpus.json"

# Measured on fixtures/moderation/corpus.json (the held-out items are the misses): a floor that
# a change to the term lists may raise but not lower.
RECALL_FLOORS = {
    "violence": 14 / 17,
    "self_harm": 10 / 12,
    "sexual_minors": 6 / 7,
    "hate": 9 / 10,
    "illegal": 10 / 12,
}


@dataclass(frozen=True)
class Item:
    text: str
    labels: frozenset[str]
    missed: frozenset[str]


def _items() -> list[Item]:
    raw = json.loads(CORPUS_FILE.read_text(encoding="utf-8"))["items"]
    return [Item(i["text"], frozenset(i["labels"]), frozenset(i.get("missed", []))) for i in raw]


ITEMS = _items()


@pytest.fixture(scope="module")
def moderation() -> ModerationFilter:
    return ModerationFilter()


@pytest.mark.parametrize("item", ITEMS, ids=lambda i: i.text[:40])
def test_each_corpus_item_gets_exactly_its_expected_categories(
    moderation: ModerationFilter, item: Item
) -> None:
    assert set(moderation.lexicon.categories(item.text)) == item.labels - item.missed


@pytest.mark.parametrize("category", sorted(RECALL_FLOORS))
def test_recall_per_category_holds_its_measured_floor(
    moderation: ModerationFilter, category: str
) -> None:
    positives = [i for i in ITEMS if category in i.labels]
    caught = [i for i in positives if category in moderation.lexicon.categories(i.text)]
    assert len(caught) / len(positives) >= RECALL_FLOORS[category]


def test_no_category_is_reported_where_it_is_not_labelled(moderation: ModerationFilter) -> None:
    false_flags = [
        (i.text[:40], c)
        for i in ITEMS
        for c in moderation.lexicon.categories(i.text)
        if c not in i.labels
    ]
    assert false_flags == []


def test_corpus_covers_every_category_and_benign_near_misses_in_both_languages() -> None:
    labelled = {c for i in ITEMS for c in i.labels}
    assert labelled == set(RECALL_FLOORS)
    benign = [i.text for i in ITEMS if not i.labels]
    assert any("杀掉进程" in t for t in benign)
    assert any("kill the process" in t for t in benign)
    assert any("shoot a photo" in t for t in benign)
