"""Each text is analysed once: replayed history comes from the cache, plain prose is skipped."""

from __future__ import annotations

import threading
from collections.abc import Collection

import pytest

from core.envelope import Envelope, Message, Modality, TextPart
from core.filtering import Rewrite
from filters.pii import Detection, PIIAnalyzer, PIIFilter
from filters.pii.cache import AnalysisCache, cache_key
from filters.pii.filter import INLINE_CHARS
from filters.pii.recognizers import RegexRecognizer
from tests.filters.pii_support import SECRET, context, user


def _turn(history: list[tuple[str, str]], n: int) -> Envelope:
    # Fresh messages each turn: the client resends its own copy, not the one the filter rewrote.
    history.append(("user", f"Turn {n}: reach me at user{n}@example.com"))
    messages = [Message(role, [TextPart(text)]) for role, text in history]
    return Envelope(id=f"req-{n}", modality=Modality.CHAT, model="sim", messages=messages)


@pytest.mark.anyio
async def test_twenty_turn_replayed_session_analyses_each_message_once(
    analyzer: PIIAnalyzer,
) -> None:
    pii = PIIFilter(secret=SECRET, action="pseudonymize", analyzer=analyzer)
    history: list[tuple[str, str]] = []
    for n in range(1, 21):
        ctx = context()
        decision = await pii.on_request(_turn(history, n), ctx)
        assert isinstance(decision, Rewrite)
        # Pseudonyms are numbered afresh per request, but replayed in the same order.
        assert decision.envelope.messages[-1].text().endswith(f"<EMAIL_ADDRESS_{n}>")
        # The client replays what it saw: the assistant's answer with the value restored.
        history.append(("assistant", f"Noted user{n}@example.com, ticket {n}."))

    assert pii.analyses == 20 + 19  # twenty user turns, nineteen replayed answers


@pytest.mark.anyio
async def test_text_that_cannot_hold_a_pattern_entity_skips_the_analyzer(
    analyzer: PIIAnalyzer,
) -> None:
    pii = PIIFilter(secret=SECRET, analyzer=analyzer)
    await pii.on_request(
        user("Summarise the meeting notes, please.", "No numbers here."), context()
    )
    assert pii.analyses == 0


@pytest.mark.anyio
async def test_identical_texts_in_one_request_are_analysed_once(analyzer: PIIAnalyzer) -> None:
    pii = PIIFilter(secret=SECRET, analyzer=analyzer)
    decision = await pii.on_request(user("mail a@example.com", "mail a@example.com"), context())
    assert isinstance(decision, Rewrite)
    assert [m.text() for m in decision.envelope.messages] == ["mail <EMAIL_ADDRESS>"] * 2
    assert pii.analyses == 1


def test_cache_evicts_the_least_recently_used_entry() -> None:
    cache = AnalysisCache(maxsize=2)
    found = (Detection("EMAIL_ADDRESS", 0, 5, 1.0),)
    a, b, c = (cache_key(t, ["EMAIL_ADDRESS"]) for t in ("a", "b", "c"))
    cache.put(a, found)
    cache.put(b, ())
    assert cache.get(a) == found  # a is now the most recent
    cache.put(c, ())
    assert cache.get(b) is None
    assert cache.get(a) == found
    assert len(cache) == 2


def test_cache_key_depends_on_the_entity_set_not_its_order() -> None:
    assert cache_key("x", ["A", "B"]) == cache_key("x", ["B", "A"])
    assert cache_key("x", ["A"]) != cache_key("x", ["A", "B"])


class _WatchedAnalyzer(PIIAnalyzer):
    """The real pattern-mode analyzer, noting which thread each analysis ran on."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []

    def analyze(self, text: str, entities: Collection[str]) -> tuple[Detection, ...]:
        self.threads.append(threading.get_ident())
        return super().analyze(text, entities)


@pytest.mark.anyio
async def test_short_texts_are_analysed_on_the_loop_long_ones_in_a_worker() -> None:
    watched = _WatchedAnalyzer()
    pii = PIIFilter(secret=SECRET, analyzer=watched)
    loop_thread = threading.get_ident()

    short = await pii.on_request(user("Mail me at short@example.com please."), context())
    assert isinstance(short, Rewrite)
    assert watched.threads == [loop_thread]

    filler = "Nothing to see in this sentence at all. " * (INLINE_CHARS // 40 + 1)
    long = await pii.on_request(user(filler + "Mail me at long@example.com."), context())
    assert isinstance(long, Rewrite)
    assert "long@example.com" not in long.envelope.messages[0].text()
    assert len(watched.threads) == 2 and watched.threads[1] != loop_thread


@pytest.mark.anyio
async def test_custom_recognizers_keep_every_analysis_in_a_worker() -> None:
    watched = _WatchedAnalyzer()
    custom = RegexRecognizer("TICKET", r"TCK-\d{4}", 0.9)
    pii = PIIFilter(secret=SECRET, analyzer=watched, recognizers=[custom])
    decision = await pii.on_request(user("Ticket TCK-1234 for short@example.com"), context())
    assert isinstance(decision, Rewrite)
    assert watched.threads and watched.threads[0] != threading.get_ident()
