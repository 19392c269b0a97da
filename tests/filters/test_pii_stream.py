"""Model output: redacted on replies and streams, with no entity leaking across chunk borders."""

from __future__ import annotations

import pytest

from core.envelope import Scope, StreamChunk, TextPart, ToolCallDelta
from core.errors import ContentBlocked
from core.filtering import Reject, Rewrite
from filters.pii import STATE_FINDINGS, PIIAnalyzer, PIIFilter
from filters.pii.stream import release_point
from tests.filters.pii_support import (
    SECRET,
    chunks_of,
    collect,
    context,
    joined_arguments,
    joined_text,
    reply,
    text_chunks,
    user,
)


def _redacting(analyzer: PIIAnalyzer, action: str = "redact") -> PIIFilter:
    return PIIFilter(secret=SECRET, action=action, analyzer=analyzer)  # type: ignore[arg-type]


async def _stream(pii: PIIFilter, *pieces: str) -> list[StreamChunk]:
    return await collect(pii.on_stream(chunks_of(text_chunks(*pieces)), context()))


@pytest.mark.anyio
async def test_card_split_across_chunks_never_shows_a_single_digit(analyzer: PIIAnalyzer) -> None:
    out = await _stream(
        _redacting(analyzer), "Your card is 4111", " 1111 ", "1111 11", "11. Thanks!"
    )

    assert joined_text(out) == "Your card is <CREDIT_CARD>. Thanks!"
    assert not any(ch.isdigit() for c in out for ch in c.text or "")


@pytest.mark.anyio
async def test_email_split_across_chunks_is_redacted(analyzer: PIIAnalyzer) -> None:
    out = await _stream(_redacting(analyzer), "Mail jane.r", "oe@exa", "mple.com", " today")
    assert joined_text(out) == "Mail <EMAIL_ADDRESS> today"


@pytest.mark.anyio
async def test_chinese_stream_is_redacted(analyzer: PIIAnalyzer) -> None:
    out = await _stream(
        _redacting(analyzer), "请拨打139", "1234", "5678联系我。身份证", "11010519491231002X"
    )
    assert joined_text(out) == "请拨打<CN_MOBILE>联系我。身份证<CN_RESIDENT_ID>"


@pytest.mark.anyio
async def test_context_word_in_an_earlier_chunk_still_counts(analyzer: PIIAnalyzer) -> None:
    out = await _stream(_redacting(analyzer), "My passport number is ", "E12345678", " ok.")
    assert joined_text(out) == "My passport number is <PASSPORT> ok."


@pytest.mark.anyio
async def test_mask_and_hash_apply_to_streamed_output(analyzer: PIIAnalyzer) -> None:
    masked = await _stream(_redacting(analyzer, "mask"), "write jane.roe@", "example.com")
    hashed = await _stream(_redacting(analyzer, "hash"), "write jane.roe@", "example.com")
    assert joined_text(masked) == "write ****************.com"
    assert joined_text(hashed).startswith("write <EMAIL_ADDRESS_")


@pytest.mark.anyio
async def test_prose_without_digits_flows_with_only_the_last_word_held(
    analyzer: PIIAnalyzer,
) -> None:
    pii = _redacting(analyzer)
    out = await _stream(pii, "The quick ", "brown fox ", "jumps")
    texts = [c.text for c in out if c.text]
    assert texts == ["The ", "quick brown ", "fox ", "jumps"]
    assert pii.analyses == 0


@pytest.mark.anyio
async def test_stream_ending_without_finish_flushes_the_tail(analyzer: PIIAnalyzer) -> None:
    chunks = [StreamChunk(text="call +1 212-555-"), StreamChunk(text="0147")]
    out = await collect(_redacting(analyzer).on_stream(chunks_of(chunks), context()))
    assert joined_text(out) == "call <PHONE_NUMBER>"


@pytest.mark.anyio
async def test_each_choice_has_its_own_window(analyzer: PIIAnalyzer) -> None:
    chunks = [
        StreamChunk(index=0, text="a: jane.roe@"),
        StreamChunk(index=1, text="b: 4111 1111 "),
        StreamChunk(index=0, text="example.com"),
        StreamChunk(index=1, text="1111 1111"),
        StreamChunk(index=0, finish_reason="stop"),
        StreamChunk(index=1, finish_reason="stop"),
    ]
    out = await collect(_redacting(analyzer).on_stream(chunks_of(chunks), context()))
    assert joined_text(out, 0) == "a: <EMAIL_ADDRESS>"
    assert joined_text(out, 1) == "b: <CREDIT_CARD>"


