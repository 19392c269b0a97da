"""Pseudonymize: numbered placeholders on the way in, the originals restored on the way out."""

from __future__ import annotations

import json

import pytest

from core.envelope import Message, StreamChunk, TextPart, ToolCallDelta, ToolCallPart
from core.filtering import Rewrite
from filters.pii import PIIAnalyzer, PIIFilter, Pseudonyms
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

EMAIL = "jane.roe@example.com"
OTHER = "john.doe@example.org"
PHONE = "+1 212-555-0147"


def _filter(analyzer: PIIAnalyzer) -> PIIFilter:
    return PIIFilter(secret=SECRET, action="pseudonymize", analyzer=analyzer)


def _texts(decision: object) -> list[str]:
    assert isinstance(decision, Rewrite)
    return [m.text() for m in decision.envelope.messages]


@pytest.mark.anyio
async def test_placeholders_number_left_to_right_and_reuse_the_same_value(
    analyzer: PIIAnalyzer,
) -> None:
    env = user(f"Mail {EMAIL} or {OTHER}, call {PHONE}.", f"Again: {OTHER} and {EMAIL}")
    decision = await _filter(analyzer).on_request(env, context())

    assert _texts(decision) == [
        "Mail <EMAIL_ADDRESS_1> or <EMAIL_ADDRESS_2>, call <PHONE_NUMBER_1>.",
        "Again: <EMAIL_ADDRESS_2> and <EMAIL_ADDRESS_1>",
    ]


@pytest.mark.anyio
async def test_a_placeholder_the_user_typed_is_never_issued(analyzer: PIIAnalyzer) -> None:
    env = user(f"Literally <EMAIL_ADDRESS_1>, really {EMAIL}")
    ctx = context()
    decision = await _filter(analyzer).on_request(env, ctx)

    assert _texts(decision) == ["Literally <EMAIL_ADDRESS_1>, really <EMAIL_ADDRESS_2>"]
    back = await _filter(analyzer).on_response(reply(TextPart("<EMAIL_ADDRESS_1>")), ctx)
    assert not isinstance(back, Rewrite)


@pytest.mark.anyio
async def test_reply_text_and_tool_call_arguments_are_restored(analyzer: PIIAnalyzer) -> None:
    pii = _filter(analyzer)
    ctx = context()
    await pii.on_request(user(f"Write to {EMAIL} and {OTHER}"), ctx)
    answer = reply(
        TextPart("Sending to <EMAIL_ADDRESS_1> now; <UNKNOWN_7> stays."),
        ToolCallPart("c1", "send", '{"to": "<EMAIL_ADDRESS_1>", "cc": ["<EMAIL_ADDRESS_2>"]}'),
    )
    decision = await pii.on_response(answer, ctx)

    assert isinstance(decision, Rewrite)
    message: Message = decision.envelope.messages[0]
    assert message.text() == f"Sending to {EMAIL} now; <UNKNOWN_7> stays."
    call = message.parts[1]
    assert isinstance(call, ToolCallPart)
    assert json.loads(call.arguments) == {"to": EMAIL, "cc": [OTHER]}


@pytest.mark.anyio
async def test_placeholder_split_across_stream_chunks_is_restored(analyzer: PIIAnalyzer) -> None:
    pii = _filter(analyzer)
    ctx = context()
    await pii.on_request(user(f"Mail {EMAIL}"), ctx)
    stream = chunks_of(text_chunks("Writing to <EMA", "IL_ADD", "RESS_1", "> now."))
    out = await collect(pii.on_stream(stream, ctx))

    assert joined_text(out) == f"Writing to {EMAIL} now."
    assert not any("<EMA" in (c.text or "") for c in out)
    assert out[-1].finish_reason == "stop"


@pytest.mark.anyio
async def test_placeholder_split_inside_streamed_tool_call_arguments_is_restored(
    analyzer: PIIAnalyzer,
) -> None:
    pii = _filter(analyzer)
    ctx = context()
    await pii.on_request(user(f"Mail {EMAIL}"), ctx)
    stream = chunks_of(
        [
            StreamChunk(role="assistant", tool_calls=[ToolCallDelta(0, "c1", "send", "")]),
            StreamChunk(tool_calls=[ToolCallDelta(0, arguments='{"to": "<EMAIL')]),
            StreamChunk(tool_calls=[ToolCallDelta(0, arguments="_ADDRESS_")]),
            StreamChunk(tool_calls=[ToolCallDelta(0, arguments='1>", "body": "hi"}')]),
            StreamChunk(finish_reason="tool_calls"),
        ]
    )
    out = await collect(pii.on_stream(stream, ctx))

    assert json.loads(joined_arguments(out)) == {"to": EMAIL, "body": "hi"}
    first = out[0].tool_calls[0]
    assert (first.id, first.name) == ("c1", "send")


def test_restored_values_are_escaped_inside_json_arguments() -> None:
    names = Pseudonyms()
    token = names.placeholder("PERSON", 'Ann "the \\ hammer" Lee')
    raw = '{"who": "' + names.restore(token, json_escape=True) + '"}'
    assert json.loads(raw) == {"who": 'Ann "the \\ hammer" Lee'}


@pytest.mark.anyio
async def test_stream_is_passed_through_untouched_when_nothing_was_pseudonymized(
    analyzer: PIIAnalyzer,
) -> None:
    pii = _filter(analyzer)
    ctx = context()
    await pii.on_request(user("Nothing personal."), ctx)
    stream = chunks_of(text_chunks("hello"))
    assert pii.on_stream(stream, ctx) is stream
