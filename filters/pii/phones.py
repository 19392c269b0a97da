"""Phone numbers: Presidio's phone recognizer, with phonenumbers' matcher made cheaper.

Presidio runs phonenumbers' matcher once per region (8 passes over the text) and parses every
candidate in each. The answers here are the same (spans and scores; a test compares them on a
corpus) for less work:

- a text with no candidate at all is skipped (each pass starts with the same regex search);
- the candidates (a regex scan, the same for every region) are found once per text;
- a candidate with too few digits to be valid in a region is not parsed for it (`_fewest_digits`);
- nor is one of plain digits that no reading makes a valid number of the region (`_NationalRule`:
  ids, order numbers, the hex tokens of the gateway benchmark's unique prompts);
- verdicts are remembered, keyed on the candidate (its neighbours are checked before): across
  places in a text, across regions for '+' numbers, across texts for repeated numbers;
- the regions walk the text together, candidate by candidate, as long as their walks agree
  (`_walk`);
- a candidate that phonenumbers turns away before parsing in every region (too few digits, a
  letter touching it, as in a hex id's "ab12cd") is judged once per text, not once per region, and
  a text whose every candidate is such is answered at once.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumber, PhoneNumberMatch
from phonenumbers.phonenumberutil import (
    COUNTRY_CODE_TO_REGION_CODE,
    COUNTRY_CODES_FOR_NON_GEO_REGIONS,
    SUPPORTED_REGIONS,
)
from phonenumbers.re_util import fullmatch, re_compile
from presidio_analyzer import RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from presidio_analyzer.predefined_recognizers import PhoneRecognizer

from filters.pii.patterns import remove_duplicates

# phonenumbers' candidate pattern: every match its matcher reports, in any region, starts as a hit
# of this expression, so a text without one holds no phone number.
_PHONE_CANDIDATE: re.Pattern[str] = phonenumbers.phonenumbermatcher._PATTERN
# phonenumbers' own switch: keep every metadata pattern it compiles (same results). Without it,
# each parse compiles its patterns again through `re`'s bounded cache, which they overflow.
phonenumbers.enable_pattern_cache()
_SECOND_NUMBER_START: re.Pattern[str] = vars(phonenumbers.phonenumbermatcher)[
    "_SECOND_NUMBER_START_PATTERN"
]
# The fewest digits a valid number's national part has, in any region (min of every region's
# possible lengths: 4); the national part is made of the candidate's digits (letters, in vanity
# numbers), so a candidate with fewer digits and letters than this is valid nowhere.
# (An empty list would mean "any length": then no floor at all.)
_MIN_VALID_DIGITS = min(
    min(meta.general_desc.possible_length, default=1)
    for meta in (
        *(phonenumbers.PhoneMetadata.metadata_for_region(r) for r in SUPPORTED_REGIONS),
        *(
            phonenumbers.PhoneMetadata.metadata_for_nongeo_region(c)
            for c in COUNTRY_CODES_FOR_NON_GEO_REGIONS
        ),
    )
    if meta is not None and meta.general_desc is not None
)
_MATCHER = vars(phonenumbers.phonenumbermatcher)
_INNER_MATCHES: tuple[re.Pattern[str], ...] = _MATCHER["_INNER_MATCHES"]
_UNWANTED_END_CHAR: re.Pattern[str] = _MATCHER["_UNWANTED_END_CHAR_PATTERN"]
_SLASH_SEPARATED_DATES: re.Pattern[str] = _MATCHER["_SLASH_SEPARATED_DATES"]
_TIME_STAMPS: re.Pattern[str] = _MATCHER["_TIME_STAMPS"]
_TIME_STAMPS_SUFFIX: re.Pattern[str] = _MATCHER["_TIME_STAMPS_SUFFIX"]
_MATCHING_BRACKETS: re.Pattern[str] = _MATCHER["_MATCHING_BRACKETS"]
_PUB_PAGES: re.Pattern[str] = _MATCHER["_PUB_PAGES"]
_LEAD_PATTERN: re.Pattern[str] = _MATCHER["_LEAD_PATTERN"]
_Matcher = phonenumbers.PhoneNumberMatcher
_PLUS_SIGNS = "+\uff0b"  # phonenumbers' plus characters
_ASCII_DIGITS = frozenset("0123456789")
_HEAD_SCAN = 16  # characters after the '+' signs looked at for the code's three digits


@dataclass(frozen=True, slots=True)
class _Plan:
    """What phonenumbers' matcher tries for one candidate, whatever the region.

    `dated`: it is skipped as a date or a time stamp. `inner`: per inner pattern, the parts
    `_extract_inner_match` would parse in turn (the text before the first inner match, then
    each inner match), with their offsets. `dead`: no region can find a number in it (dated, or
    the candidate and each part refused before parsing, see `_refused`); `tries`: how many tries
    `_extract_match` then uses up (one per part, when the matcher has more than that left).
    """

    dated: bool
    inner: tuple[tuple[tuple[str, int], ...], ...]
    dead: bool = False
    tries: int = 0


def _plan(text: str, candidate: str, offset: int, valid_only: bool) -> _Plan:
    """`_extract_match`'s region-independent work for `candidate`, as phonenumbers does it."""
    if candidate.isascii() and candidate.isdigit():
        # Dates, time stamps and inner matches all need a character other than a digit ('/',
        # '(', '.', a dash or a space): plain digits have none of them.
        return _Plan(False, _NO_INNER, _refused_digits(text, candidate, offset, valid_only), 0)
    slashed, stamped, shape = _shape(candidate)
    if slashed:
        return _Plan(True, (), dead=True)
    if stamped and _TIME_STAMPS_SUFFIX.match(text[offset + len(candidate) :]):
        return _Plan(True, (), dead=True)
    inner = tuple(tuple((part, offset + at) for part, at in parts) for parts in shape)
    dead = _refused(text, candidate, offset, valid_only) and all(
        _refused(text, part, at, valid_only) for parts in inner for part, at in parts
    )
    return _Plan(False, inner, dead, sum(map(len, inner)))


