"""The injection filter: prompt injections hidden in tool outputs, scored by weighted signals.

Only `Scope.TOOL_OUTPUT` is read: a tool's result is data the agent did not write and its user
did not see, so an instruction inside it is an attack; the same words typed by the user are a
request (the user may ask about system prompts) and are left to the other filters.
"""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal

from core.config import ConfigError
from core.envelope import Envelope, Finding, Scope, StreamChunk
from core.errors import ContentBlocked
from core.filtering import Continue, Decision, FilterContext, Reject
from filters.injection.patterns import (
    INVISIBLE,
    INVISIBLE_WEIGHT,
    SIGNALS,
    TAGS,
    TAGS_WEIGHT,
    Signal,
)

FILTER_NAME = "injection"
KIND = "prompt_injection"
DEFAULT_THRESHOLD = 1.0

Action = Literal["block", "flag"]
ACTIONS: tuple[Action, ...] = ("block", "flag")


@dataclass(frozen=True, slots=True)
class Verdict:
    """A tool output's score and the names of the signals that made it (never the text)."""

    score: float
    signals: tuple[str, ...]


def _reveal_tags(text: str) -> str:
    # Tag characters mirror ASCII at U+E0000: read them as the sentence they smuggle.
    return "".join(chr(ord(c) - 0xE0000) if TAGS.match(c) else c for c in text)


def score(text: str, signals: Sequence[Signal] = SIGNALS) -> Verdict:
    """Sum the weights of the signals found in `text` (each counted once)."""
    total = 0.0
    names: list[str] = []
    if TAGS.search(text):
        total += TAGS_WEIGHT
        names.append("tag_characters")
        text = _reveal_tags(text)
    if INVISIBLE.search(text):
        total += INVISIBLE_WEIGHT
        names.append("invisible_characters")
        text = INVISIBLE.sub("", text)
    folded = unicodedata.normalize("NFKC", text)
    for signal in signals:
        if signal.pattern.search(folded):
            total += signal.weight
            names.append(signal.name)
    return Verdict(round(total, 3), tuple(names))


class InjectionFilter:
    """Flags or blocks tool outputs that carry instructions aimed at the agent.

    Checks requests (tool results an agent sends back to its model) and replies (tool results
    relayed to a client, as MCP results will be). Streams carry model output, not tool output,
    and pass unchanged.

    Raises:
        ConfigError: at construction, for an unknown action or a threshold that is not positive.
    """

    name = FILTER_NAME

    def __init__(
        self,
        *,
        action: Action = "flag",
        threshold: float = DEFAULT_THRESHOLD,
        signals: Sequence[Signal] = SIGNALS,
    ) -> None:
        if action not in ACTIONS:
            raise ConfigError(f"filters.injection.action: '{action}' is not one of block, flag")
        if threshold <= 0:
            raise ConfigError("filters.injection.threshold: must be positive")
        self.action: Action = action
        self.threshold = threshold
        self.signals = tuple(signals)

    def verdict(self, text: str) -> Verdict:
        """Score one tool output."""
        return score(text, self.signals)

    async def on_request(self, env: Envelope, ctx: FilterContext) -> Decision:
        """Check the tool outputs in the request."""
        return self._check(env)

    async def on_response(self, env: Envelope, ctx: FilterContext) -> Decision:
        """Check the tool outputs in the reply."""
        return self._check(env)

    def on_stream(
        self, chunks: AsyncIterator[StreamChunk], ctx: FilterContext
    ) -> AsyncIterator[StreamChunk]:
        """A streamed reply holds no tool output: passed through as is."""
        return chunks

    def _check(self, env: Envelope) -> Decision:
        verdicts: list[Verdict] = []

        def visit(scope: Scope, text: str) -> None:
            if scope is Scope.TOOL_OUTPUT and text.strip():
                verdict = self.verdict(text)
                if verdict.score >= self.threshold:
                    verdicts.append(verdict)

        env.visit_text(visit)
        if not verdicts:
            return Continue()
        env.findings.extend(
            Finding(FILTER_NAME, KIND, Scope.TOOL_OUTPUT, self.action, score=v.score)
            for v in verdicts
        )
        if self.action == "block":
            names = sorted({n for v in verdicts for n in v.signals})
            return Reject(
                ContentBlocked(f"prompt injection in tool output (signals: {', '.join(names)})")
            )
        return Continue()
