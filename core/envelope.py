"""The Envelope: one normalized unit of traffic, request or reply, for every modality.

Ingress adapters decode their wire into an Envelope and encode one back; egress adapters do the
reverse towards providers. Filters never read wire JSON: they reach text only through
`Envelope.visit_text`, which walks every place text can hide and tags each with a `Scope`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, TypeAlias, assert_never

from core.access import Principal


class Modality(StrEnum):
    CHAT = "chat"
    EMBEDDING = "embedding"
    VOICE = "voice"
    IMAGE = "image"
    VIDEO = "video"
    TOOL = "tool"
    MODERATION = "moderation"


class Scope(StrEnum):
    """Where a piece of text sits; filters and the redaction log speak in these."""

    SYSTEM = "system"
    MESSAGE = "message"
    TOOL_INPUT = "tool_input"
    TOOL_OUTPUT = "tool_output"
    TRANSCRIPT = "transcript"
    MEDIA_TEXT = "media_text"
    MEDIA = "media"  # an image or video itself: OCR boxes, stripped metadata


@dataclass(slots=True)
class TextPart:
    text: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ImagePart:
    """An image by URL; `data:` URLs carry the bytes inline."""

    url: str
    detail: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class AudioPart:
    """Base64 audio with its format (`wav`, `mp3`, `pcm16` …)."""

    data: str
    format: str
    transcript: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class VideoPart:
    url: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ToolCallPart:
    """A model's request to call a tool. `arguments` is JSON text, as models produce it."""

    id: str
    name: str
    arguments: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ToolResultPart:
    """What a tool returned, answering the call `tool_call_id`."""

    tool_call_id: str
    content: list[Part]
    is_error: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


Part: TypeAlias = TextPart | ImagePart | AudioPart | VideoPart | ToolCallPart | ToolResultPart


@dataclass(slots=True)
class Message:
    """One turn. Replies set `finish_reason`; `index` numbers the choices of one reply."""

    role: str
    parts: list[Part]
    name: str | None = None
    finish_reason: str | None = None
    index: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        """The concatenated text parts (tool results' text included)."""
        return "".join(_part_text(p) for p in self.parts)


def _part_text(part: Part) -> str:
    match part:
        case TextPart(text=text):
            return text
        case ToolResultPart(content=content):
            return "".join(_part_text(p) for p in content)
        case ImagePart() | AudioPart() | VideoPart() | ToolCallPart():
            return ""
        case _:
            assert_never(part)


@dataclass(slots=True)
class ToolSpec:
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class TraceContext:
    """Where a call sits in an agent's session: trace id = the session, spans nest by parent."""

    trace_id: str
    span_id: str
    parent_span_id: str | None = None
    agent_id: str | None = None
    session_id: str | None = None
    turn: int | None = None


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0
    audio_seconds: float = 0.0
    images: int = 0
    video_seconds: float = 0.0
    # What was made, for media price tiers: "quality/size" of images, the size of a video.
    media_tier: str | None = None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class Finding:
    """Something a filter noticed. Never holds the raw value it found."""

    filter: str
    kind: str
    scope: Scope
    action: str
    score: float | None = None
    start: int | None = None
    end: int | None = None
    value_hash: str | None = None


TextVisitor: TypeAlias = Callable[[Scope, str], str | None]
"""Called with each text and its scope; returns replacement text, or None to keep it."""


