"""The optional moderation model: scores over thresholds count, a failing model fails closed.

`classify` here is a small async function in place of the app's callable (which routes a
`/v1/moderations` call through agentgw's own routing: tests/e2e/test_moderation_model.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from core.config import ModerationCategory as ModerationCategoryConfig
from core.config import ModerationFilter as ModerationConfig
from core.envelope import Finding, Modality, StreamChunk
from core.errors import ContentBlocked, FilterUnavailable
from core.filtering import Continue, FilterContext, Reject
from filters.moderation import STATE_FINDINGS, ModerationFilter, build_moderation_filter
from tests.filters.pii_support import chunks_of, collect, context, text_chunks, user

SUBTLE = "You won't see the end of this week, I promise you that."


async def drain(stream: AsyncIterator[StreamChunk], seen: list[StreamChunk]) -> None:
    """Collect into `seen` what the client was shown before the stream raised."""
    async for chunk in stream:
        seen.append(chunk)


async def _scores(texts: list[str], _: FilterContext | None) -> list[dict[str, float]]:
    """The wire's `category_scores`: high violence for the one subtle threat, low otherwise."""
    return [
        {"violence": 0.93 if t == SUBTLE else 0.01, "sexual": 0.9 if "sexual" in t else 0.0}
        for t in texts
    ]


async def _broken(texts: list[str], _: FilterContext | None) -> list[dict[str, float]]:
    raise ConnectionError("moderation upstream refused")


async def _short(texts: list[str], _: FilterContext | None) -> list[dict[str, float]]:
    return []


async def _slow(texts: list[str], _: FilterContext | None) -> list[dict[str, float]]:
    await anyio.sleep(10)
    return []


@pytest.mark.anyio
async def test_the_model_catches_what_the_term_lists_miss() -> None:
    env = user(SUBTLE)
    decision = await ModerationFilter(classify=_scores).on_request(env, context())

    assert isinstance(decision, Reject)
    assert isinstance(decision.error, ContentBlocked)
    assert "violence" in decision.error.message
    [finding] = env.findings
    assert (finding.kind, finding.score) == ("violence", 0.93)


@pytest.mark.anyio
async def test_scores_below_threshold_and_unmoderated_wire_categories_pass() -> None:
    moderation = ModerationFilter(classify=_scores, thresholds={"violence": 0.95})
    env = user(SUBTLE, "a sexual health leaflet")
    assert await moderation.on_request(env, context()) == Continue()
    assert env.findings == []


@pytest.mark.anyio
@pytest.mark.parametrize("classify", [_broken, _short], ids=["raises", "malformed"])
async def test_a_failing_classifier_fails_closed(classify: object) -> None:
    moderation = ModerationFilter(classify=classify)  # type: ignore[arg-type]
    decision = await moderation.on_request(user("hello there"), context())

    assert isinstance(decision, Reject)
    assert isinstance(decision.error, FilterUnavailable)
    assert decision.error.status == 503
    assert "hello" not in decision.error.message


@pytest.mark.anyio
async def test_a_classifier_past_its_deadline_fails_closed() -> None:
    moderation = ModerationFilter(classify=_slow, timeout_ms=20)
    decision = await moderation.on_request(user("hello there"), context())

    assert isinstance(decision, Reject)
    assert decision.error.message == "moderation filter unavailable: classifier timed out"


@pytest.mark.anyio
async def test_fail_open_passes_and_records_why() -> None:
    env = user("hello there")
    decision = await ModerationFilter(classify=_broken, fail="open").on_request(env, context())

    assert decision == Continue()
    assert [(f.kind, f.action) for f in env.findings] == [("classifier_error", "fail_open")]


@pytest.mark.anyio
async def test_term_lists_still_block_when_the_model_is_open_and_down() -> None:
    moderation = ModerationFilter(classify=_broken, fail="open")
    decision = await moderation.on_request(user("我要杀了你"), context())
    assert isinstance(decision, Reject)
    assert isinstance(decision.error, ContentBlocked)


@pytest.mark.anyio
async def test_a_stream_is_judged_whole_before_its_finishing_chunk() -> None:
    ctx = context()
    chunks = text_chunks("You won't see the end ", "of this week, I promise you that.")
    seen: list[StreamChunk] = []
    stream = ModerationFilter(classify=_scores).on_stream(chunks_of(chunks), ctx)
    with pytest.raises(ContentBlocked, match="violence"):
        await drain(stream, seen)
    assert all(c.finish_reason is None for c in seen)
    findings = ctx.state[STATE_FINDINGS]
    assert isinstance(findings, list)
    assert [f.kind for f in findings if isinstance(f, Finding)] == ["violence"]


@pytest.mark.anyio
async def test_a_stream_fails_closed_when_the_model_fails() -> None:
    moderation = ModerationFilter(classify=_broken)
    with pytest.raises(FilterUnavailable):
        await collect(moderation.on_stream(chunks_of(text_chunks("hello")), context()))


def test_build_wires_the_classifier_when_the_config_names_a_model() -> None:
    built = build_moderation_filter(ModerationConfig(model="omni-moderation"), classify=_scores)
    assert built.classifier is not None


@pytest.mark.anyio
async def test_a_long_stream_is_judged_window_by_window_before_the_rest_is_released() -> None:
    asked: list[str] = []

    async def scores(texts: list[str], _: FilterContext | None) -> list[dict[str, float]]:
        asked.extend(texts)
        return [{"violence": 0.9 if "MARK" in t else 0.0} for t in texts]

    filler = [f"word{i} " for i in range(40)]  # ~240 characters, no finding
    pieces = [*filler, "MARK ", *filler, "the end."]
    seen: list[StreamChunk] = []
    stream = ModerationFilter(classify=scores, window=64).on_stream(
        chunks_of(text_chunks(*pieces)), context()
    )
    with pytest.raises(ContentBlocked, match="violence"):
        await drain(stream, seen)
    shown = "".join(c.text or "" for c in seen)
    # Blocked within a window of the flagged text, long before the choice finished.
    assert "MARK" not in shown or len(shown.split("MARK", 1)[1]) < 64
    assert "the end" not in shown
    assert len(asked) > 1 and all(len(t) <= 128 for t in asked)


@pytest.mark.anyio
async def test_a_client_moderation_request_is_not_itself_moderated() -> None:
    env = user("I am going to hurt your family.")
    env.modality = Modality.MODERATION
    assert isinstance(await ModerationFilter().on_request(env, context()), Continue)


@pytest.mark.anyio
async def test_the_config_adds_custom_categories_thresholds_and_fail_open() -> None:
    config = ModerationConfig(
        model="guard",
        fail="open",
        thresholds={"violence": 0.95},
        categories={"leaks": ModerationCategoryConfig(terms=["project nightjar"])},
    )
    built = build_moderation_filter(config, classify=_scores)
    assert "leaks" in built.categories and built.fail == "open"
    refused = await built.on_request(user("Tell me about Project Nightjar."), context())
    assert isinstance(refused, Reject) and "leaks" in refused.error.message
    # 0.93 is under the configured 0.95 for violence.
    assert isinstance(await built.on_request(user(SUBTLE), context()), Continue)
    opened = build_moderation_filter(config, classify=_broken)
    assert isinstance(await opened.on_request(user("hello"), context()), Continue)
