"""The moderation model reached through agentgw's routing, in process: the `type: sim` provider
answers `/v1/moderations` as the sim server does, and a failing first target fails over. Each
check is recorded as a child span of the call it checked (the pipeline's own writer and store).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import pytest

from adapters.egress.sim import SimProvider
from adapters.egress.sim_options import SimOptions
from core.access import Authenticator, KeyRecord, Principal, Scopes, hash_secret
from core.config import ConfigError, Price, VirtualModel
from core.envelope import Envelope, Message, Modality, TextPart
from core.errors import ContentBlocked, PermissionDenied, QuotaExceeded, UpstreamError
from core.filtering import FilterContext, Reject
from core.governance import Budget, GovernanceGate, MemoryCounters
from core.metering import PriceCatalog
from core.metrics import Metrics
from core.moderation_model import FLAG, ROUTE, routed_classifier, scores_of
from core.pipeline import CallInfo, Pipeline
from core.quota import Unlimited
from core.routing import Router
from core.tracing import Span, SpanWriter
from filters.moderation import ModerationFilter
from store.memory import MemoryStore
from tests.filters.pii_support import context, user

SECRET = "agw_moderation-routed-secret"
PER_CALL = 0.0004


def _router(first_fails: bool, network: str = "private", *, hangs: bool = False) -> Router:
    providers = {
        "down": SimProvider("down", SimOptions(fail_rate=1.0, fail_status=503)),
        # A model that hangs: answers long after any filter deadline.
        "up": SimProvider("up", SimOptions(latency_ms=60_000 if hangs else 0.0)),
    }
    targets = [{"provider": "up", "model": "sim-moderation-1"}]
    if first_fails:
        targets.insert(0, {"provider": "down", "model": "sim-moderation-1"})
    guard = VirtualModel.model_validate({"name": "guard", "targets": targets})
    chat = VirtualModel.model_validate(
        {"name": "chat", "targets": [{"provider": "up", "model": "sim-1"}]}
    )
    return Router([guard, chat], providers, {"down": network, "up": network})


@dataclass
class Rig:
    store: MemoryStore
    spans: SpanWriter
    metrics: Metrics
    pipeline: Pipeline


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    store = MemoryStore()
    await store.open()
    record = KeyRecord(
        id="k1", name="k", key_hash=hash_secret(SECRET), prefix="agw_", org_path="a/b/c"
    )
    await store.create_key(record)
    spans = SpanWriter(store)
    metrics = Metrics()
    pipeline = Pipeline(
        authenticator=Authenticator(store),
        router=_router(True),
        quota=Unlimited(),
        filters=[],
        prices=PriceCatalog([Price(provider="up", model="sim-moderation-1", per_call=PER_CALL)]),
        spans=spans,
        metrics=metrics,
    )
    async with anyio.create_task_group() as tg:
        spans.start(tg)
        yield Rig(store, spans, metrics, pipeline)
        await spans.aclose()


def _chat(text: str) -> Envelope:
    return Envelope(
        id="r", modality=Modality.CHAT, model="chat", messages=[Message("user", [TextPart(text)])]
    )


async def _spans(rig: Rig) -> list[Span]:
    await rig.spans.aclose()
    return await rig.store.list_spans()


@pytest.mark.anyio
@pytest.mark.parametrize("first_fails", [False, True], ids=["direct", "failover"])
async def test_the_routed_classifier_scores_each_text(rig: Rig, first_fails: bool) -> None:
    rig.pipeline.router = _router(first_fails)
    classify = routed_classifier(rig.pipeline, "guard")
    hateful, benign = await classify(["They are vermin.", "[sim-score:violence=0.42] hello"], None)
    assert hateful["hate"] > 0.9 and benign["hate"] < 0.01
    assert benign["violence"] == 0.42
    assert await _spans(rig) == []  # a check outside any call has nothing to attach to


@pytest.mark.anyio
async def test_a_check_is_a_priced_child_span_of_the_call_it_checked(rig: Rig) -> None:
    rig.pipeline.use_filters([ModerationFilter(classify=routed_classifier(rig.pipeline, "guard"))])
    call = await rig.pipeline.begin(
        CallInfo("req_1", "/v1/chat/completions", {"authorization": f"Bearer {SECRET}"})
    )
    reply = await rig.pipeline.complete(call, _chat("Summarise the quarterly report."))
    assert reply.text() == "sim: Summarise the quarterly report."

    spans = await _spans(rig)
    (parent,) = [s for s in spans if s.route == "/v1/chat/completions"]
    checks = [s for s in spans if s.route == ROUTE]
    assert len(checks) == 2  # the request, then the reply
    check = checks[0]
    assert all(c.parent_span_id == parent.span_id for c in checks)
    assert check.parent_span_id == parent.span_id and check.trace_id == parent.trace_id
    assert check.span_id != parent.span_id and check.request_id.startswith("req_1.")
    assert (check.key_id, check.org_path) == ("k1", "a/b/c")
    assert check.modality == "moderation" and check.model_requested == "guard"
    assert (check.provider, check.upstream_model) == ("up", "sim-moderation-1")
    assert FLAG in check.flags and "usage_estimated" in check.flags
    assert check.cost_usd == pytest.approx(PER_CALL) and check.input_tokens > 0
    # The failed first target is on the check's span, not on the checked call's.
    assert [a.status for a in check.attempts] == ["error", "ok"]
    assert [a.provider for a in parent.attempts] == ["up"]
    sample = rig.metrics.registry.get_sample_value
    assert sample("agentgw_requests_total", {"route": ROUTE, "model": "guard", "status": "ok"}) == 2
    assert sample("agentgw_cost_usd_total", {"model": "guard"}) == pytest.approx(2 * PER_CALL)


@pytest.mark.anyio
async def test_a_blocked_call_still_records_the_check_that_blocked_it(rig: Rig) -> None:
    rig.pipeline.use_filters([ModerationFilter(classify=routed_classifier(rig.pipeline, "guard"))])
    call = await rig.pipeline.begin(
        CallInfo("req_2", "/v1/chat/completions", {"authorization": f"Bearer {SECRET}"})
    )
    with pytest.raises(ContentBlocked):
        await rig.pipeline.complete(call, _chat("They are vermin, all of them."))
    spans = {s.route: s for s in await _spans(rig)}
    assert spans["/v1/chat/completions"].status == "error"
    check = spans[ROUTE]
    assert check.status == "ok" and check.cost_usd == pytest.approx(PER_CALL)
    assert check.parent_span_id == spans["/v1/chat/completions"].span_id


@pytest.mark.anyio
async def test_the_filter_blocks_on_the_routed_model(rig: Rig) -> None:
    moderation = ModerationFilter(classify=routed_classifier(rig.pipeline, "guard"))
    decision = await moderation.on_request(user("They are vermin, all of them."), context())
    assert isinstance(decision, Reject) and "hate" in decision.error.message
    (check,) = await _spans(rig)  # the context has no trace: the span id is the parent
    assert check.parent_span_id == "span-1" and check.key_id == "k1"


@pytest.mark.anyio
async def test_an_unknown_virtual_model_is_a_config_error(rig: Rig) -> None:
    with pytest.raises(ConfigError, match="unknown virtual model 'nope'"):
        routed_classifier(rig.pipeline, "nope")


def test_a_reply_without_one_result_per_text_is_an_upstream_error() -> None:
    reply = Envelope(id="r", modality=Modality.MODERATION, model="guard")
    reply.extra["results"] = [{"category_scores": {"hate": 0.1}}]
    with pytest.raises(UpstreamError, match="wrong number"):
        scores_of(reply, 2)
    reply.extra["results"] = [{"flagged": True}]
    with pytest.raises(UpstreamError, match="without category scores"):
        scores_of(reply, 1)


@pytest.mark.anyio
async def test_a_private_keys_text_never_goes_to_a_public_moderation_model(rig: Rig) -> None:
    rig.pipeline.router = _router(False, network="public")
    private = Principal("k1", "vault", "dept/team", scopes=Scopes(egress="private"))
    ctx = FilterContext("req-1", private, "span-1", {})
    classify = routed_classifier(rig.pipeline, "guard")
    with pytest.raises(PermissionDenied):
        await classify(["hello"], ctx)
    # Through the filter, that is a closed failure: 503, nothing sent.
    moderation = ModerationFilter(classify=classify)
    decision = await moderation.on_request(user("hello"), ctx)
    assert isinstance(decision, Reject) and decision.error.status == 503
    assert (await classify(["hello"], None))[0]["hate"] < 0.01  # a public key may use it
    failed = await _spans(rig)
    assert failed and all(s.status == "error" and s.error_code for s in failed)


@pytest.mark.anyio
async def test_a_check_cut_off_by_the_filter_deadline_is_still_recorded(rig: Rig) -> None:
    rig.pipeline.router = _router(False, hangs=True)
    moderation = ModerationFilter(classify=routed_classifier(rig.pipeline, "guard"), timeout_ms=50)
    decision = await moderation.on_request(user("hello"), context())
    assert isinstance(decision, Reject) and decision.error.status == 503
    (check,) = await _spans(rig)
    assert (check.status, check.error_code) == ("error", "upstream_timeout")
    assert check.route == ROUTE and check.parent_span_id == "span-1"


@dataclass
class Budgeted:
    rig: Rig
    gate: GovernanceGate
    budget: Budget


def _free_chat(model: str) -> tuple[float, float] | None:
    # The checked chat model costs nothing: only the checks spend the budget.
    return (0.0, 0.0) if model == "chat" else None


@pytest.fixture
async def budgeted(rig: Rig) -> Budgeted:
    # Room for two checks at PER_CALL (plus a little), not three.
    budget = Budget("key", "k1", 2.5 * PER_CALL, "day")
    gate = GovernanceGate(MemoryCounters(), budgets=[budget], price_for=_free_chat)
    rig.pipeline = Pipeline(
        authenticator=Authenticator(rig.store),
        router=_router(False),
        quota=gate,
        filters=[],
        prices=PriceCatalog([Price(provider="up", model="sim-moderation-1", per_call=PER_CALL)]),
        spans=rig.spans,
        metrics=rig.metrics,
    )
    return Budgeted(rig, gate, budget)


async def _checked_chat(b: Budgeted, request_id: str, fail: str = "closed") -> Envelope:
    pipeline = b.rig.pipeline
    classify = routed_classifier(pipeline, "guard")
    pipeline.use_filters([ModerationFilter(classify=classify, fail=fail)])  # type: ignore[arg-type]
    call = await pipeline.begin(
        CallInfo(request_id, "/v1/chat/completions", {"authorization": f"Bearer {SECRET}"})
    )
    return await pipeline.complete(call, _chat("Summarise the quarterly report."))


@pytest.mark.anyio
async def test_checks_are_reserved_and_settled_on_the_callers_budget(budgeted: Budgeted) -> None:
    reply = await _checked_chat(budgeted, "req_b1")
    assert reply.text() == "sim: Summarise the quarterly report."
    # Two checks (request and reply), each settled to its metered per-call price.
    spent = await budgeted.gate.used(budgeted.budget)
    assert spent == round(2 * PER_CALL * 1_000_000)


@pytest.mark.anyio
async def test_a_check_the_budget_cannot_pay_for_fails_closed_with_the_budget_error(
    budgeted: Budgeted,
) -> None:
    await _checked_chat(budgeted, "req_b1")
    with pytest.raises(QuotaExceeded, match="budget of key k1 is spent"):
        await _checked_chat(budgeted, "req_b2")
    # Nothing was sent for the refused check, and its hold was not left on the counter.
    assert await budgeted.gate.used(budgeted.budget) == round(2 * PER_CALL * 1_000_000)
    spans = await _spans(budgeted.rig)
    refused = [s for s in spans if s.request_id.startswith("req_b2")]
    assert {(s.route, s.error_code) for s in refused} == {
        ("/v1/chat/completions", "insufficient_quota"),
        (ROUTE, "insufficient_quota"),
    }
    assert all(s.attempts == [] for s in refused if s.route == ROUTE)


@pytest.mark.anyio
async def test_a_check_the_budget_cannot_pay_for_is_skipped_when_failing_open(
    budgeted: Budgeted,
) -> None:
    await _checked_chat(budgeted, "req_b1")
    reply = await _checked_chat(budgeted, "req_b2", fail="open")
    assert reply.text() == "sim: Summarise the quarterly report."
    assert await budgeted.gate.used(budgeted.budget) == round(2 * PER_CALL * 1_000_000)
    checks = [s for s in await _spans(budgeted.rig) if s.route == ROUTE]
    refused = [s.error_code for s in checks if s.request_id.startswith("req_b2")]
    assert refused == ["insufficient_quota", "insufficient_quota"]  # request and reply