_Shape = tuple[bool, bool, tuple[tuple[tuple[str, int], ...], ...]]


@functools.lru_cache(maxsize=4096)
def _shape(candidate: str) -> _Shape:
    """What of `_plan` depends on the candidate alone: whether it holds a slash-separated date,
    or a time stamp (a date then, if the text goes on with its suffix), and per inner pattern
    the parts `_extract_inner_match` tries, with their offsets in the candidate."""
    if _SLASH_SEPARATED_DATES.search(candidate):
        return True, False, ()
    stamped = _TIME_STAMPS.search(candidate) is not None
    inner: list[tuple[tuple[str, int], ...]] = []
    for pattern in _INNER_MATCHES:
        hit = pattern.search(candidate)
        parts: list[tuple[str, int]] = []
        if hit is not None:
            parts.append((_trim(candidate[: hit.start()]), 0))
        while hit is not None:
            parts.append((_trim(hit.group(1)), hit.start(1)))
            hit = pattern.search(candidate, hit.start() + 1)
        inner.append(tuple(parts))
    return False, stamped, tuple(inner)


def _refused(text: str, candidate: str, offset: int, valid_only: bool) -> bool:
    """True if `PhoneNumberMatcher._parse_and_verify(candidate, offset)` returns None before
    parsing, whatever the region: the same checks, in its order (`valid_only`: leniency VALID or
    stricter), and, for such leniencies, too few digits to be valid anywhere."""
    if valid_only and _digits_and_letters(candidate) < _MIN_VALID_DIGITS:
        return True
    if not fullmatch(_MATCHING_BRACKETS, candidate) or _PUB_PAGES.search(candidate):
        return True
    if not valid_only:
        return False
    if offset > 0 and not _LEAD_PATTERN.match(candidate) and _repels(text[offset - 1]):
        return True
    end = offset + len(candidate)
    return end < len(text) and _repels(text[end])


def _refused_digits(text: str, digits: str, offset: int, valid_only: bool) -> bool:
    """`_refused` for a candidate of ASCII digits only: it fits the bracket pattern, holds no
    page reference (which needs a '-') and starts with no lead character ('(' or '+')."""
    if not valid_only:
        return False
    if len(digits) < _MIN_VALID_DIGITS:
        return True
    if offset > 0 and _repels(text[offset - 1]):
        return True
    end = offset + len(digits)
    return end < len(text) and _repels(text[end])


