"""Construction: offline by design, clear errors for what cannot work, actions per entity."""

from __future__ import annotations

import importlib.util
import socket
from typing import Any

import pytest

import filters.pii
from core.config import ConfigError, PiiFilter
from core.filtering import Reject, Rewrite
from filters.pii import PIIAnalyzer, PIIFilter, build_pii_filter
from filters.pii.engine import NER_MODEL, NER_PACKAGE
from filters.pii.entities import CUSTOM_ENTITIES, PATTERN_ENTITIES
from tests.filters.pii_support import SECRET, context, user

EMAIL = "jane.roe@example.com"


def test_no_network_is_touched_loading_or_analysing_email_and_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(repr(args[:2]))
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    fresh = PIIAnalyzer()  # a new one: its suffix list has never been read
    text = f"Mail {EMAIL} or see https://docs.example.org/a?b=1"
    found = fresh.analyze(text, ["EMAIL_ADDRESS", "URL"])

    assert attempts == []
    assert [text[d.start : d.end] for d in found] == [EMAIL, "https://docs.example.org/a?b=1"]


def test_the_entity_catalog_matches_what_presidio_loads(analyzer: PIIAnalyzer) -> None:
    assert analyzer.presidio_entities() == PATTERN_ENTITIES
    assert analyzer.supported == PATTERN_ENTITIES | CUSTOM_ENTITIES


def test_ner_without_the_model_package_fails_at_construction_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The test extra installs the model; here the import system is told it is not there.
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == NER_MODEL else find_spec(name, *args),
    )
    with pytest.raises(ConfigError, match=NER_PACKAGE):
        PIIFilter(secret=SECRET, ner=True)


def test_a_ner_only_entity_in_pattern_mode_is_a_config_error(analyzer: PIIAnalyzer) -> None:
    with pytest.raises(ConfigError, match="PERSON is found only by NER"):
        PIIFilter(secret=SECRET, entities=["EMAIL_ADDRESS", "PERSON"], analyzer=analyzer)


def test_an_unknown_entity_or_action_is_a_config_error(analyzer: PIIAnalyzer) -> None:
    with pytest.raises(ConfigError, match="unknown entity 'EMAIL'"):
        PIIFilter(secret=SECRET, entities=["EMAIL"], analyzer=analyzer)
    with pytest.raises(ConfigError, match="'scramble'"):
        PIIFilter(secret=SECRET, actions={"EMAIL_ADDRESS": "scramble"}, analyzer=analyzer)  # type: ignore[dict-item]


def test_an_empty_secret_is_refused(analyzer: PIIAnalyzer) -> None:
    with pytest.raises(ValueError, match="secret"):
        PIIFilter(secret=b"", analyzer=analyzer)


def test_build_from_config_takes_every_setting() -> None:
    config = PiiFilter(
        action="mask", entities=["EMAIL_ADDRESS"], timeout_ms=150, fail="open", ner=False
    )
    pii = build_pii_filter(config, secret=SECRET)
    assert pii.name == "pii"
    assert pii.entities == ("EMAIL_ADDRESS",)
    assert (pii.redactor.default, pii.timeout, pii.fail) == ("mask", 0.15, "open")


@pytest.mark.anyio
async def test_actions_can_differ_per_entity(analyzer: PIIAnalyzer) -> None:
    pii = PIIFilter(
        secret=SECRET,
        action="redact",
        actions={"PHONE_NUMBER": "mask", "CN_MOBILE": "hash"},
        analyzer=analyzer,
    )
    decision = await pii.on_request(user(f"{EMAIL}, +1 212-555-0147, 13912345678"), context())
    assert isinstance(decision, Rewrite)
    text = decision.envelope.messages[0].text()
    assert text.startswith("<EMAIL_ADDRESS>, ***********0147, <CN_MOBILE_")
    assert [f.action for f in decision.envelope.findings] == ["redact", "mask", "hash"]


@pytest.mark.anyio
async def test_one_blocked_entity_refuses_the_request_naming_all_blocked_types(
    analyzer: PIIAnalyzer,
) -> None:
    pii = PIIFilter(
        secret=SECRET,
        actions={"EMAIL_ADDRESS": "block", "US_SSN": "block"},
        analyzer=analyzer,
    )
    decision = await pii.on_request(
        user(f"{EMAIL}", "SSN 219-09-9999, call 13912345678"), context()
    )
    assert isinstance(decision, Reject)
    assert decision.error.message == "request contains EMAIL_ADDRESS, US_SSN"


@pytest.mark.anyio
async def test_hash_tokens_are_stable_per_secret(analyzer: PIIAnalyzer) -> None:
    async def token(secret: bytes, text: str) -> str:
        pii = PIIFilter(secret=secret, action="hash", analyzer=analyzer)
        decision = await pii.on_request(user(text), context())
        assert isinstance(decision, Rewrite)
        return decision.envelope.messages[0].text()

    first = await token(SECRET, "card 4111 1111 1111 1111")
    assert first == await token(SECRET, "card 4111-1111-1111-1111")  # same value, other spelling
    assert first != await token(b"another secret", "card 4111 1111 1111 1111")
    assert first.startswith("card <CREDIT_CARD_") and len(first) == len("card <CREDIT_CARD_>") + 8


def test_the_package_surface_is_what_all_says() -> None:
    for name in filters.pii.__all__:
        assert hasattr(filters.pii, name), name
    assert {"PIIFilter", "build_pii_filter"} <= set(filters.pii.__all__)
