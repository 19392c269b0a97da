"""Streams are relayed as they arrive, and every way a stream can end leaves a complete span."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from tests.e2e.procs import Proc, create_key, start_gateway, start_sim

CONFIG = """\
store: sqlite:///gw.db
providers:
  - {{name: held, type: openai, base_url: "{held}/v1"}}
  - {{name: dropping, type: openai, base_url: "{dropping}/v1"}}
models:
  - {{name: held, targets: [{{provider: held, model: sim-1}}]}}
  - {{name: dropping, targets: [{{provider: dropping, model: sim-1}}]}}
"""
MESSAGES: Any = [{"role": "user", "content": "one two three four five six seven eight"}]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Proc, Proc, Proc, str]]:
    procs: list[Proc] = []
    try:
        held = start_sim("--hold-after-chunks", "3")
        procs.append(held)
        dropping = start_sim("--drop-after-chunks", "3")
        procs.append(dropping)
        config = tmp_path / "agentgw.yaml"
        config.write_text(CONFIG.format(held=held.url, dropping=dropping.url))
        key = create_key(config, "streamer", "eng/stream/tests")["key"]
        gateway = start_gateway(config)
        procs.append(gateway)
        yield gateway, held, dropping, key
    finally:
        for proc in reversed(procs):
            proc.stop()


def stored_spans(gateway: Proc, db: Path) -> dict[str, dict[str, Any]]:
    gateway.stop()
    assert gateway.stopped_cleanly(), gateway.log()
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return {r["request_id"]: dict(r) for r in conn.execute("SELECT * FROM spans")}


def test_chunks_reach_the_client_while_the_upstream_is_still_streaming(
    setup: tuple[Proc, Proc, Proc, str], tmp_path: Path
) -> None:
    gateway, held, _, key = setup
    # A read timeout turns "the gateway buffered the stream" into a failure instead of a hang.
    client = OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=15)
    raw = client.chat.completions.with_raw_response.create(
        model="held", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    stream = raw.parse()
    chunks = iter(stream)
    # Up to the first text, which the upstream sends before it waits for /_sim/release. Not
    # "three chunks": the gateway merges what one upstream read brought (`core.coalesce`).
    early = [next(chunks)]
    while not "".join(c.choices[0].delta.content or "" for c in early if c.choices):
        early.append(next(chunks))
    httpx.post(held.url + "/_sim/release").raise_for_status()
    rest = list(chunks)
    text = "".join(c.choices[0].delta.content or "" for c in early + rest if c.choices)
    assert text == "sim: " + MESSAGES[0]["content"]
    assert rest[-1].usage is not None
    span = stored_spans(gateway, tmp_path / "gw.db")[raw.headers["x-request-id"]]
    assert span["status"] == "ok"
    assert span["output_tokens"] == rest[-1].usage.completion_tokens


def test_upstream_dropping_mid_stream_ends_the_client_stream_with_an_error(
    setup: tuple[Proc, Proc, Proc, str], tmp_path: Path
) -> None:
    gateway, _, _, key = setup
    client = OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=15)
    raw = client.chat.completions.with_raw_response.create(
        model="dropping", messages=MESSAGES, stream=True
    )
    received: list[str] = []

    def consume() -> None:
        for chunk in raw.parse():
            received.extend(c.delta.content or "" for c in chunk.choices)

    with pytest.raises(openai.APIError, match="ended the stream early"):
        consume()
    assert received  # bytes had reached the client: no failover after the first chunk
    span = stored_spans(gateway, tmp_path / "gw.db")[raw.headers["x-request-id"]]
    assert (span["status"], span["error_code"]) == ("error", "upstream_error")
    assert "usage_estimated" in json.loads(span["flags"])
    assert span["output_tokens"] > 0  # counted by estimate, never as zero


def test_client_closing_a_stream_is_recorded_and_stops_the_upstream(
    setup: tuple[Proc, Proc, Proc, str], tmp_path: Path
) -> None:
    gateway, _, _, key = setup
    body = {"model": "held", "messages": MESSAGES, "stream": True}
    headers = {"authorization": f"Bearer {key}"}
    with (
        httpx.Client(timeout=15) as client,
        client.stream(
            "POST", gateway.url + "/v1/chat/completions", json=body, headers=headers
        ) as resp,
    ):
        request_id = resp.headers["x-request-id"]
        lines = resp.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        assert json.loads(first[5:])["object"] == "chat.completion.chunk"
    # The client is gone while the upstream holds its stream open.
    span = stored_spans(gateway, tmp_path / "gw.db")[request_id]
    assert span["status"] == "client_closed"
    assert "usage_estimated" in json.loads(span["flags"])