_Check = tuple[bool, int, bool]
_REFUSED: _Check = (True, 0, False)


def _check(text: str, candidate: str, offset: int, valid_only: bool) -> _Check:
    """What `_SharedMatcher._parse_and_verify` needs to know of a candidate in every region:
    whether it is `_refused`, its count of digits and letters, and whether its verdict is the same
    in every region (`_known_country_code`)."""
    if _refused(text, candidate, offset, valid_only):
        return _REFUSED
    return False, _digits_and_letters(candidate), _known_country_code(candidate)


@functools.lru_cache(maxsize=4096)
def _repels(char: str) -> bool:
    """phonenumbers refuses a candidate (at leniency VALID or stricter) touching this character."""
    return bool(_Matcher._is_invalid_punctuation_symbol(char) or _Matcher._is_latin_letter(char))


_NO_INNER: tuple[tuple[tuple[str, int], ...], ...] = tuple(() for _ in _INNER_MATCHES)


def _trim(part: str) -> str:
    end = _UNWANTED_END_CHAR.search(part)
    return part if end is None else part[: end.start()]


_VerdictKey = tuple[str, str]
_UNKNOWN = PhoneNumberMatch(0, "?", PhoneNumber())  # "not known" among the match-or-None values
_Skip = tuple[tuple[int, str] | None, int]
_NO_NUMBER = PhoneNumber()  # a match's number is never read here, only its span


class PhoneVerdicts:
    """Bounded memo of phonenumbers' verdict on one candidate (a match, or None).

    `PhoneNumberMatcher._parse_and_verify(candidate, offset)` reads nothing of the text but the
    candidate and the characters just before and after it, plus the matcher's region and leniency;
    the characters around it only decide whether it is turned away before parsing (`_refused`,
    checked first, every time). Past that, the verdict is a pure function of the candidate, the
    region and the leniency: the key here. So it is shared across places in a text, across
    regions ('+' candidates, see `_SharedMatcher`) and across texts (a number that recurs is
    parsed once). Candidates `_NationalRule` rules out are remembered apart (`ruled_out`), so
    that unique ids, which are most of them, do not push the numbers out. Past `maxsize` entries
    a memo starts over.
    """

    def __init__(self, maxsize: int = 4096) -> None:
        self.maxsize = maxsize
        # Values are 1-tuples, so "not known" (None) differs from "known: no number" ((None,)).
        self._entries: dict[_VerdictKey, tuple[PhoneNumber | None]] = {}
        self._ruled_out: dict[_VerdictKey, bool] = {}

    def get(self, key: _VerdictKey) -> tuple[PhoneNumber | None] | None:
        return self._entries.get(key)  # one call: safe while another thread clears

    def put(self, key: _VerdictKey, number: PhoneNumber | None) -> None:
        if len(self._entries) >= self.maxsize:
            self._entries.clear()
        self._entries[key] = (number,)

    def ruled_out(self, key: _VerdictKey, rule: _NationalRule) -> bool:
        """`rule.rules_out(key[0])`, remembered."""
        known = self._ruled_out.get(key)
        if known is None:
            known = rule.rules_out(key[0])
            if len(self._ruled_out) >= self.maxsize:
                self._ruled_out.clear()
            self._ruled_out[key] = known
        return known


