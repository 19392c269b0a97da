"""The `/v1/moderations` wire both ways: inputs become one message each, results pass verbatim."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.wire.openai import (
    ModerationRequest,
    envelope_to_moderation_request,
    moderation_reply_from_wire,
    moderation_reply_to_wire,
    moderation_request_to_envelope,
)
from core.envelope import ImagePart, Modality, TextPart
from core.errors import UnsupportedContent


def _env(body: dict[str, Any]) -> Any:
    return moderation_request_to_envelope(ModerationRequest.model_validate(body), "req_1")


def test_strings_become_one_message_each_and_go_back_as_a_list() -> None:
    env = _env({"model": "guard", "input": ["one", "two"], "user": "u-1"})
    assert env.modality is Modality.MODERATION
    assert [m.text() for m in env.messages] == ["one", "two"]
    assert envelope_to_moderation_request(env) == {
        "user": "u-1",
        "model": "guard",
        "input": ["one", "two"],
    }
    assert envelope_to_moderation_request(_env({"model": "g", "input": "x"}))["input"] == ["x"]


def test_a_list_of_parts_is_one_input() -> None:
    env = _env(
        {
            "model": "guard",
            "input": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "https://img.example/a.png"}},
            ],
        }
    )
    (message,) = env.messages
    assert isinstance(message.parts[0], TextPart) and isinstance(message.parts[1], ImagePart)
    sent = envelope_to_moderation_request(env)["input"]
    assert [p["type"] for p in sent] == ["text", "image_url"]


def test_other_parts_are_refused_naming_the_input() -> None:
    with pytest.raises(UnsupportedContent) as caught:
        _env({"model": "g", "input": [{"type": "video_url", "video_url": {"url": "v.mp4"}}]})
    assert caught.value.param == "input"


def test_results_pass_through_verbatim() -> None:
    results = [{"flagged": True, "categories": {"hate": True}, "category_scores": {"hate": 0.9}}]
    request = _env({"model": "guard", "input": "x"})
    reply = moderation_reply_from_wire({"model": "up-1", "results": results}, request)
    assert reply.extra["results"] == results
    assert moderation_reply_to_wire(reply, "modr-1") == {
        "id": "modr-1",
        "model": "up-1",
        "results": results,
    }
    odd = moderation_reply_from_wire({"results": "nope"}, request)
    assert odd.extra["results"] == [] and odd.model == "guard"
