"""The pipeline's filter seams, driven with the real sim provider and the memory store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
import pytest

from adapters.egress.sim import SimProvider
from adapters.egress.sim_options import SimOptions
from core.access import Authenticator, KeyRecord, hash_secret
from core.config import Price, Target, VirtualModel
from core.envelope import Envelope, Message, Modality, StreamChunk, TextPart
from core.errors import ContentBlocked
from core.filtering import Continue, Decision, FilterContext, Reject, Rewrite
from core.metering import PriceCatalog
from core.metrics import Metrics
from core.pipeline import CallInfo, Pipeline
from core.quota import Unlimited
from core.routing import Router
from core.tracing import Span, SpanWriter
from store.memory import MemoryStore

SECRET = "agw_pipeline-test-secret"


@dataclass
class RecordingFilter:
    """A filter that notes when it runs and can rewrite or reject on either side."""

    name: str
    log: list[str]
    reject_request: bool = False
    reject_response: bool = False
    rewrite_to: str | None = None
    seen: list[str] = field(default_factory=list)

    async def on_request(self, env: Envelope, ctx: FilterContext) -> Decision:
        self.log.append(f"{self.name}:request")
        if self.reject_request:
            return Reject(ContentBlocked(f"{self.name} blocked the request"))
        if self.rewrite_to is not None:
            env.messages[-1].parts = [TextPart(self.rewrite_to)]
            return Rewrite(env)
        return Continue()

    async def on_response(self, env: Envelope, ctx: FilterContext) -> Decision:
        self.log.append(f"{self.name}:response")
        self.seen.append(env.text())
        if self.reject_response:
            return Reject(ContentBlocked(f"{self.name} blocked the reply"))
        return Continue()

    async def on_stream(
        self, chunks: AsyncIterator[StreamChunk], ctx: FilterContext
    ) -> AsyncIterator[StreamChunk]:
        self.log.append(f"{self.name}:stream")
        async for chunk in chunks:
            yield chunk


async def run(filters: list[RecordingFilter], *, stream: bool = False) -> tuple[list[Span], str]:
    store = MemoryStore()
    await store.open()
    await store.create_key(
        KeyRecord(id="k1", name="k", key_hash=hash_secret(SECRET), prefix="agw_", org_path="a/b/c")
    )
    sim = SimProvider("sim", SimOptions())
    router = Router(
        [VirtualModel(name="m", targets=[Target(provider="sim", model="sim-1")])],
        {"sim": sim},
        {"sim": "public"},
    )
    spans = SpanWriter(store)
    pipeline = Pipeline(
        authenticator=Authenticator(store),
        router=router,
        quota=Unlimited(),
        filters=filters,
        prices=PriceCatalog([Price(provider="sim", model="sim-1", input_per_1m=1.0)]),
        spans=spans,
        metrics=Metrics(),
    )
    env = Envelope(
        id="r",
        modality=Modality.CHAT,
        model="m",
        stream=stream,
        messages=[Message("user", [TextPart("hello world")])],
    )
    text = ""
    async with anyio.create_task_group() as tg:
        spans.start(tg)
        call = await pipeline.begin(
            CallInfo("req_1", "test", {"authorization": f"Bearer {SECRET}"})
        )
        try:
            if stream:
                chunks = await pipeline.stream(call, env)
                async for chunk in chunks:
                    text += chunk.text or ""
                await chunks.aclose()
            else:
                text = (await pipeline.complete(call, env)).text()
        except ContentBlocked as exc:
            text = f"blocked: {exc.message}"
        await spans.aclose()
    return await store.list_spans(), text


@pytest.mark.anyio
async def test_request_filters_run_in_order_and_response_filters_in_reverse() -> None:
    log: list[str] = []
    spans, text = await run([RecordingFilter("a", log), RecordingFilter("b", log)])
    assert log == ["a:request", "b:request", "b:response", "a:response"]
    assert text == "sim: hello world"
    assert spans[0].status == "ok"


@pytest.mark.anyio
async def test_stream_filters_wrap_in_reverse_so_the_first_filter_sees_the_final_text() -> None:
    log: list[str] = []
    spans, text = await run([RecordingFilter("a", log), RecordingFilter("b", log)], stream=True)
    assert log == ["a:request", "b:request", "a:stream", "b:stream"]  # a wraps b's output
    assert text == "sim: hello world"
    assert spans[0].output_tokens > 0


@pytest.mark.anyio
async def test_a_rewrite_is_what_the_upstream_receives() -> None:
    log: list[str] = []
    later = RecordingFilter("b", log)
    _, text = await run([RecordingFilter("a", log, rewrite_to="redacted words"), later])
    assert text == "sim: redacted words"


@pytest.mark.anyio
async def test_a_request_rejection_never_reaches_the_upstream() -> None:
    log: list[str] = []
    spans, text = await run([RecordingFilter("a", log, reject_request=True)])
    assert text == "blocked: a blocked the request"
    assert spans[0].attempts == []
    assert (spans[0].status, spans[0].error_code) == ("error", "content_blocked")
    assert spans[0].input_tokens == 0


@pytest.mark.anyio
async def test_a_reply_rejected_after_the_upstream_answered_still_counts_its_usage() -> None:
    log: list[str] = []
    spans, text = await run([RecordingFilter("a", log, reject_response=True)])
    assert text == "blocked: a blocked the reply"
    span = spans[0]
    assert (span.status, span.error_code, span.http_status) == ("error", "content_blocked", 400)
    assert span.input_tokens > 0
    assert span.output_tokens > 0
    assert span.cost_usd == pytest.approx(span.input_tokens / 1_000_000)
