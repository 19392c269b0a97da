"""The moderation model on the real path: `agentgw serve` → `agentgw sim` over `/v1/moderations`.

The moderation filter asks the virtual model `guard` through agentgw's own routing; the sim
answers the moderation wire from term lists that differ from the filter's own lexicon, so a
phrase only the model knows shows that the model is asked. Assertions are on what the sim
received, on what the openai SDK got back, and on the gateway's SQLite file.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from filters.moderation import ModerationFilter
from tests.e2e.procs import Proc, create_key, start_gateway, start_sim

pytestmark = pytest.mark.e2e

CONFIG = """\
store: sqlite:///gw.db
providers:
  - {{name: up, type: openai, base_url: "{sim}/v1"}}
  - {{name: broken, type: openai, base_url: "{bad}/v1"}}
models:
  - {{name: chat, targets: [{{provider: up, model: sim-large}}]}}
  - {{name: guard, targets: [{{provider: up, model: sim-moderation-1}}]}}
  - name: guard-down
    circuit: {{failures: 1000}}
    targets: [{{provider: broken, model: sim-moderation-1}}]
prices:
  - {{provider: up, model: sim-moderation-1, per_call: 0.0002}}
filters:
{filters}
"""
BLOCK = """\
  pii: {action: redact}
  moderation:
    action: block
    model: guard
    categories: {leaks: {terms: [project nightjar, 夜鹰计划], patterns: ['internal-only-\\d+']}}
"""
FLAG = """\
  moderation: {action: flag, model: guard}
"""
DOWN = """\
  moderation: {action: block, model: guard-down}
"""
OPEN = """\
  moderation: {action: block, model: guard-down, fail: open}
