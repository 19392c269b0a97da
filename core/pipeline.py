"""The one path every call takes.

    authenticate → authorize → reserve → request filters → route (failover)
        → response filters → meter → settle → record

Ingress adapters call `begin` with the request's headers (authentication comes before the body
is even read), decode the body into an Envelope, then call `complete` or `stream`. Every
authenticated call ends in exactly one complete span, whether it succeeded or not; `fail`
records the span of a call that ended before it reached the pipeline proper (a bad body).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from core.access import (
    Authenticator,
    Principal,
    authorize_data_plane,
    authorize_modality,
    authorize_model,
    authorize_tool,
    bearer_secret,
)
from core.callchain import CallChain
from core.envelope import (
    Envelope,
    Finding,
    Message,
    Modality,
    StreamChunk,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    TraceContext,
    Usage,
)
from core.errors import GatewayError
from core.filtering import Continue, Filter, FilterContext, Reject, Rewrite
from core.mcp import ToolOutput
from core.media import media_usage
from core.metering import PriceCatalog, estimate_prompt_tokens, estimate_tokens
from core.metrics import Metrics
from core.quota import QuotaGate, Reservation
from core.routing import BoundTarget, Router
from core.tracing import Attempt, Span, SpanWriter, new_span_id, trace_context

logger = logging.getLogger("agentgw.pipeline")


@dataclass(frozen=True, slots=True)
class CallInfo:
    """What the ingress knows of a request before reading its body."""

    request_id: str
    route: str
    headers: Mapping[str, str]
    client: str | None = None


@dataclass(slots=True)
class Call:
    """One authenticated call in flight."""

    info: CallInfo
    principal: Principal
    trace: TraceContext
    span: Span
    started: float
    recorded: bool = False
    state: dict[str, object] = field(default_factory=dict)
    # Reply headers the governance gate asks for (`x-ratelimit-*`); ingresses merge them in.
    headers: dict[str, str] = field(default_factory=dict)
    # `estimate_prompt_tokens` of the request as admitted (before the request filters).
    prompt_tokens: int | None = None

    @property
    def request_id(self) -> str:
        return self.info.request_id


class Pipeline:
    """Runs calls through every stage. Built once by `core.app` and shared by all ingresses."""

    def __init__(
        self,
        *,
        authenticator: Authenticator,
        router: Router,
        quota: QuotaGate,
        filters: Sequence[Filter],
        prices: PriceCatalog,
        spans: SpanWriter,
        metrics: Metrics,
    ) -> None:
        self.router = router
        self._auth = authenticator
        self._quota = quota
        self._filters = tuple(filters)
        self._prices = prices
        self._spans = spans
        self._metrics = metrics
        # Completions' tool calls, so the MCP call that runs one becomes its child span.
        self.chain = CallChain()

    async def begin(self, info: CallInfo) -> Call:
        """Authenticate the caller and open the call's span.

        Raises:
            AuthenticationFailed: no usable key.
            AuthThrottled: the client's address failed authentication too often lately.
            PermissionDenied: an admin-API key, or a client outside the key's IP allowlist.
        """
        # The Authenticator counts failures (agentgw_auth_failures_total) and lockouts itself.
        principal = await self._auth.authenticate(bearer_secret(info.headers), client=info.client)
        authorize_data_plane(principal)
        trace = trace_context(info.headers)
        span = _open_span(info.request_id, trace, principal, info.route)
        return Call(
            info=info, principal=principal, trace=trace, span=span, started=time.perf_counter()
        )

    async def authenticate(self, headers: Mapping[str, str], client: str | None) -> Principal:
        """Authenticate a caller without opening a call (a session's setup, such as MCP's).

        Raises:
            AuthenticationFailed: no usable key.
            AuthThrottled: the client's address failed authentication too often lately.
            PermissionDenied: an admin-API key, or a client outside the key's IP allowlist.
        """
        principal = await self._auth.authenticate(bearer_secret(headers), client=client)
        authorize_data_plane(principal)
        return principal

    async def call_tool(
        self,
        call: Call,
        tool: str,
        arguments: dict[str, Any],
        run: Callable[[dict[str, Any]], Awaitable[ToolOutput]],
        *,
        server: str,
        price_usd: float | None,
    ) -> ToolOutput:
        """Run one governed tool call (MCP): authorize the tool, reserve (`price_usd` is the
        budgets' estimate; None: unpriced, refused by a `block` budget), filter the arguments
        (scope TOOL_INPUT), `run` it upstream, filter the result (scope TOOL_OUTPUT), settle
        `price_usd` and record one span (modality `tool`, `span.tool` set).

        The span's parent is the session's completion that asked for this tool, if any (see
        `core.callchain`). `run` receives the filtered arguments and raises a GatewayError when
        the upstream fails.

        Raises:
            GatewayError: from any stage; the span is recorded before it propagates.
        """
        span = call.span
        span.modality = Modality.TOOL.value
        span.tool = span.model_requested = tool
        span.provider = server
        if span.parent_span_id is None:
            span.parent_span_id = self.chain.parent_of(span.trace_id, tool)
        text = json.dumps(arguments, ensure_ascii=False)
        request = _tool_envelope(call, tool, Message("assistant", [ToolCallPart(tool, tool, text)]))
        reservation: Reservation | None = None
        ran = False
        try:
            authorize_modality(call.principal, Modality.TOOL.value)
            authorize_tool(call.principal, tool)
            reservation = await self._quota.reserve(
                call.principal, request, call.request_id, cost_usd=price_usd
            )
            call.headers.update(self._quota.headers(reservation))
            fctx = self._filter_context(call)
            request = await self._request_filters(request, fctx)
            output = await self._run_tool(call, server, tool, _tool_arguments(request), run)
            ran = True
            texts = [TextPart(t) for t in output.texts]
            result = ToolResultPart(tool, [*texts], is_error=output.is_error)
            reply = await self._response_filters(
                _tool_envelope(call, tool, Message("tool", [result])), fctx
            )
            output.texts = _tool_texts(reply)
            if output.is_error:
                span.flags.append("tool_error")
            span.cost_usd = price_usd
            if price_usd is None:
                span.flags.append("unpriced")
            await self._quota.settle(reservation, Usage(), price_usd)
            await self._record(call, Usage())
            return output
        except GatewayError as exc:
            if reservation is not None:
                # A tool that ran is owed even when its result is then refused.
                span.cost_usd = price_usd if ran else None
                await self._quota.settle(reservation, Usage(), span.cost_usd)
            await self.fail(call, exc)
            raise

    async def _run_tool(
        self,
        call: Call,
        server: str,
        tool: str,
        arguments: dict[str, Any],
        run: Callable[[dict[str, Any]], Awaitable[ToolOutput]],
    ) -> ToolOutput:
        started = time.perf_counter()
        try:
            output = await run(arguments)
        except GatewayError as exc:
            ms = (time.perf_counter() - started) * 1000
            call.span.attempts.append(Attempt(server, tool, "error", exc.code, ms))
            raise
        ms = (time.perf_counter() - started) * 1000
        call.span.attempts.append(Attempt(server, tool, "ok", latency_ms=ms))
        return output

    def _note_tool_calls(self, call: Call, reply: Envelope) -> None:
        for message in reply.messages:
            for part in message.parts:
                if isinstance(part, ToolCallPart):
                    self.chain.note(call.span.trace_id, part.name, call.span.span_id)

    def models_for(self, principal: Principal) -> list[str]:
        """The virtual models this principal may call."""
        return [m for m in self.router.names if principal.scopes.allows_model(m)]

    async def complete(self, call: Call, env: Envelope) -> Envelope:
        """Run a non-streaming call to the end.

        Raises:
            GatewayError: from any stage; the span is recorded before it propagates.
        """
        reservation: Reservation | None = None
        served: tuple[BoundTarget, Usage] | None = None
        try:
            targets = self._admit(call, env)
            reservation = await self._quota.reserve(
                call.principal,
                env,
                call.request_id,
                cost_usd=self._media_cost(env, targets),
                prompt_tokens=call.prompt_tokens,
            )
            call.headers.update(self._quota.headers(reservation))
            fctx = self._filter_context(call)
            env = await self._request_filters(env, fctx)
            reply, target = await self.router.send(env, targets, call.span.attempts)
            _note_dropped(call, env, target)
            # What the upstream consumed is owed even if a response filter rejects the reply.
            usage = reply.usage or self._estimate(call, env, reply.text())
            served = (target, usage)
            reply = await self._response_filters(reply, fctx)
            self._note_tool_calls(call, reply)
            reply.model = env.model
            reply.cost_usd = await self._settle(call, reservation, target, usage)
            await self._record(call, usage)
            return reply
        except GatewayError as exc:
            if reservation is not None and served is not None:
                await self._settle(call, reservation, *served)
            elif reservation is not None:
                await self._quota.settle(reservation, Usage(), None)
            await self.fail(call, exc, served[1] if served else None)
            raise

    async def stream(self, call: Call, env: Envelope) -> AsyncGenerator[StreamChunk, None]:
        """Open a streamed call: returns once the first chunk is in hand.

        Errors up to the first chunk raise here (so the ingress can answer with a plain error);
        later ones raise from the returned iterator. The caller must `aclose()` the iterator.

        Raises:
            GatewayError: from any stage before the first chunk; the span is recorded.
        """
        reservation: Reservation | None = None
        try:
            targets = self._admit(call, env)
            reservation = await self._quota.reserve(
                call.principal, env, call.request_id, prompt_tokens=call.prompt_tokens
            )
            call.headers.update(self._quota.headers(reservation))
            fctx = self._filter_context(call)
            env = await self._request_filters(env, fctx)
            first, upstream, target = await self.router.open_stream(
                env, targets, call.span.attempts
            )
            _note_dropped(call, env, target)
        except GatewayError as exc:
            if reservation is not None:
                await self._quota.settle(reservation, Usage(), None)
            await self.fail(call, exc)
            raise
        source: AsyncIterator[StreamChunk] = _prepend(first, upstream)
        for f in reversed(self._filters):
            source = f.on_stream(source, fctx)
        return self._metered(call, env, source, upstream, reservation, target)

    async def fail(self, call: Call, error: GatewayError, usage: Usage | None = None) -> None:
        """Record the span of a call that ended with `error` (once; later calls do nothing).

        `usage` is what the call consumed before it failed (a stream cut off midway).
        """
        if call.recorded:
            return
        call.span.status = "error"
        call.span.http_status = error.status
        call.span.error_code = error.code
        provider = call.span.attempts[-1].provider if call.span.attempts else ""
        self._metrics.errors.labels(error.code, provider).inc()
        await self._record(call, usage or Usage())

    # -- stages ---------------------------------------------------------------------------

    def _media_cost(self, env: Envelope, targets: Sequence[BoundTarget]) -> float | None:
        """An image or video call's price before it runs: the images or seconds asked for at
        the dearest target's catalog price. None (priced from tokens, so unpriced media is
        refused by a `block` budget) for other calls or when a target has no price."""
        usage = media_usage(env)
        if usage is None or not targets:
            return None
        costs = [self._prices.cost(t.provider_name, t.model, usage) for t in targets]
        priced = [c for c in costs if c is not None]
        return max(priced) if len(priced) == len(costs) else None

    def _admit(self, call: Call, env: Envelope) -> list[BoundTarget]:
        """Authorize, resolve the route and narrow its targets (see `Router.candidates`)."""
        span = call.span
        span.model_requested = env.model
        span.modality = env.modality.value
        span.stream = env.stream
        env.principal = call.principal
        env.trace = call.trace
        env.id = call.request_id
        authorize_modality(call.principal, env.modality.value)
        authorize_model(call.principal, env.model)
        route = self.router.route(env.model)
        # Estimated once: the eligibility rules and the reservation both need it.
        call.prompt_tokens = estimate_prompt_tokens(env)
        return self.router.candidates(route, env, prompt_tokens=call.prompt_tokens)

    def _filter_context(self, call: Call) -> FilterContext:
        return FilterContext(
            call.request_id, call.principal, call.span.span_id, call.state, call.trace
        )

    async def _request_filters(self, env: Envelope, ctx: FilterContext) -> Envelope:
        try:
            for f in self._filters:
                env = _apply(await f.on_request(env, ctx), env)
        finally:
            # A refusing filter leaves its findings on the envelope it refused: logged too.
            _keep_findings(ctx, env)
        return env

    async def _response_filters(self, env: Envelope, ctx: FilterContext) -> Envelope:
        try:
            for f in reversed(self._filters):
                env = _apply(await f.on_response(env, ctx), env)
        finally:
            _keep_findings(ctx, env)
        return env

    def use_filters(self, filters: Sequence[Filter]) -> None:
        """Install the content filters (built in the lifespan, once the store can be read)."""
        self._filters = tuple(filters)

    # -- long-lived calls: realtime sessions and their responses (adapters.ingress.realtime) --

    @property
    def filter_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self._filters)

    def admit(self, call: Call, env: Envelope) -> list[BoundTarget]:
        """Authorize `env` and return its candidate targets, without running it.

        Raises:
            GatewayError: outside the key's scopes, an unknown model, or no eligible target.
        """
        return self._admit(call, env)

    async def reserve(
        self,
        call: Call,
        env: Envelope,
        *,
        only: frozenset[str] | None = None,
        cost_usd: float | None = None,
    ) -> Reservation:
        """Hold `env`'s estimate on every limit and budget above `call` (`only`: just the
        limits of these kinds, `"budget"` for budgets; `cost_usd`: the price when known before
        the call runs, else it is priced from tokens).

        Raises:
            RateLimited: a limit is reached.
            QuotaExceeded: a budget is spent.
            GovernanceUnavailable: limits cannot be checked and the policy is closed.
        """
        reservation = await self._quota.reserve(
            call.principal, env, call.request_id, cost_usd=cost_usd, only=only
        )
        call.headers.update(self._quota.headers(reservation))
        return reservation

    def split(
        self, reservation: Reservation, kinds: frozenset[str]
    ) -> tuple[Reservation, Reservation]:
        """`reservation` as the limits of `kinds` and the rest, settled separately."""
        return self._quota.split(reservation, kinds)

    async def settle(
        self, call: Call, reservation: Reservation, target: BoundTarget | None, usage: Usage
    ) -> float | None:
        """Settle `reservation` to `usage`; with a target, price it onto `call`'s span."""
        if target is None:
            await self._quota.settle(reservation, usage, None)
            return None
        return await self._settle(call, reservation, target, usage)

    def child(self, call: Call, route: str, suffix: str) -> Call:
        """A call nested in `call` (a realtime response in its session): same principal and
        trace, its own span whose parent is `call`'s, request id `<call's>.<suffix>`."""
        return nested_call(
            call.principal,
            call.trace,
            call.span.span_id,
            lambda _: f"{call.request_id}.{suffix}",
            route,
            modality=call.span.modality,
            model_requested=call.span.model_requested,
            stream=True,
            headers=call.info.headers,
            client=call.info.client,
        )

    async def filter_request(self, call: Call, env: Envelope) -> Envelope:
        """Run the request filters on `env` (text the caller sent, mid-call).

        Raises:
            GatewayError: a filter refused it (findings are kept on `call`).
        """
        return await self._request_filters(env, self._filter_context(call))

    async def filter_response(self, call: Call, env: Envelope) -> Envelope:
        """Run the response filters on `env` (text the upstream sent, mid-call).

        Raises:
            GatewayError: a filter refused it.
        """
        return await self._response_filters(env, self._filter_context(call))

    def filter_stream(
        self, call: Call, source: AsyncIterator[StreamChunk]
    ) -> AsyncIterator[StreamChunk]:
        """`source` wrapped by every filter's stream hook, as a streamed reply is."""
        fctx = self._filter_context(call)
        for f in reversed(self._filters):
            source = f.on_stream(source, fctx)
        return source

    async def record(self, call: Call, usage: Usage) -> None:
        """Record `call`'s span with `usage` (once; a failed call goes through `fail`)."""
        await self._record(call, usage)

    def price(self, target: BoundTarget, usage: Usage, upstream_ms: float | None) -> float | None:
        """`usage` served by `target` at its catalog price (None: the catalog has none)."""
        seconds = upstream_ms / 1000 if upstream_ms is not None else None
        return self._prices.cost(
            target.provider_name, target.model, usage, upstream_seconds=seconds
        )

    def _estimate(self, call: Call, env: Envelope, output: str) -> Usage:
        call.span.flags.append("usage_estimated")
        return Usage(
            input_tokens=estimate_prompt_tokens(env), output_tokens=estimate_tokens(output)
        )

    async def _settle(
        self, call: Call, reservation: Reservation, target: BoundTarget, usage: Usage
    ) -> float | None:
        if target.cache_hit:
            # Served from the response cache: the tokens are metered, no upstream was paid.
            call.span.flags.append("cache_hit")
            cost: float | None = 0.0
        else:
            served = [a.latency_ms for a in call.span.attempts if a.status == "ok"]
            cost = self._prices.cost(
                target.provider_name,
                target.model,
                usage,
                upstream_seconds=served[-1] / 1000 if served else None,
            )
        if cost is None:
            call.span.flags.append("unpriced")
        span = call.span
        span.provider, span.upstream_model, span.cost_usd = target.provider_name, target.model, cost
        await self._quota.settle(reservation, usage, cost)
        return cost

    async def _metered(
        self,
        call: Call,
        env: Envelope,
        source: AsyncIterator[StreamChunk],
        upstream: AsyncGenerator[StreamChunk, None],
        reservation: Reservation,
        target: BoundTarget,
    ) -> AsyncGenerator[StreamChunk, None]:
        usage: Usage | None = None
        out_chars = 0
        error: GatewayError | None = None
        finished = False
        try:
            async for chunk in source:
                if call.span.ttft_ms is None:
                    call.span.ttft_ms = (time.perf_counter() - call.started) * 1000
                if chunk.usage is not None:
                    usage = chunk.usage
                out_chars += len(chunk.text or "") + sum(len(t.arguments) for t in chunk.tool_calls)
                for delta in chunk.tool_calls:
                    if delta.name:
                        self.chain.note(call.span.trace_id, delta.name, call.span.span_id)
                yield chunk
            finished = True
        except GatewayError as exc:
            error = exc
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await _close(source)
                await upstream.aclose()
                if usage is None:
                    call.span.flags.append("usage_estimated")
                    usage = Usage(
                        input_tokens=estimate_prompt_tokens(env),
                        output_tokens=(out_chars + 3) // 4,
                    )
                await self._settle(call, reservation, target, usage)
                if error is not None:
                    await self.fail(call, error, usage)
                else:
                    if not finished:
                        call.span.status = "client_closed"
                        call.span.flags.append("client_closed")
                    await self._record(call, usage)

    async def _record(self, call: Call, usage: Usage) -> None:
        if call.recorded:
            return
        call.recorded = True
        span = call.span
        if call.state:  # filters keep their findings there; with none, nothing to collect
            span.findings = _findings(call.state)
            span.redactions = sum(1 for f in span.findings if f.start is not None)
            # A filter that could not check and let the call through says so on the span.
            span.flags.extend(
                sorted({f"fail_open:{f.filter}" for f in span.findings if f.action == "fail_open"})
            )
        span.latency_ms = (time.perf_counter() - call.started) * 1000
        span.input_tokens = usage.input_tokens
        span.output_tokens = usage.output_tokens
        span.cached_tokens = usage.cached_tokens
        span.reasoning_tokens = usage.reasoning_tokens
        span.cache_write_tokens = usage.cache_write_tokens
        span.audio_seconds = usage.audio_seconds
        span.images = usage.images
        span.video_seconds = usage.video_seconds
        served = [a for a in span.attempts if a.status == "ok"]
        if served and span.upstream_ms is None:
            span.upstream_ms = served[-1].latency_ms
        # A model name the router does not know is client input: never a label value, or any
        # client could grow the metrics without bound.
        model = span.model_requested or ""
        if not self.router.knows(model):
            model = "unknown"
        series = self._metrics.call_series(span.route, model, span.status)
        series.requests.inc()
        series.duration.observe(span.latency_ms / 1000)
        if span.ttft_ms is not None:
            series.ttft.observe(span.ttft_ms / 1000)
        if usage.input_tokens:
            series.input_tokens.inc(usage.input_tokens)
        if usage.output_tokens:
            series.output_tokens.inc(usage.output_tokens)
        if usage.cached_tokens:
            series.cached_tokens.inc(usage.cached_tokens)
        if usage.reasoning_tokens:
            series.reasoning_tokens.inc(usage.reasoning_tokens)
        if usage.cache_write_tokens:
            series.cache_write_tokens.inc(usage.cache_write_tokens)
        if span.cost_usd:
            series.cost.inc(span.cost_usd)
        for attempt in span.attempts:
            self._metrics.attempt_series(attempt.provider, attempt.status).inc()
        await self._spans.submit(span)