class _SharedMatcher(phonenumbers.PhoneNumberMatcher):
    """phonenumbers' matcher for one region, sharing work with the other regions' matchers.

    - Candidates (where each regex search from an index lands) are the same for every region:
      found once per text, in `candidates`.
    - A candidate written with its country code ("+1 212 …") parses and validates the same
      whatever the default region (the region only fills in a missing country code, and the
      national-prefix check passes for numbers given with '+'), so one verdict serves every
      region's pass, provided phonenumbers knows the code (`_known_country_code`: after an
      unknown one it reads the digits again in the region); any other candidate's verdict is
      remembered for its region (`verdicts`).
    - A candidate with fewer digits than any valid number read in this region needs (see
      `_fewest_digits`) is refused without parsing; with fewer than any region's minimum, its
      inner parts are not tried either.
    - A dead candidate (`_Plan.dead`) is passed over with the tries it would use; a run of them
      from an index is walked once per text (`skips`), not once per region.
    - The checks phonenumbers makes before parsing (brackets, the characters around) are made
      once per text and place (`checks`); a plain candidate `national` rules out is not parsed.
    """

    def __init__(
        self,
        text: str,
        region: str,
        leniency: int,
        verdicts: PhoneVerdicts,
        candidates: dict[int, tuple[int, str] | None],
        plans: dict[tuple[int, str], _Plan],
        floor: int,
        skips: dict[int, _Skip] | None = None,
        national: _NationalRule | None = None,
        checks: dict[tuple[int, str], _Check] | None = None,
    ) -> None:
        super().__init__(text, region, leniency=leniency)
        self._verdicts = verdicts
        self._candidates = candidates
        self._plans = plans
        self._skips: dict[int, _Skip] = {} if skips is None else skips
        self._scope = f"{region}/{leniency}"
        self._shared_scope = f"+/{leniency}"
        self._checks: dict[tuple[int, str], _Check] = {} if checks is None else checks
        self._valid_only = leniency >= phonenumbers.Leniency.VALID
        self._floor = floor
        self._national = national

    def matches(self, index: int = 0) -> Iterator[PhoneNumberMatch]:
        """The matches iterating over the matcher gives (phonenumbers' `has_next` loop: each
        search starts where the last match ended), without its iterator's bookkeeping; from
        `index` on, if given (the walk's state being that index and the tries left)."""
        while (match := self._find(index)) is not None:
            yield match
            index = match.end

    def _find(self, index: int) -> PhoneNumberMatch | None:
        # phonenumbers' own loop, but with the candidate found from each index (a regex scan,
        # the same for every region) looked up in a memo shared by this text's matchers.
        found = self._next_live(index)
        while self._max_tries > 0 and found is not None:
            start, candidate = found
            if len(candidate) >= self._min_candidate_length:
                plan = self._plan_of(candidate, start)
                if plan.dead and self._max_tries > plan.tries:
                    # What `_extract_match` would come to: None, having used one try per part.
                    self._max_tries -= plan.tries + 1
                    found = self._candidate_at(start + len(candidate))
                    continue
                match = self._extract_match(candidate, start)
                if match is not None:
                    return match
                self._max_tries -= 1
            found = self._next_live(start + len(candidate))
        return None

    def any_live(self) -> bool:
        """False if no candidate of the text can hold a number in any region (`_Plan.dead`).

        Without a match, every region's matcher walks the same candidates (each search starting
        where the last candidate ended), so all of them being dead means no match anywhere.
        """
        return self._skip(0)[0] is not None

    def _next_live(self, index: int) -> tuple[int, str] | None:
        """The candidate the loop in `_find` would reach from `index` past the dead ones, with
        their tries used up; step by step (`_candidate_at`) when too few tries are left."""
        found, used = self._skip(index)
        if used < self._max_tries:
            self._max_tries -= used
            return found
        return self._candidate_at(index)

    def _skip(self, index: int) -> _Skip:
        """The first candidate at or after `index` that is not dead, and the tries used by the
        dead ones before it (when tries do not run out), as `_find`'s loop walks them."""
        known = self._skips.get(index)
        if known is not None:
            return known
        used = 0
        found = self._candidate_at(index)
        while found is not None:
            start, candidate = found
            if len(candidate) >= self._min_candidate_length:
                plan = self._plan_of(candidate, start)
                if not plan.dead:
                    break
                used += plan.tries + 1
            found = self._candidate_at(start + len(candidate))
        self._skips[index] = (found, used)
        return found, used

    def _candidate_at(self, index: int) -> tuple[int, str] | None:
        """The next candidate at or after `index`: its start, and its text trimmed as upstream."""
        if index in self._candidates:
            return self._candidates[index]
        hit = _PHONE_CANDIDATE.search(self.text, index)
        found = None
        if hit is not None:
            candidate = self._trim_after_first_match(_SECOND_NUMBER_START, hit.group())
            found = (hit.start(), candidate)
        self._candidates[index] = found
        return found

    def _extract_match(
        self, candidate: str, offset: int, plan: _Plan | None = None
    ) -> PhoneNumberMatch | None:
        # phonenumbers' `_extract_match` and `_extract_inner_match`, step for step (same parts
        # tried in the same order, same count of tries used), with the parts worked out once per
        # text (`_Plan`, region-independent) instead of once per region.
        if plan is None:
            plan = self._plan_of(candidate, offset)
        if plan.dated:
            return None
        match = self._parse_and_verify(candidate, offset)
        if match is not None:
            return match
        for parts in plan.inner:
            if self._max_tries <= 0:
                continue  # upstream's loop condition fails before its first part
            for i, (part, at) in enumerate(parts):
                if i >= 2 and self._max_tries <= 0:
                    break  # (the head and the first group are tried without a check between)
                match = self._parse_and_verify(part, at)
                if match is not None:
                    return match
                self._max_tries -= 1
        return None

    def _alike(self, candidate: str, offset: int, plan: _Plan) -> bool:
        """True if `_extract_match` comes to the same in every region (of the same leniency): a
        candidate that is not dated, has no inner parts, and is written with a country code
        phonenumbers knows (`_known_country_code`), with more digits than any region's floor
        could refuse (the floors only turn away '+' numbers of `_MIN_VALID_DIGITS` or fewer)."""
        if plan.dated or plan.tries:
            return False
        check = self._checks.get((offset, candidate))
        if check is None:
            check = _check(self.text, candidate, offset, self._valid_only)
            self._checks[(offset, candidate)] = check
        refused, digits, shared = check
        return refused or (shared and (not self._valid_only or digits > _MIN_VALID_DIGITS))

    def _plan_of(self, candidate: str, offset: int) -> _Plan:
        plan = self._plans.get((offset, candidate))
        if plan is None:
            plan = _plan(self.text, candidate, offset, self._valid_only)
            self._plans[(offset, candidate)] = plan
        return plan

    def _parse_and_verify(self, candidate: str, offset: int) -> PhoneNumberMatch | None:
        # Upstream's checks before parsing first (brackets, page numbers and, at leniency VALID
        # or stricter, the characters around the candidate): past them, its verdict depends on
        # the candidate, the region and the leniency alone, so that is the memo's key. Those
        # checks do not depend on the region either: done once per text and place (`_checks`).
        check = self._checks.get((offset, candidate))
        if check is None:
            check = _check(self.text, candidate, offset, self._valid_only)
            self._checks[(offset, candidate)] = check
        refused, digits, shared = check
        if refused:
            return None
        if (
            self._valid_only
            and digits < self._floor
            and (digits <= _MIN_VALID_DIGITS or not _has_plus(candidate))
        ):
            return None  # too few to be valid when read in this region (`_fewest_digits`)
        key = (candidate, self._shared_scope if shared else self._scope)
        known = self._verdicts.get(key)
        if known is None:
            rule = self._national
            if rule is not None and self._valid_only and self._verdicts.ruled_out(key, rule):
                return None  # no reading of its digits is valid here (`_NationalRule`)
            match = super()._parse_and_verify(candidate, offset)
            self._verdicts.put(key, None if match is None else match.number)
            return match
        number = known[0]
        return None if number is None else PhoneNumberMatch(offset, candidate, number)


