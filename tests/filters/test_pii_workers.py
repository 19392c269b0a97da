"""PII analysis in worker processes (`filters.pii.workers: N`): real processes, real analysis.

The same answers as in this process, batched under concurrency, and the failure semantics of
the in-process analyzer: a dead, garbled, stuck or unstartable worker fails closed (or open),
and the next call gets a fresh one. No worker outlives the pool or its parent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator

import anyio
import pytest

from core.config import PiiFilter as PiiFilterConfig
from core.config import PiiRecognizer
from core.errors import FilterUnavailable
from core.filtering import Reject, Rewrite
from filters.pii import Action, Detection, PIIAnalyzer, PIIFilter, build_pii_filter
from filters.pii.workers import (
    HEADER,
    READY,
    WORKER_MODULE,
    AnalysisPool,
    WorkerFailed,
    encode_frame,
)
from tests.filters.pii_support import SECRET, context, dump, load_matrix, user
from tests.perf.memory import descendants

MATRIX = load_matrix()
PATTERN_VALUES = [v for v in MATRIX.values if not v.ner_only]
ENTITIES = tuple(sorted({v.entity for v in PATTERN_VALUES}))
EMAIL = "jane.roe@example.com"

# A worker that says it is ready, then answers every batch with bytes that are not JSON.
GARBLED_WORKER = """
import struct, sys
out, requests = sys.stdout.buffer, sys.stdin.buffer
out.write(struct.pack(">I", 7) + b'"ready"'); out.flush()
while len(head := requests.read(4)) == 4:
    requests.read(struct.unpack(">I", head)[0])
    out.write(struct.pack(">I", 3) + b"{{{"); out.flush()
