"""An Anthropic client rebuilds the same message from merged chunks as from the originals.

The egresses merge the chunks of one upstream read (`core.coalesce`); the Anthropic ingress's
encoder opens and closes content blocks as a chunk's content changes, so a wrong merge would show
as a block too many, too few or out of order. Streams come from the seeded generators of
`tests/core/test_coalesce.py`, plus thinking streams as the Anthropic egress decodes them.
"""

from __future__ import annotations

import random
from typing import Any

import orjson

from adapters.wire.anthropic_stream import StreamEncoder
from core.coalesce import coalesce
from core.envelope import StreamChunk, Usage
from tests.core.test_coalesce import SEEDS, any_stream, reply_stream


def rebuilt(chunks: list[StreamChunk]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The content blocks and the closing `message_delta` a client rebuilds from the events."""
    encoder = StreamEncoder("msg_1", "sim-1", 7)
    events = [e for c in chunks for e in encoder.feed(c)] + encoder.finish()
    blocks: list[dict[str, Any]] = []
    ending: dict[str, Any] = {}
    for event in events:
        data = orjson.loads(event.split(b"\ndata: ", 1)[1])
        match data["type"]:
            case "content_block_start":
                assert data["index"] == len(blocks)
                blocks.append(dict(data["content_block"]))
            case "content_block_delta":
                block, delta = blocks[data["index"]], data["delta"]
                match delta["type"]:
                    case "text_delta":
                        block["text"] += delta["text"]
                    case "input_json_delta":
                        block["json"] = block.get("json", "") + delta["partial_json"]
                    case "thinking_delta":
                        block["thinking"] += delta["thinking"]
                    case "signature_delta":
                        block["signature"] += delta["signature"]
                    case other:
                        block.setdefault(other, []).append(delta)
            case "message_delta":
                ending = data
    return blocks, ending


def thinking_stream(rng: random.Random) -> list[StreamChunk]:
    """As the Anthropic egress decodes a reply that thinks first and may stop on a sequence."""
    chunks = [StreamChunk(role="assistant")]
    chunks += [StreamChunk(extra={"thinking": rng.choice(["hm", " ok"])}) for _ in range(3)]
    chunks.append(StreamChunk(extra={"thinking_signature": "sig"}))
    chunks += [StreamChunk(text=rng.choice(["a", " b"])) for _ in range(rng.randrange(4))]
    stop = {"stop_sequence": "END"} if rng.random() < 0.5 else {}
    chunks.append(StreamChunk(finish_reason="stop", extra=stop))
    chunks.append(StreamChunk(usage=Usage(5, rng.randrange(9))))
    return chunks


def test_the_anthropic_encoder_rebuilds_the_same_message_from_merged_chunks() -> None:
    merged_any = 0
    for seed in SEEDS:
        rng = random.Random(seed)
        for chunks in (reply_stream(rng), any_stream(rng), thinking_stream(rng)):
            merged = coalesce(chunks)
            merged_any += len(chunks) - len(merged)
            assert rebuilt(merged) == rebuilt(chunks), chunks
    assert merged_any  # the streams did give the merge something to do
