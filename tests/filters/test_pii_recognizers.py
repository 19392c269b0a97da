"""Our recognizers validate what they find, and every recognizer works inside Chinese text."""
# ruff: noqa: RUF001  (full-width Chinese punctuation is the point of these tests)

from __future__ import annotations

import pytest

from filters.pii import Detection, PIIAnalyzer
from filters.pii.engine import merge_overlaps, neutralize_cjk
from filters.pii.recognizers import (
    BankCardRecognizer,
    CnMobileRecognizer,
    CnResidentIdRecognizer,
    PassportRecognizer,
    cn_id_checksum_ok,
    luhn_ok,
)

VALID_ID = "11010519491231002X"


def _values(text: str, found: list[Detection] | tuple[Detection, ...]) -> list[str]:
    return [text[d.start : d.end] for d in found]


def test_resident_id_checksum_accepts_valid_and_rejects_altered_numbers() -> None:
    assert cn_id_checksum_ok(VALID_ID)
    assert cn_id_checksum_ok(VALID_ID.lower())
    assert cn_id_checksum_ok("110101199003071233")
    assert not cn_id_checksum_ok("110101199003071234")  # wrong check digit
    assert not cn_id_checksum_ok("11010519491231003X")  # one digit changed
    assert not cn_id_checksum_ok("110101199013071238")  # month 13 (checksum fixed up)


def test_resident_id_recognizer_finds_only_valid_ids_inside_chinese() -> None:
    text = f"身份证号{VALID_ID}，另一个110101199003071234无效。"
    assert _values(text, CnResidentIdRecognizer().find(text)) == [VALID_ID]


def test_bank_card_needs_a_luhn_valid_number_of_13_to_19_digits() -> None:
    assert luhn_ok("6222021234567890128")
    assert not luhn_ok("6222021234567890127")
    text = "卡号6222 0212 3456 7890 128，旧卡6222021234567890127，零0000000000000000"
    assert _values(text, BankCardRecognizer().find(text)) == ["6222 0212 3456 7890 128"]


def test_mobile_numbers_are_found_in_chinese_with_or_without_country_code() -> None:
    text = "请拨打13912345678或+86 139-1234-5678，订单号213912345678不是。"
    assert _values(text, CnMobileRecognizer().find(text)) == ["13912345678", "+86 139-1234-5678"]


def test_passport_numbers_count_only_next_to_a_context_word() -> None:
    recognizer = PassportRecognizer()
    assert _values("护照E12345678", recognizer.find("护照E12345678")) == ["E12345678"]
    assert _values("Passport no. G1234567", recognizer.find("Passport no. G1234567")) == [
        "G1234567"
    ]
    assert recognizer.find("Order E12345678 shipped") == []


def test_presidio_recognizers_find_values_glued_to_chinese_characters(
    analyzer: PIIAnalyzer,
) -> None:
    text = "邮箱jane.roe@example.com，卡号4111111111111111号码219-09-9999结束"
    found = analyzer.analyze(text, ["EMAIL_ADDRESS", "CREDIT_CARD", "US_SSN"])
    assert _values(text, found) == ["jane.roe@example.com", "4111111111111111", "219-09-9999"]


def test_neutralizing_chinese_keeps_every_offset() -> None:
    text = "邮箱a@b.com，𠀀x"
    blank = neutralize_cjk(text)
    assert len(blank) == len(text)
    assert blank == "  a@b.com， x"


def test_overlapping_detections_merge_into_their_union_named_by_the_surest() -> None:
    found = [
        Detection("URL", 5, 12, 0.5),
        Detection("EMAIL_ADDRESS", 0, 20, 1.0),
        Detection("URL", 18, 25, 0.5),
    ]
    assert merge_overlaps(found) == (Detection("EMAIL_ADDRESS", 0, 25, 1.0),)


@pytest.mark.parametrize(
    ("entity", "text"),
    [
        ("CN_RESIDENT_ID", "他的身份证号码是11010519491231002X。"),
        ("CN_MOBILE", "手机：13912345678"),
        ("BANK_CARD", "工资卡6222021234567890128到账"),
        ("PASSPORT", "护照号码E12345678"),
        ("EMAIL_ADDRESS", "请发邮件到jane.roe@example.com谢谢"),
        ("PHONE_NUMBER", "美国电话+1 212-555-0147请回电"),
    ],
)
def test_chinese_sentences_are_analysed_not_skipped(
    analyzer: PIIAnalyzer, entity: str, text: str
) -> None:
    assert [d.entity for d in analyzer.analyze(text, [entity])] == [entity]


def test_email_domains_judged_once_per_host_as_the_extractor_judges_each_address() -> None:
    import tldextract

    from filters.pii.engine import _OfflineEmailRecognizer

    extract = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)
    recognizer = _OfflineEmailRecognizer(extract, max_hosts=8)
    locals_ = ["a", "user-00ab12", "x//y", "http:", "s://t", "[::1]", "a:b", "a?b", "a#b", "//"]
    hosts = ["example.com", "example.co.uk", "localhost", "example.invalidtld", "mail.example.",
             "EXAMPLE.COM", "192.0.2.1", "[2001:db8::1]", "example.com:25", "a.b",
             "example"]  # fmt: skip
    seen = set()
    for host in hosts * 2:  # the second pass answers from what the first kept (or re-judged)
        for local in locals_:
            text = f"{local}@{host}"
            expected = extract(text).fqdn != ""
            assert recognizer.validate_result(text) is expected, text
            seen.add(expected)
    assert seen == {True, False}