def nested_call(
    principal: Principal,
    parent: TraceContext,
    parent_span_id: str,
    request_id: Callable[[str], str],
    route: str,
    *,
    modality: str,
    model_requested: str | None,
    stream: bool = False,
    flags: Sequence[str] = (),
    headers: Mapping[str, str] | None = None,
    client: str | None = None,
) -> Call:
    """A call nested under the span `parent_span_id` of trace `parent`: same principal, agent
    and session, its own span; `request_id` makes its id from the new span id."""
    trace = TraceContext(
        trace_id=parent.trace_id,
        span_id=new_span_id(),
        parent_span_id=parent_span_id,
        agent_id=parent.agent_id,
        session_id=parent.session_id,
    )
    span = _open_span(request_id(trace.span_id), trace, principal, route)
    span.modality, span.model_requested = modality, model_requested
    span.stream, span.flags = stream, list(flags)
    info = CallInfo(span.request_id, route, headers or {}, client)
    return Call(info, principal, trace, span, time.perf_counter())


def _open_span(request_id: str, trace: TraceContext, principal: Principal, route: str) -> Span:
    """A call's span as it starts: its place in the trace, who calls, by which route."""
    return Span(
        request_id=request_id,
        span_id=trace.span_id,
        trace_id=trace.trace_id,
        parent_span_id=trace.parent_span_id,
        agent_id=trace.agent_id,
        session_id=trace.session_id,
        started_at=time.time(),
        key_id=principal.key_id,
        org_path=principal.org_path,
        app=principal.app,
        customer=principal.customer,
        route=route,
    )


