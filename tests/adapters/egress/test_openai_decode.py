"""The OpenAI egress's stream decoding: bare text deltas merged while decoding give exactly
what decoding every event and then `core.coalesce` gives."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson

from adapters.egress.openai import _decode
from adapters.wire.openai import chunk_from_wire
from core.coalesce import coalesce
from core.envelope import StreamChunk


def _choice(delta: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": None, **fields}]}


def _events(rng: random.Random) -> list[dict[str, Any]]:
    def text() -> dict[str, Any]:
        return _choice({"content": rng.choice(["a", "bc", " d", "", "é😀"])})

    kinds: list[Callable[[], dict[str, Any]]] = [
        lambda: _choice({"role": "assistant"}),
        lambda: _choice({"role": "assistant", "content": ""}),
        text,
        text,
        text,
        lambda: _choice({}, finish_reason="stop"),
        lambda: _choice({"content": "x"}, finish_reason="length"),
        lambda: _choice({"content": "lp"}, logprobs={"content": []}),
        lambda: _choice({"refusal": "no"}),
        lambda: _choice({"reasoning_content": "think"}),
        lambda: _choice({"content": None}),
        lambda: _choice(
            {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}]}
        ),
        lambda: _choice({"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}),
        lambda: {"choices": [{"index": 1, "delta": {"content": "other"}, "finish_reason": None}]},
        lambda: {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5}},
        lambda: {
            **_choice({"content": "u"}),
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
        },
        lambda: {**_choice({"content": "extra-top"}), "system_fingerprint": "fp"},
    ]
    return [rng.choice(kinds)() for _ in range(rng.randint(1, 30))]


def _view(chunks: list[StreamChunk]) -> list[tuple[Any, ...]]:
    return [
        (
            c.index,
            c.role,
            c.text,
            [(d.index, d.id, d.name, d.arguments) for d in c.tool_calls],
            c.finish_reason,
            c.usage,
            c.extra,
            c.scope,
        )
        for c in chunks
    ]


def test_merging_while_decoding_equals_decoding_then_coalescing() -> None:
    rng = random.Random(11)
    merged_somewhere = 0
    for _ in range(2000):
        events = _events(rng)
        batch = [orjson.dumps(e) for e in events]
        reference = coalesce([c for e in events for c in chunk_from_wire(e)])
        decoded, done, failure = _decode(batch)
        assert not done and failure is None
        merged_somewhere += len(decoded) < sum(len(chunk_from_wire(e)) for e in events)
        assert _view(coalesce(decoded)) == _view(reference), events
    assert merged_somewhere > 500  # the fast path was taken, not just the general one


def test_done_and_errors_still_end_a_batch_after_what_came_before() -> None:
    batch = [orjson.dumps(_choice({"role": "assistant"}))] + [
        orjson.dumps(_choice({"content": w})) for w in ("a", "b")
    ]
    chunks, done, failure = _decode([*batch, b"[DONE]", orjson.dumps(_choice({"content": "z"}))])
    assert done and failure is None
    assert [(c.role, c.text) for c in chunks] == [("assistant", "ab")]
    chunks, done, failure = _decode([*batch, b"{not json"])
    assert not done and failure is not None
    assert [c.text for c in chunks] == ["ab"]
