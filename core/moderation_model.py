"""The moderation filter's model call: a virtual model over the `/v1/moderations` wire, reached
through agentgw's own routing (targets in order, failover, circuit breakers, timeouts).

The filter receives only the callable built here; it never sees the router or a provider. That
upstream call costs money, so it is recorded as a span of its own: modality `moderation`, a
child of the call it checked (same trace, key and org path), flag `moderation:check`, priced
from the catalog (`per_call` or tokens) and counted in the metrics under the route
`filter:moderation`. The span goes through the pipeline's write-behind queue, so recording it
adds no store round trip to the checked call.

The check is paid for from the checked call's budgets: before it is sent, its estimate (the texts'
tokens at the dearest candidate target's catalog price, `per_call` included) is reserved on the
budgets above the caller's key (budgets only: it is not one more request against rate limits),
and settled to its metered cost afterwards, so live budget counters include it. A spent budget
raises `QuotaExceeded` before anything is sent: the moderation filter then blocks the checked call
with that error when it fails closed, or lets it through unchecked when it fails open.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio

from core.config import ConfigError
from core.envelope import Envelope, Message, Modality, TextPart, TraceContext, Usage
from core.errors import GatewayError, UpstreamError, UpstreamTimeout
from core.filtering import FilterContext
from core.metering import estimate_prompt_tokens
from core.pipeline import Call, Pipeline, nested_call
from core.quota import Reservation
from core.routing import BoundTarget
from core.tracing import new_request_id

Classify = Callable[[list[str], FilterContext | None], Awaitable[list[dict[str, float]]]]

ROUTE = "filter:moderation"
"""The moderation checks' route label on spans and metrics (clients' own calls use
`/v1/moderations`)."""
FLAG = "moderation:check"


def routed_classifier(pipeline: Pipeline, model: str) -> Classify:
    """`classify(texts, ctx)`: category scores per text from the virtual model `model`, routed
    under the checked call's rules (a private key reaches only private targets) and recorded as
    a child span of that call (`ctx`; None: a check outside any call, not recorded).

    Raises:
        ConfigError: no virtual model of that name is configured.
    """
    router = pipeline.router
    if not router.knows(model):
        raise ConfigError(f"filters.moderation.model: unknown virtual model '{model}'")

    async def classify(texts: list[str], ctx: FilterContext | None) -> list[dict[str, float]]:
        env = Envelope(
            id=new_request_id(),
            modality=Modality.MODERATION,
            model=model,
            messages=[Message("user", [TextPart(t)]) for t in texts],
            principal=ctx.principal if ctx is not None else None,
        )
        call = _child_call(ctx, model) if ctx is not None else None
        attempts = call.span.attempts if call is not None else []
        reservation: Reservation | None = None
        try:
            targets = router.candidates(router.route(model), env)
            if call is not None:
                cost = _estimate_cost(pipeline, env, targets)
                reservation = await pipeline.reserve(call, env, only=_BUDGETS, cost_usd=cost)
            reply, target = await router.send(env, targets, attempts)
            scores = scores_of(reply, len(texts))
        except GatewayError as exc:
            if call is not None:
                # What a failed attempt consumed is unknown: the span records the failure only.
                await _release(pipeline, call, reservation)
                await pipeline.fail(call, exc)
            raise
        except anyio.get_cancelled_exc_class():
            # The filter's deadline (or the client leaving) cut the check off mid-call.
            if call is not None:
                with anyio.CancelScope(shield=True):
                    await _release(pipeline, call, reservation)
                    await pipeline.fail(call, UpstreamTimeout("The moderation check was cut off."))
            raise
        if call is not None:
            assert reservation is not None  # reserved before the check was sent
            await _record(pipeline, call, env, reply, target, reservation)
        return scores

    return classify


_BUDGETS = frozenset({"budget"})


def _estimate_cost(pipeline: Pipeline, env: Envelope, targets: list[BoundTarget]) -> float | None:
    """The check's price before it runs: its texts' tokens at the dearest candidate's catalog
    price (None when a candidate has none: the gate then prices the virtual model itself)."""
    usage = Usage(input_tokens=estimate_prompt_tokens(env))
    costs = [pipeline.price(t, usage, None) for t in targets]
    known = [c for c in costs if c is not None]
    return max(known) if known and len(known) == len(costs) else None


async def _release(pipeline: Pipeline, call: Call, reservation: Reservation | None) -> None:
    """Give back a failed check's estimate (what a failed attempt consumed is unknown)."""
    if reservation is not None:
        await pipeline.settle(call, reservation, None, Usage())


def _child_call(ctx: FilterContext, model: str) -> Call:
    """The moderation check's own call: a child of the checked call's span, same attribution."""
    parent = ctx.trace or TraceContext(trace_id=ctx.span_id, span_id=ctx.span_id)
    return nested_call(
        ctx.principal,
        parent,
        ctx.span_id,
        lambda span_id: f"{ctx.request_id}.moderation-{span_id[:8]}",
        ROUTE,
        modality=Modality.MODERATION.value,
        model_requested=model,
        flags=[FLAG],
    )


async def _record(
    pipeline: Pipeline,
    call: Call,
    env: Envelope,
    reply: Envelope,
    target: BoundTarget,
    reservation: Reservation,
) -> None:
    span = call.span
    usage = reply.usage
    if usage is None or not (usage.input_tokens or usage.output_tokens):
        # The moderation wire reports no usage: the texts sent are the estimate.
        span.flags.append("usage_estimated")
        usage = Usage(input_tokens=estimate_prompt_tokens(env))
    # Prices the span (provider, cost, `cache_hit`/`unpriced` flags) and settles the budgets.
    await pipeline.settle(call, reservation, target, usage)
    await pipeline.record(call, usage)


def scores_of(reply: Envelope, count: int) -> list[dict[str, float]]:
    """The `category_scores` of each result in a moderation reply.

    Raises:
        UpstreamError: the reply does not hold `count` results with numeric scores.
    """
    results = reply.extra.get("results")
    if not isinstance(results, list) or len(results) != count:
        raise UpstreamError("The moderation model answered with the wrong number of results.")
    out: list[dict[str, float]] = []
    for result in results:
        scores: Any = result.get("category_scores") if isinstance(result, Mapping) else None
        if not isinstance(scores, Mapping):
            raise UpstreamError("The moderation model answered without category scores.")
        out.append(
            {
                str(k): float(v)
                for k, v in scores.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
        )
    return out