@pytest.mark.anyio
async def test_streamed_tool_call_arguments_are_redacted(analyzer: PIIAnalyzer) -> None:
    chunks = [
        StreamChunk(tool_calls=[ToolCallDelta(0, "c1", "send", '{"to": "jane.roe@ex')]),
        StreamChunk(tool_calls=[ToolCallDelta(0, arguments='ample.com"}')]),
        StreamChunk(finish_reason="tool_calls"),
    ]
    out = await collect(_redacting(analyzer).on_stream(chunks_of(chunks), context()))
    assert joined_arguments(out) == '{"to": "<EMAIL_ADDRESS>"}'


@pytest.mark.anyio
async def test_block_on_output_ends_the_stream_naming_the_type(analyzer: PIIAnalyzer) -> None:
    stream = _redacting(analyzer, "block").on_stream(
        chunks_of(text_chunks("ok so ", "jane.roe@example.com", " bye")), context()
    )
    with pytest.raises(ContentBlocked) as caught:
        await collect(stream)
    assert "EMAIL_ADDRESS" in caught.value.message
    assert "jane" not in caught.value.message


@pytest.mark.anyio
async def test_stream_findings_land_in_the_context_state(analyzer: PIIAnalyzer) -> None:
    ctx = context()
    pii = _redacting(analyzer)
    await collect(pii.on_stream(chunks_of(text_chunks("mail jane.roe@example.com")), ctx))
    findings = ctx.state[STATE_FINDINGS]
    assert isinstance(findings, list)
    assert [(f.kind, f.action, f.scope) for f in findings] == [
        ("EMAIL_ADDRESS", "redact", Scope.MESSAGE)
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("scope", [Scope.TRANSCRIPT, Scope.TOOL_INPUT])
async def test_stream_findings_take_the_scope_of_the_chunks(
    analyzer: PIIAnalyzer, scope: Scope
) -> None:
    # A realtime voice transcript, or function-call arguments relayed as text.
    pieces = ["mail jane.r", "oe@example.com", " now"]
    chunks = [StreamChunk(text=p, scope=scope) for p in pieces]
    ctx = context()
    out = await collect(_redacting(analyzer).on_stream(chunks_of(chunks), ctx))

    assert joined_text(out) == "mail <EMAIL_ADDRESS> now"
    findings = ctx.state[STATE_FINDINGS]
    assert isinstance(findings, list)
    assert [(f.kind, f.scope) for f in findings] == [("EMAIL_ADDRESS", scope)]


@pytest.mark.anyio
async def test_reply_disclosing_pii_is_redacted_with_findings(analyzer: PIIAnalyzer) -> None:
    answer = reply(TextPart("Her number is +1 212-555-0147."))
    decision = await _redacting(analyzer, "mask").on_response(answer, context())
    assert isinstance(decision, Rewrite)
    assert decision.envelope.messages[0].text() == "Her number is ***********0147."
    assert [f.kind for f in decision.envelope.findings] == ["PHONE_NUMBER"]


@pytest.mark.anyio
async def test_reply_with_a_blocked_entity_is_refused(analyzer: PIIAnalyzer) -> None:
    decision = await _redacting(analyzer, "block").on_response(
        reply(TextPart("SSN 219-09-9999")), context()
    )
    assert isinstance(decision, Reject)
    assert "US_SSN" in decision.error.message


def test_digit_groups_and_partial_placeholders_are_held_back() -> None:
    # The word before a digit group is held too: IBAN groups mix letters and digits.
    held = "the card number 4111 1111"
    assert held[: release_point(held, analyzing=True, restoring=False)] == "the card "
    assert release_point("please call +1 ", analyzing=True, restoring=False) == len("please ")
    partial = "to <EMAIL_ADD"
    assert partial[: release_point(partial, analyzing=False, restoring=True)] == "to "
    done = "to <EMAIL_ADDRESS_1>"
    assert release_point(done, analyzing=False, restoring=True) == len(done)


def test_nothing_is_held_past_the_maximum() -> None:
    buf = "x" * 200
    assert release_point(buf, analyzing=True, restoring=False, max_hold=64) == 200 - 64


@pytest.mark.anyio
async def test_restored_values_are_not_redacted_again_while_other_output_is(
    analyzer: PIIAnalyzer,
) -> None:
    pii = PIIFilter(
        secret=SECRET, action="pseudonymize", actions={"PHONE_NUMBER": "mask"}, analyzer=analyzer
    )
    ctx = context()
    await pii.on_request(user("I am jane.roe@example.com"), ctx)
    stream = chunks_of(text_chunks("Hi <EMAIL_", "ADDRESS_1>, call +1 212-", "555-0147 now"))
    out = await collect(pii.on_stream(stream, ctx))
    assert joined_text(out) == "Hi jane.roe@example.com, call ***********0147 now"
