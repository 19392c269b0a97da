"""Streamed replies: phrases split across chunks are caught, per choice, without holding text."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core.envelope import Finding, Scope, StreamChunk, ToolCallDelta
from core.errors import ContentBlocked
from core.filtering import FilterContext
from filters.moderation import STATE_FINDINGS, ModerationFilter
from tests.filters.pii_support import chunks_of, collect, context, joined_text, text_chunks


async def drain(stream: AsyncIterator[StreamChunk], seen: list[StreamChunk]) -> None:
    """Collect into `seen` what the client was shown before the stream raised."""
    async for chunk in stream:
        seen.append(chunk)


def _findings(ctx: FilterContext) -> list[Finding]:
    found = ctx.state[STATE_FINDINGS]
    assert isinstance(found, list)
    return found


@pytest.mark.anyio
async def test_a_threat_split_across_chunks_is_blocked_before_its_last_piece() -> None:
    pieces = ["Sure. I am going to hu", "rt your fam", "ily. Bye"]
    seen: list[StreamChunk] = []
    ctx = context()

    stream = ModerationFilter().on_stream(chunks_of(text_chunks(*pieces)), ctx)
    with pytest.raises(ContentBlocked, match="reply flagged for violence"):
        await drain(stream, seen)

    assert "fam" in joined_text(seen)
    assert "ily" not in joined_text(seen)
    assert [(f.kind, f.scope, f.action) for f in _findings(ctx)] == [
        ("violence", Scope.MESSAGE, "block")
    ]


@pytest.mark.anyio
async def test_a_chinese_phrase_split_across_chunks_is_caught() -> None:
    with pytest.raises(ContentBlocked, match="self_harm"):
        await collect(
            ModerationFilter().on_stream(chunks_of(text_chunks("我真的不想", "活了")), context())
        )


@pytest.mark.anyio
async def test_flagging_a_stream_passes_every_chunk_and_records_each_category_once() -> None:
    ctx = context()
    pieces = ["I want to ki", "ll myself. ", "I want to kill my", "self."]
    out = await collect(
        ModerationFilter(action="flag").on_stream(chunks_of(text_chunks(*pieces)), ctx)
    )

    assert joined_text(out) == "".join(pieces)
    assert [(f.filter, f.kind, f.action) for f in _findings(ctx)] == [
        ("moderation", "self_harm", "flag")
    ]


@pytest.mark.anyio
async def test_choices_are_scanned_apart_so_halves_in_two_choices_do_not_join() -> None:
    chunks = [
        StreamChunk(index=0, text="I will find where you li"),
        StreamChunk(index=1, text="ve and hurt your family"),
        StreamChunk(index=0, text="ve in the sun", finish_reason="stop"),
        StreamChunk(index=1, finish_reason="stop"),
    ]
    ctx = context()
    out = await collect(ModerationFilter(action="flag").on_stream(chunks_of(chunks), ctx))

    assert len(out) == 4
    assert [(f.kind, f.scope) for f in _findings(ctx)] == [("violence", Scope.MESSAGE)]


@pytest.mark.anyio
async def test_a_long_benign_stream_is_not_flagged_at_window_cuts() -> None:
    pieces = ["The skill you need " * 40, "kill the process and shoot a photo. " * 20]
    ctx = context()
    out = await collect(ModerationFilter().on_stream(chunks_of(text_chunks(*pieces)), ctx))

    assert joined_text(out) == "".join(pieces)
    assert _findings(ctx) == []


@pytest.mark.anyio
async def test_streamed_tool_call_arguments_are_scanned_as_tool_input() -> None:
    chunks = [
        StreamChunk(tool_calls=[ToolCallDelta(0, id="c1", name="post", arguments='{"msg": "I wi')]),
        StreamChunk(tool_calls=[ToolCallDelta(0, arguments='ll kill you"}')]),
        StreamChunk(finish_reason="tool_calls"),
    ]
    ctx = context()
    await collect(ModerationFilter(action="flag").on_stream(chunks_of(chunks), ctx))

    assert [(f.kind, f.scope) for f in _findings(ctx)] == [("violence", Scope.TOOL_INPUT)]


@pytest.mark.anyio
@pytest.mark.parametrize("scope", [Scope.TRANSCRIPT, Scope.TOOL_INPUT])
async def test_a_stream_labelled_with_a_scope_is_reported_in_it(scope: Scope) -> None:
    # A realtime voice transcript, or function-call arguments relayed as text.
    chunks = [StreamChunk(text=p, scope=scope) for p in ("I will ki", "ll you")]
    ctx = context()
    await collect(ModerationFilter(action="flag").on_stream(chunks_of(chunks), ctx))

    assert [(f.kind, f.scope) for f in _findings(ctx)] == [("violence", scope)]