# Besides ASCII digits, a candidate may hold these for `_NationalRule` to apply: none is a '+', a
# letter (vanity numbers), or part of an extension (`;ext=`, `x`, `#`, `,`), a second number
# (`/x`) or an RFC 3966 parameter (`;`), so phonenumbers' `parse` reads exactly its ASCII digits,
# in order (`_extract_possible_number` trims only what precedes the first digit and follows the
# last; `_normalize` keeps the digits).
_PLAIN = re.compile(r"[0-9 ().\-/]+")
_NOT_DIGIT = re.compile(r"[^0-9]")
_UTIL = vars(phonenumbers.phonenumberutil)
_strip_national_prefix = _UTIL["_maybe_strip_national_prefix_carrier_code"]
_number_type = _UTIL["_number_type_helper"]
_set_leading_zeros = _UTIL["_set_italian_leading_zeros_for_phone_number"]
_prefix_present_if_required = _MATCHER["_is_national_prefix_present_if_required"]
_UNKNOWN_TYPE = phonenumbers.PhoneNumberType.UNKNOWN
_BY_DEFAULT = phonenumbers.CountryCodeSource.FROM_DEFAULT_COUNTRY


@dataclass(frozen=True, slots=True)
class _NationalRule:
    """Proof, for one region, that a candidate without an international prefix is no valid number.

    At leniency VALID or stricter, phonenumbers reports a candidate only if `is_valid_number`
    holds for its parse. For a `_PLAIN` candidate, `parse(candidate, region)` reads its digits D
    and, unless D starts with the region's international prefix (followed by a digit other than
    '0': `_parse_prefix_as_idd` does not strip one followed by '0'), keeps the region's country
    code. The national significant number is then one of: D or D stripped of a national prefix
    (`_maybe_strip_national_prefix_carrier_code`, region's metadata); or, when D starts with the
    country code, the rest R so stripped, and R stripped again with the metadata of the code's
    main region (`parse` switches to it). `is_valid_number` needs that number to be of a known
    type (`_number_type_helper`, which starts with the general description's lengths and
    pattern) in one region of the code: the one `region_code_for_number` picks. And for the
    first two readings (the code taken from the region, not from the digits), the matcher also
    needs `_is_national_prefix_present_if_required`, which reads the number and the candidate
    only: asked of a number built as `parse` builds it. When no reading passes, there is no
    match: no parse needed.
    The strip is phonenumbers' own function; an error in it means "cannot tell" (parse then).
    """

    idd: re.Pattern[str] | None
    code: str
    own: PhoneMetadata
    main: PhoneMetadata
    # Every region of the code, with the lengths its general description allows (None: any;
    # `_number_type_helper` checks those first, so a number of another length is UNKNOWN there).
    regions: tuple[tuple[frozenset[int] | None, PhoneMetadata], ...]
    lengths: frozenset[int] | None  # all those lengths together (None: any)

    def rules_out(self, candidate: str) -> bool:
        """True if `candidate` is `_PLAIN` and no reading of its digits is a valid number."""
        if candidate.isascii() and candidate.isdigit():
            digits = candidate
        elif _PLAIN.fullmatch(candidate):
            digits = _NOT_DIGIT.sub("", candidate)
        else:
            return False
        if self.idd is not None:
            hit = self.idd.match(digits)
            if hit is not None and digits[hit.end() : hit.end() + 1] != "0":
                return False  # an international prefix: any country code may follow
        try:
            readings = [
                (digits, True),
                (_strip_national_prefix(digits, self.own)[1], True),
            ]
            if digits.startswith(self.code):
                rest = _strip_national_prefix(digits[len(self.code) :], self.own)[1]
                readings += [(rest, False), (_strip_national_prefix(rest, self.main)[1], False)]
            return not any(self._may_be_valid(n, d, candidate) for n, d in readings)
        except Exception:
            return False  # let phonenumbers itself decide (and raise, if it does)

    def _may_be_valid(self, number: str, by_default: bool, candidate: str) -> bool:
        if len(number) < 2 or (self.lengths is not None and len(number) not in self.lengths):
            return False  # `parse` refuses fewer than 2 digits; no description allows the length
        if not any(
            (allowed is None or len(number) in allowed)
            and _number_type(number, meta) != _UNKNOWN_TYPE
            for allowed, meta in self.regions
        ):
            return False
        if not by_default:
            return True
        parsed = PhoneNumber(
            country_code=int(self.code),
            national_number=int(number),
            raw_input=candidate,
            country_code_source=_BY_DEFAULT,
        )
        _set_leading_zeros(number, parsed)
        return bool(_prefix_present_if_required(parsed))


