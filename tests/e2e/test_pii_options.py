"""`filters.pii` options on the real path: NER, allow and deny lists, custom recognizers.

One gateway (`agentgw serve`, NER on) in front of `agentgw sim`; assertions are on what the sim
received and on what the openai SDK got back. A config with a bad pattern must not start at all.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.procs import Proc, agentgw, create_key, start_gateway, start_sim

pytestmark = pytest.mark.e2e

CONFIG = """\
store: sqlite:///gw.db
providers: [{{name: up, type: openai, base_url: "{sim}/v1"}}]
models: [{{name: chat, targets: [{{provider: up, model: sim-large}}]}}]
filters:
  pii:
    ner: true
    actions: {{PERSON: pseudonymize}}
    allow_list: [helpdesk@example.com]
    deny_list: {{PROJECT: [Nightjar, 夜鹰计划]}}
    recognizers:
      - {{name: EMPLOYEE_ID, pattern: 'E-\\d{{6}}', score: 0.8, context: [employee, 工号]}}
    policies:
      - {{match: {{org_paths: [finance/payments]}}, actions: {{EMAIL_ADDRESS: block}}}}
"""


@dataclass
class Setup:
    sim: Proc
    gateway: Proc
    key: str
    payments_key: str

    def chat(self, text: str, *, stream: bool = False, key: str = "") -> tuple[str, str]:
        """The caller's answer, and the one request body the sim received, as JSON text."""
        httpx.delete(self.sim.url + "/_sim/requests")
        client = openai.OpenAI(
            base_url=self.gateway.url + "/v1", api_key=key or self.key, max_retries=0
        )
        messages: Any = [{"role": "user", "content": text}]
        if stream:
            chunks = client.chat.completions.create(model="chat", messages=messages, stream=True)
            answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            reply = client.chat.completions.create(model="chat", messages=messages)
            answer = reply.choices[0].message.content or ""
        (body,) = httpx.get(self.sim.url + "/_sim/requests").json()
        return answer, json.dumps(body, ensure_ascii=False)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("pii-options")
    procs: list[Proc] = []
    try:
        sim = start_sim()
        procs.append(sim)
        config = workdir / "agentgw.yaml"
        config.write_text(CONFIG.format(sim=sim.url))
        key = create_key(config, "agent", "research/agents/pii")["key"]
        payments = create_key(config, "ledger", "finance/payments/eu")["key"]
        gateway = start_gateway(config)
        procs.append(gateway)
        yield Setup(sim, gateway, key, payments)
    finally:
        for proc in reversed(procs):
            proc.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_persons_name_never_reaches_the_upstream_and_comes_back_to_the_caller(
    setup: Setup, stream: bool
) -> None:
    answer, sent = setup.chat("Please email Maria Gonzalez about the invoice.", stream=stream)
    assert "Maria" not in sent and "Gonzalez" not in sent
    assert "<PERSON_1>" in sent
    assert answer == "sim: Please email Maria Gonzalez about the invoice."


def test_allow_deny_and_custom_recognizers_from_the_config(setup: Setup) -> None:
    text = (
        "Ask helpdesk@example.com or jane.roe@example.com about Nightjar (夜鹰计划); "
        "employee E-123456 is on it."
    )
    _, sent = setup.chat(text)
    assert "helpdesk@example.com" in sent  # allow-listed
    assert "jane.roe@example.com" not in sent and "<EMAIL_ADDRESS>" in sent
    assert "Nightjar" not in sent and "夜鹰计划" not in sent and sent.count("<PROJECT>") == 2
    assert "E-123456" not in sent and "<EMPLOYEE_ID>" in sent


def test_a_team_policy_blocks_what_other_teams_get_redacted(setup: Setup) -> None:
    text = "Mail jane.roe@example.com the invoice."
    _, sent = setup.chat(text)
    assert "<EMAIL_ADDRESS>" in sent and "jane.roe" not in sent
    httpx.delete(setup.sim.url + "/_sim/requests")
    with pytest.raises(openai.BadRequestError) as caught:
        setup.chat(text, key=setup.payments_key)
    assert "EMAIL_ADDRESS" in str(caught.value) and "jane.roe" not in str(caught.value)
    assert httpx.get(setup.sim.url + "/_sim/requests").json() == []


def test_a_pattern_that_does_not_compile_stops_the_start_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "agentgw.yaml"
    config.write_text(
        "store: memory://\nfilters:\n  pii:\n    recognizers: [{name: EMP, pattern: 'E-(\\d'}]\n"
    )
    done = subprocess.run(
        agentgw("serve", "--config", str(config), "--port", "0"),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode != 0
    assert "filters.pii.recognizers[0].pattern: pattern does not compile" in done.stderr
