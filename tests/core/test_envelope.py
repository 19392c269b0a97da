"""The text visitor reaches every place text can hide, with the right scope."""

from __future__ import annotations

import json

from core.envelope import (
    AudioPart,
    Envelope,
    ImagePart,
    Message,
    Modality,
    Scope,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)


def sample() -> Envelope:
    return Envelope(
        id="r",
        modality=Modality.CHAT,
        model="m",
        messages=[
            Message("system", [TextPart("sys secret")]),
            Message("user", []),  # an earlier message with no text must not stop the walk
            Message("user", [TextPart("user secret"), ImagePart("data:,x")]),
            Message(
                "assistant", [ToolCallPart("c1", "f", '{"a": "arg secret", "n": [1, "x secret"]}')]
            ),
            Message("tool", [ToolResultPart("c1", [TextPart("result secret")])]),
            Message("user", [AudioPart("AAAA", "wav", transcript="spoken secret")]),
            Message("assistant", [ToolCallPart("c2", "g", "not json secret")]),
        ],
    )


def test_visitor_sees_every_text_with_its_scope() -> None:
    seen: list[tuple[Scope, str]] = []

    def record(scope: Scope, text: str) -> None:
        seen.append((scope, text))

    sample().visit_text(record)
    assert seen == [
        (Scope.SYSTEM, "sys secret"),
        (Scope.MESSAGE, "user secret"),
        (Scope.TOOL_INPUT, "arg secret"),
        (Scope.TOOL_INPUT, "x secret"),
        (Scope.TOOL_OUTPUT, "result secret"),
        (Scope.TRANSCRIPT, "spoken secret"),
        (Scope.TOOL_INPUT, "not json secret"),
    ]


def test_visitor_rewrites_in_place_everywhere() -> None:
    env = sample()
    changed = env.visit_text(lambda scope, text: text.replace("secret", "[X]"))
    assert changed == 7
    leftovers: list[str] = []

    def record(scope: Scope, text: str) -> None:
        leftovers.append(text)

    env.visit_text(record)
    assert all("secret" not in t for t in leftovers)
    args = json.loads(env.messages[3].parts[0].arguments)  # type: ignore[union-attr]
    assert args == {"a": "arg [X]", "n": [1, "x [X]"]}


def test_untouched_tool_arguments_keep_their_exact_text() -> None:
    env = sample()
    original = env.messages[3].parts[0].arguments  # type: ignore[union-attr]
    env.visit_text(lambda scope, text: None)
    assert env.messages[3].parts[0].arguments == original  # type: ignore[union-attr]
