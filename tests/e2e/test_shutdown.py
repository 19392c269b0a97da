"""SIGTERM drains: in-flight streams finish, new connections are refused, every span is stored.

The upstream holds its streams after two chunks until `POST /_sim/release`, so the test knows
the streams are in flight when SIGTERM arrives and lets them go only once the gateway says it
is draining (uvicorn's own log line): no timing is involved.
"""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from tests.e2e.procs import Proc, create_key, start_gateway, start_sim

CONFIG = """\
store: sqlite:///gw.db
shutdown: {{drain_seconds: {drain}}}
providers: [{{name: held, type: openai, base_url: "{held}/v1"}}]
models: [{{name: held, targets: [{{provider: held, model: sim-1}}]}}]
"""
TEXT = "one two three four five six seven eight"
DRAINING = "Waiting for connections to close"
STREAMS = 12


@dataclass
class Deployment:
    gateway: Proc
    held: Proc
    key: str
    db: Path


def deploy(tmp_path: Path, drain: int) -> Iterator[Deployment]:
    procs: list[Proc] = []
    try:
        held = start_sim("--hold-after-chunks", "2")
        procs.append(held)
        config = tmp_path / "agentgw.yaml"
        config.write_text(CONFIG.format(drain=drain, held=held.url))
        key = create_key(config, "drained", "ops/shutdown/e2e")["key"]
        gateway = start_gateway(config)
        procs.append(gateway)
        yield Deployment(gateway, held, key, tmp_path / "gw.db")
    finally:
        for proc in reversed(procs):
            proc.stop()


@pytest.fixture
def patient(tmp_path: Path) -> Iterator[Deployment]:
    yield from deploy(tmp_path, drain=60)


@pytest.fixture
def hasty(tmp_path: Path) -> Iterator[Deployment]:
    yield from deploy(tmp_path, drain=1)


class HeldStream:
    """A streamed chat whose first chunks have arrived; the rest waits for the upstream."""

    def __init__(self, deployment: Deployment) -> None:
        client = OpenAI(
            base_url=deployment.gateway.url + "/v1",
            api_key=deployment.key,
            max_retries=0,
            timeout=60,
        )
        raw = client.chat.completions.with_raw_response.create(
            model="held",
            messages=[{"role": "user", "content": TEXT}],
            stream=True,
            stream_options={"include_usage": True},
        )
        self.request_id = raw.headers["x-request-id"]
        self._chunks = iter(raw.parse())
        # Up to the first text, which the upstream sends before its hold. Not "two chunks": the
        # gateway merges what one upstream read brought, so two events may be one chunk.
        self.text = ""
        while not self.text:
            self.text = self._delta(next(self._chunks))
        self.usage: Any = None

    def finish(self) -> str:
        """Read to the end; the whole text."""
        for chunk in self._chunks:
            self.text += self._delta(chunk)
            if chunk.usage is not None:
                self.usage = chunk.usage
        return self.text

    @staticmethod
    def _delta(chunk: Any) -> str:
        return "".join(c.delta.content or "" for c in chunk.choices)


def spans(db: Path) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return {r["request_id"]: dict(r) for r in conn.execute("SELECT * FROM spans")}


def test_sigterm_lets_held_streams_finish_refuses_new_ones_and_stores_every_span(
    patient: Deployment,
) -> None:
    gateway = patient.gateway
    with ThreadPoolExecutor(STREAMS) as pool:
        streams = list(pool.map(lambda _: HeldStream(patient), range(STREAMS)))
        mark = len(gateway.lines)
        gateway.popen.send_signal(signal.SIGTERM)
        gateway.wait_for(DRAINING, since=mark)

        with pytest.raises(httpx.ConnectError):
            httpx.get(gateway.url + "/healthz")
        finishing: list[Future[str]] = [pool.submit(s.finish) for s in streams]
        httpx.post(patient.held.url + "/_sim/release").raise_for_status()
        texts = [f.result(timeout=60) for f in finishing]

    assert texts == ["sim: " + TEXT] * STREAMS
    assert gateway.stop() is not None
    assert gateway.stopped_cleanly(), gateway.log()
    stored = spans(patient.db)
    for stream in streams:
        span = stored[stream.request_id]
        assert span["status"] == "ok"
        assert span["output_tokens"] == stream.usage.completion_tokens
        assert "usage_estimated" not in json.loads(span["flags"])


def test_streams_still_running_at_the_drain_deadline_are_cut_and_still_recorded(
    hasty: Deployment,
) -> None:
    gateway = hasty.gateway
    stream = HeldStream(hasty)  # the upstream is never released
    gateway.popen.send_signal(signal.SIGTERM)
    gateway.wait_for("timeout graceful shutdown exceeded", since=0, timeout=30)
    with pytest.raises(openai.APIConnectionError):
        stream.finish()  # the gateway cut it: the client sees the stream end badly
    gateway.stop()
    assert gateway.stopped_cleanly(), gateway.log()
    span = spans(hasty.db)[stream.request_id]
    assert span["status"] != "ok"
    assert "usage_estimated" in json.loads(span["flags"])  # counted by estimate, never zero
    assert span["output_tokens"] > 0
