"""Merging the chunks of one upstream read changes nothing a client rebuilds from the stream.

The properties run over streams drawn from a seeded generator (the same streams every run),
streams shaped like real upstream replies, and arbitrary ones mixing every field.
"""

from __future__ import annotations

import copy
import random
from typing import Any

from core.coalesce import coalesce
from core.envelope import Scope, StreamChunk, ToolCallDelta, Usage

SEEDS = range(500)


def client_view(chunks: list[StreamChunk]) -> list[tuple[Any, ...]]:
    """What a client rebuilds, in order: roles, runs of text, tool calls with their whole
    arguments, extras, finish reasons and usage.

    Within a chunk the order is the Anthropic encoder's (extra, text, tool calls) and finish and
    usage come after its content. Consecutive text of one choice and scope is one run, as is a
    tool call's arguments until another event comes between.
    """
    out: list[tuple[Any, ...]] = []

    def extend(kind: str, key: tuple[Any, ...], piece: str) -> None:
        if out and out[-1][0] == kind and out[-1][1] == key:
            out[-1] = (kind, key, out[-1][2] + piece, *out[-1][3:])
        else:
            out.append((kind, key, piece))

    for c in chunks:
        if c.role is not None:
            out.append(("role", c.index, c.role))
        out.extend(("extra", c.index, k, v) for k, v in c.extra.items())
        if c.text:
            extend("text", (c.index, c.scope), c.text)
        for d in c.tool_calls:
            if d.id is not None or d.name is not None:
                out.append(("call", (c.index, d.index), d.arguments, d.id, d.name))
            elif d.arguments:
                extend("call", (c.index, d.index), d.arguments)
        if c.finish_reason is not None:
            out.append(("finish", c.index, c.finish_reason))
        if c.usage is not None:
            out.append(("usage", c.usage))
    return out


def reply_stream(rng: random.Random) -> list[StreamChunk]:
    """A stream shaped like an upstream's: role, text or tool calls in pieces, finish, usage."""
    chunks = [StreamChunk(role="assistant", text=rng.choice([None, ""]))]
    if rng.random() < 0.5:
        chunks += [
            StreamChunk(text=rng.choice(["a", "b c", " ", ""])) for _ in range(rng.randrange(6))
        ]
        finish = "stop"
    else:
        for i in range(rng.randrange(1, 4)):
            chunks.append(StreamChunk(tool_calls=[ToolCallDelta(i, f"call_{i}", "fn", "")]))
            chunks += [
                StreamChunk(tool_calls=[ToolCallDelta(i, arguments=rng.choice(['{"', "x", "}"]))])
                for _ in range(rng.randrange(4))
            ]
        finish = "tool_calls"
    chunks.append(StreamChunk(finish_reason=finish))
    if rng.random() < 0.7:
        chunks.append(StreamChunk(usage=Usage(rng.randrange(9), rng.randrange(9))))
    return chunks


def any_chunk(rng: random.Random) -> StreamChunk:
    """A chunk with any mix of fields, the rare ones rarely."""

    def sometimes(p: float, value: Any) -> Any:
        return value if rng.random() < p else None

    calls = [
        ToolCallDelta(
            rng.randrange(3),
            sometimes(0.3, f"call_{rng.randrange(3)}"),
            sometimes(0.3, rng.choice(["f", "g"])),
            rng.choice(["", "{", "1", "}"]),
        )
        for _ in range(rng.choice([0, 0, 0, 1, 1, 2]))
    ]
    return StreamChunk(
        index=rng.choice([0, 0, 0, 1]),
        role=sometimes(0.15, "assistant"),
        text=sometimes(0.6, rng.choice(["", "x", "yz"])),
        tool_calls=calls,
        finish_reason=sometimes(0.1, rng.choice(["stop", "length"])),
        usage=sometimes(0.1, Usage(rng.randrange(5), rng.randrange(5))),
        extra=rng.choice([{}] * 8 + [{"refusal": "no"}, {"reasoning_content": "hm"}]),
        scope=rng.choice([None] * 8 + [Scope.TRANSCRIPT]),
    )


def any_stream(rng: random.Random) -> list[StreamChunk]:
    return [any_chunk(rng) for _ in range(rng.randrange(12))]


def streams() -> list[list[StreamChunk]]:
    """For each seed, a stream shaped like a reply and an arbitrary one."""
    out: list[list[StreamChunk]] = []
    for seed in SEEDS:
        rng = random.Random(seed)
        out += [reply_stream(rng), any_stream(rng)]
    return out


