"""One sim upstream, one failing upstream and one gateway process per test module."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis import Redis

from tests.e2e.procs import Proc, agentgw, create_key, free_port, start_gateway, start_sim

CONFIG = """\
listen: {{host: 127.0.0.1, max_body_bytes: 65536}}
store: sqlite:///gw.db
providers:
  - name: good
    type: openai
    base_url: "{good}/v1"
    api_key: "${{UPSTREAM_KEY:-sk-upstream-secret}}"
  - {{name: bad, type: openai, base_url: "{bad}/v1"}}
  - {{name: dead, type: openai, base_url: "http://127.0.0.1:{dead}/v1", connect_timeout_seconds: 2}}
models:
  - {{name: chat, targets: [{{provider: good, model: sim-large}}]}}
  - {{name: embed, targets: [{{provider: good, model: sim-embed}}]}}
  # These tests count attempts: keep the circuit breaker out of their way.
  - name: failover
    circuit: {{failures: 1000}}
    targets: [{{provider: bad, model: sim-large}}, {{provider: good, model: sim-large}}]
  - name: refused
    targets: [{{provider: dead, model: sim-large}}, {{provider: good, model: sim-large}}]
  - name: down
    circuit: {{failures: 1000}}
    targets: [{{provider: bad, model: sim-large}}, {{provider: dead, model: sim-large}}]
  - name: nowhere
    targets: [{{provider: dead, model: sim-large}}]
prices:
  - provider: good
    model: sim-large
    input_per_1m: 2.0
    output_per_1m: 8.0
    cached_input_per_1m: 0.5
  - {{provider: good, model: sim-embed, input_per_1m: 0.1}}
"""


@dataclass
class Deployment:
    """A running gateway with its upstreams, its config and keys."""

    gateway: Proc
    good: Proc
    bad: Proc
    config: Path
    key: str
    narrow_key: str
    revoked_key: str

    @property
    def base_url(self) -> str:
        return self.gateway.url + "/v1"

    @property
    def db(self) -> Path:
        return self.config.parent / "gw.db"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("gw")
    procs: list[Proc] = []
    try:
        good = start_sim()
        procs.append(good)
        bad = start_sim("--fail-rate", "1", "--fail-status", "500")
        procs.append(bad)
        config = workdir / "agentgw.yaml"
        config.write_text(CONFIG.format(good=good.url, bad=bad.url, dead=free_port()))
        key = create_key(config, "alice", "research/agents/demo")["key"]
        narrow = create_key(config, "narrow", "research/agents/demo", "--models", "chat")["key"]
        revoked = create_key(config, "gone", "research/agents/demo")
        subprocess.run(
            agentgw("keys", "revoke", "--config", str(config), revoked["id"]),
            check=True,
            capture_output=True,
            cwd=workdir,
        )
        gateway = start_gateway(config)
        procs.append(gateway)
        yield Deployment(gateway, good, bad, config, key, narrow, revoked["key"])
    finally:
        for proc in reversed(procs):
            proc.stop()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A Redis key prefix no other test uses; its keys are deleted after the test."""
    name = f"agwtest:{uuid.uuid4().hex}:"
    yield name
    client = Redis(host="127.0.0.1", port=6379)
    keys = list(client.scan_iter(match=name + "*"))
    if keys:
        client.delete(*keys)
    client.close()
