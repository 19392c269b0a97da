"""Real processes for end-to-end tests: `agentgw sim` and `agentgw serve` on free ports.

Readiness is the server's own startup line on stderr (uvicorn prints it once the socket is
bound), read as it arrives: no polling, no sleeps.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

READY = "Uvicorn running on"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def agentgw(*args: str) -> list[str]:
    return [sys.executable, "-m", "core.cli", *args]


@dataclass
class Proc:
    """A running server process whose stderr is captured line by line."""

    popen: subprocess.Popen[str]
    port: int
    lines: list[str] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)
    ended: bool = False

    def heard(self, line: str) -> None:
        """Called by the stderr reader for each line; wakes whoever waits for one."""
        with self.arrived:
            self.lines.append(line)
            self.arrived.notify_all()

    def hang_up(self) -> None:
        """Ask the process to reload its config (SIGHUP)."""
        self.popen.send_signal(signal.SIGHUP)

    def wait_for(self, text: str, *, since: int, timeout: float = 10.0) -> str:
        """The first line from index `since` on that contains `text`, waiting as lines arrive.

        Raises:
            TimeoutError: no such line within `timeout` seconds, or the process ended.
        """
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                for line in self.lines[since:]:
                    if text in line:
                        return line
                since = len(self.lines)
                left = deadline - time.monotonic()
                if self.ended or left <= 0:
                    raise TimeoutError(f"no line with {text!r}:\n{self.log()}")
                self.arrived.wait(left)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (a clean shutdown), then wait; kill only if it hangs."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def stopped_cleanly(self) -> bool:
        """Exited after a full lifespan shutdown (uvicorn re-raises SIGTERM once it is done)."""
        return self.popen.returncode in (0, -signal.SIGTERM) and any(
            "Application shutdown complete" in line for line in self.lines
        )

    def log(self) -> str:
        return "\n".join(self.lines)


def start(
    cmd: Sequence[str],
    port: int,
    *,
    timeout: float = 30.0,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> Proc:
    """Start `cmd` and return once it prints the ready line.

    Raises:
        RuntimeError: it exited or did not get ready within `timeout`; carries its stderr.
    """
    popen = subprocess.Popen(
        list(cmd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )
    proc = Proc(popen, port)
    ready: queue.Queue[bool] = queue.Queue()

    def pump() -> None:
        assert popen.stderr is not None
        for line in popen.stderr:
            proc.heard(line.rstrip("\n"))
            if READY in line:
                ready.put(True)
        with proc.arrived:
            proc.ended = True
            proc.arrived.notify_all()
        ready.put(False)

    threading.Thread(target=pump, daemon=True).start()
    try:
        ok = ready.get(timeout=timeout)
    except queue.Empty:
        ok = False
    if not ok:
        proc.stop(5)
        raise RuntimeError(f"{' '.join(cmd)} did not start:\n{proc.log()}")
    return proc


def start_sim(*flags: str) -> Proc:
    port = free_port()
    return start(agentgw("sim", "--port", str(port), *flags), port)


def start_gateway(config: Path, *, env: dict[str, str] | None = None) -> Proc:
    port = free_port()
    return start(
        agentgw("serve", "--config", str(config), "--port", str(port)),
        port,
        cwd=config.parent,
        env=env,
    )


def create_key(config: Path, name: str, org_path: str, *extra: str) -> dict[str, str]:
    out = subprocess.run(
        agentgw(
            "keys",
            "create",
            "--config",
            str(config),
            "--name",
            name,
            "--org-path",
            org_path,
            "--json",
            *extra,
        ),
        capture_output=True,
        text=True,
        check=True,
        cwd=config.parent,
    )
    result: dict[str, str] = json.loads(out.stdout)
    return result


def typed_turn(text: str) -> str:
    """A Realtime `conversation.item.create` frame: one user message of typed `text`."""
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    return json.dumps({"type": "conversation.item.create", "item": item})