"""
# Hate the sim's term list knows and the filter's own lexicon does not.
HELD_OUT = "They are vermin, all of them."


@dataclass
class Gateway:
    proc: Proc
    key: str
    db: Path

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.proc.url + "/v1", api_key=self.key, max_retries=0)


@dataclass
class Setup:
    sim: Proc
    block: Gateway
    flag: Gateway
    down: Gateway
    open: Gateway
    chat_only_key: str

    def received(self) -> list[dict[str, Any]]:
        bodies: list[dict[str, Any]] = httpx.get(self.sim.url + "/_sim/requests").json()
        return bodies

    def clear(self) -> None:
        httpx.delete(self.sim.url + "/_sim/requests")


def _gateway(workdir: Path, sims: tuple[Proc, Proc], filters: str) -> Gateway:
    workdir.mkdir()
    config = workdir / "agentgw.yaml"
    config.write_text(CONFIG.format(sim=sims[0].url, bad=sims[1].url, filters=filters))
    key = create_key(config, "agent", "research/agents/mod")["key"]
    return Gateway(start_gateway(config), key, workdir / "gw.db")


def _narrow_key(gw: Gateway) -> str:
    config = gw.db.parent / "agentgw.yaml"
    return create_key(config, "narrow", "research/agents/mod", "--modalities", "chat")["key"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("moderation")
    procs: list[Proc] = []
    try:
        # Processes start side by side: each start is mostly Python importing.
        with ThreadPoolExecutor() as pool:
            started = [pool.submit(start_sim), pool.submit(start_sim, "--fail-rate", "1")]
            wait(started)
            procs.extend(f.result() for f in started if f.exception() is None)
            sims = (started[0].result(), started[1].result())  # raises a failed start's error
            names = {"block": BLOCK, "flag": FLAG, "down": DOWN, "open": OPEN}
            pending = {n: pool.submit(_gateway, root / n, sims, f) for n, f in names.items()}
            wait(pending.values())
            procs.extend(f.result().proc for f in pending.values() if f.exception() is None)
            gws = {n: f.result() for n, f in pending.items()}  # raises a failed start's error
        yield Setup(
            sims[0], gws["block"], gws["flag"], gws["down"], gws["open"], _narrow_key(gws["block"])
        )
    finally:
        for proc in reversed(procs):
            proc.stop()


def _chat(gw: Gateway, text: str, *, stream: bool = False) -> str:
    client = gw.client()
    messages: Any = [{"role": "user", "content": text}]
    if stream:
        chunks = client.chat.completions.create(model="chat", messages=messages, stream=True)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reply = client.chat.completions.create(model="chat", messages=messages)
    return reply.choices[0].message.content or ""


def _rows(db: Path, sql: str, want: Any) -> list[tuple[Any, ...]]:
    """Rows of `sql`, waiting (up to 5 s) until `want` is among them: spans land write-behind."""
    deadline = time.monotonic() + 5
    while True:
        with sqlite3.connect(db) as conn:
            rows = conn.execute(sql).fetchall()
        if want in rows or time.monotonic() > deadline:
            return rows


def test_the_held_out_phrase_is_unknown_to_the_lexicon() -> None:
    # What makes the tests below prove the model is asked: the lexicon alone lets it through.
    assert ModerationFilter().lexicon.categories(HELD_OUT) == []


def test_the_model_blocks_what_the_lexicon_misses_and_sees_no_personal_data(
    setup: Setup,
) -> None:
    setup.clear()
    with pytest.raises(openai.BadRequestError) as caught:
        _chat(setup.block, HELD_OUT + " Write to jane.roe@example.com.")
    assert "hate" in str(caught.value)
    (asked,) = setup.received()  # only the moderation model was asked; no chat went out
    assert asked["model"] == "sim-moderation-1"
    assert any("vermin" in text for text in asked["input"])
    assert "jane.roe@example.com" not in str(asked) and "<EMAIL_ADDRESS>" in str(asked)


@pytest.mark.parametrize(
    "text", ["Tell me about Project Nightjar.", "夜鹰计划的进展如何", "Quote internal-only-42."]
)
def test_a_custom_category_from_the_config_blocks(setup: Setup, text: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        _chat(setup.block, text)
    assert "leaks" in str(caught.value)


def test_benign_text_passes_after_the_model_is_asked(setup: Setup) -> None:
    setup.clear()
    assert _chat(setup.block, "Summarise the quarterly report.") == (
        "sim: Summarise the quarterly report."
    )
    models = [body["model"] for body in setup.received()]
    assert models[0] == "sim-moderation-1" and "sim-large" in models


def test_flag_mode_asks_the_model_about_the_streamed_reply_and_logs_it(setup: Setup) -> None:
    setup.clear()
    answer = _chat(setup.flag, HELD_OUT, stream=True)
    assert answer == "sim: " + HELD_OUT
    # The streamed reply was classified as it passed (its whole text at the end of the choice).
    inputs = [t for body in setup.received() if "input" in body for t in body["input"]]
    assert answer in inputs
    rows = _rows(
        setup.flag.db,
        "SELECT filter, entity_type, action FROM redaction_events",
        ("moderation", "hate", "flag"),
    )
    assert ("moderation", "hate", "flag") in rows


def test_a_moderation_model_that_is_down_blocks_with_a_503(setup: Setup) -> None:
    setup.clear()
    with pytest.raises(openai.APIStatusError) as caught:
        _chat(setup.down, "Summarise the quarterly report.")
    assert caught.value.status_code == 503
    assert "moderation filter unavailable: classifier failed" in str(caught.value)
    assert not any(body.get("model") == "sim-large" for body in setup.received())
    want = ("error", 503, "filter_unavailable")
    rows = _rows(setup.down.db, "SELECT status, http_status, error_code FROM spans", want)
    assert want in rows


def test_fail_open_passes_and_the_span_and_the_log_say_so(setup: Setup) -> None:
    assert _chat(setup.open, "Summarise the quarterly report.").startswith("sim: ")
    sql = "SELECT status, flags LIKE '%\"fail_open:moderation\"%' FROM spans"
    assert ("ok", 1) in _rows(setup.open.db, sql, ("ok", 1))
    event = ("moderation", "classifier_error", "fail_open")
    sql = "SELECT filter, entity_type, action FROM redaction_events"
    assert event in _rows(setup.open.db, sql, event)


def test_clients_call_v1_moderations_through_the_gateway(setup: Setup) -> None:
    result = setup.block.client().moderations.create(
        model="guard", input=[HELD_OUT, "Summarise the quarterly report."]
    )
    hateful, benign = result.results
    assert hateful.flagged and hateful.categories.hate and hateful.category_scores.hate > 0.5
    assert not benign.flagged
    # One span per call, as for any other modality.
    want = ("moderation", "guard", "ok", 200)
    rows = _rows(
        setup.block.db,
        "SELECT modality, model_requested, status, http_status FROM spans",
        want,
    )
    assert want in rows


def test_v1_moderations_is_governed_like_any_call(setup: Setup) -> None:
    url = setup.block.proc.url + "/v1/moderations"
    body = {"model": "guard", "input": "hello"}
    anonymous = httpx.post(url, json=body)
    assert anonymous.status_code == 401 and "error" in anonymous.json()
    narrow = httpx.post(url, json=body, headers={"Authorization": f"Bearer {setup.chat_only_key}"})
    assert narrow.status_code == 403
    assert "modality 'moderation'" in narrow.json()["error"]["message"]
    auth = {"Authorization": f"Bearer {setup.block.key}"}
    for bad, param in (({"model": "guard"}, "input"), ({"model": "guard", "input": 3}, "input")):
        refused = httpx.post(url, json=bad, headers=auth)
        assert refused.status_code in (400, 422)
        assert refused.json()["error"]["param"] == param
    unknown = httpx.post(url, json={"model": "nope", "input": "x"}, headers=auth)
    assert unknown.status_code == 404


def test_each_check_is_a_priced_child_span_of_the_call_and_is_counted(setup: Setup) -> None:
    raw = setup.flag.client().chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "Draft the release notes."}]
    )
    request_id = raw.headers["x-request-id"]
    sql = (
        "SELECT c.modality, c.model_requested, c.key_id = p.key_id, c.org_path, c.trace_id ="
        " p.trace_id, c.flags LIKE '%\"moderation:check\"%', c.cost_usd, c.provider"
        " FROM spans c JOIN spans p ON c.parent_span_id = p.span_id"
        f" WHERE p.request_id = '{request_id}' AND c.route = 'filter:moderation'"
    )
    want = ("moderation", "guard", 1, "research/agents/mod", 1, 1, 0.0002, "up")
    rows = _rows(setup.flag.db, sql, want)
    assert rows == [want, want]  # the request, then the reply
    text = httpx.get(setup.flag.proc.url + "/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    checks = [
        s
        for s in families["agentgw_requests"].samples
        if s.labels.get("route") == "filter:moderation" and s.name == "agentgw_requests_total"
    ]
    assert checks and checks[0].labels["model"] == "guard" and checks[0].value >= 2