_FINDINGS = "pipeline.findings"


def _keep_findings(ctx: FilterContext, env: Envelope) -> None:
    if not env.findings:  # the common case: nothing to keep
        return
    kept = ctx.state.setdefault(_FINDINGS, [])
    assert isinstance(kept, list)
    kept.extend(env.findings)


def _findings(state: Mapping[str, object]) -> list[Finding]:
    # Filters that watch a stream have no envelope to attach findings to: by convention they
    # leave a list of `Finding` in the call state (see `core.filtering`), collected here.
    return [
        f
        for value in state.values()
        if isinstance(value, list)
        for f in value
        if isinstance(f, Finding)
    ]


def _apply(decision: Continue | Rewrite | Reject, env: Envelope) -> Envelope:
    match decision:
        case Continue():
            return env
        case Rewrite(envelope=new):
            return new
        case Reject(error=error):
            raise error


def _tool_envelope(call: Call, tool: str, message: Message) -> Envelope:
    return Envelope(
        call.request_id,
        Modality.TOOL,
        tool,
        messages=[message],
        trace=call.trace,
        principal=call.principal,
    )


def _tool_arguments(env: Envelope) -> dict[str, Any]:
    # The request filters may have rewritten the strings inside the arguments, never their shape.
    part = env.messages[0].parts[0]
    assert isinstance(part, ToolCallPart)
    value = json.loads(part.arguments)
    assert isinstance(value, dict)
    return value


def _tool_texts(env: Envelope) -> list[str]:
    part = env.messages[0].parts[0]
    assert isinstance(part, ToolResultPart)
    return [p.text for p in part.content if isinstance(p, TextPart)]


async def _prepend(
    first: StreamChunk | None, rest: AsyncIterator[StreamChunk]
) -> AsyncGenerator[StreamChunk, None]:
    if first is not None:
        yield first
    async for chunk in rest:
        yield chunk


async def _close(it: AsyncIterator[StreamChunk]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        await aclose()


def _note_dropped(call: Call, env: Envelope, target: BoundTarget) -> None:
    # The egress removes these by the same config; the span says what the client asked for
    # that this upstream never saw.
    if target.drop_params:
        sent = target.drop_params & (env.params.keys() | env.extra.keys())
        call.span.flags.extend(f"dropped:{name}" for name in sorted(sent))
