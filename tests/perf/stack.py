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
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from tests.e2e.procs import Proc, create_key, free_port, start, start_gateway, start_sim
from tests.perf.loadgen import VARY_MARK

REPO = Path(__file__).resolve().parents[2]
PROMPT = "Say hello in a few words."
# With `unique`, every request's prompt is new (the load client fills in VARY_MARK) and holds an
# e-mail address and a phone number (reserved example values): the PII filter analyses each one.
PII_PROMPT = f"Write to user-{VARY_MARK}@example.com or call 202-555-0147 about ticket {VARY_MARK}."
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
# Budgets on, as the targets ask: every call reserves against the department's (never spent).
budgets:
  - {{level: department, target: engineering, amount_usd: 1000000, period: month}}
"""

# Extra configuration per gateway variant (appended to GATEWAY_CONFIG).
PII_PATTERN = "filters:\n  pii: {action: redact, ner: false}\n"
PII_NER = "filters:\n  pii: {action: redact, ner: true}\n"
# Pattern mode with the analysis in one worker process (`filters.pii.workers`).
PII_WORKERS = "filters:\n  pii: {action: redact, ner: false, workers: 1}\n"


def gateway_config(sim: str, *, store: str = "sqlite:///gw.db", extra: str = "") -> str:
    """GATEWAY_CONFIG for the sim at `sim`, on `store`, with `extra` YAML appended."""
    text = GATEWAY_CONFIG.format(sim=sim, model=VIRTUAL_MODEL, sim_model=SIM_MODEL)
    return text.replace("store: sqlite:///gw.db", f"store: {store}") + extra


@dataclass(frozen=True)
class Target:
    """Something to load: the chat endpoint's URL, the model name it expects, its headers."""

    name: str
    proc: Proc
    model: str
    headers: dict[str, str]
    # More processes serving the same thing (replicas), loaded in turn with `proc`.
    others: tuple[Proc, ...] = ()

    @property
    def url(self) -> str:
        return self.proc.url + CHAT_PATH

    @property
    def also(self) -> tuple[str, ...]:
        """The other replicas' URLs (for `Load.also`)."""
        return tuple(p.url + CHAT_PATH for p in self.others)

    @property
    def pid(self) -> int:
        return self.proc.popen.pid

    @property
    def pids(self) -> tuple[int, ...]:
        """Every process of the target (replicas included)."""
        return (self.pid, *(p.popen.pid for p in self.others))

    def body(self, *, stream: bool, unique: bool = False) -> bytes:
        """A small chat completion; streams ask for usage, as agentgw does upstream anyway.

        `unique`: the PII prompt, made new per request by the load client (`Load.vary`).
        """
        payload: dict[str, object] = {
            "model": self.model,
            "messages": [{"role": "user", "content": PII_PROMPT if unique else PROMPT}],
            "max_tokens": 64,
        }
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        return orjson.dumps(payload)


@dataclass
class Deployment:
    """The running targets by name; `spans_recorded` is filled in once agentgw has stopped
    (the first gateway's; `spans_by_gateway` has every gateway's)."""

    targets: dict[str, Target] = field(default_factory=dict)
    spans_recorded: int | None = None
    spans_by_gateway: dict[str, int | None] = field(default_factory=dict)


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


def gateway_key(config: Path) -> dict[str, str]:
    """Headers with a new real virtual key created through `config`'s store."""
    key = create_key(config, "perf", "engineering/platform/perf")["key"]
    return {"content-type": "application/json", "authorization": f"Bearer {key}"}


@contextmanager
def running(
    *,
    reply_words: int = 20,
    relay: bool = True,
    gateway: bool = True,
    gateways: Mapping[str, str] | None = None,
) -> Iterator[Deployment]:
    """The sim and, against it, the relay and agentgw (SQLite store in a temp dir, a real key).

    `gateways` (name -> extra YAML, see `PII_PATTERN`) replaces the one plain `agentgw`: one
    process per entry, each with its own store.
    """
    dep = Deployment()
    variants = dict(gateways) if gateways is not None else {"agentgw": ""} if gateway else {}
    with tempfile.TemporaryDirectory(prefix="agentgw-perf-") as tmp, ExitStack() as stack:
        sim = _started(stack, start_sim("--reply-words", str(reply_words)))
        json_headers = {"content-type": "application/json"}
        dep.targets["sim"] = Target("sim", sim, SIM_MODEL, json_headers)
        if relay:
            proc = _started(stack, start_relay(sim.url + CHAT_PATH))
            dep.targets["relay"] = Target("relay", proc, SIM_MODEL, json_headers)
        started: list[tuple[str, Proc, Path]] = []
        for i, (name, extra) in enumerate(variants.items()):
            workdir = Path(tmp) / f"gw{i}"
            workdir.mkdir()
            config = workdir / "agentgw.yaml"
            config.write_text(gateway_config(sim.url, extra=extra))
            headers = gateway_key(config)
            gw = _started(stack, start_gateway(config))
            dep.targets[name] = Target(name, gw, VIRTUAL_MODEL, headers)
            started.append((name, gw, workdir))
        yield dep
        for name, gw, workdir in started:
            gw.stop()  # a clean stop flushes the write-behind span queue
            dep.spans_by_gateway[name] = _count_spans(workdir / "gw.db")
            if os.environ.get("AGENTGW_PERF_LOGS"):  # the gateway's own account of failures
                print(f"--- {name} log ---\n{gw.log()}", file=sys.stderr)
        if started:
            dep.spans_recorded = dep.spans_by_gateway[started[0][0]]