def _national_rule(region: str) -> _NationalRule | None:
    """`region`'s `_NationalRule` (None if its metadata is missing)."""
    own = PhoneMetadata.metadata_for_region(region)
    if own is None or own.country_code is None:
        return None
    code = own.country_code
    main = PhoneMetadata.metadata_for_region_or_calling_code(
        code, phonenumbers.region_code_for_country_code(code)
    )
    if main is None:
        return None
    regions: list[tuple[frozenset[int] | None, PhoneMetadata]] = []
    lengths: set[int] | None = set()
    for other in COUNTRY_CODE_TO_REGION_CODE.get(code, ()):
        meta = PhoneMetadata.metadata_for_region_or_calling_code(code, other)
        if meta is None or meta.general_desc is None:
            continue  # `is_valid_number_for_region` is False there
        allowed = meta.general_desc.possible_length
        regions.append((frozenset(allowed) if allowed else None, meta))
        if not allowed:
            lengths = None  # `_is_number_matching_desc` checks no length then
        elif lengths is not None:
            lengths.update(allowed)
    idd = None if own.international_prefix is None else re_compile(own.international_prefix)
    return _NationalRule(
        idd,
        str(code),
        own,
        main,
        tuple(regions),
        None if lengths is None else frozenset(lengths),
    )


