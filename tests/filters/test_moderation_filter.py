"""The moderation filter on whole requests and replies: every scope, block versus flag."""

from __future__ import annotations

import dataclasses

import pytest

from core.config import ConfigError
from core.config import ModerationFilter as ModerationConfig
from core.envelope import Scope, TextPart, ToolResultPart
from core.errors import ContentBlocked
from core.filtering import Continue, Filter, Reject
from filters.moderation import CategorySpec, ModerationFilter, build_moderation_filter
from tests.filters.pii_support import Position, context, dump, load_matrix, reply, user

THREAT = "I will find where you live and hurt your family"
POSITIONS = load_matrix().positions


@pytest.mark.anyio
@pytest.mark.parametrize("position", POSITIONS, ids=lambda p: p.name)
async def test_a_threat_is_blocked_in_every_scope(position: Position) -> None:
    env = position.envelope(THREAT)
    decision = await ModerationFilter(action="block").on_request(env, context())

    assert isinstance(decision, Reject)
    assert isinstance(decision.error, ContentBlocked)
    assert "violence" in decision.error.message
    assert {(f.kind, f.scope) for f in env.findings} == {("violence", position.scope)}


@pytest.mark.anyio
@pytest.mark.parametrize("position", POSITIONS, ids=lambda p: p.name)
async def test_a_threat_is_flagged_in_every_scope_and_passes(position: Position) -> None:
    env = position.envelope(THREAT)
    decision = await ModerationFilter(action="flag").on_request(env, context())

    assert decision == Continue()
    [finding] = env.findings
    assert (finding.filter, finding.kind, finding.scope, finding.action) == (
        "moderation",
        "violence",
        position.scope,
        "flag",
    )


@pytest.mark.anyio
@pytest.mark.parametrize("position", POSITIONS, ids=lambda p: p.name)
async def test_benign_text_passes_in_every_scope(position: Position) -> None:
    env = position.envelope("Please kill the process on port 8080, then shoot a photo.")
    assert await ModerationFilter().on_request(env, context()) == Continue()
    assert env.findings == []


@pytest.mark.anyio
async def test_a_reply_is_checked_too() -> None:
    env = reply(TextPart("我知道你住在哪\uff0c迟早弄死你。"))
    decision = await ModerationFilter().on_response(env, context())

    assert isinstance(decision, Reject)
    assert decision.error.message.startswith("reply flagged for violence")


@pytest.mark.anyio
async def test_block_names_every_category_found_but_never_the_text() -> None:
    text = "I will hurt you and then I want to kill myself"
    env = user(text)
    decision = await ModerationFilter().on_request(env, context())

    assert isinstance(decision, Reject)
    message = decision.error.message
    assert "self_harm" in message
    assert "violence" in message
    for word in ("hurt", "kill", "myself", text):
        assert word not in message
        assert word not in dump(env).replace(text, "")


@pytest.mark.anyio
async def test_findings_hold_categories_and_scopes_only() -> None:
    env = reply(ToolResultPart("call-1", [TextPart("外地人都该死。")]))
    await ModerationFilter(action="flag").on_response(env, context())

    [finding] = env.findings
    fields = dataclasses.asdict(finding)
    assert fields["kind"] == "hate"
    assert fields["scope"] == Scope.TOOL_OUTPUT
    assert not any("外地人" in str(v) for v in fields.values())


@pytest.mark.anyio
async def test_full_width_and_leetspeak_are_read_through() -> None:
    full_width = "".join(chr(ord(c) + 0xFEE0) if c != " " else "\u3000" for c in "i will kill you")
    for text in (full_width, "I'll K1LL you", "5uicide"):
        env = user(text)
        assert isinstance(await ModerationFilter().on_request(env, context()), Reject)


@pytest.mark.anyio
async def test_latin_terms_match_whole_words_only() -> None:
    env = user("The skill you need is patience; self-harmony is a band name.")
    assert await ModerationFilter().on_request(env, context()) == Continue()


@pytest.mark.anyio
async def test_custom_category_matches_its_terms_and_patterns() -> None:
    moderation = ModerationFilter(
        categories={
            "competitors": CategorySpec(
                terms=("Acme Corp", "竞品公司"), patterns=(r"acme\s?cloud",)
            )
        }
    )
    for text in ("Compare us with ACME corp", "AcmeCloud pricing", "介绍一下竞品公司的产品"):
        decision = await moderation.on_request(user(text), context())
        assert isinstance(decision, Reject)
        assert "competitors" in decision.error.message
    assert await moderation.on_request(user("Acme Corporation"), context()) == Continue()


@pytest.mark.anyio
async def test_enabled_restricts_the_categories_checked() -> None:
    moderation = ModerationFilter(enabled=["self_harm"])
    assert moderation.categories == ("self_harm",)
    assert await moderation.on_request(user(THREAT), context()) == Continue()


def test_a_custom_pattern_that_does_not_compile_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"categories\.broken"):
        ModerationFilter(categories={"broken": CategorySpec(patterns=("(unclosed",))})


def test_an_unknown_enabled_category_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown nope"):
        ModerationFilter(enabled=["nope"])


def test_build_takes_the_action_from_config() -> None:
    built = build_moderation_filter(ModerationConfig(action="flag"))
    assert built.action == "flag"
    assert built.classifier is None


def test_build_refuses_a_model_without_a_classifier_to_reach_it() -> None:
    with pytest.raises(ConfigError, match=r"filters\.moderation\.model"):
        build_moderation_filter(ModerationConfig(model="omni-moderation"))


def test_the_moderation_filter_is_a_filter() -> None:
    moderation: Filter = ModerationFilter()
    assert moderation.name == "moderation"