"""


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),  # as `agentgw serve` runs
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    backend: tuple[str, dict[str, bool]] = request.param
    return backend


def _filter(**options: object) -> PIIFilter:
    """`filters.pii` as configured, with one worker unless told otherwise."""
    return build_pii_filter(
        PiiFilterConfig.model_validate({"workers": 1, **options}), secret=SECRET
    )


@pytest.fixture
async def pool() -> AsyncIterator[AnalysisPool]:
    started = AnalysisPool(1, ner=False, score_threshold=0.3, stall_after=30.0)
    await started.start()
    try:
        yield started
    finally:
        await started.aclose()


@pytest.mark.anyio
async def test_a_worker_finds_exactly_what_the_analyzer_finds_in_process(
    analyzer: PIIAnalyzer, pool: AnalysisPool
) -> None:
    texts = [v.text for v in PATTERN_VALUES] + [
        f"联系人邮箱{EMAIL}电话13812345678",
        "nothing personal here",
        f"a lone surrogate \ud800 before {EMAIL}",
    ]

    got = await pool.analyze(texts, ENTITIES)

    assert got == [analyzer.analyze(text, ENTITIES) for text in texts]
    assert all(got[i] for i in range(len(PATTERN_VALUES)))  # every planted value was found


@pytest.mark.anyio
@pytest.mark.parametrize("action", ["redact", "hash", "pseudonymize"])
async def test_the_filter_rewrites_every_scope_as_it_does_without_workers(
    analyzer: PIIAnalyzer, action: Action
) -> None:
    inline = PIIFilter(secret=SECRET, action=action, entities=ENTITIES, analyzer=analyzer)
    pii = _filter(action=action, entities=list(ENTITIES))
    await pii.warm()
    try:
        for position in MATRIX.positions:
            for planted in PATTERN_VALUES:
                expected = await inline.on_request(position.envelope(planted.text), context())
                decision = await pii.on_request(position.envelope(planted.text), context())
                assert isinstance(decision, Rewrite) and isinstance(expected, Rewrite)
                assert dump(decision.envelope) == dump(expected.envelope)
        assert pii.analyses == inline.analyses  # texts sent, counted the same way
    finally:
        await pii.aclose()


@pytest.mark.anyio
async def test_config_recognizers_and_allow_list_still_apply_with_workers() -> None:
    recognizer = PiiRecognizer(name="EMPLOYEE_ID", pattern=r"E-\d{6}", score=0.8)
    pii = _filter(recognizers=[recognizer], allow_list=["helpdesk@example.com"])
    await pii.warm()
    try:
        env = user(f"E-123456 wrote from {EMAIL} to helpdesk@example.com")
        decision = await pii.on_request(env, context())
    finally:
        await pii.aclose()

    assert isinstance(decision, Rewrite)
    (message,) = decision.envelope.messages
    assert message.text() == "<EMPLOYEE_ID> wrote from <EMAIL_ADDRESS> to helpdesk@example.com"


@pytest.mark.anyio
async def test_ner_runs_in_the_worker_too() -> None:
    pii = _filter(ner=True, entities=["PERSON", "EMAIL_ADDRESS"])
    await pii.warm()
    try:
        decision = await pii.on_request(user(f"Ask Alice Johnson at {EMAIL}."), context())
    finally:
        await pii.aclose()

    assert isinstance(decision, Rewrite)
    assert "Alice" not in dump(decision.envelope) and EMAIL not in dump(decision.envelope)


@pytest.mark.anyio
async def test_concurrent_analyses_are_batched_and_each_gets_its_own_answer(
    pool: AnalysisPool,
) -> None:
    # Each text puts its address at a different offset, so a mixed-up answer cannot pass.
    texts = [f"{'x' * i} mail user{i}@example.com now" for i in range(50)]
    answers: dict[int, tuple[Detection, ...]] = {}
    sent_before = pool.messages

    async def one(i: int) -> None:
        (answers[i],) = await pool.analyze([texts[i]], ("EMAIL_ADDRESS",))

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(one, i)

    for i, text in enumerate(texts):
        (found,) = answers[i]
        assert text[found.start : found.end] == f"user{i}@example.com"
    assert pool.messages - sent_before < 50


@pytest.mark.anyio
async def test_a_worker_killed_mid_flight_fails_closed_and_the_next_call_restarts_it() -> None:
    pii = _filter(timeout_ms=60_000)
    await pii.warm()
    pool = pii._pool
    assert pool is not None
    try:
        (pid,) = pool.pids
        # Killed before the loop hears of it: the pool still sends it the text, which is then
        # in flight to a worker that will never answer.
        os.kill(pid, signal.SIGKILL)
        decision = await pii.on_request(user(f"mail {EMAIL}"), context())

        assert isinstance(decision, Reject)
        assert isinstance(decision.error, FilterUnavailable)
        assert "failed" in decision.error.message and "jane" not in decision.error.message

        again = await pii.on_request(user(f"mail {EMAIL}"), context())
        assert isinstance(again, Rewrite)
        assert EMAIL not in dump(again.envelope)
        assert pool.starts == 2 and pid not in pool.pids
    finally:
        await pii.aclose()


@pytest.mark.anyio
async def test_a_worker_that_answers_garbage_fails_closed_and_is_replaced() -> None:
    pool = AnalysisPool(
        1,
        ner=False,
        score_threshold=0.3,
        stall_after=30.0,
        command=[sys.executable, "-c", GARBLED_WORKER],
    )
    pii = PIIFilter(secret=SECRET, pool=pool, timeout_ms=30_000)
    await pii.warm()
    try:
        decision = await pii.on_request(user(f"mail {EMAIL}"), context())
        assert isinstance(decision, Reject)
        assert isinstance(decision.error, FilterUnavailable)
        assert pool.pids == ()  # killed: the next use starts another

        await pii.on_request(user(f"mail {EMAIL}"), context())
        assert pool.starts == 2
    finally:
        await pool.aclose()


@pytest.mark.anyio
async def test_a_stuck_worker_times_out_like_the_analyzer_and_is_restarted() -> None:
    # A second: the least a batch must be out before its worker counts as stuck.
    pii = _filter(timeout_ms=1000)
    open_pii = _filter(timeout_ms=1000, fail="open")
    await pii.warm()
    await open_pii.warm()
    pool, open_pool = pii._pool, open_pii._pool
    assert pool is not None and open_pool is not None
    try:
        (pid,) = pool.pids
        os.kill(pid, signal.SIGSTOP)  # alive, never answering
        os.kill(open_pool.pids[0], signal.SIGSTOP)

        decision = await pii.on_request(user(f"mail {EMAIL}"), context())
        assert isinstance(decision, Reject)
        assert isinstance(decision.error, FilterUnavailable)
        assert "timed out" in decision.error.message
        env = user(f"mail {EMAIL}")
        passed = await open_pii.on_request(env, context())
        assert not isinstance(passed, Reject)
        assert [(f.kind, f.action) for f in env.findings] == [("analysis_timeout", "fail_open")]
        assert pid not in pool.pids  # out a whole deadline: killed

        pii.timeout = 60.0  # room for the restart (loading the analyzer takes a second or two)
        again = await pii.on_request(user(f"mail {EMAIL}"), context())
        assert isinstance(again, Rewrite)
        assert pool.starts == 2
    finally:
        await pii.aclose()
        await open_pii.aclose()


@pytest.mark.anyio
async def test_a_worker_that_dies_at_start_is_reported_and_not_retried_at_once() -> None:
    pool = AnalysisPool(
        1,
        ner=False,
        score_threshold=0.3,
        stall_after=30.0,
        command=[sys.executable, "-c", "raise SystemExit(3)"],
    )
    pii = PIIFilter(secret=SECRET, pool=pool)
    with pytest.raises(WorkerFailed, match="code 3"):
        await pii.warm()

    for _ in range(3):
        decision = await pii.on_request(user(f"mail {EMAIL}"), context())
        assert isinstance(decision, Reject)
        assert isinstance(decision.error, FilterUnavailable)
    assert pool.starts == 1  # the calls after it failed fast, without starting another
    await pii.aclose()


@pytest.mark.anyio
async def test_aclose_leaves_no_worker_process() -> None:
    pii = _filter(workers=2)
    await pii.warm()
    pool = pii._pool
    assert pool is not None
    pids = set(pool.pids)
    assert len(pids) == 2 and pids <= set(descendants(os.getpid()))

    await pii.aclose()

    assert not pids & set(descendants(os.getpid()))
    decision = await pii.on_request(user(f"mail {EMAIL}"), context())
    assert isinstance(decision, Reject)  # closed: fails closed, starts nothing
    assert pool.starts == 2


def test_a_worker_exits_when_its_input_ends_as_when_the_gateway_dies() -> None:
    worker = subprocess.Popen(
        [sys.executable, "-m", WORKER_MODULE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert worker.stdin is not None and worker.stdout is not None
    try:
        (size,) = HEADER.unpack(worker.stdout.read(HEADER.size))
        assert worker.stdout.read(size) == READY
        worker.stdin.write(encode_frame(b'[[["EMAIL_ADDRESS"]],[[0,"mail jane.roe@example.com"]]]'))
        worker.stdin.flush()
        (size,) = HEADER.unpack(worker.stdout.read(HEADER.size))
        assert worker.stdout.read(size) == b'[[["EMAIL_ADDRESS",5,25,1.0]]]'

        worker.stdin.close()
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def test_workers_must_be_a_count_of_zero_or_more() -> None:
    assert PiiFilterConfig().workers == 0
    with pytest.raises(ValueError, match="workers"):
        PiiFilterConfig.model_validate({"workers": -1})
