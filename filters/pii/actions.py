"""What happens to a value once found: redact, mask, hash, pseudonymize (and restore), or block.

    redact        <EMAIL_ADDRESS>
    mask          ************.com            (last four characters kept)
    hash          <EMAIL_ADDRESS_3f9a0c12>    (HMAC-SHA256 with the gateway's secret: stable)
    pseudonymize  <EMAIL_ADDRESS_1>           (numbered per request, restored in the reply)
    block         the whole request is refused, naming entity types only

Values are compared in a canonical form (case-folded, spaces and dashes removed), so
"4111 1111 1111 1111" and "4111-1111-1111-1111" get the same hash and the same placeholder.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, get_args

from core.envelope import Finding, Scope
from filters.pii.entities import Detection

Action = Literal["redact", "mask", "hash", "pseudonymize", "block"]
ACTIONS: tuple[Action, ...] = get_args(Action)

FILTER_NAME = "pii"
PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*)_(\d+)>")
_SEPARATORS = re.compile(r"[\s\-]")


def canonical(value: str) -> str:
    """The form two spellings of one value share."""
    return _SEPARATORS.sub("", value).casefold()


def mask(value: str, keep: int = 4) -> str:
    """All but the last `keep` characters replaced by '*' (everything, if the value is short)."""
    if len(value) <= keep:
        return "*" * len(value)
    return "*" * (len(value) - keep) + value[-keep:]


class Pseudonyms:
    """One request's map between values and numbered placeholders such as `<PERSON_1>`.

    Numbers count per entity type in order of first appearance; the same value keeps its number.
    Placeholders that already occur literally in the request are `reserved` and never issued, so
    restoring a reply cannot turn a user's own "<PERSON_1>" into somebody's name.
    """

    def __init__(self, reserved: Iterable[str] = ()) -> None:
        self._reserved = set(reserved)
        self._by_value: dict[tuple[str, str], str] = {}
        self._values: dict[str, str] = {}
        self._last: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._values)

    @staticmethod
    def found_in(texts: Iterable[str]) -> set[str]:
        """Placeholder-shaped strings present in `texts` (to reserve them)."""
        return {m.group() for text in texts if "<" in text for m in PLACEHOLDER.finditer(text)}

    def placeholder(self, entity: str, value: str) -> str:
        """The placeholder for `value`, issuing the next number on first sight."""
        key = (entity, canonical(value))
        token = self._by_value.get(key)
        if token is not None:
            return token
        n = self._last.get(entity, 0)
        while True:
            n += 1
            token = f"<{entity}_{n}>"
            if token not in self._reserved:
                break
        self._last[entity] = n
        self._by_value[key] = token
        self._values[token] = value
        return token

    def restore(self, text: str, *, json_escape: bool = False) -> str:
        """`text` with every placeholder of this map replaced by its original value.

        With `json_escape`, values are escaped for the inside of a JSON string (for streamed
        tool-call arguments, which are raw JSON text).
        """
        if not self._values or "<" not in text:
            return text

        def original(m: re.Match[str]) -> str:
            value = self._values.get(m.group())
            if value is None:
                return m.group()
            return json.dumps(value, ensure_ascii=False)[1:-1] if json_escape else value

        return PLACEHOLDER.sub(original, text)


class Redactor:
    """Applies each entity's action to the detections in a text and reports them as findings."""

    def __init__(self, default: Action, overrides: Mapping[str, Action], secret: bytes) -> None:
        if not secret:
            raise ValueError("the PII filter needs a non-empty secret for hashing")
        self.default = default
        self.overrides = dict(overrides)
        self._secret = secret

    def action_for(self, entity: str) -> Action:
        return self.overrides.get(entity, self.default)

    def value_hash(self, value: str) -> str:
        """HMAC-SHA256 of the canonical value, hex: what the redaction log keeps instead."""
        # `hmac.digest` is the one-shot form of `hmac.new(...).hexdigest()`: same value, in C.
        return hmac.digest(self._secret, canonical(value).encode(), "sha256").hex()

    def rewrite(
        self,
        text: str,
        detections: Sequence[Detection],
        scope: Scope,
        pseudonyms: Pseudonyms | None,
    ) -> tuple[str, list[Finding]]:
        """`text` with every detection replaced, left to right, and one finding per detection.

        Detections must not overlap (the analyzer merges them). A `block` entity that reaches
        here is redacted: the caller refuses the request, but nothing is ever left in clear.
        """
        out: list[str] = []
        findings: list[Finding] = []
        pos = 0
        for d in sorted(detections, key=lambda d: d.start):
            value = text[d.start : d.end]
            action = self.action_for(d.entity)
            digest = self.value_hash(value)
            out.append(text[pos : d.start])
            out.append(self._token(d.entity, value, action, digest, pseudonyms))
            pos = d.end
            findings.append(
                Finding(FILTER_NAME, d.entity, scope, action, d.score, d.start, d.end, digest)
            )
        out.append(text[pos:])
        return "".join(out), findings

    @staticmethod
    def _token(
        entity: str, value: str, action: Action, digest: str, pseudonyms: Pseudonyms | None
    ) -> str:
        match action:
            case "mask":
                return mask(value)
            case "hash":
                return f"<{entity}_{digest[:8]}>"
            case "pseudonymize" if pseudonyms is not None:
                return pseudonyms.placeholder(entity, value)
            case _:
                return f"<{entity}>"
