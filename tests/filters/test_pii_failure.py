"""When the analyzer fails or is too slow: block by default, pass with a finding if told to."""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator

import pytest

from core.errors import FilterUnavailable
from core.filtering import Continue, Reject
from filters.pii import Detection, PIIFilter
from filters.pii.entities import CUSTOM_ENTITIES, PATTERN_ENTITIES
from tests.filters.pii_support import SECRET, chunks_of, collect, context, dump, text_chunks, user

EMAIL = "jane.roe@example.com"


class BrokenAnalyzer:
    """Raises with the text in its message, as real libraries sometimes do."""

    supported = PATTERN_ENTITIES | CUSTOM_ENTITIES

    def load(self) -> None:
        pass

    def analyze(self, text: str, entities: Collection[str]) -> tuple[Detection, ...]:
        raise ValueError(f"cannot analyse {text!r}")


class StuckAnalyzer:
    """Never answers until released (a hung analysis)."""

    supported = PATTERN_ENTITIES | CUSTOM_ENTITIES

    def __init__(self) -> None:
        self.release = threading.Event()

    def load(self) -> None:
        pass

    def analyze(self, text: str, entities: Collection[str]) -> tuple[Detection, ...]:
        self.release.wait(5)
        return ()


@pytest.fixture
def stuck() -> Iterator[StuckAnalyzer]:
    analyzer = StuckAnalyzer()
    yield analyzer
    analyzer.release.set()


@pytest.mark.anyio
async def test_analyzer_error_blocks_by_default_without_naming_values() -> None:
    pii = PIIFilter(secret=SECRET, analyzer=BrokenAnalyzer())
    decision = await pii.on_request(user(f"mail {EMAIL}"), context())

    assert isinstance(decision, Reject)
    assert isinstance(decision.error, FilterUnavailable)
    assert decision.error.status == 503
    assert "jane" not in decision.error.message


@pytest.mark.anyio
async def test_analyzer_timeout_blocks_by_default(stuck: StuckAnalyzer) -> None:
    pii = PIIFilter(secret=SECRET, analyzer=stuck, timeout_ms=50)
    decision = await pii.on_request(user(f"mail {EMAIL}"), context())

    assert isinstance(decision, Reject)
    assert isinstance(decision.error, FilterUnavailable)
    assert "timed out" in decision.error.message


@pytest.mark.anyio
async def test_fail_open_passes_the_request_with_a_fail_open_finding(stuck: StuckAnalyzer) -> None:
    pii = PIIFilter(secret=SECRET, analyzer=stuck, timeout_ms=50, fail="open")
    env = user(f"mail {EMAIL}")
    decision = await pii.on_request(env, context())

    assert isinstance(decision, Continue)
    assert EMAIL in dump(env)
    assert [(f.filter, f.kind, f.action) for f in env.findings] == [
        ("pii", "analysis_timeout", "fail_open")
    ]


@pytest.mark.anyio
async def test_failing_analysis_ends_a_stream_with_filter_unavailable() -> None:
    pii = PIIFilter(secret=SECRET, analyzer=BrokenAnalyzer())
    stream = pii.on_stream(chunks_of(text_chunks("mail ", EMAIL, " now")), context())
    with pytest.raises(FilterUnavailable):
        await collect(stream)


@pytest.mark.anyio
async def test_fail_open_stream_passes_output_with_a_finding() -> None:
    pii = PIIFilter(secret=SECRET, analyzer=BrokenAnalyzer(), fail="open")
    ctx = context()
    out = await collect(pii.on_stream(chunks_of(text_chunks("mail ", EMAIL, " now")), ctx))
    assert "".join(c.text or "" for c in out) == f"mail {EMAIL} now"
    findings = ctx.state["pii.stream_findings"]
    assert isinstance(findings, list) and findings
    assert all(f.action == "fail_open" for f in findings)
