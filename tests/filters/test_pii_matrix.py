"""The position matrix: every planted value, in every scope, under every rewriting action."""

from __future__ import annotations

import re

import pytest

from core.errors import ContentBlocked
from core.filtering import Continue, Reject, Rewrite
from filters.pii import PIIAnalyzer, PIIFilter
from tests.filters.pii_support import SECRET, Planted, Position, context, dump, load_matrix

MATRIX = load_matrix()
PATTERN_VALUES = [v for v in MATRIX.values if not v.ner_only]
REWRITING = ["redact", "mask", "hash", "pseudonymize"]


def _forms(value: str) -> list[str]:
    """The value as planted, and with its separators dropped (as a leak could also appear)."""
    bare = re.sub(r"[\s\-]", "", value)
    return [value] if bare == value else [value, bare]


@pytest.mark.anyio
@pytest.mark.parametrize("action", REWRITING)
@pytest.mark.parametrize("planted", PATTERN_VALUES, ids=lambda v: v.entity)
@pytest.mark.parametrize("position", MATRIX.positions, ids=lambda p: p.name)
async def test_no_planted_value_survives_in_any_scope(
    analyzer: PIIAnalyzer, position: Position, planted: Planted, action: str
) -> None:
    pii = PIIFilter(
        secret=SECRET,
        action=action,  # type: ignore[arg-type]
        entities=[v.entity for v in PATTERN_VALUES],
        analyzer=analyzer,
    )
    env = position.envelope(planted.text)
    decision = await pii.on_request(env, context())

    assert isinstance(decision, Rewrite)
    text = dump(decision.envelope)
    for form in _forms(planted.value):
        assert form not in text
    found = [f for f in decision.envelope.findings if f.kind == planted.entity]
    assert found, f"no {planted.entity} finding"
    assert all(f.scope == position.scope and f.action == action for f in found)
    assert all(f.value_hash and planted.value not in f.value_hash for f in found)


@pytest.mark.anyio
@pytest.mark.parametrize("planted", PATTERN_VALUES, ids=lambda v: v.entity)
@pytest.mark.parametrize("position", MATRIX.positions, ids=lambda p: p.name)
async def test_block_refuses_every_scope_naming_the_type_only(
    analyzer: PIIAnalyzer, position: Position, planted: Planted
) -> None:
    pii = PIIFilter(
        secret=SECRET,
        action="block",
        entities=[v.entity for v in PATTERN_VALUES],
        analyzer=analyzer,
    )
    decision = await pii.on_request(position.envelope(planted.text), context())

    assert isinstance(decision, Reject)
    assert isinstance(decision.error, ContentBlocked)
    assert planted.entity in decision.error.message
    assert all(form not in decision.error.message for form in _forms(planted.value))


@pytest.mark.anyio
@pytest.mark.parametrize("position", MATRIX.positions, ids=lambda p: p.name)
async def test_pseudonyms_from_any_scope_are_restored_when_echoed_back(
    analyzer: PIIAnalyzer, position: Position
) -> None:
    planted = MATRIX.value("EMAIL_ADDRESS")
    pii = PIIFilter(secret=SECRET, action="pseudonymize", analyzer=analyzer)
    ctx = context()
    decision = await pii.on_request(position.envelope(planted.text), ctx)
    assert isinstance(decision, Rewrite)
    assert "<EMAIL_ADDRESS_1>" in dump(decision.envelope)

    # A model that echoes every text back: the reply must show the user's own value again.
    echoed = await pii.on_response(decision.envelope, ctx)
    assert isinstance(echoed, Rewrite)
    assert planted.value in dump(echoed.envelope)
    assert "<EMAIL_ADDRESS_1>" not in dump(echoed.envelope)


@pytest.mark.anyio
async def test_text_without_any_entity_passes_unchanged(analyzer: PIIAnalyzer) -> None:
    pii = PIIFilter(secret=SECRET, analyzer=analyzer)
    position = MATRIX.positions[0]
    decision = await pii.on_request(
        position.envelope("Nothing personal here, 42 times."), context()
    )
    assert isinstance(decision, Continue)


@pytest.fixture(scope="module")
def ner_analyzer() -> PIIAnalyzer:
    # The `ner` extra's model (installed with the test extra); loading it takes about a second.
    shared = PIIAnalyzer(ner=True)
    shared.load()
    return shared


@pytest.mark.anyio
@pytest.mark.parametrize("position", MATRIX.positions, ids=lambda p: p.name)
async def test_a_persons_name_in_any_scope_is_pseudonymized_and_restored_with_ner(
    ner_analyzer: PIIAnalyzer, position: Position
) -> None:
    planted = MATRIX.value("PERSON")
    pii = PIIFilter(secret=SECRET, ner=True, action="pseudonymize", analyzer=ner_analyzer)
    ctx = context()
    decision = await pii.on_request(position.envelope(planted.text), ctx)
    assert isinstance(decision, Rewrite)
    sent = dump(decision.envelope)
    assert planted.value not in sent and "<PERSON_1>" in sent
    assert [f.scope for f in decision.envelope.findings if f.kind == "PERSON"] == [position.scope]
    echoed = await pii.on_response(decision.envelope, ctx)
    assert isinstance(echoed, Rewrite) and planted.value in dump(echoed.envelope)
