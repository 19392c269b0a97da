"""Helpers for the PII filter tests: the position matrix, envelopes, contexts, streams."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.access import Principal
from core.envelope import (
    AudioPart,
    Envelope,
    ImagePart,
    Message,
    Modality,
    Part,
    Scope,
    StreamChunk,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)
from core.filtering import FilterContext

MATRIX_FILE = Path(__file__).resolve().parents[2] / "fixtures" / "pii" / "matrix.json"
MARK = "{{PII}}"
SECRET = b"test-secret-not-for-production"


@dataclass(frozen=True)
class Planted:
    entity: str
    value: str
    text: str
    ner_only: bool


@dataclass(frozen=True)
class Position:
    name: str
    scope: Scope
    messages: list[dict[str, Any]]

    def envelope(self, text: str) -> Envelope:
        """A fresh envelope with `text` planted at this position."""
        return Envelope(
            id="req-1",
            modality=Modality.CHAT,
            model="sim",
            messages=[_message(m, text) for m in self.messages],
        )


@dataclass(frozen=True)
class Matrix:
    values: list[Planted]
    positions: list[Position]

    def value(self, entity: str) -> Planted:
        return next(v for v in self.values if v.entity == entity)


def load_matrix() -> Matrix:
    raw = json.loads(MATRIX_FILE.read_text(encoding="utf-8"))
    return Matrix(
        values=[
            Planted(v["entity"], v["value"], v["text"], bool(v.get("ner_only", False)))
            for v in raw["values"]
        ],
        positions=[Position(s["name"], Scope(s["scope"]), s["messages"]) for s in raw["scopes"]],
    )


def _message(raw: dict[str, Any], text: str) -> Message:
    return Message(raw["role"], [_part(p, text) for p in raw["parts"]])


def _part(raw: dict[str, Any], text: str) -> Part:
    match raw["type"]:
        case "text":
            return TextPart(raw["text"].replace(MARK, text))
        case "image":
            return ImagePart(raw["url"])
        case "audio":
            return AudioPart(raw["data"], raw["format"], raw["transcript"].replace(MARK, text))
        case "tool_call":
            args = json.dumps(raw["arguments"], ensure_ascii=False).replace(MARK, _json_inner(text))
            return ToolCallPart(raw["id"], raw["name"], args)
        case "tool_result":
            return ToolResultPart(raw["tool_call_id"], [_part(p, text) for p in raw["content"]])
    raise ValueError(f"unknown part type {raw['type']}")


def _json_inner(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)[1:-1]


def dump(env: Envelope) -> str:
    """Everything in the envelope as one string, to search for values that must be gone."""
    return json.dumps(dataclasses.asdict(env), ensure_ascii=False, default=str)


def context() -> FilterContext:
    return FilterContext("req-1", Principal("k1", "test", "dept/team/proj"), "span-1", {})


def user(*texts: str) -> Envelope:
    """A request with one user message per text."""
    return Envelope(
        id="req-1",
        modality=Modality.CHAT,
        model="sim",
        messages=[Message("user", [TextPart(t)]) for t in texts],
    )


def reply(*parts: Part) -> Envelope:
    return Envelope(
        id="req-1",
        modality=Modality.CHAT,
        model="sim",
        messages=[Message("assistant", list(parts), finish_reason="stop")],
    )


async def chunks_of(items: Iterable[StreamChunk]) -> AsyncIterator[StreamChunk]:
    for item in items:
        yield item


def text_chunks(*pieces: str, index: int = 0) -> list[StreamChunk]:
    """A streamed text reply cut at the given pieces, finishing with "stop"."""
    out = [StreamChunk(index=index, role="assistant")]
    out.extend(StreamChunk(index=index, text=p) for p in pieces)
    out.append(StreamChunk(index=index, finish_reason="stop"))
    return out


async def collect(stream: AsyncIterator[StreamChunk]) -> list[StreamChunk]:
    return [chunk async for chunk in stream]


def joined_text(chunks: Iterable[StreamChunk], index: int = 0) -> str:
    return "".join(c.text or "" for c in chunks if c.index == index)


def joined_arguments(chunks: Iterable[StreamChunk], tool_index: int = 0) -> str:
    return "".join(d.arguments for c in chunks for d in c.tool_calls if d.index == tool_index)