@dataclass(slots=True)
class Envelope:
    """A request or a reply, normalized. `extra` carries wire fields the gateway does not read."""

    id: str
    modality: Modality
    model: str
    messages: list[Message] = field(default_factory=list)
    tools: list[ToolSpec] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    trace: TraceContext | None = None
    principal: Principal | None = None
    # Replies only.
    usage: Usage | None = None
    cost_usd: float | None = None
    vectors: list[Any] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    # The wire a request came in on ("openai", "anthropic"), set by the ingress decoding it;
    # "" for envelopes built inside the gateway. Encoders forward a request's wire-specific
    # extras only to the same wire (see `adapters.wire`).
    source: str = ""

    def visit_text(self, visitor: TextVisitor) -> int:
        """Offer every text in the envelope to `visitor`, in order; apply its replacements.

        Returns the number of texts replaced. Tool-call arguments are JSON: each string inside
        them (keys excluded) is offered separately with scope TOOL_INPUT, and the arguments are
        re-serialized only when something changed.
        """
        changed = 0
        for message in self.messages:
            scope = Scope.SYSTEM if message.role in ("system", "developer") else Scope.MESSAGE
            changed += _visit_parts(message.parts, scope, visitor)
        return changed

    def text(self) -> str:
        """All message text joined by newlines (for token estimates and simple checks)."""
        return "\n".join(m.text() for m in self.messages)

    def for_model(self, model: str) -> Envelope:
        """A shallow copy addressed to `model` (what `dataclasses.replace(self, model=model)`
        gives, at a fraction of its cost: it runs once per upstream attempt)."""
        copy = Envelope.__new__(Envelope)
        for name in _ENVELOPE_FIELDS:
            setattr(copy, name, getattr(self, name))
        copy.model = model
        return copy


def _visit_parts(parts: list[Part], scope: Scope, visitor: TextVisitor) -> int:
    changed = 0
    for part in parts:
        match part:
            case TextPart():
                new = visitor(scope, part.text)
                if new is not None and new != part.text:
                    part.text = new
                    changed += 1
            case ToolCallPart():
                new_args, n = _visit_json_text(part.arguments, visitor)
                if n:
                    part.arguments = new_args
                    changed += n
            case ToolResultPart():
                changed += _visit_parts(part.content, Scope.TOOL_OUTPUT, visitor)
            case AudioPart():
                if part.transcript is not None:
                    new = visitor(Scope.TRANSCRIPT, part.transcript)
                    if new is not None and new != part.transcript:
                        part.transcript = new
                        changed += 1
            case ImagePart() | VideoPart():
                pass  # Media text (OCR) is visited by the media filter, which owns the pixels.
            case _:
                assert_never(part)
    return changed


def _visit_json_text(arguments: str, visitor: TextVisitor) -> tuple[str, int]:
    try:
        value = json.loads(arguments)
    except ValueError:
        # Half-formed arguments (a model's broken JSON) are still text someone could read.
        new = visitor(Scope.TOOL_INPUT, arguments)
        return (new, 1) if new is not None and new != arguments else (arguments, 0)
    counter = [0]
    new_value = _visit_json_value(value, visitor, counter)
    if not counter[0]:
        return arguments, 0
    return json.dumps(new_value, ensure_ascii=False), counter[0]


def _visit_json_value(value: Any, visitor: TextVisitor, counter: list[int]) -> Any:
    if isinstance(value, str):
        new = visitor(Scope.TOOL_INPUT, value)
        if new is not None and new != value:
            counter[0] += 1
            return new
        return value
    if isinstance(value, list):
        return [_visit_json_value(v, visitor, counter) for v in value]
    if isinstance(value, dict):
        return {k: _visit_json_value(v, visitor, counter) for k, v in value.items()}
    return value


@dataclass(slots=True)
class ToolCallDelta:
    """A piece of a streamed tool call: the first piece names it, later ones add arguments."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class StreamChunk:
    """One increment of a streamed reply, normalized across providers."""

    index: int = 0
    role: str | None = None
    text: str | None = None
    tool_calls: list[ToolCallDelta] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Where `text` sits, when not a reply message: a realtime voice transcript or a tool call's
    # arguments streamed as text. Stream filters label their findings with it (None: MESSAGE).
    scope: Scope | None = None

    @property
    def usage_only(self) -> bool:
        """Whether this chunk carries usage and nothing a client reads as content."""
        return (
            self.usage is not None
            and self.text is None
            and not self.tool_calls
            and self.finish_reason is None
            and self.role is None
        )


_ENVELOPE_FIELDS = tuple(f.name for f in fields(Envelope))
