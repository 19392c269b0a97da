"""`filters.pii.workers: 1` on the real path: `agentgw serve` → `agentgw sim`, openai SDK.

The analysis runs in the gateway's child process; the sim must still never see the address, and
the worker must not outlive the gateway, whether it stops cleanly or is killed.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.procs import Proc, create_key, start_gateway, start_sim
from tests.perf.memory import descendants

pytestmark = pytest.mark.e2e

CONFIG = """\
store: sqlite:///gw.db
providers: [{{name: up, type: openai, base_url: "{sim}/v1"}}]
models: [{{name: chat, targets: [{{provider: up, model: sim-large}}]}}]
filters:
  pii: {{action: redact, workers: 1}}
"""
EMAIL = "jane.roe@example.com"


@dataclass
class Setup:
    sim: Proc
    config: Path
    key: str

    def gateway(self) -> Proc:
        return start_gateway(self.config)

    def chat(self, gateway: Proc, text: str, *, stream: bool = False) -> str:
        """What the sim received for one chat call, as JSON text."""
        httpx.delete(self.sim.url + "/_sim/requests")
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=self.key, max_retries=0)
        messages: Any = [{"role": "user", "content": text}]
        if stream:
            for _ in client.chat.completions.create(model="chat", messages=messages, stream=True):
                pass
        else:
            client.chat.completions.create(model="chat", messages=messages)
        (body,) = httpx.get(self.sim.url + "/_sim/requests").json()
        return json.dumps(body)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("pii-workers")
    sim = start_sim()
    try:
        config = workdir / "agentgw.yaml"
        config.write_text(CONFIG.format(sim=sim.url))
        key = create_key(config, "agent", "research/agents/pii")["key"]
        yield Setup(sim, config, key)
    finally:
        sim.stop()


def _exits_within(pid: int, seconds: float) -> bool:
    """True once process `pid` (not our child) has exited, waiting at most `seconds`."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], seconds)
        return bool(readable)
    finally:
        os.close(fd)


def test_an_address_is_redacted_by_the_worker_before_the_upstream_sees_it(setup: Setup) -> None:
    gateway = setup.gateway()
    try:
        (worker,) = descendants(gateway.popen.pid)

        plain = setup.chat(gateway, f"Please write to {EMAIL} today.")
        streamed = setup.chat(gateway, f"And copy {EMAIL} in.", stream=True)

        for body in (plain, streamed):
            assert EMAIL not in body and "<EMAIL_ADDRESS>" in body
        metrics = httpx.get(gateway.url + "/metrics").text
        match = re.search(r"^agentgw_pii_analyses_total (\S+)$", metrics, re.M)
        assert match is not None and float(match.group(1)) >= 2
    finally:
        gateway.stop()
    assert gateway.stopped_cleanly()
    assert _exits_within(worker, 10)
    assert EMAIL not in gateway.log()  # never logged, by the gateway or its worker


def test_the_worker_exits_when_the_gateway_is_killed(setup: Setup) -> None:
    gateway = setup.gateway()
    try:
        (worker,) = descendants(gateway.popen.pid)
        gateway.popen.send_signal(signal.SIGKILL)
        gateway.popen.wait(timeout=10)

        assert _exits_within(worker, 30)  # its stdin ended with its parent
    finally:
        gateway.stop()