def _fewest_digits(region: str) -> int:
    """The fewest digits (and letters) a candidate needs to parse, in `region`, as a valid number.

    Without a '+' or an international prefix, the number keeps the region's country code, and
    its national part (the candidate's digits, less any prefixes) must be at least the shortest
    length valid for that code. An international prefix (at least as many digits as its shortest
    match) or a '+' lets the number name another country code: one digit or more, plus a national
    part of at least `_MIN_VALID_DIGITS`. The smallest of these bounds is a floor for any valid
    number read in `region`; below it, parsing is skipped (`_SharedMatcher`).
    """
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if meta is None or meta.country_code is None:
        return _MIN_VALID_DIGITS
    own = []
    for other in COUNTRY_CODE_TO_REGION_CODE.get(meta.country_code, ()):
        other_meta = phonenumbers.PhoneMetadata.metadata_for_region(other)
        if other_meta is None or other_meta.general_desc is None:
            return _MIN_VALID_DIGITS
        own.append(min(other_meta.general_desc.possible_length, default=1))
    prefix = _shortest_match(meta.international_prefix)
    return min([*own, prefix + 1 + _MIN_VALID_DIGITS])


def _shortest_match(pattern: str | None, longest: int = 3) -> int:
    """Length of the shortest digit string `pattern` matches whole (`longest` + 1 if none is
    up to `longest` long, 1 if there is no pattern: lower bounds, either way)."""
    if pattern is None:
        return 1
    compiled = re.compile(pattern)
    for length in range(1, longest + 1):
        for digits in itertools.product("0123456789", repeat=length):
            if compiled.fullmatch("".join(digits)):
                return length
    return longest + 1


def _known_country_code(candidate: str) -> bool:
    """True if `candidate` starts with a '+' and a country calling code phonenumbers knows.

    Only then is its verdict the same in every region: after a '+' with an unknown code (say
    "+0098…"), phonenumbers drops the '+' and reads the digits again in the region (where "00"
    may be the international prefix). The code is read as phonenumbers reads it (the first one
    to three digits after the '+' signs, punctuation skipped), and only when those are plain
    ASCII digits, so letters (which vanity numbers turn into digits) cannot change them.
    """
    if candidate[:1] not in _PLUS_SIGNS:
        return False
    head = [c for c in candidate.lstrip(_PLUS_SIGNS)[:_HEAD_SCAN] if c.isalnum()][:3]
    if len(head) < 3 or not all(c in _ASCII_DIGITS for c in head) or head[0] == "0":
        return False
    return any(int("".join(head[:n])) in COUNTRY_CODE_TO_REGION_CODE for n in (1, 2, 3))


def _has_plus(candidate: str) -> bool:
    return "+" in candidate or "\uff0b" in candidate


def _digits_and_letters(candidate: str) -> int:
    # `isalnum` holds for every digit and letter (and a few more numerals): an upper bound.
    return sum(map(str.isalnum, candidate))