def test_a_client_rebuilds_the_same_reply_from_merged_chunks() -> None:
    for chunks in streams():
        assert client_view(coalesce(chunks)) == client_view(chunks), chunks


def test_merging_leaves_its_input_alone_and_never_adds_a_chunk() -> None:
    for chunks in streams():
        before = copy.deepcopy(chunks)
        merged = coalesce(chunks)
        assert chunks == before
        assert 1 <= len(merged) <= len(chunks) or merged == chunks == []
        assert coalesce(merged) == merged  # nothing mergeable is left next to each other


def test_merged_chunks_keep_what_a_naive_client_reads() -> None:
    for chunks in streams():
        originals = {id(c) for c in chunks}
        widest = max((len(c.tool_calls) for c in chunks), default=0)
        mixed = any(c.text and c.tool_calls for c in chunks)
        for c in coalesce(chunks):
            # A client reading `tool_calls[0]` reads every delta a merged chunk carries.
            assert len(c.tool_calls) <= widest
            if id(c) not in originals:
                # A chunk made here: nothing that must travel alone went into it, and text and
                # tool calls share it only if they shared an original.
                assert not c.extra
                assert mixed or not (c.text and c.tool_calls)


def test_a_reply_read_at_once_merges_to_one_chunk_per_tool_call_at_most() -> None:
    for seed in SEEDS:
        chunks = reply_stream(random.Random(seed))
        merged = coalesce(chunks)
        calls = {d.index for c in chunks for d in c.tool_calls}
        assert len(merged) == max(1, len(calls)), chunks
        assert all(len(c.tool_calls) <= 1 for c in merged), merged


def test_a_text_reply_read_at_once_is_one_chunk() -> None:
    usage = Usage(12, 5)
    chunks = [
        StreamChunk(role="assistant", text=""),
        StreamChunk(text="sim:"),
        StreamChunk(text=" hello"),
        StreamChunk(text=" there"),
        StreamChunk(finish_reason="stop"),
        StreamChunk(usage=usage),
    ]
    assert coalesce(chunks) == [
        StreamChunk(role="assistant", text="sim: hello there", finish_reason="stop", usage=usage)
    ]


def test_tool_calls_merge_per_call_and_a_new_call_starts_a_new_chunk() -> None:
    chunks = [
        StreamChunk(role="assistant", text=""),
        StreamChunk(tool_calls=[ToolCallDelta(0, "call_a", "get_weather", "")]),
        StreamChunk(tool_calls=[ToolCallDelta(0, arguments='{"city"')]),
        StreamChunk(tool_calls=[ToolCallDelta(0, arguments=': "Oslo"}')]),
        StreamChunk(tool_calls=[ToolCallDelta(1, "call_b", "get_time", '{"zone": ')]),
        StreamChunk(tool_calls=[ToolCallDelta(1, arguments='"Oslo"}')]),
        StreamChunk(finish_reason="tool_calls"),
    ]
    assert coalesce(chunks) == [
        StreamChunk(
            role="assistant",
            text="",
            tool_calls=[ToolCallDelta(0, "call_a", "get_weather", '{"city": "Oslo"}')],
        ),
        StreamChunk(
            tool_calls=[ToolCallDelta(1, "call_b", "get_time", '{"zone": "Oslo"}')],
            finish_reason="tool_calls",
        ),
    ]


def test_what_must_travel_alone_is_left_in_place() -> None:
    refusal = StreamChunk(extra={"refusal": "I can't"})
    transcript = StreamChunk(text="spoken", scope=Scope.TRANSCRIPT)
    chunks = [
        StreamChunk(text="a"),
        refusal,
        StreamChunk(text="b"),
        transcript,
        StreamChunk(index=1, text="other choice"),
        StreamChunk(role="assistant", text="a new message"),
        StreamChunk(tool_calls=[ToolCallDelta(0, "call_a", "f", "{}")]),
        StreamChunk(text="text after a tool call"),
    ]
    assert coalesce(chunks) == chunks
    assert coalesce(chunks)[1] is refusal


def test_nothing_joins_a_finished_choice_but_its_usage() -> None:
    usage = Usage(3, 4)
    chunks = [
        StreamChunk(text="a", finish_reason="stop"),
        StreamChunk(text="late"),
        StreamChunk(usage=usage),
        StreamChunk(usage=Usage(5, 6)),
    ]
    assert coalesce(chunks) == [
        StreamChunk(text="a", finish_reason="stop"),
        StreamChunk(text="late", usage=usage),
        StreamChunk(usage=Usage(5, 6)),
    ]
