"""The optional moderation model: category scores over the OpenAI `/v1/moderations` wire.

The app injects `Classify`, routed through agentgw's own routing to the virtual model named in
`filters.moderation.model`; this module only maps its scores onto our categories and thresholds.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import MappingProxyType

import anyio

from core.errors import GatewayError, QuotaExceeded
from core.filtering import FilterContext
from filters.moderation.terms import HATE, ILLEGAL, SELF_HARM, SEXUAL_MINORS, VIOLENCE

logger = logging.getLogger(__name__)

Classify = Callable[[list[str], FilterContext | None], Awaitable[list[dict[str, float]]]]
"""Scores per input text, keyed by the moderation wire's category names (`category_scores`).

Told the checked call too, so the model is reached under the caller's own rules (a key that may
only use private upstreams never has its text sent to a public moderation model) and its cost
is recorded as a child span of that call."""

WIRE_CATEGORIES: Mapping[str, str] = MappingProxyType(
    {
        "violence": VIOLENCE,
        "violence/graphic": VIOLENCE,
        "harassment/threatening": VIOLENCE,
        "self-harm": SELF_HARM,
        "self-harm/intent": SELF_HARM,
        "self-harm/instructions": SELF_HARM,
        "sexual/minors": SEXUAL_MINORS,
        "hate": HATE,
        "hate/threatening": HATE,
        "illicit": ILLEGAL,
        "illicit/violent": ILLEGAL,
    }
)
"""OpenAI moderation categories onto ours; a name not listed here is taken as is."""

DEFAULT_THRESHOLD = 0.5


class ClassifierFailed(Exception):
    """The classifier raised, timed out or answered out of shape; `reason` names no content."""

    def __init__(self, reason: str, error: GatewayError | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        # A refusal to answer the checked call with as is: `reason` "budget", a spent budget.
        self.error = error


class Classifier:
    """Calls `classify` with a deadline and turns scores into categories over their thresholds.

    Only categories with a threshold (explicit, or the default for our own categories) count, so
    wire categories we do not moderate (plain "sexual", "harassment") are ignored unless asked for.
    """

    def __init__(
        self,
        classify: Classify,
        *,
        categories: Sequence[str],
        thresholds: Mapping[str, float] | None = None,
        timeout_ms: int = 5000,
    ) -> None:
        self._classify = classify
        self.thresholds: dict[str, float] = {c: DEFAULT_THRESHOLD for c in categories}
        self.thresholds.update(thresholds or {})
        self.timeout = timeout_ms / 1000

    async def categories(
        self, texts: Sequence[str], ctx: FilterContext | None = None
    ) -> list[dict[str, float]]:
        """For each text, the categories over threshold with their scores.

        Raises:
            ClassifierFailed: the call raised, timed out, or answered out of shape.
        """
        if not texts:
            return []
        try:
            with anyio.fail_after(self.timeout):
                answers = await self._classify(list(texts), ctx)
        except TimeoutError:
            raise ClassifierFailed("timeout") from None
        except QuotaExceeded as exc:
            # The check cannot be paid for: a budget above the caller is spent.
            raise ClassifierFailed("budget", exc) from None
        # The callable is the app's (a routed call to a provider): any failure of it, whatever
        # its type, must fail closed rather than let unmoderated content through, so this catch is
        # deliberately broad. Only the exception's type is logged, never content.
        except Exception as exc:
            logger.warning("moderation classifier failed: %s", type(exc).__name__)
            raise ClassifierFailed("error") from None
        if not isinstance(answers, list) or len(answers) != len(texts):
            raise ClassifierFailed("malformed")
        return [self._over_threshold(scores) for scores in answers]

    def _over_threshold(self, scores: Mapping[str, float]) -> dict[str, float]:
        if not isinstance(scores, Mapping):
            raise ClassifierFailed("malformed")
        out: dict[str, float] = {}
        for wire, score in scores.items():
            if not isinstance(score, int | float):
                raise ClassifierFailed("malformed")
            category = WIRE_CATEGORIES.get(wire, wire)
            threshold = self.thresholds.get(category)
            if threshold is not None and score >= threshold:
                out[category] = max(float(score), out.get(category, 0.0))
        return out
