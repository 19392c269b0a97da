"""The processes a benchmark runs against: the sim, the minimal relay and agentgw.

Started with the end-to-end tests' process helpers (ready on uvicorn's startup line, stopped
with SIGTERM) and always stopped again, whatever happens in between.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from tests.e2e.procs import Proc, create_key, free_port, start, start_gateway, start_sim

REPO = Path(__file__).resolve().parents[2]
PROMPT = "Say hello in a few words."
SIM_MODEL = "sim-1"
VIRTUAL_MODEL = "chat"
CHAT_PATH = "/v1/chat/completions"

GATEWAY_CONFIG = """\
listen: {{host: 127.0.0.1}}
store: sqlite:///gw.db
providers:
  - {{name: sim, type: openai, base_url: "{sim}/v1"}}
models:
  - {{name: {model}, targets: [{{provider: sim, model: {sim_model}}}]}}
prices:
  - {{provider: sim, model: {sim_model}, input_per_1m: 2.0, output_per_1m: 8.0}}
"""


@dataclass(frozen=True)
class Target:
    """Something to load: the chat endpoint's URL, the model name it expects, its headers."""

    name: str
    proc: Proc
    model: str
    headers: dict[str, str]

    @property
    def url(self) -> str:
        return self.proc.url + CHAT_PATH

    @property
    def pid(self) -> int:
        return self.proc.popen.pid

    def body(self, *, stream: bool) -> bytes:
        """A small chat completion; streams ask for usage, as agentgw does upstream anyway."""
        payload: dict[str, object] = {
            "model": self.model,
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": 64,
        }
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        return orjson.dumps(payload)


@dataclass
class Deployment:
    """The running targets by name; `spans_recorded` is filled in once agentgw has stopped."""

    targets: dict[str, Target] = field(default_factory=dict)
    spans_recorded: int | None = None


def machine() -> str:
    """CPUs, OS and Python of this machine, for the header of a report."""
    return (
        f"{os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}"
    )


def revision() -> str:
    """The commit measured, marked `-dirty` when the working tree has uncommitted changes."""
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def start_relay(upstream: str, module: str = "tests.perf.relay", *extra: str) -> Proc:
    """A relay process (`module`'s `main`) forwarding to the full `upstream` URL."""
    port = free_port()
    cmd = [sys.executable, "-m", module, "--port", str(port), "--upstream", upstream, *extra]
    return start(cmd, port, cwd=REPO)


def _started(stack: ExitStack, proc: Proc) -> Proc:
    stack.callback(proc.stop)
    return proc


def _count_spans(db: Path) -> int | None:
    if not db.exists():
        return None
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT count(*) FROM spans").fetchone()
    return int(row[0])


@contextmanager
def running(
    *, reply_words: int = 20, relay: bool = True, gateway: bool = True
) -> Iterator[Deployment]:
    """The sim and, against it, the relay and agentgw (SQLite store in a temp dir, a real key)."""
    dep = Deployment()
    with tempfile.TemporaryDirectory(prefix="agentgw-perf-") as tmp, ExitStack() as stack:
        sim = _started(stack, start_sim("--reply-words", str(reply_words)))
        json_headers = {"content-type": "application/json"}
        dep.targets["sim"] = Target("sim", sim, SIM_MODEL, json_headers)
        if relay:
            proc = _started(stack, start_relay(sim.url + CHAT_PATH))
            dep.targets["relay"] = Target("relay", proc, SIM_MODEL, json_headers)
        gw: Proc | None = None
        config = Path(tmp) / "agentgw.yaml"
        if gateway:
            config.write_text(
                GATEWAY_CONFIG.format(sim=sim.url, model=VIRTUAL_MODEL, sim_model=SIM_MODEL)
            )
            key = create_key(config, "perf", "engineering/platform/perf")["key"]
            gw = _started(stack, start_gateway(config))
            headers = {**json_headers, "authorization": f"Bearer {key}"}
            dep.targets["agentgw"] = Target("agentgw", gw, VIRTUAL_MODEL, headers)
        yield dep
        if gw is not None:
            gw.stop()  # a clean stop flushes the write-behind span queue
            dep.spans_recorded = _count_spans(config.parent / "gw.db")
