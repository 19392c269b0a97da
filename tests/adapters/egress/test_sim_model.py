"""The simulated model's pure logic: tokens, replies, tool calls, streams and embeddings."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest

from adapters.egress.sim_embeddings import embedding_vector
from adapters.egress.sim_model import (
    IMAGE_TOKENS,
    SimChatRequest,
    SimRequestError,
    SimTool,
    SimToolCall,
    SimToolResult,
    SimTurn,
    ToolChoice,
    chat_reply,
    count_tokens,
    parse_tool_choice,
    prompt_tokens,
    stream_deltas,
)
from adapters.egress.sim_options import SimOptions
from adapters.egress.sim_tools import tool_arguments

WEATHER = SimTool(
    "get_weather",
    "Current weather",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
)
CLOCK = SimTool("get_time", None, {"type": "object", "properties": {}})


def _user(text: str, **kw: Any) -> SimTurn:
    return SimTurn("user", (text,), **kw)


def _request(*turns: SimTurn, **kw: Any) -> SimChatRequest:
    return SimChatRequest(turns=turns, **kw)


def test_tokens_are_word_runs_and_single_punctuation_marks() -> None:
    assert count_tokens("Hello, world!") == 4
    assert count_tokens("  ") == 0
    assert count_tokens('{"a":1}') == 7


def test_prompt_tokens_add_three_per_message_and_the_tool_specs() -> None:
    request = _request(SimTurn("system", ("Be brief.",)), _user("Hi there"), tools=(WEATHER,))
    schema = orjson.dumps(WEATHER.parameters, option=orjson.OPT_SORT_KEYS).decode()
    tools = count_tokens("get_weather") + count_tokens("Current weather") + count_tokens(schema)
    assert prompt_tokens(request) == (3 + 3) + (2 + 3) + tools


def test_prompt_tokens_count_tool_call_arguments_and_tool_results() -> None:
    call = SimToolCall("call_1", "get_time", '{"tz":"UTC"}')
    request = _request(
        _user("time?"),
        SimTurn("assistant", tool_calls=(call,)),
        SimTurn("tool", tool_results=(SimToolResult("call_1", ("12:00",)),)),
    )
    expected = (2 + 3) + (count_tokens("get_time") + count_tokens('{"tz":"UTC"}') + 3) + (3 + 3)
    assert prompt_tokens(request) == expected


def test_reply_echoes_the_last_user_message_with_exact_usage() -> None:
    reply = chat_reply(_request(_user("first"), _user("Hi there")), SimOptions())
    assert reply.text == "sim: Hi there"
    assert reply.finish_reason == "stop"
    assert reply.usage.prompt_tokens == (1 + 3) + (2 + 3)
    assert reply.usage.completion_tokens == count_tokens("sim: Hi there") == 4
    assert reply.usage.total_tokens == 13


def test_reply_is_the_same_for_the_same_request() -> None:
    request = _request(_user("say something"))
    assert chat_reply(request, SimOptions()) == chat_reply(request, SimOptions())


def test_reply_echoes_only_the_first_200_characters() -> None:
    reply = chat_reply(_request(_user("a" * 500)), SimOptions())
    assert reply.text == "sim: " + "a" * 200


def test_max_tokens_cuts_the_reply_and_finishes_with_length() -> None:
    reply = chat_reply(_request(_user("one two three four"), max_tokens=3), SimOptions())
    assert reply.text == "sim: one"
    assert reply.finish_reason == "length"
    assert reply.usage.completion_tokens == 3


def test_max_tokens_above_the_reply_length_changes_nothing() -> None:
    reply = chat_reply(_request(_user("one two"), max_tokens=50), SimOptions())
    assert (reply.text, reply.finish_reason) == ("sim: one two", "stop")


def test_reply_words_gives_exactly_that_many_deterministic_words() -> None:
    options = SimOptions(reply_words=40)
    first = chat_reply(_request(_user("prompt A")), options)
    again = chat_reply(_request(_user("prompt A")), options)
    other = chat_reply(_request(_user("prompt B")), options)
    assert len(first.text.split()) == 40
    assert first.usage.completion_tokens == 40
    assert first.text == again.text
    assert first.text != other.text


def test_cached_fraction_reports_that_share_of_prompt_tokens_as_cached() -> None:
    request = _request(_user("one two three four five six seven"))
    assert chat_reply(request, SimOptions()).usage.cached_tokens == 0
    reply = chat_reply(request, SimOptions(cached_fraction=0.5))
    assert reply.usage.cached_tokens == reply.usage.prompt_tokens // 2


def test_mentioned_tool_is_called_with_arguments_taken_from_the_prompt() -> None:
    request = _request(_user('Use get_weather for "Paris" over 3 days'), tools=(WEATHER, CLOCK))
    reply = chat_reply(request, SimOptions())
    assert reply.finish_reason == "tool_calls"
    assert reply.text == ""
    [call] = reply.tool_calls
    assert call.name == "get_weather"
    assert orjson.loads(call.arguments) == {"city": "Paris", "days": 3}
    assert call.id.startswith("call_")
    assert call.id == chat_reply(request, SimOptions()).tool_calls[0].id
    expected = count_tokens("get_weather") + count_tokens(call.arguments)
    assert reply.usage.completion_tokens == expected


def test_several_mentioned_tools_are_called_in_parallel() -> None:
    request = _request(_user("call get_time and GET_WEATHER please"), tools=(WEATHER, CLOCK))
    reply = chat_reply(request, SimOptions())
    assert [c.name for c in reply.tool_calls] == ["get_weather", "get_time"]
    assert len({c.id for c in reply.tool_calls}) == 2
    assert orjson.loads(reply.tool_calls[0].arguments) == {"city": "x", "days": 1}


def test_a_tool_name_inside_another_word_is_not_a_mention() -> None:
    request = _request(_user("do not get_timer me"), tools=(CLOCK,))
    assert chat_reply(request, SimOptions()).tool_calls == ()


def test_tool_choice_none_suppresses_tool_calls() -> None:
    request = _request(_user("use get_time"), tools=(CLOCK,), tool_choice=ToolChoice("none"))
    reply = chat_reply(request, SimOptions())
    assert reply.tool_calls == ()
    assert reply.text == "sim: use get_time"


def test_tool_choice_naming_a_function_forces_that_call() -> None:
    request = _request(
        _user("hello"),
        tools=(WEATHER, CLOCK),
        tool_choice=parse_tool_choice({"type": "function", "function": {"name": "get_time"}}),
    )
    reply = chat_reply(request, SimOptions())
    assert [c.name for c in reply.tool_calls] == ["get_time"]
    assert reply.tool_calls[0].arguments == "{}"


def test_tool_choice_naming_a_tool_not_offered_is_a_request_error() -> None:
    request = _request(_user("hi"), tools=(CLOCK,), tool_choice=ToolChoice("named", "nope"))
    with pytest.raises(SimRequestError) as info:
        chat_reply(request, SimOptions())
    assert info.value.param == "tool_choice"


def test_tool_choice_accepts_openai_and_anthropic_shapes() -> None:
    assert parse_tool_choice(None) == ToolChoice("auto")
    assert parse_tool_choice("required") == ToolChoice("required")
    assert parse_tool_choice({"type": "any"}) == ToolChoice("required")
    assert parse_tool_choice({"type": "tool", "name": "t"}) == ToolChoice("named", "t")
    with pytest.raises(SimRequestError):
        parse_tool_choice(42)


def test_tool_result_is_answered_with_the_tool_name_and_its_content() -> None:
    call = SimToolCall("call_1", "get_time", "{}")
    request = _request(
        _user("what time is it? get_time"),
        SimTurn("assistant", tool_calls=(call,)),
        SimTurn("tool", tool_results=(SimToolResult("call_1", ("12:00 UTC",)),)),
        tools=(CLOCK,),
    )
    reply = chat_reply(request, SimOptions())
    assert reply.tool_calls == ()
    assert reply.text == "sim: tool get_time returned 12:00 UTC"


def test_images_and_audio_cost_fixed_tokens_and_are_noted_in_the_reply() -> None:
    request = _request(_user("Describe this", images=2, audios=1))
    reply = chat_reply(request, SimOptions())
    assert reply.text == "sim: Describe this [2 images] [1 audio]"
    assert reply.usage.prompt_tokens == 2 + 3 + 2 * IMAGE_TOKENS + 50


def test_stream_deltas_spell_the_reply_word_by_word_after_the_role() -> None:
    reply = chat_reply(_request(_user("one two  three ")), SimOptions())
    deltas = stream_deltas(reply)
    assert deltas[0].role == "assistant"
    assert deltas[-1].finish_reason == "stop"
    pieces = [d.text for d in deltas if d.text is not None]
    assert pieces == ["sim:", " one", " two", "  three "]
    assert "".join(pieces) == reply.text


def test_stream_deltas_carry_each_tool_call_id_name_then_arguments() -> None:
    request = _request(_user('get_weather "Lisbon" 7'), tools=(WEATHER,))
    reply = chat_reply(request, SimOptions())
    calls = [d.tool_call for d in stream_deltas(reply) if d.tool_call is not None]
    assert (calls[0].id, calls[0].name) == (reply.tool_calls[0].id, "get_weather")
    assert "".join(c.arguments for c in calls) == reply.tool_calls[0].arguments
    assert all(c.id is None for c in calls[1:])


def test_tool_arguments_fill_enums_booleans_numbers_and_nested_objects() -> None:
    schema = {
        "type": "object",
        "properties": {
            "unit": {"enum": ["celsius", "fahrenheit"]},
            "exact": {"type": "boolean"},
            "ratio": {"type": "number"},
            "where": {
                "type": "object",
                "properties": {"name": {"type": ["string", "null"]}},
                "required": ["name"],
            },
            "optional": {"type": "string"},
        },
        "required": ["unit", "exact", "ratio", "where"],
    }
    arguments = orjson.loads(tool_arguments(schema, 'ratio 2.5 near "Oslo"'))
    assert arguments == {"unit": "celsius", "exact": True, "ratio": 2.5, "where": {"name": "Oslo"}}


def test_embeddings_are_deterministic_unit_vectors() -> None:
    vector = embedding_vector("hello world")
    assert len(vector) == 16
    assert math.isclose(math.fsum(v * v for v in vector), 1.0)
    assert vector == embedding_vector("hello world")
    assert vector != embedding_vector("hello there")
    assert len(embedding_vector("hello", 1000)) == 1000


def test_embeddings_refuse_impossible_dimensions() -> None:
    with pytest.raises(ValueError, match="dimensions"):
        embedding_vector("x", 0)