def _walk(matchers: list[_SharedMatcher]) -> list[list[PhoneNumberMatch]]:
    """Each matcher's matches, in order, as `matches()` gives them, for matchers of one text.

    The matchers walk the same candidates for as long as each either finds no number in a
    candidate or finds the whole candidate (its next search starts at the candidate's end
    either way) and has tries to spare; so they are walked together, candidate by candidate,
    with each one's state (the index, the tries left) kept exactly. One that finds a part of a
    candidate, or would run out of tries, goes on alone from its own state (`matches(index)`).
    """
    found: list[list[PhoneNumberMatch]] = [[] for _ in matchers]
    alone: list[tuple[int, int]] = []  # (matcher, index its own walk goes on from)
    together = list(range(len(matchers)))
    lead = matchers[0]  # candidates, plans and skips are shared: any matcher finds the same
    index = 0
    while together:
        entry, used = lead._skip(index)
        walking = []
        for i in together:
            matcher = matchers[i]
            if used < matcher._max_tries:
                matcher._max_tries -= used
                walking.append(i)
            else:
                alone.append((i, index))  # `_next_live` steps candidate by candidate then
        if entry is None:
            break
        start, candidate = entry
        end = start + len(candidate)
        plan = lead._plan_of(candidate, start)  # not dead: `_skip` stops at a live one
        # A whole candidate alone (no inner parts) whose verdict is the same in every region:
        # found once, for all (`_alike`).
        same = (
            lead._extract_match(candidate, start, plan)
            if lead._alike(candidate, start, plan)
            else _UNKNOWN
        )
        together = []
        for i in walking:
            matcher = matchers[i]
            if matcher._max_tries <= 0:
                continue  # its loop is over: no more matches
            match = matcher._extract_match(candidate, start, plan) if same is _UNKNOWN else same
            if match is None:
                matcher._max_tries -= 1
                together.append(i)
                continue
            found[i].append(match)
            if match.end == end:
                together.append(i)
            else:
                alone.append((i, match.end))
        index = end
    for i, at in alone:
        found[i].extend(matchers[i].matches(at))
    return found


class FastPhoneRecognizer(PhoneRecognizer):
    """Presidio's phone recognizer (same regions, leniency, spans and scores), faster.

    Presidio runs phonenumbers' matcher once per region (8 passes) and then parses every match
    again only to name its region in an explanation we never read; here the second parse is gone,
    a text with no candidate at all is skipped, and the passes share their work (`_SharedMatcher`).
    Tests compare the two on corpora (tests/filters/test_pii_fast.py, test_pii_speed.py).
    """

    def __init__(self) -> None:
        super().__init__()
        self.verdicts = PhoneVerdicts()
        self._floors = {region: _fewest_digits(region) for region in self.supported_regions}
        self._nationals = {region: _national_rule(region) for region in self.supported_regions}

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        if _PHONE_CANDIDATE.search(text) is None:
            return []  # no candidate for any region's matcher (each starts with this search)
        # One result per span: Presidio makes one per region and match, all with the same score,
        # and its `remove_duplicates` keeps one of equal ones (equal: same entity, span, score).
        spans: dict[tuple[int, int], str] = {}
        candidates: dict[int, tuple[int, str] | None] = {}
        plans: dict[tuple[int, str], _Plan] = {}
        skips: dict[int, _Skip] = {}
        checks: dict[tuple[int, str], _Check] = {}
        leniency = self.leniency or 0

        def matcher(region: str) -> _SharedMatcher:
            return _SharedMatcher(
                text,
                region,
                leniency,
                self.verdicts,
                candidates,
                plans,
                self._floors[region],
                skips,
                self._nationals[region],
                checks,
            )

        first, *others = self.supported_regions
        lead = matcher(first)
        if not lead.any_live():
            return []  # every region's matcher would walk the same dead candidates, finding none
        matchers = [lead, *map(matcher, others)]
        for region, found in zip(self.supported_regions, _walk(matchers), strict=True):
            for match in found:
                spans.setdefault((match.start, match.end), region)
        results: list[RecognizerResult] = [
            self._get_recognizer_result(  # type: ignore[no-untyped-call]
                PhoneNumberMatch(start, text[start:end], _NO_NUMBER), text, region, nlp_artifacts
            )
            for (start, end), region in spans.items()
        ]
        return remove_duplicates(results)
