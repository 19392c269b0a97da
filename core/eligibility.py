"""The rules that narrow a request's candidate targets before a strategy orders them.

Each rule drops the targets that cannot take this request, in this order:

1. egress: a key with `egress: private` never reaches a `network: public` provider, fallbacks
   included (403 if nothing private is left);
2. request type: a target's `supports` modalities, `tools: false`, `vision: false` (400);
3. context length: estimated prompt tokens plus the requested `max_tokens` must fit the target's
   `context_window`, so long prompts land on the long-context tier (400 when none fits);
4. time windows: a target with `hours: "22-06"` serves only from 22:00 to 06:00 UTC (503).

When a rule leaves nothing, its own error says why, rather than a generic "all targets failed".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.envelope import Envelope, ImagePart, ToolCallPart, ToolResultPart
from core.errors import BadRequest, PermissionDenied, UnsupportedContent, UpstreamUnavailable
from core.metering import estimate_prompt_tokens
from core.targets import BoundTarget


class ContextWindowExceeded(BadRequest):
    """The prompt (plus the requested output) fits no target's context window."""

    code = "context_length_exceeded"


@dataclass(frozen=True, slots=True)
class RequestProfile:
    """What the rules and strategies need to know about one request, computed once."""

    modality: str
    prompt_tokens: int
    max_tokens: int | None
    uses_tools: bool
    uses_images: bool
    egress: str
    hour: int

    @classmethod
    def of(cls, env: Envelope, now: float, prompt_tokens: int | None = None) -> RequestProfile:
        """Profile `env` at wall-clock time `now` (seconds since the epoch); `prompt_tokens` is
        `estimate_prompt_tokens(env)` when the caller has it already."""
        uses_tools = bool(env.tools)
        uses_images = False
        for m in env.messages:
            for p in m.parts:
                if isinstance(p, ToolCallPart | ToolResultPart):
                    uses_tools = True
                elif isinstance(p, ImagePart):
                    uses_images = True
        principal = env.principal
        return cls(
            modality=env.modality.value,
            prompt_tokens=estimate_prompt_tokens(env) if prompt_tokens is None else prompt_tokens,
            max_tokens=_requested_max_tokens(env),
            uses_tools=uses_tools,
            uses_images=uses_images,
            egress=principal.scopes.egress if principal is not None else "public",
            hour=int(now // 3600 % 24),  # the UTC hour: the epoch began at 00:00 UTC
        )

    @property
    def needed_tokens(self) -> int:
        return self.prompt_tokens + (self.max_tokens or 0)


def _requested_max_tokens(env: Envelope) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = env.params.get(name, env.extra.get(name))
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def eligible(
    model: str, targets: Sequence[BoundTarget], profile: RequestProfile
) -> list[BoundTarget]:
    """The targets that can take this request, in their original order.

    Raises:
        PermissionDenied: the key is private and every target is public.
        UnsupportedContent: no target accepts the request's modality, tools or images.
        ContextWindowExceeded: the prompt fits no target's context window.
        UpstreamUnavailable: every remaining target is outside its hours now.
    """
    chain = list(targets)
    for rule in _RULES:
        chain = rule(model, chain, profile)
    return chain


def _egress(model: str, chain: list[BoundTarget], p: RequestProfile) -> list[BoundTarget]:
    if p.egress != "private":
        return chain
    kept = [t for t in chain if t.network == "private"]
    if chain and not kept:
        raise PermissionDenied(
            f"Model '{model}' has no private target, and this key may only use private ones.",
            param="model",
        )
    return kept


def _request_type(model: str, chain: list[BoundTarget], p: RequestProfile) -> list[BoundTarget]:
    kept = [
        t
        for t in chain
        if (not t.supports or p.modality in t.supports)
        and (t.tools or not p.uses_tools)
        and (t.vision or not p.uses_images)
    ]
    if chain and not kept:
        wants = [p.modality] + ["tools"] * p.uses_tools + ["images"] * p.uses_images
        raise UnsupportedContent(
            f"No target of model '{model}' accepts this request ({', '.join(wants)}).",
            param="model",
        )
    return kept


def _context(model: str, chain: list[BoundTarget], p: RequestProfile) -> list[BoundTarget]:
    # A target without a declared window is taken to fit: the gateway cannot know better.
    kept = [t for t in chain if t.context_window is None or p.needed_tokens <= t.context_window]
    if chain and not kept:
        largest = max(t.context_window or 0 for t in chain)
        asked = f" plus max_tokens {p.max_tokens}" if p.max_tokens else ""
        raise ContextWindowExceeded(
            f"The prompt of ~{p.prompt_tokens} tokens{asked} exceeds every target's context "
            f"window for model '{model}' (largest: {largest} tokens).",
            param="messages",
        )
    return kept


def _hours(model: str, chain: list[BoundTarget], p: RequestProfile) -> list[BoundTarget]:
    kept = [t for t in chain if t.hours is None or t.hours.contains(p.hour)]
    if chain and not kept:
        raise UpstreamUnavailable(
            f"No target of model '{model}' serves at {p.hour:02d}:00 UTC (outside their hours)."
        )
    return kept


_Rule = Callable[[str, list[BoundTarget], RequestProfile], list[BoundTarget]]
_RULES: tuple[_Rule, ...] = (_egress, _request_type, _context, _hours)
