"""A deterministic profile of agentgw serving a fixed number of requests (cProfile).

Sampling profilers (py-spy) over-weight system calls on this virtual machine; cProfile counts
every call instead, timed by the event-loop thread's CPU clock (`time.thread_time`), so time
the thread spends waiting or preempted by other load is not charged. It inflates the cost of
many small calls: read it for *where* the time goes, and decide with `cpureq.py`. agentgw runs
under the profiler, gets N requests, is stopped with SIGTERM and the top functions are printed.

    python -m tests.perf.cprofile --requests 2000 [--stream] [--sort tottime|cumulative]
"""

from __future__ import annotations

import argparse
import pstats
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import anyio

from tests.e2e.procs import create_key, free_port, start, start_sim
from tests.perf.cpureq import _batch
from tests.perf.stack import GATEWAY_CONFIG, SIM_MODEL, VIRTUAL_MODEL, Target

# uvicorn re-raises SIGTERM after its clean shutdown, which would kill the process before
# cProfile writes its file: the runner swallows that re-raise and dumps the profile itself.
_RUNNER = """
import cProfile, signal, sys, time
out = sys.argv[1]
sys.argv = ["agentgw", *sys.argv[2:]]
signal.raise_signal = lambda sig: None
from core.cli import main
prof = cProfile.Profile(time.thread_time)  # the loop thread's CPU, not the wall clock
prof.enable()
try:
    main()
except SystemExit:
    pass
finally:
    prof.disable()
    prof.dump_stats(out)
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--top", type=int, default=45)
    parser.add_argument("--save", type=Path, help="also keep the profile in this file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="agentgw-prof-") as tmp:
        sim = start_sim("--reply-words", "20")
        try:
            config = Path(tmp) / "agentgw.yaml"
            config.write_text(
                GATEWAY_CONFIG.format(sim=sim.url, model=VIRTUAL_MODEL, sim_model=SIM_MODEL)
            )
            key = create_key(config, "perf", "engineering/platform/perf")["key"]
            out = Path(tmp) / "gw.prof"
            port = free_port()
            cmd = [sys.executable, "-c", _RUNNER, str(out), "serve"]
            args_ = [*cmd, "--config", str(config), "--port", str(port)]
            gw = start(args_, port, cwd=config.parent)
            try:
                headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
                target = Target("agentgw", gw, VIRTUAL_MODEL, headers)
                errors = anyio.run(
                    lambda: _batch(
                        target,
                        stream=args.stream,
                        requests=args.requests,
                        concurrency=args.concurrency,
                    )
                )
            finally:
                gw.stop()
        finally:
            sim.stop()
        print(f"{args.requests} requests, {errors} errors")
        if args.save is not None:
            args.save.write_bytes(out.read_bytes())
        stats = pstats.Stats(str(out))
        stats.strip_dirs().sort_stats(args.sort).print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
