"""`filters.pii` options: allow and deny lists, custom regex recognizers, languages, and
actions per key or team.

Each is read from the YAML config (so a mistake is a ConfigError naming the key at load) and
changes what reaches the upstream.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.access import Principal
from core.config import ConfigError, PiiFilter, PiiRecognizer, load_config
from core.envelope import TextPart
from core.filtering import Continue, FilterContext, Reject, Rewrite
from filters.pii import PIIAnalyzer, PIIFilter, build_pii_filter
from tests.filters.pii_support import SECRET, context, dump, reply, user

SUPPORT = "helpdesk@example.com"


def _load(tmp_path: Path, pii: str) -> PiiFilter:
    path = tmp_path / "agentgw.yaml"
    path.write_text(f"filters:\n  pii:\n{pii}")
    config = load_config(path, env={})
    assert config.filters.pii is not None
    return config.filters.pii


async def _sent(pii: PIIFilter, text: str) -> str:
    env = user(text)
    decision = await pii.on_request(env, context())
    assert isinstance(decision, Rewrite | Continue)
    return dump(env)


@pytest.mark.anyio
async def test_allow_and_deny_lists_from_the_config(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        f"    allow_list: [{SUPPORT.upper()}]\n    deny_list: {{PROJECT: [Nightjar, 夜鹰计划]}}\n",
    )
    pii = build_pii_filter(config, secret=SECRET)
    sent = await _sent(pii, f"Ask {SUPPORT} or jane.roe@example.com about nightjar and 夜鹰计划.")
    assert SUPPORT in sent  # allowed (case-insensitive)
    assert "jane.roe@example.com" not in sent and "<EMAIL_ADDRESS>" in sent
    assert "nightjar" not in sent.lower() and "夜鹰计划" not in sent
    assert sent.count("<PROJECT>") == 2
    # A longer word that merely contains a denied value is not it.
    assert "Nightjars" in await _sent(pii, "Nightjars nest on the ground.")


@pytest.mark.anyio
async def test_a_custom_recognizer_with_context_words(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        "    actions: {EMPLOYEE_ID: hash}\n"
        "    recognizers:\n"
        "      - {name: EMPLOYEE_ID, pattern: 'E-\\d{6}', score: 0.8, context: [employee, 工号]}\n",
    )
    pii = build_pii_filter(config, secret=SECRET)
    assert "EMPLOYEE_ID" in pii.entities
    text = "Employee E-123456 and 工号E-654321 left. " + "Nothing else to say here. " * 3
    sent = await _sent(pii, text + "Order part E-111111, a bolt.")
    assert "E-123456" not in sent and "E-654321" not in sent
    assert "<EMPLOYEE_ID_" in sent
    assert "E-111111" in sent  # no context word near it


@pytest.mark.anyio
async def test_a_custom_recognizer_runs_even_where_the_pre_check_skips_analysis() -> None:
    codename = PiiRecognizer(name="CODENAME", pattern=r"\bOperation [A-Z]\w+")
    config = PiiFilter(recognizers=[codename])
    pii = build_pii_filter(config, secret=SECRET)
    # No digit and no '@': the built-in entities would skip this text entirely.
    sent = await _sent(pii, "Operation Bluebird starts at dawn.")
    assert "Bluebird" not in sent and "<CODENAME>" in sent


@pytest.mark.parametrize(
    ("pii", "key"),
    [
        ("    recognizers: [{name: EMP, pattern: 'E-(\\d'}]\n", "pii.recognizers[0].pattern"),
        ("    recognizers: [{name: emp id, pattern: 'x'}]\n", "filters.pii.recognizers[0].name"),
        ("    recognizers: [{name: EMP, pattern: 'x', score: 2}]\n", "recognizers[0].score"),
        ("    deny_list: {PROJECT: nightjar}\n", "filters.pii.deny_list.PROJECT"),
        ("    allow_list: nightjar\n", "filters.pii.allow_list"),
    ],
)
def test_a_bad_option_is_a_config_error_naming_the_key(tmp_path: Path, pii: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        _load(tmp_path, pii)


def test_a_value_both_allowed_and_denied_is_refused(tmp_path: Path) -> None:
    config = _load(tmp_path, "    allow_list: [Nightjar]\n    deny_list: {PROJECT: [nightjar]}\n")
    with pytest.raises(ConfigError, match=r"deny_list\.PROJECT: 1 value\(s\) are in allow_list"):
        build_pii_filter(config, secret=SECRET)


@pytest.mark.anyio
async def test_languages_choose_the_language_specific_entities(analyzer: PIIAnalyzer) -> None:
    english = PIIFilter(secret=SECRET, languages=["en"], analyzer=analyzer)
    assert "CN_MOBILE" not in english.entities and "EMAIL_ADDRESS" in english.entities
    both = PIIFilter(secret=SECRET, analyzer=analyzer)
    sent = await _sent(both, "手机13812345678\uff0c邮箱 jane.roe@example.com")
    assert "13812345678" not in sent and "jane.roe@example.com" not in sent
    with pytest.raises(ConfigError, match="fr not supported"):
        PIIFilter(secret=SECRET, languages=["fr"], analyzer=analyzer)
    with pytest.raises(ConfigError, match="CN_MOBILE needs 'zh'"):
        PIIFilter(secret=SECRET, languages=["en"], entities=["CN_MOBILE"], analyzer=analyzer)


def _caller(key_id: str, key_name: str, org_path: str) -> FilterContext:
    return FilterContext("req-1", Principal(key_id, key_name, org_path), "span-1", {})


@pytest.mark.anyio
async def test_a_key_or_team_policy_replaces_the_actions_for_its_callers(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        "    action: redact\n"
        "    policies:\n"
        "      - match: {org_paths: [finance/payments]}\n"
        "        action: block\n"
        "      - match: {keys: [support-bot]}\n"
        "        actions: {EMAIL_ADDRESS: pseudonymize}\n",
    )
    pii = build_pii_filter(config, secret=SECRET)
    text = "Mail jane.roe@example.com please."

    # The payments team (and teams below it) may not send it at all.
    refused = await pii.on_request(user(text), _caller("k1", "ledger", "finance/payments/eu"))
    assert isinstance(refused, Reject) and "EMAIL_ADDRESS" in refused.error.message
    # Not a prefix match on a sibling team's name.
    other = user(text)
    await pii.on_request(other, _caller("k2", "ledger", "finance/paymentsx"))
    assert "<EMAIL_ADDRESS>" in dump(other)
    # The support bot's key (by name) gets pseudonyms, restored in its reply.
    ctx = _caller("k3", "support-bot", "support/desk")
    bot = user(text)
    await pii.on_request(bot, ctx)
    assert "<EMAIL_ADDRESS_1>" in dump(bot)
    answer = reply(TextPart("Sent to <EMAIL_ADDRESS_1>."))
    await pii.on_response(answer, ctx)
    assert "jane.roe@example.com" in dump(answer)


def test_a_policy_that_matches_nobody_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"policies\[0\]\.match"):
        _load(tmp_path, "    policies: [{match: {}, action: block}]\n")


@pytest.mark.anyio
async def test_per_entity_score_thresholds(tmp_path: Path) -> None:
    text = "Call +1 212-555-0147 or mail jane.roe@example.com."
    strict = build_pii_filter(
        _load(tmp_path, "    thresholds: {PHONE_NUMBER: 0.99}\n"), secret=SECRET
    )
    sent = await _sent(strict, text)
    assert "+1 212-555-0147" in sent and "<EMAIL_ADDRESS>" in sent
    low = build_pii_filter(
        _load(tmp_path, "    score_threshold: 0.99\n    thresholds: {PHONE_NUMBER: 0.3}\n"),
        secret=SECRET,
    )
    sent = await _sent(low, text)
    assert "<PHONE_NUMBER>" in sent and "<EMAIL_ADDRESS>" in sent  # e-mails score 1.0
    with pytest.raises(ConfigError, match=r"filters\.pii\.thresholds: PERSON not checked"):
        build_pii_filter(_load(tmp_path, "    thresholds: {PERSON: 0.5}\n"), secret=SECRET)
    with pytest.raises(ConfigError, match=r"filters\.pii\.thresholds: must be in 0\.\.1"):
        _load(tmp_path, "    thresholds: {PHONE_NUMBER: 5}\n")
