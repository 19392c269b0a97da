"""Instructions per request of agentgw (valgrind/callgrind): the figure other load cannot move.

On a shared machine even CPU time per request moves ±10 % between rounds (caches, steal time),
more than most single hot-path changes save. Counting the instructions the gateway process
executes does not depend on what else runs: agentgw is started under
`valgrind --tool=callgrind`, warmed up, its counters dumped, and dumped again after exactly N
sequential requests (one client: the same work in the same order every time).
`--tree DIR` measures another copy of the source tree the same way, for an A/B comparison.

    python -m tests.perf.instructions --requests 200 [--stream] [--tree /path/to/checkout]

Under valgrind agentgw runs ~50x slower: the start takes a minute or two, so this is a
decision tool for one change at a time, not a benchmark.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import anyio

from tests.e2e.procs import create_key, free_port, start, start_sim
from tests.perf.cpureq import _batch
from tests.perf.stack import GATEWAY_CONFIG, REPO, SIM_MODEL, VIRTUAL_MODEL, Target

_READY_SECONDS = 600.0


def _dump(pid: int, out_dir: Path) -> Path:
    """Have callgrind write what it counted since its last dump; return that file."""
    before = set(out_dir.iterdir())
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    (new,) = set(out_dir.iterdir()) - before
    return new


def _total(dump: Path) -> int:
    """The instruction count (`Ir`) of one callgrind dump."""
    match = re.search(r"^(?:summary|totals):\s+(\d+)", dump.read_text(), re.MULTILINE)
    return int(match.group(1)) if match else 0


def measure(
    tree: Path | None, *, requests: int, warmup: int, stream: bool, relay: bool = False
) -> float:
    """Instructions per request of agentgw from `tree` (None: the installed one), or of the
    minimal relay (`relay`)."""
    with tempfile.TemporaryDirectory(prefix="agentgw-ir-") as tmp:
        sim = start_sim("--reply-words", "20")
        try:
            config = Path(tmp) / "agentgw.yaml"
            config.write_text(
                GATEWAY_CONFIG.format(sim=sim.url, model=VIRTUAL_MODEL, sim_model=SIM_MODEL)
            )
            key = create_key(config, "perf", "engineering/platform/perf")["key"]
            out_dir = Path(tmp) / "cg"
            out_dir.mkdir()
            port = free_port()
            valgrind = [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out_dir}/callgrind.out.%p",
                sys.executable,
                "-m",
            ]
            if relay:
                upstream = sim.url + "/v1/chat/completions"
                cmd = [*valgrind, "tests.perf.relay", "--port", str(port), "--upstream", upstream]
            else:
                cmd = [*valgrind, "core.cli", "serve", "--config", str(config)]
                cmd += ["--port", str(port)]
            env = {"PYTHONPATH": str(tree.resolve())} if tree is not None else None
            cwd = REPO if relay else config.parent
            gw = start(cmd, port, cwd=cwd, env=env, timeout=_READY_SECONDS)
            try:
                headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
                if relay:
                    target = Target("relay", gw, SIM_MODEL, {"content-type": "application/json"})
                else:
                    target = Target("agentgw", gw, VIRTUAL_MODEL, headers)

                def run(n: int) -> int:
                    return anyio.run(
                        lambda: _batch(target, stream=stream, requests=n, concurrency=1)
                    )

                run(warmup)
                _dump(gw.popen.pid, out_dir)  # the start and the warm-up: not counted
                errors = run(requests)
                counted = _total(_dump(gw.popen.pid, out_dir))
            finally:
                gw.stop()

        finally:
            sim.stop()
        if errors:
            raise SystemExit(f"{errors} of {requests} requests failed")
        return counted / requests


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--tree", type=Path, action="append", default=[])
    parser.add_argument("--relay", action="store_true", help="measure the minimal relay too")
    args = parser.parse_args(argv)
    mode = "stream" if args.stream else "plain"
    if args.relay:
        ir = measure(
            None, requests=args.requests, warmup=args.warmup, stream=args.stream, relay=True
        )
        print(f"{mode} relay: {ir / 1000:.0f} k instructions per request")
    for tree in [None, *args.tree]:
        ir = measure(tree, requests=args.requests, warmup=args.warmup, stream=args.stream)
        print(f"{mode} {tree or 'this tree'}: {ir / 1000:.0f} k instructions per request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
