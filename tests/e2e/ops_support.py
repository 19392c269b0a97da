"""A gateway for the operations end-to-end tests: real `agentgw serve` over a real `agentgw sim`,
the PII filter on, OTLP export to a tiny receiver in this process, and keys for three teams plus
finance and security."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.e2e.procs import Proc, create_key, start_gateway, start_sim

CONFIG = """\
listen: {{host: 127.0.0.1}}
store: sqlite:///gw.db
providers:
  - {{name: good, type: openai, base_url: "{sim}/v1"}}
models:
  - {{name: chat, targets: [{{provider: good, model: sim-large}}]}}
  - {{name: cheap, targets: [{{provider: good, model: sim-small}}]}}
prices:
  - {{provider: good, model: sim-large, input_per_1m: 2.0, output_per_1m: 8.0}}
  - {{provider: good, model: sim-small, input_per_1m: 0.5, output_per_1m: 1.0}}
filters:
  pii: {{action: redact}}
tracing:
  otlp_endpoint: "{otlp}"
"""
TEAMS = {
    "alpha": "research/nlp/chat",
    "beta": "research/vision/ocr",
    "gamma": "finance/ledger/close",
}


@dataclass
class Receiver:
    """An OTLP/HTTP (JSON) receiver: keeps every exported span, wakes whoever waits."""

    spans: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def take(self, path: str, body: bytes) -> None:
        request = json.loads(body)
        with self.arrived:
            self.paths.append(path)
            for resource in request["resourceSpans"]:
                for scope in resource["scopeSpans"]:
                    self.spans.extend(scope["spans"])
            self.arrived.notify_all()

    def wait_for(self, n: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Every span received, once there are at least `n` (each was stored before it was sent)."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.spans) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self.spans)} of {n} spans exported")
                self.arrived.wait(left)
            return list(self.spans)


@contextmanager
def otlp_receiver() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            receiver.take(self.path, body)
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class OpsDeployment:
    gateway: Proc
    config: Path
    receiver: Receiver
    keys: dict[str, dict[str, str]]

    @property
    def db(self) -> Path:
        return self.config.parent / "gw.db"


@contextmanager
def ops_deployment(workdir: Path) -> Iterator[OpsDeployment]:
    procs: list[Proc] = []
    with otlp_receiver() as (receiver, otlp):
        try:
            sim = start_sim()
            procs.append(sim)
            config = workdir / "agentgw.yaml"
            config.write_text(CONFIG.format(sim=sim.url, otlp=otlp))
            keys = {name: create_key(config, name, path) for name, path in TEAMS.items()}
            keys["finance"] = create_key(config, "fin", "finance/ops/console", "--role", "finance")
            keys["security"] = create_key(
                config, "sec", "security/ops/console", "--role", "security"
            )
            gateway = start_gateway(config)
            procs.append(gateway)
            yield OpsDeployment(gateway, config, receiver, keys)
        finally:
            for proc in reversed(procs):
                proc.stop()
